// Fully connected kernels: y = x W^T + b and its gradients, for x [N, in] and W [out, in]. Float
// on AVX2/AVX-512 runs gemm.hpp's packed GEMM (Eigen's threaded GEMM spin-waits between its own
// threads, which costs more than the product itself on a small head, and nests badly with OpenMP);
// double and the generic ISA use Eigen.
#pragma once

#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#include "xfer/core/cpu.hpp"
#include "xfer/kernels/gemm.hpp"

namespace xfer::kernels {

namespace detail {
template <class T>
using LinMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
inline bool linear_packed() {
  return std::is_same_v<T, float> && active_isa() != Isa::generic;
}
}  // namespace detail

// y[N, O] = x[N, I] w[O, I]^T (+ b[O] when b is not null).
template <class T>
void linear_forward(int64_t N, int64_t I, int64_t O, const T* x, const T* w, const T* b, T* y) {
  if constexpr (std::is_same_v<T, float>) {
    if (detail::linear_packed<T>()) {
      // Y^T[O, N] = W[O, I] X^T, with the bias per row of Y^T.
      gemm(O, N, I, row_major(w, I), transposed(x, I), View<float>{y, {1}, {O}}, {.row_bias = b});
      return;
    }
    detail::note_path(Isa::generic);
  }
  using M = detail::LinMat<T>;
  Eigen::Map<M> Y(y, N, O);
  Y.noalias() = Eigen::Map<const M>(x, N, I) * Eigen::Map<const M>(w, O, I).transpose();
  if (b) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b, O);
}

// dw[O, I] += dy^T x, db[O] += column sums of dy, dx[N, I] = dy w; a null output is skipped.
template <class T>
void linear_backward(int64_t N, int64_t I, int64_t O, const T* x, const T* w, const T* dy, T* dw, T* db, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    if (detail::linear_packed<T>()) {
      if (dw) gemm(O, I, N, transposed(dy, O), row_major(x, I), View<float>{dw, {I}, {1}}, {.accumulate = true});
      if (db)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t o = 0; o < O; ++o) db[o] += dy[n * O + o];
      if (dx) gemm(N, I, O, row_major(dy, O), row_major(w, I), View<float>{dx, {I}, {1}});
      return;
    }
    detail::note_path(Isa::generic);
  }
  using M = detail::LinMat<T>;
  Eigen::Map<const M> G(dy, N, O);
  if (dw) Eigen::Map<M>(dw, O, I).noalias() += G.transpose() * Eigen::Map<const M>(x, N, I);
  if (db) Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(db, O) += G.colwise().sum();
  if (dx) Eigen::Map<M>(dx, N, I).noalias() = G * Eigen::Map<const M>(w, O, I);
}

}  // namespace xfer::kernels
