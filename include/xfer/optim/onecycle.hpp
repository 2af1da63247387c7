// OneCycleLR: the 1cycle policy with torch.optim.lr_scheduler.OneCycleLR's (1.13) semantics. The lr
// rises from max_lr / div_factor to max_lr over the first pct_start of total_steps, then anneals
// to max_lr / div_factor / final_div_factor (three_phase: back down to the start first); the
// momentum (SGD's momentum, Adam's beta1) moves the opposite way between max_momentum and
// base_momentum.
//
// The one thing to know: it is stepped once per *batch*, total_steps times at most (one more step
// throws, as in PyTorch), and it overwrites each group's initial_lr with max_lr / div_factor. The
// last allowed step extrapolates past the cycle like torch's, except that an lr torch would make
// negative (linear annealing) is 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/optim/scheduler.hpp"

namespace xfer::optim {

enum class AnnealStrategy { cos, linear };

struct OneCycleLROptions {
  std::vector<double> max_lr = {};  // required: one value for all groups, or one per group
  int64_t total_steps = 0;          // required, unless epochs and steps_per_epoch are given
  int64_t epochs = 0;
  int64_t steps_per_epoch = 0;
  double pct_start = 0.3;
  AnnealStrategy anneal_strategy = AnnealStrategy::cos;
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

namespace detail {
inline int64_t onecycle_total(const OneCycleLROptions& o) {
  return o.total_steps > 0 ? o.total_steps : o.epochs * o.steps_per_epoch;
}
// The phases' end steps, as torch computes them (floats).
inline std::vector<double> onecycle_ends(const OneCycleLROptions& o) {
  const double total = static_cast<double>(onecycle_total(o));
  if (o.three_phase) return {o.pct_start * total - 1, 2 * o.pct_start * total - 2, total - 1};
  return {o.pct_start * total - 1, total - 1};
}
inline void validate(const OneCycleLROptions& o, size_t groups, const std::string& where) {
  XFER_CHECK(o.total_steps > 0 || (o.total_steps == 0 && o.epochs > 0 && o.steps_per_epoch > 0), where,
             ": give total_steps > 0, or epochs > 0 and steps_per_epoch > 0 (got total_steps ", o.total_steps,
             ", epochs ", o.epochs, ", steps_per_epoch ", o.steps_per_epoch, ")");
  XFER_CHECK(o.max_lr.size() == 1 || o.max_lr.size() == groups, where, ": ", o.max_lr.size(),
             " max_lr values for ", groups, " parameter groups (give one, or one per group)");
  for (double v : o.max_lr) check_lr(v, where + ": max_lr");
  XFER_CHECK(o.pct_start >= 0 && o.pct_start <= 1, where, ": pct_start must be in [0, 1], got ", o.pct_start);
  XFER_CHECK(std::isfinite(o.div_factor) && o.div_factor > 0, where, ": div_factor must be > 0, got ", o.div_factor);
  XFER_CHECK(std::isfinite(o.final_div_factor) && o.final_div_factor > 0, where, ": final_div_factor must be > 0, got ",
             o.final_div_factor);
  XFER_CHECK(std::isfinite(o.base_momentum) && std::isfinite(o.max_momentum) && o.base_momentum >= 0 &&
                 o.max_momentum >= 0,
             where, ": momenta must be finite values >= 0, got base ", o.base_momentum, ", max ", o.max_momentum);
  // torch divides by each phase's length: a phase of length 0 is a ZeroDivisionError there.
  const auto ends = onecycle_ends(o);
  double start = 0;
  for (size_t i = 0; i < ends.size(); ++i) {
    XFER_CHECK(ends[i] > start, where, ": phase ", i + 1, " of the cycle would be empty (pct_start ", o.pct_start,
               " of ", onecycle_total(o), " steps); raise pct_start or total_steps");
    start = ends[i];
  }
}
inline const char* anneal_name(AnnealStrategy a) { return a == AnnealStrategy::cos ? "cos" : "linear"; }
}  // namespace detail

class OneCycleLR : public LRScheduler {
 public:
  // Over an optimizer with momentum (SGD: momentum, Adam / AdamW: beta1), which it cycles unless
  // cycle_momentum is false.
  template <class Opt>
    requires std::is_base_of_v<LrGroups, Opt>
  OneCycleLR(Opt& opt, OneCycleLROptions o) : LRScheduler(opt), o_(std::move(o)) {
    if constexpr (requires { opt.set_momentum(0.0); }) set_momentum_ = [&opt](double m) { opt.set_momentum(m); };
    else if constexpr (requires { opt.set_beta1(0.0); }) set_momentum_ = [&opt](double m) { opt.set_beta1(m); };
    init();
  }

  std::string kind() const override { return "OneCycleLR"; }
  const OneCycleLROptions& options() const { return o_; }
  int64_t total_steps() const { return detail::onecycle_total(o_); }
  // The momentum set by the last step (NaN when cycle_momentum is off).
  double last_momentum() const { return last_momentum_; }

  void step() override {
    check_groups();
    XFER_CHECK(last_epoch_ + 1 <= total_steps(), "OneCycleLR: tried to step ", last_epoch_ + 2,
               " times; the specified number of total steps is ", total_steps());
    ++last_epoch_;
    std::vector<double> lrs(base_lrs_.size());
    double mom = 0;
    // The step to last_epoch == total_steps (allowed, as in torch) extrapolates past the end of the
    // cycle; with linear annealing torch's lr then goes negative, which no optimizer accepts: 0 here.
    for (size_t g = 0; g < lrs.size(); ++g) lrs[g] = std::max(0.0, value_at(g, last_epoch_, &mom));
    if (set_momentum_) set_momentum_(mom);
    last_momentum_ = set_momentum_ ? mom : std::numeric_limits<double>::quiet_NaN();
    apply(lrs);
  }

  SchedulerState state() const override {
    auto st = LRScheduler::state();
    st.options = {{"max_lr", o_.max_lr},
                  {"total_steps", o_.total_steps},
                  {"epochs", o_.epochs},
                  {"steps_per_epoch", o_.steps_per_epoch},
                  {"pct_start", o_.pct_start},
                  {"anneal_strategy", std::string(detail::anneal_name(o_.anneal_strategy))},
                  {"cycle_momentum", o_.cycle_momentum},
                  {"base_momentum", o_.base_momentum},
                  {"max_momentum", o_.max_momentum},
                  {"div_factor", o_.div_factor},
                  {"final_div_factor", o_.final_div_factor},
                  {"three_phase", o_.three_phase}};
    if (!std::isnan(last_momentum_)) st.values["last_momentum"] = last_momentum_;  // absent: no momentum cycled
    return st;
  }
  void load_state(const SchedulerState& st) override {
    const std::string where = "OneCycleLR::load_state";
    check_kind(st);
    const Options& so = st.options;
    OneCycleLROptions o;
    o.max_lr = detail::option<std::vector<double>>(so, "max_lr", where);
    o.total_steps = detail::option<int64_t>(so, "total_steps", where);
    o.epochs = detail::option<int64_t>(so, "epochs", where);
    o.steps_per_epoch = detail::option<int64_t>(so, "steps_per_epoch", where);
    o.pct_start = detail::option<double>(so, "pct_start", where);
    const auto anneal = detail::option<std::string>(so, "anneal_strategy", where);
    XFER_CHECK(anneal == "cos" || anneal == "linear", where, ": anneal_strategy must be 'cos' or 'linear', got '",
               anneal, "'");
    o.anneal_strategy = anneal == "cos" ? AnnealStrategy::cos : AnnealStrategy::linear;
    o.cycle_momentum = detail::option<bool>(so, "cycle_momentum", where);
    o.base_momentum = detail::option<double>(so, "base_momentum", where);
    o.max_momentum = detail::option<double>(so, "max_momentum", where);
    o.div_factor = detail::option<double>(so, "div_factor", where);
    o.final_div_factor = detail::option<double>(so, "final_div_factor", where);
    o.three_phase = detail::option<bool>(so, "three_phase", where);
    detail::validate(o, opt_->num_groups(), where);
    XFER_CHECK(!o.cycle_momentum || set_momentum_, where, ": the state cycles the momentum, this optimizer has none");
    const double mom = st.values.count("last_momentum") ? detail::option<double>(st.values, "last_momentum", where)
                                                        : std::numeric_limits<double>::quiet_NaN();
    const auto le = st.last_epoch;
    XFER_CHECK(le >= 0 && le <= detail::onecycle_total(o), where, ": last_epoch ", le, " outside [0, ",
               detail::onecycle_total(o), "]");
    LRScheduler::load_state(st);  // validates the group count before assigning
    o_ = o;
    if (!o_.cycle_momentum) set_momentum_ = nullptr;
    last_momentum_ = mom;
  }

 private:
  void init() {
    const std::string where = "OneCycleLR";
    detail::validate(o_, opt_->num_groups(), where);
    XFER_CHECK(!o_.cycle_momentum || set_momentum_, where,
               ": cycle_momentum needs an optimizer with momentum (SGD or Adam / AdamW); set cycle_momentum = false");
    if (!o_.cycle_momentum) set_momentum_ = nullptr;
    // torch: initial_lr = max_lr / div_factor for every group (always, when starting at epoch -1).
    for (size_t g = 0; g < opt_->num_groups(); ++g) opt_->set_initial_lr(g, max_lr(g) / o_.div_factor);
    if (set_momentum_) set_momentum_(o_.max_momentum);
    attach();
    step();
  }
  double max_lr(size_t g) const { return o_.max_lr.size() == 1 ? o_.max_lr[0] : o_.max_lr[g]; }
  double anneal(double start, double end, double pct) const {
    if (o_.anneal_strategy == AnnealStrategy::linear) return (end - start) * pct + start;
    const double cos_out = std::cos(std::numbers::pi * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
  }
  // torch's get_lr for one group at step_num (and the momentum, the same for every group).
  double value_at(size_t g, int64_t step_num, double* mom) const {
    const double initial = base_lrs_[g], peak = max_lr(g), low = initial / o_.final_div_factor;
    const auto ends = detail::onecycle_ends(o_);
    // (start lr, end lr, start momentum, end momentum) per phase
    const double mx = o_.max_momentum, mn = o_.base_momentum;
    struct Phase {
      double lr0, lr1, m0, m1;
    };
    std::vector<Phase> phases;
    if (o_.three_phase) phases = {{initial, peak, mx, mn}, {peak, initial, mn, mx}, {initial, low, mx, mx}};
    else phases = {{initial, peak, mx, mn}, {peak, low, mn, mx}};
    double start = 0;
    const double s = static_cast<double>(step_num);
    for (size_t i = 0; i < phases.size(); ++i) {
      if (s <= ends[i] || i + 1 == phases.size()) {
        const double pct = (s - start) / (ends[i] - start);
        *mom = anneal(phases[i].m0, phases[i].m1, pct);
        return anneal(phases[i].lr0, phases[i].lr1, pct);
      }
      start = ends[i];
    }
    return 0;  // unreachable
  }

  OneCycleLROptions o_;
  std::function<void(double)> set_momentum_;
  double last_momentum_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace xfer::optim
