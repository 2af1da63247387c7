// random_split: a seeded train/validation split of a dataset, optionally stratified by label.
// The one thing to know: the split depends only on (dataset size, labels if stratified, fraction,
// seed) — xfer's own Fisher-Yates over xfer::Rng, so it is the same on every platform; both index
// lists come back sorted, and Subset(dataset, split.train) gives the view.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/data/dataset.hpp"

namespace xfer::data {

struct SplitIndices {
  std::vector<int64_t> train, val;
};

namespace detail {
inline void shuffle(std::vector<int64_t>& v, Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}
}  // namespace detail

// Puts round(val_fraction * n) samples into `val` (per class when stratified) and the rest into `train`.
inline SplitIndices random_split(const Dataset& ds, double val_fraction, uint64_t seed, bool stratified = false) {
  XFER_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, "random_split: val_fraction must be in [0, 1), got ",
             val_fraction);
  const int64_t n = ds.size();
  XFER_CHECK(n > 0, "random_split: the dataset is empty");
  Rng rng(seed);
  SplitIndices s;
  auto take = [&](std::vector<int64_t> idx) {
    detail::shuffle(idx, rng);
    const auto nval = static_cast<size_t>(std::llround(val_fraction * static_cast<double>(idx.size())));
    s.val.insert(s.val.end(), idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(nval));
    s.train.insert(s.train.end(), idx.begin() + static_cast<std::ptrdiff_t>(nval), idx.end());
  };
  if (!stratified) {
    std::vector<int64_t> all(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
    take(std::move(all));
  } else {
    std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(std::max<int64_t>(ds.num_classes(), 1)));
    for (int64_t i = 0; i < n; ++i) {
      const int32_t y = ds.label(i);
      XFER_CHECK(y >= 0 && y < static_cast<int64_t>(by_class.size()), "random_split: label ", y, " of sample ", i,
                 " is outside [0, ", by_class.size(), ")");
      by_class[static_cast<size_t>(y)].push_back(i);
    }
    for (auto& idx : by_class) take(std::move(idx));
  }
  XFER_CHECK(!s.train.empty(), "random_split: val_fraction ", val_fraction, " of ", n,
             " samples leaves no training samples");
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  return s;
}

}  // namespace xfer::data
