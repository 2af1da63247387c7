// Epoch-based learning-rate schedulers with PyTorch 1.13 semantics: StepLR, CosineAnnealingLR and
// LinearWarmup (torch's LinearLR, optionally followed by another scheduler as in SequentialLR).
// They act on every parameter group of an optimizer and multiply each group's base lr (its
// 'initial_lr', recorded by the first scheduler attached).
//
// The one thing to know: like PyTorch, constructing a scheduler already performs its first step
// (epoch 0; for a warmup that sets lr = base * start_factor), and steps use PyTorch's recursive
// ("chainable") formulas, which update the optimizer's current lr. So the sequences match
// torch's to the last bit, and an lr set by hand between steps is carried on as in PyTorch.
// To resume: build optimizer and scheduler, then load the optimizer state, then the scheduler's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/optim/optimizer.hpp"
#include "xfer/optim/state.hpp"

namespace xfer::optim {

// Base of the schedulers stepped once per epoch (or iteration) without a metric.
class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  virtual std::string kind() const = 0;
  // Advances one epoch and writes the new lr into every group of the optimizer.
  virtual void step() = 0;

  // The epoch index of the last step (0 right after construction).
  int64_t last_epoch() const { return last_epoch_; }
  // The lr of each group set by the last step.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  // Each group's base lr (its 'initial_lr').
  const std::vector<double>& base_lrs() const { return base_lrs_; }

  // Checkpoint form: kind, options and counters. load_state restores them (the optimizer's own
  // lr comes from the optimizer state) after checking the kind and the number of groups.
  // (A plain struct, optim/state.hpp; io/state_json.hpp converts it to JSON.)
  virtual SchedulerState state() const {
    return {.kind = kind(), .last_epoch = last_epoch_, .base_lrs = base_lrs_, .last_lr = last_lr_};
  }
  virtual void load_state(const SchedulerState& st) {
    const std::string where = kind() + "::load_state";
    check_kind(st);
    XFER_CHECK(st.base_lrs.size() == opt_->num_groups() && st.last_lr.size() == opt_->num_groups(), where,
               ": the state covers ", st.base_lrs.size(), " parameter groups, the optimizer has ", opt_->num_groups());
    last_epoch_ = st.last_epoch;
    base_lrs_ = st.base_lrs;
    last_lr_ = st.last_lr;
  }

 protected:
  void check_kind(const SchedulerState& st) const {
    XFER_CHECK(st.kind == kind(), kind(), "::load_state: the state was saved by a ", st.kind, " scheduler, this is ",
               kind());
  }
  explicit LRScheduler(LrGroups& opt) : opt_(&opt) {}
  // Records each group's base lr, like PyTorch's group.setdefault('initial_lr', group['lr']).
  // Derived constructors call it after validating their options, so a rejected scheduler leaves
  // the optimizer untouched.
  void attach() {
    XFER_CHECK(opt_->num_groups() > 0, kind(), ": the optimizer has no parameter groups");
    base_lrs_.clear();
    for (size_t g = 0; g < opt_->num_groups(); ++g) {
      if (!opt_->initial_lr(g)) opt_->set_initial_lr(g, opt_->lr(g));
      base_lrs_.push_back(*opt_->initial_lr(g));
    }
  }
  LRScheduler(const LRScheduler&) = default;
  LRScheduler& operator=(const LRScheduler&) = default;

  std::vector<double> current_lrs() const {
    std::vector<double> out(opt_->num_groups());
    for (size_t g = 0; g < out.size(); ++g) out[g] = opt_->lr(g);
    return out;
  }
  void apply(const std::vector<double>& lrs) {
    XFER_CHECK(lrs.size() == opt_->num_groups(), kind(), ": the optimizer now has ", opt_->num_groups(),
               " parameter groups, the scheduler was built for ", lrs.size(),
               " (build the scheduler after add_param_group)");
    for (size_t g = 0; g < lrs.size(); ++g) opt_->set_lr(g, lrs[g]);
    last_lr_ = lrs;
  }
  void check_groups() const {
    XFER_CHECK(base_lrs_.size() == opt_->num_groups(), kind(), ": the optimizer now has ", opt_->num_groups(),
               " parameter groups, the scheduler was built for ", base_lrs_.size(),
               " (build the scheduler after add_param_group)");
  }

  LrGroups* opt_;
  int64_t last_epoch_ = -1;
  std::vector<double> base_lrs_, last_lr_;
};

// A scheduler given by a formula of the epoch: PyTorch's _LRScheduler with a recursive get_lr()
// for step() and a closed form for a jump to an epoch (used when LinearWarmup hands over).
class ChainableScheduler : public LRScheduler {
 public:
  void step() override {
    check_groups();
    ++step_count_;
    ++last_epoch_;
    apply(chainable_lr());
  }
  // PyTorch's step(epoch): jumps to `epoch` and sets the closed-form lr.
  void step_to(int64_t epoch) {
    check_groups();
    ++step_count_;
    last_epoch_ = epoch;
    apply(closed_form_lr());
  }
  // A copy of this scheduler (same optimizer, same counters).
  virtual std::unique_ptr<ChainableScheduler> clone() const = 0;

  SchedulerState state() const override {
    auto st = LRScheduler::state();
    st.step_count = step_count_;
    st.options = saved_options();
    return st;
  }
  void load_state(const SchedulerState& st) override {
    const std::string where = kind() + "::load_state";
    check_kind(st);
    load_options(st.options, where, /*apply=*/false);
    XFER_CHECK(st.step_count.has_value(), where, ": missing key 'step_count'");
    LRScheduler::load_state(st);
    load_options(st.options, where, /*apply=*/true);
    step_count_ = *st.step_count;
  }

 protected:
  using LRScheduler::LRScheduler;
  // attach() and PyTorch's _initial_step(), called at the end of each derived constructor.
  void initial_step() {
    attach();
    step_count_ = 0;
    step();
  }
  virtual std::vector<double> chainable_lr() const = 0;
  virtual std::vector<double> closed_form_lr() const = 0;
  virtual Options saved_options() const = 0;
  virtual void load_options(const Options& o, const std::string& where, bool apply) = 0;

  int64_t step_count_ = 0;
  friend class LinearWarmup;
};

// ---- StepLR --------------------------------------------------------------------------------------

struct StepLROptions {
  int64_t step_size = 0;  // required: decay every step_size epochs
  double gamma = 0.1;
};

namespace detail {
inline void validate(const StepLROptions& o, const std::string& where) {
  XFER_CHECK(o.step_size >= 1, where, ": step_size must be >= 1, got ", o.step_size);
  XFER_CHECK(std::isfinite(o.gamma) && o.gamma > 0, where, ": gamma must be a finite value > 0, got ", o.gamma);
}
}  // namespace detail

// lr = base_lr * gamma^(epoch / step_size).
class StepLR : public ChainableScheduler {
 public:
  StepLR(LrGroups& opt, StepLROptions o) : ChainableScheduler(opt), opt_(o) {
    detail::validate(o, "StepLR");
    initial_step();
  }
  std::string kind() const override { return "StepLR"; }
  const StepLROptions& options() const { return opt_; }
  std::unique_ptr<ChainableScheduler> clone() const override { return std::make_unique<StepLR>(*this); }

 protected:
  std::vector<double> chainable_lr() const override {
    auto lrs = current_lrs();
    if (last_epoch_ == 0 || last_epoch_ % opt_.step_size != 0) return lrs;
    for (auto& lr : lrs) lr *= opt_.gamma;
    return lrs;
  }
  std::vector<double> closed_form_lr() const override {
    std::vector<double> out;
    for (double b : base_lrs_)
      out.push_back(b * std::pow(opt_.gamma, static_cast<double>(floor_div(last_epoch_, opt_.step_size))));
    return out;
  }
  Options saved_options() const override { return {{"step_size", opt_.step_size}, {"gamma", opt_.gamma}}; }
  void load_options(const Options& saved, const std::string& where, bool apply) override {
    StepLROptions o{.step_size = detail::option<int64_t>(saved, "step_size", where),
                    .gamma = detail::option<double>(saved, "gamma", where)};
    detail::validate(o, where);
    if (apply) opt_ = o;
  }

 private:
  static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
  StepLROptions opt_;
};

// ---- CosineAnnealingLR ---------------------------------------------------------------------------

struct CosineAnnealingOptions {
  int64_t T_max = 0;  // required: half period in epochs
  double eta_min = 0;
};

namespace detail {
inline void validate(const CosineAnnealingOptions& o, const std::string& where) {
  XFER_CHECK(o.T_max >= 1, where, ": T_max must be >= 1, got ", o.T_max);
  XFER_CHECK(std::isfinite(o.eta_min) && o.eta_min >= 0, where, ": eta_min must be a finite value >= 0, got ",
             o.eta_min);
}
}  // namespace detail

// lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, continuing as a cosine
// wave after T_max (as PyTorch does; it is not restarted).
class CosineAnnealingLR : public ChainableScheduler {
 public:
  CosineAnnealingLR(LrGroups& opt, CosineAnnealingOptions o) : ChainableScheduler(opt), opt_(o) {
    detail::validate(o, "CosineAnnealingLR");
    initial_step();
  }
  std::string kind() const override { return "CosineAnnealingLR"; }
  const CosineAnnealingOptions& options() const { return opt_; }
  std::unique_ptr<ChainableScheduler> clone() const override { return std::make_unique<CosineAnnealingLR>(*this); }

 protected:
  std::vector<double> chainable_lr() const override {
    constexpr double pi = std::numbers::pi;
    const double T = static_cast<double>(opt_.T_max), e = static_cast<double>(last_epoch_), eta = opt_.eta_min;
    auto lrs = current_lrs();
    if (last_epoch_ == 0) return lrs;
    if (py_mod(last_epoch_ - 1 - opt_.T_max, 2 * opt_.T_max) == 0) {
      for (size_t g = 0; g < lrs.size(); ++g) lrs[g] = lrs[g] + (base_lrs_[g] - eta) * (1 - std::cos(pi / T)) / 2;
      return lrs;
    }
    for (auto& lr : lrs) lr = (1 + std::cos(pi * e / T)) / (1 + std::cos(pi * (e - 1) / T)) * (lr - eta) + eta;
    return lrs;
  }
  std::vector<double> closed_form_lr() const override {
    constexpr double pi = std::numbers::pi;
    std::vector<double> out;
    for (double b : base_lrs_)
      out.push_back(opt_.eta_min + (b - opt_.eta_min) *
                                       (1 + std::cos(pi * static_cast<double>(last_epoch_) / static_cast<double>(opt_.T_max))) / 2);
    return out;
  }
  Options saved_options() const override { return {{"T_max", opt_.T_max}, {"eta_min", opt_.eta_min}}; }
  void load_options(const Options& saved, const std::string& where, bool apply) override {
    CosineAnnealingOptions o{.T_max = detail::option<int64_t>(saved, "T_max", where),
                             .eta_min = detail::option<double>(saved, "eta_min", where)};
    detail::validate(o, where);
    if (apply) opt_ = o;
  }

 private:
  static int64_t py_mod(int64_t a, int64_t b) { return ((a % b) + b) % b; }  // Python's % for b > 0
  CosineAnnealingOptions opt_;
};

// ---- LinearWarmup --------------------------------------------------------------------------------

struct LinearWarmupOptions {
  double start_factor = 1.0 / 3;  // lr starts at base_lr * start_factor ...
  int64_t warmup_steps = 5;       // ... and reaches base_lr after this many steps
};

namespace detail {
inline void validate(const LinearWarmupOptions& o, const std::string& where) {
  XFER_CHECK(o.start_factor > 0 && o.start_factor <= 1, where, ": start_factor must be in (0, 1], got ",
             o.start_factor);
  XFER_CHECK(o.warmup_steps >= 1, where, ": warmup_steps must be >= 1, got ", o.warmup_steps);
}

// torch.optim.lr_scheduler.LinearLR with end_factor = 1.
class LinearLR : public ChainableScheduler {
 public:
  LinearLR(LrGroups& opt, LinearWarmupOptions o) : ChainableScheduler(opt), opt_(o) {
    validate(o, "LinearWarmup");
    initial_step();
  }
  std::string kind() const override { return "LinearLR"; }
  std::unique_ptr<ChainableScheduler> clone() const override { return std::make_unique<LinearLR>(*this); }
  const LinearWarmupOptions& options() const { return opt_; }

 protected:
  std::vector<double> chainable_lr() const override {
    const double sf = opt_.start_factor, ef = 1.0, n = static_cast<double>(opt_.warmup_steps);
    auto lrs = current_lrs();
    if (last_epoch_ == 0) {
      for (auto& lr : lrs) lr *= sf;
      return lrs;
    }
    if (last_epoch_ > opt_.warmup_steps) return lrs;
    for (auto& lr : lrs) lr *= 1. + (ef - sf) / (n * sf + static_cast<double>(last_epoch_ - 1) * (ef - sf));
    return lrs;
  }
  std::vector<double> closed_form_lr() const override {
    const double sf = opt_.start_factor, n = static_cast<double>(opt_.warmup_steps);
    std::vector<double> out;
    for (double b : base_lrs_)
      out.push_back(b * (sf + (1.0 - sf) * static_cast<double>(std::min(opt_.warmup_steps, last_epoch_)) / n));
    return out;
  }
  Options saved_options() const override {
    return {{"start_factor", opt_.start_factor}, {"warmup_steps", opt_.warmup_steps}};
  }
  void load_options(const Options& saved, const std::string& where, bool apply) override {
    LinearWarmupOptions o{.start_factor = option<double>(saved, "start_factor", where),
                          .warmup_steps = option<int64_t>(saved, "warmup_steps", where)};
    validate(o, where);
    if (apply) opt_ = o;
  }

 private:
  LinearWarmupOptions opt_;
};
}  // namespace detail

// Linear warmup from base_lr * start_factor to base_lr over warmup_steps steps, then optionally
// another scheduler that starts at its epoch 0 when the warmup ends:
//   optim::LinearWarmup sched(opt, {.start_factor = 0.1, .warmup_steps = 5},
//                             optim::CosineAnnealingLR(opt, {.T_max = 95}));
// is torch's SequentialLR([LinearLR(opt, 0.1, total_iters=5), CosineAnnealingLR(opt, 95)], [5]).
// The follow-up scheduler is copied in; build it on the same optimizer and do not step it yourself.
class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(LrGroups& opt, LinearWarmupOptions o) : LRScheduler(opt), warm_(opt, o) {
    attach();
    last_epoch_ = 0;
    last_lr_ = warm_.get_last_lr();
  }
  LinearWarmup(LrGroups& opt, LinearWarmupOptions o, const ChainableScheduler& after)
      : LRScheduler(opt), warm_(prepare(opt, o, after), o), after_(after.clone()) {
    attach();
    // As SequentialLR: the follow-up's construction step is undone, and only the warmup's counts.
    after_->last_epoch_ -= 1;
    last_epoch_ = 0;
    last_lr_ = warm_.get_last_lr();
  }
  LinearWarmup(const LinearWarmup& o) : LRScheduler(o), warm_(o.warm_), after_(o.after_ ? o.after_->clone() : nullptr) {}

  std::string kind() const override { return "LinearWarmup"; }
  const LinearWarmupOptions& options() const { return warm_.options(); }
  // The follow-up scheduler, or nullptr.
  const ChainableScheduler* after() const { return after_.get(); }

  void step() override {
    ++last_epoch_;
    if (!after_ || last_epoch_ < options().warmup_steps) {
      warm_.step();
      last_lr_ = warm_.get_last_lr();
    } else {
      if (last_epoch_ == options().warmup_steps)
        after_->step_to(0);
      else
        after_->step();
      last_lr_ = after_->get_last_lr();
    }
  }

  SchedulerState state() const override {
    auto st = LRScheduler::state();
    st.children["warmup"] = std::make_shared<SchedulerState>(warm_.state());
    st.children["after"] = after_ ? std::make_shared<SchedulerState>(after_->state()) : nullptr;
    return st;
  }
  void load_state(const SchedulerState& st) override {
    const std::string where = "LinearWarmup::load_state";
    check_kind(st);
    auto child = [&](const char* name) {
      auto it = st.children.find(name);
      XFER_CHECK(it != st.children.end(), where, ": missing key '", name, "'");
      return it->second;
    };
    const auto warm = child("warmup");
    const auto after = child("after");
    XFER_CHECK(warm != nullptr, where, ": the state has no warmup scheduler");
    XFER_CHECK((after == nullptr) == (after_ == nullptr), where, ": the state ",
               after ? "has a follow-up scheduler" : "has no follow-up scheduler", ", this LinearWarmup ",
               after_ ? "has a " + after_->kind() : std::string("has none"));
    // Validate everything on copies first, so a failed load changes nothing.
    LinearWarmup tmp(*this);
    tmp.LRScheduler::load_state(st);
    tmp.warm_.load_state(*warm);
    if (tmp.after_) tmp.after_->load_state(*after);
    *this = std::move(tmp);
  }
  LinearWarmup& operator=(LinearWarmup&& o) = default;

 private:
  // Checks everything before touching the optimizer, then resets each group to its base lr (as
  // SequentialLR does) for the warmup's first step.
  static LrGroups& prepare(LrGroups& opt, const LinearWarmupOptions& o, const ChainableScheduler& after) {
    detail::validate(o, "LinearWarmup");
    XFER_CHECK(after.opt_ == &opt, "LinearWarmup: the follow-up ", after.kind(), " was built on a different optimizer");
    for (size_t g = 0; g < opt.num_groups(); ++g)
      if (opt.initial_lr(g)) opt.set_lr(g, *opt.initial_lr(g));
    return opt;
  }
  detail::LinearLR warm_;
  std::unique_ptr<ChainableScheduler> after_;
};

}  // namespace xfer::optim
