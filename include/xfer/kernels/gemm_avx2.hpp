// The AVX2 + FMA GEMM micro-kernel: C[6 x 16] (+)= A-panel^T B-panel with twelve ymm accumulators
// (two per row), one broadcast of A and two loads of B per k (the Haswell/Zen register budget of
// sixteen ymm registers), and the transposed implicit im2col of the weight gradient for stride-1
// rows (8 pixels x 8 taps per in-register transpose); other packing is the portable code of
// pack.hpp. Compiled with target attributes (simd.hpp) whatever the program's flags; run only when
// active_isa() is avx2 or higher.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/pack.hpp"
#include "xfer/kernels/simd.hpp"

#if XFER_HAVE_AVX2_KERNELS
namespace xfer::kernels::detail::avx2 {

inline constexpr int64_t kMR = 6, kNR = 16;

// a: kc x 6 (k-major), b: kc x 16 (k-major), c: 6 rows of 16 with row stride ldc.
XFER_TARGET_AVX2 inline void micro_kernel_6x16(int64_t kc, const float* __restrict a, const float* __restrict b,
                                               float* __restrict c, int64_t ldc, bool first) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50), c51 = _mm256_fmadd_ps(av, b1, c51);
  }
  auto put = [&](int i, __m256 lo, __m256 hi) XFER_TARGET_AVX2 {
    float* row = c + i * ldc;
    if (!first) lo = _mm256_add_ps(lo, _mm256_loadu_ps(row)), hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
    _mm256_storeu_ps(row, lo);
    _mm256_storeu_ps(row + 8, hi);
  };
  put(0, c00, c01), put(1, c10, c11), put(2, c20, c21), put(3, c30, c31), put(4, c40, c41), put(5, c50, c51);
}

// Every micro-tile of one packed block (mcp x ncp, multiples of 6 and 16). The loop carries the
// target attribute too, so the micro-kernel inlines into it in a build without -mavx2 (a loop
// compiled for baseline x86-64 cannot inline it and calls it once per 6x16 tile: 6% of a training
// step on Zen 2).
XFER_TARGET_AVX2 inline void micro_block(int64_t kc, const float* a, const float* b, float* c, int64_t mcp, int64_t ncp,
                                         bool first) {
  for (int64_t jp = 0; jp < ncp; jp += kNR)
    for (int64_t ip = 0; ip < mcp; ip += kMR) micro_kernel_6x16(kc, a + ip * kc, b + jp * kc, c + ip * ncp + jp, ncp, first);
}

// In-register transpose of an 8x8 float block: v[r][c] -> v[c][r].
XFER_TARGET_AVX2 inline void transpose_8x8(__m256 v[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]),
               t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]),
               t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]),
               t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(u0, u4, 0x20), v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  v[2] = _mm256_permute2f128_ps(u2, u6, 0x20), v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  v[4] = _mm256_permute2f128_ps(u0, u4, 0x31), v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  v[6] = _mm256_permute2f128_ps(u2, u6, 0x31), v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// The transposed im2col matrix (row = pixel, column = tap) for stride-1 convolutions whose output
// rows come in runs of 8 pixels (ow % 8 == 0): per 8 pixels and 8 taps, 8 contiguous loads (masked
// at the padding) and one transpose instead of 64 scalar bounds tests.
XFER_TARGET_AVX2 inline void pack_im2col_t_rows8(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc,
                                                 int64_t c0, int64_t nc, float* out) {
  const int64_t P = g.out_plane(), HW = g.h * g.w, CHW = g.c * HW;
  const pack::TapTable& taps = pack::tap_table(g, c0, nc);
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t rg = 0; rg < rc; rg += 8) {
    const int64_t r = r0 + rg, img = r / P, p = r % P, oy = p / g.ow, ox0 = p % g.ow;
    const int64_t iy0 = oy * g.sh - g.ph, ix0 = ox0 - g.pw;  // tap (i, j) of pixel q reads (iy0 + i, ix0 + j + q)
    const int64_t at = img * CHW + iy0 * g.w + ix0;   // may be negative: only in-image taps add it
    for (int64_t jp = 0; jp < nc; jp += kNR) {
      float* panel = out + jp * rc;
      for (int h = 0; h < kNR / 8; ++h) {
        __m256 v[8];
        for (int l = 0; l < 8; ++l) {
          const int64_t col = jp + 8 * h + l;
          v[l] = _mm256_setzero_ps();
          if (col >= nc) continue;
          const auto c = static_cast<size_t>(col);
          const int64_t iy = iy0 + taps.i[c], ix = ix0 + taps.j[c];
          if (iy < 0 || iy >= g.h) continue;
          const int64_t lo = std::clamp<int64_t>(-ix, 0, 8), hi = std::clamp<int64_t>(g.w - ix, 0, 8);
          if (hi <= lo) continue;
          if (lo == 0 && hi == 8) {
            v[l] = _mm256_loadu_ps(x + (at + taps.off[c]));
          } else {
            // Lanes [lo, hi) lie in the image; the masked-off lanes are never read.
            const __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(iota, _mm256_set1_epi32(static_cast<int>(lo) - 1)),
                                               _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(hi)), iota));
            v[l] = _mm256_maskload_ps(x + (at + taps.off[c]), m);
          }
        }
        transpose_8x8(v);
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(panel + (rg + q) * kNR + 8 * h, v[q]);
      }
    }
  }
}

// Rows [r0, r0+rc) x cols [c0, c0+nc) of the transposed im2col matrix in 16-column panels.
inline void pack_im2col_t_b(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc,
                            float* out) {
  if (g.sw == 1 && g.ow % 8 == 0 && r0 % 8 == 0 && rc % 8 == 0) return pack_im2col_t_rows8(g, x, r0, rc, c0, nc, out);
  pack::im2col_t_b<kNR>(g, x, r0, rc, c0, nc, out);
}

}  // namespace xfer::kernels::detail::avx2
#endif
