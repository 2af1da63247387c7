// The cross-replica passes of synchronized BatchNorm2d (nn/batchnorm.hpp): statistics and the
// backward's per-channel sums over the batches of all data-parallel ranks. `cross_sum` sums doubles
// over the ranks in place (dist::enable_sync_batchnorm provides it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "xfer/core/parallel.hpp"

namespace xfer::nn::detail {

// Sum of channel c of an NCHW tensor [N, C, P]: per plane in T (vectorised), across planes in double.
template <class T>
double channel_sum(const T* x, int64_t N, int64_t C, int64_t P, int64_t c) {
  double acc = 0;
  for (int64_t n = 0; n < N; ++n) {
    const T* p = x + (n * C + c) * P;
    T ps = 0;
#pragma omp simd reduction(+ : ps)
    for (int64_t i = 0; i < P; ++i) ps += p[i];
    acc += ps;
  }
  return acc;
}

using CrossSum = std::function<void(double*, int64_t)>;

// Global mean (into mean[C]) and sum of squared deviations from it (into ss[C], global) of an NCHW
// batch, two passes in double across planes; returns the global count of values per channel.
template <class T>
double synced_moments(const T* x, int64_t N, int64_t C, int64_t P, const CrossSum& cross_sum, T* mean, double* ss) {
  std::vector<double> s(static_cast<size_t>(C + 1));
  XFER_OMP_FOR(N * C * P)
  for (int64_t c = 0; c < C; ++c) s[static_cast<size_t>(c)] = channel_sum(x, N, C, P, c);
  s[static_cast<size_t>(C)] = static_cast<double>(N * P);
  cross_sum(s.data(), C + 1);
  const double M = s[static_cast<size_t>(C)];
  for (int64_t c = 0; c < C; ++c) mean[c] = static_cast<T>(s[static_cast<size_t>(c)] / M);
  XFER_OMP_FOR(N * C * P)
  for (int64_t c = 0; c < C; ++c) {
    const T mt = mean[c];
    double acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* p = x + (n * C + c) * P;
      T ps = 0;
#pragma omp simd reduction(+ : ps)
      for (int64_t i = 0; i < P; ++i) ps += (p[i] - mt) * (p[i] - mt);
      acc += ps;
    }
    ss[c] = acc;
  }
  cross_sum(ss, C);
  return M;
}

// y = x * scale[c] + shift[c] (+ residual) (then ReLU).
template <class T>
void apply_affine(const T* x, T* y, const T* residual, bool relu, int64_t N, int64_t C, int64_t P, const T* scale,
                  const T* shift) {
  XFER_OMP_FOR(N * C * P)
  for (int64_t c = 0; c < C; ++c)
    for (int64_t n = 0; n < N; ++n) {
      const int64_t at = (n * C + c) * P;
      for (int64_t i = 0; i < P; ++i) {
        T v = x[at + i] * scale[c] + shift[c];
        if (residual) v += residual[at + i];
        y[at + i] = relu ? std::max(v, T(0)) : v;
      }
    }
}

// Local sums of dy and dy * xhat per channel (into sum_dy, sum_dy_xhat: the parameter gradients of
// this rank) and, when dx is wanted, dx from the global sums. This rank's dy comes from the mean
// loss over its own batch, 1/share times the global mean loss's, so the local sums enter the global
// ones scaled by `share` and the global terms are scaled back by 1/share for this rank's dx.
template <class T>
void synced_backward(const T* x, const T* g, T* dx, int64_t N, int64_t C, int64_t P, const T* mean, const T* invstd,
                     const T* gamma, double share, const CrossSum& cross_sum, double* sum_dy, double* sum_dy_xhat) {
  std::vector<double> glob(static_cast<size_t>(2 * C));
  XFER_OMP_FOR(N * C * P)
  for (int64_t c = 0; c < C; ++c) {
    const T mt = mean[c];
    double a = 0, b = 0;
    for (int64_t n = 0; n < N; ++n) {
      const T* xp = x + (n * C + c) * P;
      const T* gp = g + (n * C + c) * P;
      T pa = 0, pb = 0;
#pragma omp simd reduction(+ : pa, pb)
      for (int64_t i = 0; i < P; ++i) pa += gp[i], pb += gp[i] * (xp[i] - mt);
      a += pa, b += static_cast<double>(pb);
    }
    sum_dy[c] = a;
    sum_dy_xhat[c] = b * static_cast<double>(invstd[c]);
    glob[static_cast<size_t>(2 * c)] = share * sum_dy[c];
    glob[static_cast<size_t>(2 * c + 1)] = share * sum_dy_xhat[c];
  }
  cross_sum(glob.data(), 2 * C);
  if (!dx) return;
  const double M = static_cast<double>(N * P) / share;  // global count
  XFER_OMP_FOR(N * C * P)
  for (int64_t c = 0; c < C; ++c) {
    const double inv = invstd[c];
    const T k = static_cast<T>(gamma[c] * inv), mt = mean[c];
    const T a = static_cast<T>(glob[static_cast<size_t>(2 * c)] / M / share);
    const T kb = static_cast<T>(inv * glob[static_cast<size_t>(2 * c + 1)] / M / share);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t o = (n * C + c) * P;
#pragma omp simd
      for (int64_t i = 0; i < P; ++i) dx[o + i] = k * (g[o + i] - a - (x[o + i] - mt) * kb);
    }
  }
}

}  // namespace xfer::nn::detail
