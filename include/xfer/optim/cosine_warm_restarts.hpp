// CosineAnnealingWarmRestarts (SGDR) with torch.optim.lr_scheduler's (1.13) semantics:
//   lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2,
// where T_cur counts epochs since the last restart and the period T_i starts at T_0 and is
// multiplied by T_mult at every restart.
//
// The one thing to know: step() advances one epoch; step(epoch) jumps to a (possibly fractional)
// epoch, which is how PyTorch users step it per batch: step(epoch + i / iters_per_epoch).
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/optim/scheduler.hpp"

namespace xfer::optim {

struct CosineWarmRestartsOptions {
  int64_t T_0 = 0;     // required: epochs until the first restart
  int64_t T_mult = 1;  // period growth factor at each restart
  double eta_min = 0;
};

namespace detail {
inline void validate(const CosineWarmRestartsOptions& o, const std::string& where) {
  XFER_CHECK(o.T_0 >= 1, where, ": T_0 must be a positive integer, got ", o.T_0);
  XFER_CHECK(o.T_mult >= 1, where, ": T_mult must be an integer >= 1, got ", o.T_mult);
  XFER_CHECK(std::isfinite(o.eta_min) && o.eta_min >= 0, where, ": eta_min must be a finite value >= 0, got ",
             o.eta_min);
}
}  // namespace detail

class CosineAnnealingWarmRestarts : public LRScheduler {
 public:
  CosineAnnealingWarmRestarts(LrGroups& opt, CosineWarmRestartsOptions o) : LRScheduler(opt), o_(o) {
    detail::validate(o, "CosineAnnealingWarmRestarts");
    attach();
    T_i_ = o_.T_0;
    step_epoch(0.0);  // torch's initial step: step() with last_epoch < 0 means epoch 0
  }
  std::string kind() const override { return "CosineAnnealingWarmRestarts"; }
  const CosineWarmRestartsOptions& options() const { return o_; }
  // Epochs since the last restart (fractional after step(epoch)) and the current period.
  double T_cur() const { return T_cur_; }
  int64_t T_i() const { return T_i_; }

  // One epoch further; restarts when T_cur reaches T_i.
  void step() override {
    check_groups();
    T_cur_ += 1;
    if (T_cur_ >= static_cast<double>(T_i_)) {
      T_cur_ -= static_cast<double>(T_i_);
      T_i_ *= o_.T_mult;
    }
    last_epoch_ += 1;
    apply(lrs());
  }
  // Jumps to `epoch` (>= 0, may be fractional), computing T_cur and T_i in closed form.
  void step(double epoch) {
    check_groups();
    step_epoch(epoch);
  }

  SchedulerState state() const override {
    auto st = LRScheduler::state();
    st.options = {{"T_0", o_.T_0}, {"T_mult", o_.T_mult}, {"eta_min", o_.eta_min}};
    st.values = {{"T_cur", T_cur_}, {"T_i", T_i_}};
    return st;
  }
  void load_state(const SchedulerState& st) override {
    const std::string where = "CosineAnnealingWarmRestarts::load_state";
    check_kind(st);
    CosineWarmRestartsOptions o{.T_0 = detail::option<int64_t>(st.options, "T_0", where),
                                .T_mult = detail::option<int64_t>(st.options, "T_mult", where),
                                .eta_min = detail::option<double>(st.options, "eta_min", where)};
    detail::validate(o, where);
    const auto t_cur = detail::option<double>(st.values, "T_cur", where);
    const auto t_i = detail::option<int64_t>(st.values, "T_i", where);
    XFER_CHECK(std::isfinite(t_cur) && t_cur >= 0 && t_i >= o.T_0, where, ": inconsistent T_cur ", t_cur, " / T_i ", t_i,
               " for T_0 ", o.T_0);
    LRScheduler::load_state(st);
    o_ = o;
    T_cur_ = t_cur;
    T_i_ = t_i;
  }

 private:
  void step_epoch(double epoch) {
    XFER_CHECK(std::isfinite(epoch) && epoch >= 0, "CosineAnnealingWarmRestarts::step: expected a non-negative epoch, got ",
               epoch);
    const double T0 = static_cast<double>(o_.T_0);
    if (epoch >= T0) {
      if (o_.T_mult == 1) {
        T_cur_ = std::fmod(epoch, T0);
      } else {
        const double m = static_cast<double>(o_.T_mult);
        const auto n = static_cast<int64_t>(std::log(epoch / T0 * (m - 1) + 1) / std::log(m));
        const double mn = std::pow(m, static_cast<double>(n));
        T_cur_ = epoch - T0 * (mn - 1) / (m - 1);
        T_i_ = o_.T_0 * static_cast<int64_t>(mn);
      }
    } else {
      T_i_ = o_.T_0;
      T_cur_ = epoch;
    }
    last_epoch_ = static_cast<int64_t>(std::floor(epoch));
    apply(lrs());
  }
  std::vector<double> lrs() const {
    std::vector<double> out;
    const double c = (1 + std::cos(std::numbers::pi * T_cur_ / static_cast<double>(T_i_))) / 2;
    for (double b : base_lrs_) out.push_back(o_.eta_min + (b - o_.eta_min) * c);
    return out;
  }

  CosineWarmRestartsOptions o_;
  double T_cur_ = 0;
  int64_t T_i_ = 0;
};

}  // namespace xfer::optim
