// MeanCI: the mean of a series of per-task (per-episode) results and its 95% confidence interval,
// the way few-shot results are reported ("54.3 ± 0.5% over 600 episodes"): 1.96 * s / sqrt(n) with
// s the sample standard deviation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace xfer::meta {

class MeanCI {
 public:
  void add(double v) {
    sum_ += v;
    sum2_ += v * v;
    ++n_;
  }
  int64_t count() const { return n_; }
  // NaN when nothing was added.
  double mean() const { return n_ ? sum_ / static_cast<double>(n_) : std::numeric_limits<double>::quiet_NaN(); }
  // Half-width of the 95% interval; 0 with fewer than two values.
  double ci95() const {
    if (n_ < 2) return 0;
    const double n = static_cast<double>(n_), m = mean();
    return 1.96 * std::sqrt(std::max((sum2_ - n * m * m) / (n - 1), 0.0) / n);
  }

 private:
  double sum_ = 0, sum2_ = 0;
  int64_t n_ = 0;
};

}  // namespace xfer::meta
