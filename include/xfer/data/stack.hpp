// data::stack: the one batching routine. Samples of one shape, named by their dataset indices, are
// written side by side into an [n, ...] tensor (the Loader, meta::gather and the examples use it).
//
//   data::stack(indices, [&](int64_t idx, Tensor<float>& sample) { ... fill sample ... }, batch);
//
// The first sample fixes the shape; a sample of another shape is an Error naming both indices and
// shapes. With threads > 1 the samples after the first are prepared on OpenMP threads, each
// reusing one scratch tensor; the first error (in index order) is rethrown after the loop.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"

namespace xfer::data {

struct StackOptions {
  int threads = 1;                  // OpenMP threads preparing samples (1: serial)
  std::string what = "data::stack";  // who is stacking, for error messages
  std::string hint = {};            // appended to the shape-mismatch error (how to fix it)
};

// `fill(index, sample)` writes the sample of dataset index `index` into `sample` (a Tensor<S> it
// may resize); `out` becomes [indices.size(), sample shape...] of T.
template <class S = float, class T, class Fill>
void stack(std::span<const int64_t> indices, Fill&& fill, Tensor<T>& out, const StackOptions& opt = {}) {
  XFER_CHECK(!indices.empty(), opt.what, ": no samples to stack");
  const auto n = static_cast<int64_t>(indices.size());
  Tensor<S> first;
  fill(indices[0], first);
  const Shape s = first.shape();
  const int64_t per = first.numel();
  Shape batch_shape = s;
  batch_shape.insert(batch_shape.begin(), n);
  out.resize(batch_shape);
  std::transform(first.begin(), first.end(), out.data(), [](S v) { return static_cast<T>(v); });
  std::vector<std::string> errors(static_cast<size_t>(n));
#pragma omp parallel num_threads(opt.threads) if (opt.threads > 1 && n > 2)
  {
    Tensor<S> tmp;
#pragma omp for schedule(static)
    for (int64_t i = 1; i < n; ++i) {
      const int64_t idx = indices[static_cast<size_t>(i)];
      try {
        fill(idx, tmp);
        XFER_CHECK(tmp.shape() == s, opt.what, ": sample ", idx, " has shape ", shape_str(tmp.shape()),
                   " but the batch's first sample (", indices[0], ") has ", shape_str(s), opt.hint);
        std::transform(tmp.begin(), tmp.end(), out.data() + i * per, [](S v) { return static_cast<T>(v); });
      } catch (const std::exception& ex) {
        errors[static_cast<size_t>(i)] = ex.what();
      }
    }
  }
  for (const auto& err : errors)
    if (!err.empty()) throw Error(err);
}

}  // namespace xfer::data
