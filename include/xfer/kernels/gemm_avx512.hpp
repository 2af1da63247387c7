// The AVX-512 GEMM micro-kernel (8 x 32 floats per step: two zmm accumulators per row) and its
// packers: A panels by 8x8 transposes, B panels by masked gathers (the rest is pack.hpp's). Compiled with
// target attributes (simd.hpp) whatever the program's flags; run only when active_isa() is avx512.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/pack.hpp"
#include "xfer/kernels/simd.hpp"
#include "xfer/kernels/view.hpp"

#if XFER_HAVE_AVX512_KERNELS
namespace xfer::kernels::detail::avx512 {

inline constexpr int64_t kMR = 8, kNR = 32;

// C[8 x 32] (+)= A[kc x 8]^T B[kc x 32]; A packed k-major with 8 rows, B k-major with 32 columns.
XFER_TARGET_AVX512 inline void micro_kernel_8x32(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c,
                              int64_t ldc, bool first) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b + k * 32), b1 = _mm512_loadu_ps(b + k * 32 + 16);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m512 av = _mm512_set1_ps(a[k * 8 + i]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    float* row = c + i * ldc;
    if (!first) {
      acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_loadu_ps(row));
      acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_loadu_ps(row + 16));
    }
    _mm512_storeu_ps(row, acc[i][0]);
    _mm512_storeu_ps(row + 16, acc[i][1]);
  }
}

// Every micro-tile of one packed block, compiled for AVX-512 so the micro-kernel inlines (see avx2::micro_block).
XFER_TARGET_AVX512 inline void micro_block(int64_t kc, const float* a, const float* b, float* c, int64_t mcp, int64_t ncp,
                                           bool first) {
  for (int64_t jp = 0; jp < ncp; jp += kNR)
    for (int64_t ip = 0; ip < mcp; ip += kMR) micro_kernel_8x32(kc, a + ip * kc, b + jp * kc, c + ip * ncp + jp, ncp, first);
}

// Packs rows [r0, r0+mc) x cols [k0, k0+kc) of A into 8-row panels (k-major), zero padded:
// row-major sources through 8x8 transposes, everything else through the portable packer.
XFER_TARGET_AVX512 inline void pack_a(const View<const float>& A, int64_t r0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  for (int64_t ip = 0; ip < mc; ip += kMR) {
    float* panel = out + ip * kc;
    const int64_t h = std::min(kMR, mc - ip);
    if (h < kMR || A.col.stride != 1 || A.row.folded()) {
      pack::a<kMR>(A, r0 + ip, h, k0, kc, panel);
      continue;
    }
    // Row-major source: 8x8 transposes over runs of columns that stay inside one fold period.
    const float* row0 = A.data + A.row.offset(r0 + ip);
    const int64_t ld = A.row.stride;
    for (int64_t k = 0; k < kc;) {
      const int64_t c = k0 + k;
      const int64_t run = A.col.folded() ? std::min(kc - k, A.col.period - c % A.col.period) : kc - k;
      const float* base = row0 + A.col.offset(c);
      int64_t q = 0;
      for (; q + 8 <= run; q += 8) simd::transpose_8x8(base + q, ld, panel + (k + q) * kMR);
      for (; q < run; ++q)
        for (int64_t i = 0; i < kMR; ++i) panel[(k + q) * kMR + i] = base[i * ld + q];
      k += run;
    }
  }
}

// Packs rows [k0, k0+kc) x cols [c0, c0+nc) of B into 32-column panels (k-major), zero padded:
// scattered columns (batch-folded with small planes) with two masked gathers per k, everything else
// through the portable packer.
XFER_TARGET_AVX512 inline void pack_b(const View<const float>& B, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
  for (int64_t jp = 0; jp < nc; jp += kNR) {
    float* panel = out + jp * kc;
    const int64_t w = std::min(kNR, nc - jp);
    int64_t off[kNR];
    bool contiguous = w == kNR;
    for (int64_t j = 0; j < w; ++j) {
      off[j] = B.col.offset(c0 + jp + j);
      if (j > 0 && off[j] != off[j - 1] + 1) contiguous = false;
    }
    const bool transposed_source = !B.row.folded() && B.row.stride == 1;
    const bool near = off[w - 1] - off[0] < (int64_t{1} << 30) && off[0] - off[w - 1] < (int64_t{1} << 30);
    if (contiguous || transposed_source || !near) {
      pack::b<kNR>(B, k0, kc, c0 + jp, w, panel);
      continue;
    }
    alignas(64) int32_t rel[kNR] = {};
    for (int64_t j = 0; j < w; ++j) rel[j] = static_cast<int32_t>(off[j] - off[0]);
    const __mmask16 m0 = w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << w) - 1);
    const __mmask16 m1 = w >= 32 ? __mmask16(0xFFFF) : w > 16 ? __mmask16((1u << (w - 16)) - 1) : __mmask16(0);
    const __m512i r0 = _mm512_load_si512(rel), r1 = _mm512_load_si512(rel + 16);
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = B.data + B.row.offset(k0 + k) + off[0];
      _mm512_storeu_ps(panel + k * kNR, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, r0, s, 4));
      _mm512_storeu_ps(panel + k * kNR + 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, r1, s, 4));
    }
  }
}

}  // namespace xfer::kernels::detail::avx512
#endif
