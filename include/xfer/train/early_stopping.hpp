// EarlyStopping: stop training when a validation metric has not improved for `patience` epochs.
// An epoch improves when the metric beats the best so far by more than min_delta (mode min:
// metric < best - min_delta; mode max: metric > best + min_delta), Keras / Lightning semantics.
//
// The one thing to know: step(metric) returns true when training should stop, and improved()
// says whether this epoch set a new best (the moment to save best.safetensors). The state is a
// plain struct (state() / load_state()), so a resumed run stops at the same epoch.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "xfer/core/error.hpp"

namespace xfer::train {

enum class MetricMode { min, max };

struct EarlyStoppingOptions {
  MetricMode mode = MetricMode::min;  // min for a loss, max for an accuracy
  int64_t patience = 5;               // epochs without improvement before stopping
  double min_delta = 0.0;             // the smallest change that counts as an improvement (>= 0)
  // A NaN or infinite metric stops at once (Lightning's check_finite); otherwise it just does not improve.
  bool stop_on_nonfinite = true;
};

// Everything EarlyStopping remembers between epochs.
struct EarlyStoppingState {
  double best = 0;                // best metric so far (meaningless while epochs == 0)
  int64_t best_epoch = -1;        // index of the epoch that set it (counting step() calls from 0)
  int64_t epochs = 0;             // step() calls so far
  int64_t bad_epochs = 0;         // consecutive epochs without improvement
  bool stopped = false;           // step() has returned true
  bool last_improved = false;     // the last step() set a new best
};

class EarlyStopping {
 public:
  explicit EarlyStopping(EarlyStoppingOptions o = {}) : opt_(o) { validate(o, "EarlyStopping"); }

  // Records one epoch's metric; returns true when training should stop now.
  bool step(double metric) {
    XFER_CHECK(!st_.stopped, "EarlyStopping::step: training was already stopped at epoch ", st_.epochs - 1,
               " (best ", st_.best, " at epoch ", st_.best_epoch, ")");
    const int64_t epoch = st_.epochs++;
    st_.last_improved = false;
    if (!std::isfinite(metric)) {
      ++st_.bad_epochs;
      st_.stopped = opt_.stop_on_nonfinite || st_.bad_epochs >= opt_.patience;
      return st_.stopped;
    }
    if (st_.best_epoch < 0 || better(metric, st_.best)) {
      st_.best = metric;
      st_.best_epoch = epoch;
      st_.bad_epochs = 0;
      st_.last_improved = true;
      return false;
    }
    ++st_.bad_epochs;
    st_.stopped = st_.bad_epochs >= opt_.patience;
    return st_.stopped;
  }

  bool improved() const { return st_.last_improved; }
  bool should_stop() const { return st_.stopped; }
  bool has_best() const { return st_.best_epoch >= 0; }
  double best() const {
    XFER_CHECK(has_best(), "EarlyStopping::best: no finite metric recorded yet");
    return st_.best;
  }
  int64_t best_epoch() const { return st_.best_epoch; }
  int64_t bad_epochs() const { return st_.bad_epochs; }
  int64_t epochs() const { return st_.epochs; }
  const EarlyStoppingOptions& options() const { return opt_; }

  const EarlyStoppingState& state() const { return st_; }
  // Restores a state saved by state(); checks it is self-consistent first.
  void load_state(const EarlyStoppingState& s) {
    const char* where = "EarlyStopping::load_state";
    XFER_CHECK(s.epochs >= 0 && s.bad_epochs >= 0 && s.bad_epochs <= s.epochs, where, ": inconsistent counters (epochs ",
               s.epochs, ", bad_epochs ", s.bad_epochs, ")");
    XFER_CHECK(s.best_epoch >= -1 && s.best_epoch < s.epochs, where, ": best_epoch ", s.best_epoch, " outside [-1, ",
               s.epochs, ")");
    XFER_CHECK(s.best_epoch < 0 || std::isfinite(s.best), where, ": best metric ", s.best, " is not finite");
    st_ = s;
  }

  static void validate(const EarlyStoppingOptions& o, const std::string& where) {
    XFER_CHECK(o.patience >= 1, where, ": patience must be >= 1, got ", o.patience);
    XFER_CHECK(std::isfinite(o.min_delta) && o.min_delta >= 0, where, ": min_delta must be a finite value >= 0, got ",
               o.min_delta);
  }

 private:
  bool better(double m, double best) const {
    return opt_.mode == MetricMode::min ? m < best - opt_.min_delta : m > best + opt_.min_delta;
  }
  EarlyStoppingOptions opt_;
  EarlyStoppingState st_;
};

}  // namespace xfer::train
