// Row L2 normalisation and its backward, shared by ProtoNet's cosine metric and Baseline++'s cosine
// classifier: xn = x / |x| per row (|x| floored at 1e-12), and dx += (dxn - xn <xn, dxn>) / |x|.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace xfer::meta::detail {

template <class T>
void normalise_rows(const T* x, int64_t rows, int64_t D, T* out, T* norms) {
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(x[r * D + d]) * x[r * D + d];
    norms[r] = static_cast<T>(std::max(std::sqrt(ss), 1e-12));
    for (int64_t d = 0; d < D; ++d) out[r * D + d] = x[r * D + d] / norms[r];
  }
}

template <class T>
void normalise_rows_backward(const T* dn, const T* xn, const T* norms, int64_t rows, int64_t D, T* dx) {
  for (int64_t r = 0; r < rows; ++r) {
    double dot = 0;
    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(dn[r * D + d]) * xn[r * D + d];
    for (int64_t d = 0; d < D; ++d) dx[r * D + d] += (dn[r * D + d] - xn[r * D + d] * static_cast<T>(dot)) / norms[r];
  }
}

}  // namespace xfer::meta::detail
