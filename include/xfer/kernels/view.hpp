// Strided matrix views for the packed GEMM (gemm.hpp) and its epilogue. A view may fold the batch
// into a dimension: column j of an NCHW tensor seen as [channels, n*P] lives at (j/P)*C*P + j%P,
// so convolutions need no gather/scatter copies around the GEMM.
#pragma once

#include <cstdint>
#include <limits>

namespace xfer::kernels {

// One index of a strided view: offset(i) = (i / period) * outer + (i % period) * stride.
struct Axis {
  int64_t stride = 1;
  int64_t period = std::numeric_limits<int64_t>::max();
  int64_t outer = 0;
  int64_t offset(int64_t i) const { return period == std::numeric_limits<int64_t>::max() ? i * stride : (i / period) * outer + (i % period) * stride; }
  bool folded() const { return period != std::numeric_limits<int64_t>::max(); }
};

// A rows x cols view: element (r, c) is at data[row.offset(r) + col.offset(c)].
template <class P>
struct View {
  P* data = nullptr;
  Axis row, col;
};
template <class T>
View<const T> row_major(const T* data, int64_t ld) { return {data, {ld}, {1}}; }
template <class T>
View<const T> transposed(const T* data, int64_t ld) { return {data, {1}, {ld}}; }
// [channels, n*P] view of an NCHW tensor with `channels` planes of P elements per image.
template <class T>
View<T> batch_folded(T* data, int64_t channels, int64_t P) {
  return {data, {P}, {1, P, channels * P}};
}

// C = relu?(row_scale[r] * (A*B) + row_bias[r] + residual (+ C when accumulating)); null terms are left out.
struct GemmEpilogue {
  bool accumulate = false;           // C += ... instead of C = ...
  const float* row_scale = nullptr;  // multiplies every element of row r of A*B
  const float* row_bias = nullptr;   // added to every element of row r
  bool relu = false;                 // max(., 0) last
  const float* residual = nullptr;   // added element-wise; laid out like C (same view, other base)
};

}  // namespace xfer::kernels
