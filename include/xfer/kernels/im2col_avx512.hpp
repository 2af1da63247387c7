// Implicit im2col for the AVX-512 GEMM: the convolution's column matrix (and its transpose, for
// the weight gradient) packed straight from the image into 32-column panels with masked loads,
// gathers and in-register transposes; the masks are the padding tests. Run only when active_isa()
// is avx512.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/pack.hpp"
#include "xfer/kernels/simd.hpp"

#if XFER_HAVE_AVX512_KERNELS
namespace xfer::kernels::detail::avx512 {

// Packs rows [k0, k0+kc) x cols [c0, c0+nc) of the im2col matrix of x (row k = (ch*kh + i)*kw + j,
// col = img*P + oy*ow + ox) straight into the GEMM's 32-column panels: no column buffer in memory.
// Half-panels whose 16 pixels are consecutive in x use one masked load, others a masked gather;
// the mask is the padding test, so out-of-image taps read as zeros.
XFER_TARGET_AVX512 inline void pack_im2col_b(const Conv2dGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t c0, int64_t nc,
                          float* out) {
  const int64_t P = g.out_plane(), HW = g.h * g.w, CHW = g.c * HW, KK = g.kh * g.kw;
  const __m512i vH = _mm512_set1_epi32(static_cast<int32_t>(g.h)), vW = _mm512_set1_epi32(static_cast<int32_t>(g.w));
  for (int64_t jp = 0; jp < nc; jp += 32) {
    float* panel = out + jp * kc;
    const int64_t width = std::min<int64_t>(32, nc - jp);
    alignas(64) int32_t base[32], iy0[32], ix0[32];
    for (int64_t j = 0; j < 32; ++j) {
      if (j < width) {
        const int64_t col = c0 + jp + j, img = col / P, p = col % P, oy = p / g.ow, ox = p % g.ow;
        iy0[j] = static_cast<int32_t>(oy * g.sh - g.ph);
        ix0[j] = static_cast<int32_t>(ox * g.sw - g.pw);
        base[j] = static_cast<int32_t>(img * CHW + iy0[j] * g.w + ix0[j]);
      } else {
        iy0[j] = ix0[j] = -(1 << 29);  // never inside the image: the lane packs zeros
        base[j] = 0;
      }
    }
    __m512i vb[2], viy[2], vix[2];
    for (int h = 0; h < 2; ++h) {
      vb[h] = _mm512_load_si512(base + 16 * h);
      viy[h] = _mm512_load_si512(iy0 + 16 * h);
      vix[h] = _mm512_load_si512(ix0 + 16 * h);
    }
    // Longest group length (16, 8 or 4 lanes) whose pixels are consecutive in x for every group of
    // the panel; 0 means gather. Lanes past `width` only need a valid-looking address (masked).
    auto groups_of = [&](int L) {
      for (int s0 = 0; s0 < 32; s0 += L)
        for (int l = 1; l < L; ++l)
          if (s0 + l < width && (base[s0 + l] != base[s0] + l || iy0[s0 + l] != iy0[s0])) return false;
      return true;
    };
    const int run = groups_of(16) ? 16 : groups_of(8) ? 8 : groups_of(4) ? 4 : 0;
    // The padding masks depend on the tap alone: computed once per panel, not per (channel, tap).
    auto mask_of = [&](int64_t i, int64_t j, int h) XFER_TARGET_AVX512 -> __mmask16 {
      const __m512i vi = _mm512_set1_epi32(static_cast<int32_t>(i)), vj = _mm512_set1_epi32(static_cast<int32_t>(j));
      return _mm512_cmplt_epu32_mask(_mm512_add_epi32(viy[h], vi), vH) &
             _mm512_cmplt_epu32_mask(_mm512_add_epi32(vix[h], vj), vW);
    };
    constexpr int64_t kMaxTaps = 64;
    __mmask16 tap_mask[kMaxTaps][2];
    const bool cached = KK <= kMaxTaps;
    if (cached)
      for (int64_t t = 0; t < KK; ++t)
        for (int h = 0; h < 2; ++h) tap_mask[t][h] = mask_of(t / g.kw, t % g.kw, h);
    auto pack = [&](auto run_constant) XFER_TARGET_AVX512 {
      constexpr int run = decltype(run_constant)::value;
      int64_t ch = k0 / KK, t = k0 % KK, i = t / g.kw, j = t % g.kw;
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t off = ch * HW + i * g.w + j;
        for (int h = 0; h < 2; ++h) {
          const __mmask16 m = cached ? tap_mask[t][h] : mask_of(i, j, h);
          float* dst = panel + k * 32 + 16 * h;
          const float* src = x + off;
          const int32_t* bh = base + 16 * h;
          if constexpr (run == 16) {
            _mm512_storeu_ps(dst, _mm512_maskz_loadu_ps(m, src + bh[0]));
          } else if constexpr (run == 8) {
            _mm256_storeu_ps(dst, _mm256_maskz_loadu_ps(static_cast<__mmask8>(m), src + bh[0]));
            _mm256_storeu_ps(dst + 8, _mm256_maskz_loadu_ps(static_cast<__mmask8>(m >> 8), src + bh[8]));
          } else if constexpr (run == 4) {
            for (int q = 0; q < 4; ++q)
              _mm_storeu_ps(dst + 4 * q, _mm_maskz_loadu_ps(static_cast<__mmask8>((m >> (4 * q)) & 0xF), src + bh[4 * q]));
          } else {
            _mm512_storeu_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vb[h], src, 4));
          }
        }
        ++t;
        if (++j == g.kw) {
          j = 0;
          if (++i == g.kh) i = 0, t = 0, ++ch;
        }
      }
    };
    switch (run) {
      case 16: pack(std::integral_constant<int, 16>{}); break;
      case 8: pack(std::integral_constant<int, 8>{}); break;
      case 4: pack(std::integral_constant<int, 4>{}); break;
      default: pack(std::integral_constant<int, 0>{}); break;
    }
  }
}

// In-register transpose of a 16x16 float block: v[r][c] -> v[c][r].
XFER_TARGET_AVX512 inline void transpose_16x16(__m512 v[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  // In every 128-bit lane L, u[4G + c] now holds column 4L + c of rows 4G..4G+3.
  __m512 u[16];
  for (int G = 0; G < 4; ++G) {
    u[4 * G] = _mm512_shuffle_ps(t[4 * G], t[4 * G + 2], 0x44);
    u[4 * G + 1] = _mm512_shuffle_ps(t[4 * G], t[4 * G + 2], 0xEE);
    u[4 * G + 2] = _mm512_shuffle_ps(t[4 * G + 1], t[4 * G + 3], 0x44);
    u[4 * G + 3] = _mm512_shuffle_ps(t[4 * G + 1], t[4 * G + 3], 0xEE);
  }
  // Transpose the 4x4 grid of 128-bit lanes for each c.
  for (int c = 0; c < 4; ++c) {
    const __m512 s0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), s1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 s2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), s3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    v[c] = _mm512_shuffle_f32x4(s0, s2, 0x88);
    v[4 + c] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
    v[8 + c] = _mm512_shuffle_f32x4(s1, s3, 0x88);
    v[12 + c] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
  }
}

// pack_im2col_t_b for stride-1 convolutions whose rows come in runs of 16 pixels of one output
// row (ow % 16 == 0): per 16 pixels and 16 taps, 16 masked contiguous loads and one 16x16
// transpose instead of 16 gathers.
XFER_TARGET_AVX512 inline void pack_im2col_t_rows16(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0,
                                 int64_t nc, float* out) {
  const int64_t P = g.out_plane(), HW = g.h * g.w, CHW = g.c * HW;
  const pack::TapTable& taps = pack::tap_table(g, c0, nc);
  for (int64_t rg = 0; rg < rc; rg += 16) {
    const int64_t r = r0 + rg, img = r / P, p = r % P, oy = p / g.ow, ox0 = p % g.ow;
    const int64_t iy0 = oy * g.sh - g.ph, ix0 = ox0 - g.pw;  // tap (i, j) of pixel q reads (iy0 + i, ix0 + j + q)
    const float* base = x + img * CHW + iy0 * g.w + ix0;
    for (int64_t jp = 0; jp < nc; jp += 32) {
      float* panel = out + jp * rc;
      for (int h = 0; h < 2; ++h) {
        __m512 v[16];
        for (int l = 0; l < 16; ++l) {
          const int64_t col = jp + 16 * h + l;
          v[l] = _mm512_setzero_ps();
          if (col >= nc) continue;
          const auto c = static_cast<size_t>(col);
          const int64_t iy = iy0 + taps.i[c], ix = ix0 + taps.j[c];
          if (iy < 0 || iy >= g.h) continue;
          const int64_t lo = std::clamp<int64_t>(-ix, 0, 16), hi = std::clamp<int64_t>(g.w - ix, 0, 16);
          if (hi <= lo) continue;
          const uint32_t bits = (hi == 16 ? 0xFFFFu : ((1u << hi) - 1u)) & ~((1u << lo) - 1u);
          v[l] = _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits), base + taps.off[c]);
        }
        transpose_16x16(v);
        for (int q = 0; q < 16; ++q) _mm512_storeu_ps(panel + (rg + q) * 32 + 16 * h, v[q]);
      }
    }
  }
}

// The transposed im2col matrix (row = pixel col, column = tap k) packed straight from x, for the
// weight gradient dW[o, k] = sum_col dy[o, col] * im2col[k, col]: one masked gather per 16 taps.
XFER_TARGET_AVX512 inline void pack_im2col_t_b(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc,
                            float* out) {
  if (g.sw == 1 && g.ow % 16 == 0 && r0 % 16 == 0 && rc % 16 == 0) return pack_im2col_t_rows16(g, x, r0, rc, c0, nc, out);
  const int64_t P = g.out_plane(), HW = g.h * g.w, CHW = g.c * HW, KK = g.kh * g.kw;
  const __m512i vH = _mm512_set1_epi32(static_cast<int32_t>(g.h)), vW = _mm512_set1_epi32(static_cast<int32_t>(g.w));
  for (int64_t jp = 0; jp < nc; jp += 32) {
    float* panel = out + jp * rc;
    const int64_t width = std::min<int64_t>(32, nc - jp);
    alignas(64) int32_t off[32], ti[32], tj[32];
    for (int64_t l = 0; l < 32; ++l) {
      if (l < width) {
        const int64_t k = c0 + jp + l, ch = k / KK, i = (k % KK) / g.kw, j = k % g.kw;
        ti[l] = static_cast<int32_t>(i);
        tj[l] = static_cast<int32_t>(j);
        off[l] = static_cast<int32_t>(ch * HW + i * g.w + j);
      } else {
        ti[l] = tj[l] = -(1 << 29);
        off[l] = 0;
      }
    }
    const __m512i voff[2] = {_mm512_load_si512(off), _mm512_load_si512(off + 16)};
    const __m512i vi[2] = {_mm512_load_si512(ti), _mm512_load_si512(ti + 16)};
    const __m512i vj[2] = {_mm512_load_si512(tj), _mm512_load_si512(tj + 16)};
    int64_t img = r0 / P, p = r0 % P, oy = p / g.ow, ox = p % g.ow;
    for (int64_t r = 0; r < rc; ++r) {
      const int32_t iy0 = static_cast<int32_t>(oy * g.sh - g.ph), ix0 = static_cast<int32_t>(ox * g.sw - g.pw);
      const __m512i vy = _mm512_set1_epi32(iy0), vx = _mm512_set1_epi32(ix0);
      const __m512i vbase = _mm512_set1_epi32(static_cast<int32_t>(img * CHW + iy0 * g.w + ix0));
      for (int h = 0; h < 2; ++h) {
        const __mmask16 m = _mm512_cmplt_epu32_mask(_mm512_add_epi32(vi[h], vy), vH) &
                            _mm512_cmplt_epu32_mask(_mm512_add_epi32(vj[h], vx), vW);
        _mm512_storeu_ps(panel + r * 32 + 16 * h,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(voff[h], vbase), x, 4));
      }
      if (++ox == g.ow) {
        ox = 0;
        if (++oy == g.oh) oy = 0, ++img;
      }
    }
  }
}

}  // namespace xfer::kernels::detail::avx512
#endif
