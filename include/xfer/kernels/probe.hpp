// Peak-FMA probe for the benchmarks: independent FMA chains with the widest vectors of an ISA, so
// "% of peak" figures are relative to what this machine does, not to a data sheet.
#pragma once

#include <cstdint>

#include "xfer/core/cpu.hpp"
#include "xfer/kernels/simd.hpp"

namespace xfer::kernels {

namespace detail {
#if XFER_HAVE_AVX512_KERNELS
XFER_TARGET_AVX512 inline double fma_chains_avx512(int64_t iters, float* sink) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + 1e-7f * static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, b);
  for (int i = 0; i < 12; ++i) *sink += _mm512_reduce_add_ps(a[i]);
  return 2.0 * 16 * 12 * static_cast<double>(iters);
}
#endif
#if XFER_HAVE_AVX2_KERNELS
XFER_TARGET_AVX2 inline double fma_chains_avx2(int64_t iters, float* sink) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + 1e-7f * static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, b);
  alignas(32) float t[8];
  for (int i = 0; i < 12; ++i) {
    _mm256_store_ps(t, a[i]);
    for (float v : t) *sink += v;
  }
  return 2.0 * 8 * 12 * static_cast<double>(iters);
}
#endif
inline double fma_chains_generic(int64_t iters, float* sink) {
  float a[12][8];
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < 8; ++l) a[i][l] = 1.0f + 1e-7f * static_cast<float>(i + l);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i)
#pragma omp simd
      for (int l = 0; l < 8; ++l) a[i][l] = a[i][l] * 0.9999999f + 1e-7f;
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < 8; ++l) *sink += a[i][l];
  return 2.0 * 8 * 12 * static_cast<double>(iters);
}
}  // namespace detail

// Runs `iters` rounds of 12 independent FMA chains with the vectors of `isa`; returns the flops done
// (adds the results to *sink so the work cannot be optimised away).
inline double fma_chains(Isa isa, int64_t iters, float* sink) {
#if XFER_HAVE_AVX512_KERNELS
  if (isa == Isa::avx512) return detail::fma_chains_avx512(iters, sink);
#endif
#if XFER_HAVE_AVX2_KERNELS
  if (isa == Isa::avx2) return detail::fma_chains_avx2(iters, sink);
#endif
  return detail::fma_chains_generic(iters, sink);
}

}  // namespace xfer::kernels
