// ReduceLROnPlateau: multiplies every group's lr by `factor` when a monitored metric (validation
// loss, accuracy) has not improved for more than `patience` steps, with PyTorch 1.13's semantics
// (threshold rel/abs, cooldown, per-group min_lr, eps).
//
// The one thing to know: it acts on the optimizer's current lr (not a base lr), so it composes
// with a manual set_lr; a reduction smaller than eps is skipped, and a NaN metric counts as
// "no improvement" (as in PyTorch).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/optim/optimizer.hpp"

namespace xfer::optim {

enum class PlateauMode { min, max };  // min: lower metric is better (a loss); max: higher (accuracy)
enum class ThresholdMode { rel, abs };

struct ReduceLROnPlateauOptions {
  PlateauMode mode = PlateauMode::min;
  double factor = 0.1;  // new_lr = lr * factor
  int64_t patience = 10;  // steps without improvement tolerated before reducing
  double threshold = 1e-4;  // what counts as an improvement (see threshold_mode)
  ThresholdMode threshold_mode = ThresholdMode::rel;  // rel: best * (1 -/+ threshold); abs: best -/+ threshold
  int64_t cooldown = 0;  // steps to wait after a reduction before counting bad steps again
  double min_lr = 0;  // lower bound of every group's lr ...
  std::vector<double> min_lrs = {};  // ... or one bound per group (overrides min_lr when not empty)
  double eps = 1e-8;  // reductions smaller than this are skipped
};

namespace detail {
inline void validate(const ReduceLROnPlateauOptions& o, const std::string& where) {
  XFER_CHECK(std::isfinite(o.factor) && o.factor > 0 && o.factor < 1, where, ": factor must be in (0, 1), got ",
             o.factor);
  XFER_CHECK(o.patience >= 0, where, ": patience must be >= 0, got ", o.patience);
  XFER_CHECK(o.cooldown >= 0, where, ": cooldown must be >= 0, got ", o.cooldown);
  XFER_CHECK(std::isfinite(o.threshold) && o.threshold >= 0, where, ": threshold must be a finite value >= 0, got ",
             o.threshold);
  XFER_CHECK(std::isfinite(o.eps) && o.eps >= 0, where, ": eps must be a finite value >= 0, got ", o.eps);
  XFER_CHECK(std::isfinite(o.min_lr) && o.min_lr >= 0, where, ": min_lr must be a finite value >= 0, got ", o.min_lr);
  for (size_t i = 0; i < o.min_lrs.size(); ++i)
    XFER_CHECK(std::isfinite(o.min_lrs[i]) && o.min_lrs[i] >= 0, where, ": min_lrs[", i,
               "] must be a finite value >= 0, got ", o.min_lrs[i]);
}
}  // namespace detail

// The saved form of a ReduceLROnPlateau (io/state_json.hpp converts it to JSON).
struct PlateauState {
  ReduceLROnPlateauOptions options;  // min_lrs holds one bound per group
  int64_t last_epoch = 0;
  double best = 0;
  int64_t num_bad_epochs = 0;
  int64_t cooldown_counter = 0;
  std::vector<double> last_lr;
};

class ReduceLROnPlateau {
 public:
  ReduceLROnPlateau(LrGroups& opt, ReduceLROnPlateauOptions o = {}) : opt_(&opt), o_(std::move(o)) {
    detail::validate(o_, "ReduceLROnPlateau");
    XFER_CHECK(o_.min_lrs.empty() || o_.min_lrs.size() == opt.num_groups(), "ReduceLROnPlateau: min_lrs has ",
               o_.min_lrs.size(), " entries, the optimizer has ", opt.num_groups(), " parameter groups");
    if (o_.min_lrs.empty()) o_.min_lrs.assign(opt.num_groups(), o_.min_lr);
    best_ = worst();
    for (size_t g = 0; g < opt.num_groups(); ++g) last_lr_.push_back(opt.lr(g));
  }

  // One epoch's metric; reduces the lr when it has stalled for more than `patience` steps.
  void step(double metric) {
    XFER_CHECK(o_.min_lrs.size() == opt_->num_groups(), "ReduceLROnPlateau: the optimizer now has ",
               opt_->num_groups(), " parameter groups, the scheduler was built for ", o_.min_lrs.size());
    ++last_epoch_;
    if (is_better(metric, best_)) {
      best_ = metric;
      num_bad_epochs_ = 0;
    } else {
      ++num_bad_epochs_;
    }
    if (in_cooldown()) {
      --cooldown_counter_;
      num_bad_epochs_ = 0;  // bad epochs during cooldown do not count
    }
    if (num_bad_epochs_ > o_.patience) {
      reduce_lr();
      cooldown_counter_ = o_.cooldown;
      num_bad_epochs_ = 0;
    }
    last_lr_.clear();
    for (size_t g = 0; g < opt_->num_groups(); ++g) last_lr_.push_back(opt_->lr(g));
  }

  // Whether `metric` counts as an improvement over `best` under mode / threshold.
  bool is_better(double metric, double best) const {
    const bool rel = o_.threshold_mode == ThresholdMode::rel;
    if (o_.mode == PlateauMode::min) return rel ? metric < best * (1. - o_.threshold) : metric < best - o_.threshold;
    return rel ? metric > best * (o_.threshold + 1.) : metric > best + o_.threshold;
  }

  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  int64_t cooldown_counter() const { return cooldown_counter_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }
  const ReduceLROnPlateauOptions& options() const { return o_; }

  PlateauState state() const {
    return {.options = o_,
            .last_epoch = last_epoch_,
            .best = best_,
            .num_bad_epochs = num_bad_epochs_,
            .cooldown_counter = cooldown_counter_,
            .last_lr = last_lr_};
  }
  void load_state(const PlateauState& st) {
    const std::string where = "ReduceLROnPlateau::load_state";
    detail::validate(st.options, where);
    XFER_CHECK(st.options.min_lrs.size() == opt_->num_groups(), where, ": the state covers ", st.options.min_lrs.size(),
               " parameter groups, the optimizer has ", opt_->num_groups());
    XFER_CHECK(st.last_lr.size() == opt_->num_groups(), where, ": last_lr has ", st.last_lr.size(),
               " entries, expected ", opt_->num_groups());
    XFER_CHECK(st.num_bad_epochs >= 0 && st.cooldown_counter >= 0, where, ": negative counters (num_bad_epochs ",
               st.num_bad_epochs, ", cooldown_counter ", st.cooldown_counter, ")");
    o_ = st.options;
    last_lr_ = st.last_lr;
    last_epoch_ = st.last_epoch;
    best_ = st.best;
    num_bad_epochs_ = st.num_bad_epochs;
    cooldown_counter_ = st.cooldown_counter;
  }

 private:
  double worst() const {
    return o_.mode == PlateauMode::min ? std::numeric_limits<double>::infinity()
                                       : -std::numeric_limits<double>::infinity();
  }
  void reduce_lr() {
    for (size_t g = 0; g < opt_->num_groups(); ++g) {
      const double old_lr = opt_->lr(g);
      const double new_lr = std::max(old_lr * o_.factor, o_.min_lrs[g]);
      if (old_lr - new_lr > o_.eps) opt_->set_lr(g, new_lr);
    }
  }

  LrGroups* opt_;
  ReduceLROnPlateauOptions o_;
  int64_t last_epoch_ = 0;
  double best_ = 0;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
  std::vector<double> last_lr_;
};

}  // namespace xfer::optim
