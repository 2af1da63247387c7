// 2-D convolution kernels (NCHW input, OIHW weights): forward, backward-data, backward-weights.
// All are GEMMs with the batch folded into the GEMM columns (small late-stage maps otherwise give
// GEMMs with a handful of columns). For float with AVX-512 the GEMM is gemm.hpp's packed kernel and
// the im2col matrix is never stored: its panels are packed straight from the image (forward and
// weight gradient); stride-1 backward-data runs as a forward convolution with the flipped kernel,
// other strides use GEMM + col2im. Otherwise (double, or no AVX-512) im2col/col2im buffers in
// chunks and Eigen's GEMM. Each kernel has a naive reference (*_reference) that tests compare against.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/core/workspace.hpp"
#include "xfer/kernels/gemm.hpp"

namespace xfer::kernels {

struct Conv2dGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t o = 0, kh = 0, kw = 0;       // weights
  int64_t sh = 1, sw = 1, ph = 0, pw = 0;
  int64_t oh = 0, ow = 0;  // output, derived

  void finish() {
    oh = (h + 2 * ph - kh) / sh + 1;
    ow = (w + 2 * pw - kw) / sw + 1;
  }
  int64_t ckk() const { return c * kh * kw; }
  int64_t out_plane() const { return oh * ow; }
  // A 1x1 convolution whose output plane is its input plane (the GEMM reads x as it is).
  bool pointwise() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && oh == h && ow == w;
  }
  double flops() const { return 2.0 * n * o * ckk() * out_plane(); }
};

// What the forward applies to each convolution sum s of output channel o, in one pass (BatchNorm
// folding and the ResNet block tail fused into the convolution): relu?(s * scale[o] + shift[o] +
// residual). Null pointers leave out their term.
template <class T>
struct ConvEpilogue {
  const T* scale = nullptr;     // per output channel (BN folded: gamma / sqrt(var + eps))
  const T* shift = nullptr;     // per output channel (bias, or BN's folded shift)
  const T* residual = nullptr;  // a tensor shaped like the output (the block's shortcut)
  bool relu = false;
};

namespace detail {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapM = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMapM = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// Images per chunk so that the column buffer stays near `budget` bytes (at least one image).
template <class T>
int64_t chunk_images(const Conv2dGeometry& g, int64_t budget = 8 << 20) {
  const int64_t per_image = std::max<int64_t>(1, g.ckk() * g.out_plane() * static_cast<int64_t>(sizeof(T)));
  return std::clamp<int64_t>(budget / per_image, 1, g.n);
}

// The output columns [lo, hi) whose tap j lands inside the input row (0 <= ox*sw - pw + j < w).
inline std::pair<int64_t, int64_t> valid_ox(const Conv2dGeometry& g, int64_t j) {
  const int64_t a = g.pw - j;  // need ox*sw >= a and ox*sw <= w - 1 + a
  const int64_t lo = a <= 0 ? 0 : (a + g.sw - 1) / g.sw;
  const int64_t top = g.w - 1 + a;
  const int64_t hi = top < 0 ? 0 : top / g.sw + 1;
  return {std::min(lo, g.ow), std::clamp<int64_t>(hi, 0, g.ow)};
}

// cols[(c*kh+i)*kw+j][img*P + p] for images [n0, n0+nb) of x.
template <class T>
void im2col(const Conv2dGeometry& g, const T* x, int64_t n0, int64_t nb, T* cols) {
  const int64_t P = g.out_plane(), ld = nb * P;
  const int64_t tasks = nb * g.c;
  XFER_OMP_FOR(tasks * g.kh * g.kw * P)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t img = t / g.c, ch = t % g.c;
    const T* src = x + ((n0 + img) * g.c + ch) * g.h * g.w;
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* dst = cols + ((ch * g.kh + i) * g.kw + j) * ld + img * P;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          T* row = dst + oy * g.ow;
          if (iy < 0 || iy >= g.h) {
            std::fill(row, row + g.ow, T(0));
            continue;
          }
          const T* srow = src + iy * g.w;
          if (g.sw == 1) {
            // Contiguous run: only the edges need bounds checks.
            const int64_t off = j - g.pw;
            const int64_t lo = std::clamp<int64_t>(-off, 0, g.ow), hi = std::clamp<int64_t>(g.w - off, 0, g.ow);
            std::fill(row, row + lo, T(0));
            if (hi > lo) std::memcpy(row + lo, srow + lo + off, static_cast<size_t>(hi - lo) * sizeof(T));
            std::fill(row + std::max(lo, hi), row + g.ow, T(0));
          } else {
            const auto [lo, hi] = valid_ox(g, j);
            std::fill(row, row + lo, T(0));
            const T* s = srow + (j - g.pw);
            for (int64_t ox = lo; ox < hi; ++ox) row[ox] = s[ox * g.sw];
            std::fill(row + std::max(lo, hi), row + g.ow, T(0));
          }
        }
      }
  }
}

// Adds the columns back into dx (the adjoint of im2col). Each task owns one dx plane: no races.
template <class T>
void col2im(const Conv2dGeometry& g, const T* cols, int64_t n0, int64_t nb, T* dx) {
  const int64_t P = g.out_plane(), ld = nb * P;
  const int64_t tasks = nb * g.c;
  XFER_OMP_FOR(tasks * g.kh * g.kw * P)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t img = t / g.c, ch = t % g.c;
    T* dst = dx + ((n0 + img) * g.c + ch) * g.h * g.w;
    std::fill(dst, dst + g.h * g.w, T(0));
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const auto [lo, hi] = valid_ox(g, j);
        const T* src = cols + ((ch * g.kh + i) * g.kw + j) * ld + img * P;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          if (iy < 0 || iy >= g.h) continue;
          T* drow = dst + iy * g.w + (j - g.pw);
          const T* row = src + oy * g.ow;
          if (g.sw == 1)
            for (int64_t ox = lo; ox < hi; ++ox) drow[ox] += row[ox];
          else
            for (int64_t ox = lo; ox < hi; ++ox) drow[ox * g.sw] += row[ox];
        }
      }
  }
}

// Moves NCHW planes of images [n0, n0+nb) into a [channels, nb*P] matrix, and back.
template <class T>
void gather_planes(const T* src, int64_t channels, int64_t P, int64_t n0, int64_t nb, T* dst) {
  XFER_OMP_FOR(nb * channels * P)
  for (int64_t t = 0; t < nb * channels; ++t) {
    const int64_t img = t / channels, ch = t % channels;
    std::memcpy(dst + ch * nb * P + img * P, src + ((n0 + img) * channels + ch) * P, static_cast<size_t>(P) * sizeof(T));
  }
}
template <class T>
void scatter_planes(const T* src, int64_t channels, int64_t P, int64_t n0, int64_t nb, const T* bias, T* dst) {
  XFER_OMP_FOR(nb * channels * P)
  for (int64_t t = 0; t < nb * channels; ++t) {
    const int64_t img = t / channels, ch = t % channels;
    const T* s = src + ch * nb * P + img * P;
    T* d = dst + ((n0 + img) * channels + ch) * P;
    if (bias) {
      const T b = bias[ch];
      for (int64_t p = 0; p < P; ++p) d[p] = s[p] + b;
    } else {
      std::memcpy(d, s, static_cast<size_t>(P) * sizeof(T));
    }
  }
}


#ifdef __AVX512F__
// The packed-GEMM path (float with AVX-512): the batch is folded into the GEMM's column views, so
// only the im2col/col2im copies remain, and pointwise convolutions need none at all.
// Packs rows [k0, k0+kc) x cols [c0, c0+nc) of the im2col matrix of x (row k = (ch*kh + i)*kw + j,
// col = img*P + oy*ow + ox) straight into the GEMM's 32-column panels: no column buffer in memory.
// Half-panels whose 16 pixels are consecutive in x use one masked load, others a masked gather;
// the mask is the padding test, so out-of-image taps read as zeros.
inline void pack_im2col_b(const Conv2dGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t c0, int64_t nc,
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
    auto mask_of = [&](int64_t i, int64_t j, int h) -> __mmask16 {
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
    auto pack = [&](auto run_constant) {
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
            _mm512_store_ps(dst, _mm512_maskz_loadu_ps(m, src + bh[0]));
          } else if constexpr (run == 8) {
            _mm256_store_ps(dst, _mm256_maskz_loadu_ps(static_cast<__mmask8>(m), src + bh[0]));
            _mm256_store_ps(dst + 8, _mm256_maskz_loadu_ps(static_cast<__mmask8>(m >> 8), src + bh[8]));
          } else if constexpr (run == 4) {
            for (int q = 0; q < 4; ++q)
              _mm_store_ps(dst + 4 * q, _mm_maskz_loadu_ps(static_cast<__mmask8>((m >> (4 * q)) & 0xF), src + bh[4 * q]));
          } else {
            _mm512_store_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vb[h], src, 4));
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
inline void transpose_16x16(__m512 v[16]) {
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
inline void pack_im2col_t_rows16(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0,
                                 int64_t nc, float* out) {
  const int64_t P = g.out_plane(), HW = g.h * g.w, CHW = g.c * HW, KK = g.kh * g.kw;
  thread_local std::vector<int64_t> tap_off, tap_i, tap_j;  // per column of the panel range
  tap_off.resize(static_cast<size_t>(nc));
  tap_i.resize(static_cast<size_t>(nc));
  tap_j.resize(static_cast<size_t>(nc));
  for (int64_t col = 0; col < nc; ++col) {
    const int64_t k = c0 + col, ch = k / KK, i = (k % KK) / g.kw, j = k % g.kw;
    tap_i[static_cast<size_t>(col)] = i;
    tap_j[static_cast<size_t>(col)] = j;
    tap_off[static_cast<size_t>(col)] = ch * HW + i * g.w + j;
  }
  for (int64_t rg = 0; rg < rc; rg += 16) {
    const int64_t r = r0 + rg, img = r / P, p = r % P, oy = p / g.ow, ox0 = p % g.ow;
    const int64_t iy0 = oy - g.ph, ix0 = ox0 - g.pw;  // tap (i, j) of pixel q reads (iy0 + i, ix0 + j + q)
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
          const int64_t iy = iy0 + tap_i[c], ix = ix0 + tap_j[c];
          if (iy < 0 || iy >= g.h) continue;
          const int64_t lo = std::clamp<int64_t>(-ix, 0, 16), hi = std::clamp<int64_t>(g.w - ix, 0, 16);
          if (hi <= lo) continue;
          const uint32_t bits = (hi == 16 ? 0xFFFFu : ((1u << hi) - 1u)) & ~((1u << lo) - 1u);
          v[l] = _mm512_maskz_loadu_ps(static_cast<__mmask16>(bits), base + tap_off[c]);
        }
        transpose_16x16(v);
        for (int q = 0; q < 16; ++q) _mm512_store_ps(panel + (rg + q) * 32 + 16 * h, v[q]);
      }
    }
  }
}

// The transposed im2col matrix (row = pixel col, column = tap k) packed straight from x, for the
// weight gradient dW[o, k] = sum_col dy[o, col] * im2col[k, col]: one masked gather per 16 taps.
inline void pack_im2col_t_b(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc,
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
        _mm512_store_ps(panel + r * 32 + 16 * h,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(voff[h], vbase), x, 4));
      }
      if (++ox == g.ow) {
        ox = 0;
        if (++oy == g.oh) oy = 0, ++img;
      }
    }
  }
}

// Implicit im2col needs 32-bit offsets into x.
inline bool implicit_im2col_fits(const Conv2dGeometry& g) { return g.n * g.c * g.h * g.w < (int64_t{1} << 30); }

inline void forward_packed(const Conv2dGeometry& g, const float* x, const float* w, const GemmEpilogue& ep, float* y) {
  const int64_t P = g.out_plane(), K = g.ckk();
  if (g.pointwise()) {
    gemm(g.o, g.n * P, K, row_major(w, K), batch_folded(x, g.c, P), batch_folded(y, g.o, P), ep);
    return;
  }
  if (implicit_im2col_fits(g)) {
    gemm_packed_b(
        g.o, g.n * P, K, row_major(w, K),
        [&](int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) { pack_im2col_b(g, x, k0, kc, c0, nc, out); },
        batch_folded(y, g.o, P), ep);
    return;
  }
  const int64_t chunk = chunk_images<float>(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), cols_n = nb * P;
    float* cols = scratch<float>(xfer::detail::Scratch::Columns, K * cols_n);
    im2col(g, x, n0, nb, cols);
    GemmEpilogue chunk_ep = ep;
    if (ep.residual) chunk_ep.residual = ep.residual + n0 * g.o * P;
    gemm(g.o, cols_n, K, row_major(w, K), row_major<float>(cols, cols_n), batch_folded(y + n0 * g.o * P, g.o, P),
         chunk_ep);
  }
}

inline void backward_data_packed(const Conv2dGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t P = g.out_plane(), K = g.ckk();
  if (g.pointwise()) {
    gemm(K, g.n * P, g.o, transposed(w, K), batch_folded(dy, g.o, P), batch_folded(dx, g.c, P));
    return;
  }
  if (g.sh == 1 && g.sw == 1 && g.ph < g.kh && g.pw < g.kw && g.n * P >= 2 * g.o) {
    // Stride 1: dx is the "full" convolution of dy with the flipped, transposed kernel, which runs
    // through the forward path (implicit im2col, no column buffer and no col2im scatter). Flipping
    // costs a pass over the weights, so tiny maps with many channels keep GEMM + col2im.
    Conv2dGeometry t{.n = g.n, .c = g.o, .h = g.oh, .w = g.ow, .o = g.c, .kh = g.kh, .kw = g.kw,
                     .sh = 1, .sw = 1, .ph = g.kh - 1 - g.ph, .pw = g.kw - 1 - g.pw};
    t.finish();
    if (t.oh == g.h && t.ow == g.w && implicit_im2col_fits(t)) {
      float* wt = scratch<float>(xfer::detail::Scratch::Extra, g.o * K);
      const int64_t KK = g.kh * g.kw;
      XFER_OMP_FOR(g.o * K)
      for (int64_t o = 0; o < g.o; ++o)
        for (int64_t c = 0; c < g.c; ++c)
          for (int64_t q = 0; q < KK; ++q) wt[(c * g.o + o) * KK + (KK - 1 - q)] = w[(o * g.c + c) * KK + q];
      forward_packed(t, dy, wt, GemmEpilogue{}, dx);
      return;
    }
  }
  const int64_t chunk = chunk_images<float>(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), cols_n = nb * P;
    float* cols = scratch<float>(xfer::detail::Scratch::Columns, K * cols_n);
    gemm(K, cols_n, g.o, transposed(w, K), batch_folded(dy + n0 * g.o * P, g.o, P), View<float>{cols, {cols_n}, {1}});
    col2im(g, cols, n0, nb, dx);
  }
}

inline void backward_weights_packed(const Conv2dGeometry& g, const float* x, const float* dy, float* dw) {
  const int64_t P = g.out_plane(), K = g.ckk();
  const GemmEpilogue ep{.accumulate = true};
  const View<float> DW{dw, {K}, {1}};
  if (g.pointwise()) {
    // B(col, ch) = x[image(col), ch, pixel(col)]: folded along B's rows.
    const View<const float> X{x, {1, P, g.c * P}, {P}};
    gemm(g.o, K, g.n * P, batch_folded(dy, g.o, P), X, DW, ep);
    return;
  }
  if (implicit_im2col_fits(g)) {
    gemm_packed_b(
        g.o, K, g.n * P, batch_folded(dy, g.o, P),
        [&](int64_t r0, int64_t rc, int64_t c0, int64_t nc, float* out) { pack_im2col_t_b(g, x, r0, rc, c0, nc, out); },
        DW, ep);
    return;
  }
  const int64_t chunk = chunk_images<float>(g);
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), cols_n = nb * P;
    float* cols = scratch<float>(xfer::detail::Scratch::Columns, K * cols_n);
    im2col(g, x, n0, nb, cols);
    gemm(g.o, K, cols_n, batch_folded(dy + n0 * g.o * P, g.o, P), transposed<float>(cols, cols_n), DW, ep);
  }
}
#endif


// The kernels on the geometry as given (no tap cropping); see the public functions below.
// y = bias + conv(x, w) (double, or no AVX-512: Eigen's GEMM).
template <class T>
void forward_generic(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t P = g.out_plane(), K = g.ckk();
  const int64_t chunk = chunk_images<T>(g);
  CMapM<T> W(w, g.o, K, Eigen::OuterStride<>(K));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), cols_n = nb * P;
    const T* cols;
    if (g.pointwise() && nb == 1) {
      cols = x + n0 * g.c * P;
    } else if (g.pointwise()) {
      T* buf = scratch<T>(xfer::detail::Scratch::Columns, K * cols_n);
      gather_planes(x, g.c, P, n0, nb, buf);
      cols = buf;
    } else {
      T* buf = scratch<T>(xfer::detail::Scratch::Columns, K * cols_n);
      im2col(g, x, n0, nb, buf);
      cols = buf;
    }
    CMapM<T> C(cols, K, cols_n, Eigen::OuterStride<>(cols_n));
    if (nb == 1) {
      MapM<T> Y(y + n0 * g.o * P, g.o, P, Eigen::OuterStride<>(P));
      Y.noalias() = W * C;
      if (bias)
        for (int64_t oc = 0; oc < g.o; ++oc) Y.row(oc).array() += bias[oc];
    } else {
      T* ybuf = scratch<T>(xfer::detail::Scratch::Gather, g.o * cols_n);
      MapM<T> Y(ybuf, g.o, cols_n, Eigen::OuterStride<>(cols_n));
      Y.noalias() = W * C;
      scatter_planes(ybuf, g.o, P, n0, nb, bias, y);
    }
  }
}

template <class T>
void backward_data_full(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) return backward_data_packed(g, dy, w, dx);
#endif
  const int64_t P = g.out_plane(), K = g.ckk();
  const int64_t chunk = chunk_images<T>(g);
  CMapM<T> W(w, g.o, K, Eigen::OuterStride<>(K));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), cols_n = nb * P;
    const T* dys;
    if (nb == 1) {
      dys = dy + n0 * g.o * P;
    } else {
      T* buf = scratch<T>(xfer::detail::Scratch::Gather, g.o * cols_n);
      gather_planes(dy, g.o, P, n0, nb, buf);
      dys = buf;
    }
    CMapM<T> DY(dys, g.o, cols_n, Eigen::OuterStride<>(cols_n));
    if (g.pointwise() && nb == 1) {
      MapM<T> DX(dx + n0 * g.c * P, K, P, Eigen::OuterStride<>(P));
      DX.noalias() = W.transpose() * DY;
      continue;
    }
    T* cols = scratch<T>(xfer::detail::Scratch::Columns, K * cols_n);
    MapM<T> DC(cols, K, cols_n, Eigen::OuterStride<>(cols_n));
    DC.noalias() = W.transpose() * DY;
    if (g.pointwise())
      scatter_planes<T>(cols, g.c, P, n0, nb, nullptr, dx);
    else
      col2im(g, cols, n0, nb, dx);
  }
}

template <class T>
void backward_weights_full(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  const int64_t P = g.out_plane(), K = g.ckk();
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) return backward_weights_packed(g, x, dy, dw);
#endif
  const int64_t chunk = chunk_images<T>(g);
  MapM<T> DW(dw, g.o, K, Eigen::OuterStride<>(K));
  for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
    const int64_t nb = std::min(chunk, g.n - n0), cols_n = nb * P;
    const T* dys;
    if (nb == 1) {
      dys = dy + n0 * g.o * P;
    } else {
      T* buf = scratch<T>(xfer::detail::Scratch::Gather, g.o * cols_n);
      gather_planes(dy, g.o, P, n0, nb, buf);
      dys = buf;
    }
    const T* cols;
    if (g.pointwise() && nb == 1) {
      cols = x + n0 * g.c * P;
    } else {
      T* buf = scratch<T>(xfer::detail::Scratch::Columns, K * cols_n);
      if (g.pointwise())
        gather_planes(x, g.c, P, n0, nb, buf);
      else
        im2col(g, x, n0, nb, buf);
      cols = buf;
    }
    CMapM<T> DY(dys, g.o, cols_n, Eigen::OuterStride<>(cols_n));
    CMapM<T> C(cols, K, cols_n, Eigen::OuterStride<>(cols_n));
    DW.noalias() += DY * C.transpose();
  }
}

// Kernel rows [lo, hi] that touch the image for at least one output position (lo > hi: none).
// The others only ever multiply padding: a 3x3/pad-1 kernel on a 1x1 map uses its centre alone.
inline std::pair<int64_t, int64_t> useful_taps(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
  int64_t lo = k, hi = -1;
  for (int64_t i = 0; i < k; ++i)
    for (int64_t o = 0; o < out; ++o) {
      const int64_t pos = o * s - p + i;
      if (pos >= in) break;
      if (pos >= 0) {
        lo = std::min(lo, i), hi = std::max(hi, i);
        break;
      }
    }
  return {lo, hi};
}

// The same convolution on the kernel cropped to its useful taps (same output size; the right/bottom
// padding becomes implicit, which every kernel handles through its bounds tests). On ResNet-18's
// late stages at small inputs this removes most of the work: layer4 on 32x32 images runs 3x3
// convolutions on 1x1 maps, which are exactly 1x1 convolutions with the centre tap.
struct TapCrop {
  Conv2dGeometry g;    // geometry to run
  int64_t i0 = 0, j0 = 0;  // first kept tap
  bool cropped = false;    // g differs from the original
  bool empty = false;      // no tap touches the image: the convolution sum is zero
};
inline TapCrop crop_taps(const Conv2dGeometry& g) {
  TapCrop c{g};
  const auto [i0, i1] = useful_taps(g.h, g.oh, g.kh, g.sh, g.ph);
  const auto [j0, j1] = useful_taps(g.w, g.ow, g.kw, g.sw, g.pw);
  if (i0 > i1 || j0 > j1) {
    c.empty = true;
    return c;
  }
  if (i0 == 0 && j0 == 0 && i1 == g.kh - 1 && j1 == g.kw - 1) return c;
  c.cropped = true;
  c.i0 = i0, c.j0 = j0;
  c.g.kh = i1 - i0 + 1, c.g.kw = j1 - j0 + 1;
  c.g.ph = g.ph - i0, c.g.pw = g.pw - j0;  // >= 0: tap ph hits row 0 at oy = 0, so i0 <= ph
  return c;
}

// w[o, c, i0 + i, j0 + j] for the cropped taps, into `out` (OIHW of the cropped geometry).
template <class T>
void crop_weights(const Conv2dGeometry& full, const TapCrop& c, const T* w, T* out) {
  // Memory-bound (a 1-in-9 gather still touches every cache line of w): both threads read.
  const int64_t kh = c.g.kh, kw = c.g.kw, planes = full.o * full.c, KK = full.kh * full.kw;
  if (kh == 1 && kw == 1) {
    const T* src = w + c.i0 * full.kw + c.j0;
    XFER_OMP_FOR(planes * KK)
    for (int64_t q = 0; q < planes; ++q) out[q] = src[q * KK];
    return;
  }
  XFER_OMP_FOR(planes * KK)
  for (int64_t q = 0; q < planes; ++q)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j)
        out[(q * kh + i) * kw + j] = w[(q * full.kh + c.i0 + i) * full.kw + c.j0 + j];
}

// The weights the kernels run on: w itself, or its cropped taps in the Taps scratch slot.
template <class T>
const T* weights_for(const Conv2dGeometry& full, const TapCrop& c, const T* w) {
  if (!c.cropped) return w;
  T* wc = scratch<T>(xfer::detail::Scratch::Taps, full.o * c.g.ckk());
  crop_weights(full, c, w, wc);
  return wc;
}

// y = epilogue(x) per element of an NCHW tensor, after a convolution that wrote the plain sum.
template <class T>
void apply_epilogue(const Conv2dGeometry& g, const ConvEpilogue<T>& ep, T* y) {
  const int64_t P = g.out_plane();
  XFER_OMP_FOR(g.n * g.o * P)
  for (int64_t t = 0; t < g.n * g.o; ++t) {
    const int64_t o = t % g.o;
    const T sc = ep.scale ? ep.scale[o] : T(1), sh = ep.shift ? ep.shift[o] : T(0);
    T* d = y + t * P;
    const T* r = ep.residual ? ep.residual + t * P : nullptr;
    for (int64_t p = 0; p < P; ++p) {
      T v = d[p] * sc + sh;
      if (r) v += r[p];
      d[p] = ep.relu && v < T(0) ? T(0) : v;
    }
  }
}

}  // namespace detail

// y[n, o, oy, ox] = relu?(scale[o] * sum_{c,i,j} w[o, c, i, j] * x[n, c, oy*sh - ph + i, ox*sw - pw + j]
//                        + shift[o] + residual[n, o, oy, ox])
// with every part of the epilogue optional (ConvEpilogue). y must not alias x or the residual.
template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, T* y, const ConvEpilogue<T>& ep) {
  using namespace detail;
  const TapCrop c = crop_taps(g);
  if (c.empty) {
    std::fill(y, y + g.n * g.o * g.out_plane(), T(0));
    apply_epilogue(g, ep, y);
    return;
  }
  w = weights_for(g, c, w);
#ifdef __AVX512F__
  if constexpr (std::is_same_v<T, float>) {
    forward_packed(c.g, x, w, GemmEpilogue{.row_scale = ep.scale, .row_bias = ep.shift, .relu = ep.relu,
                                           .residual = ep.residual}, y);
    return;
  }
#endif
  const bool bias_only = !ep.scale && !ep.residual && !ep.relu;
  forward_generic(c.g, x, w, bias_only ? ep.shift : nullptr, y);
  if (!bias_only) apply_epilogue(g, ep, y);
}

// y[n, o, oy, ox] = bias[o] + sum_{c,i,j} w[o, c, i, j] * x[n, c, oy*sh - ph + i, ox*sw - pw + j]
template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  conv2d_forward(g, x, w, y, ConvEpilogue<T>{.shift = bias});
}

// dx = conv2d_forward's adjoint applied to dy (overwrites dx).
template <class T>
void conv2d_backward_data(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  using namespace detail;
  const TapCrop c = crop_taps(g);
  if (c.empty) {
    std::fill(dx, dx + g.n * g.c * g.h * g.w, T(0));
    return;
  }
  w = weights_for(g, c, w);
  backward_data_full(c.g, dy, w, dx);
}

// dw += dy (x) im2col(x), db += sum over n, oy, ox of dy (either may be null to skip it).
template <class T>
void conv2d_backward_weights(const Conv2dGeometry& g, const T* x, const T* dy, T* dw, T* db) {
  using namespace detail;
  const int64_t P = g.out_plane();
  if (db) {
    XFER_OMP_FOR(g.n * g.o * P)
    for (int64_t oc = 0; oc < g.o; ++oc) {
      T s = 0;
      for (int64_t n = 0; n < g.n; ++n) {
        const T* d = dy + (n * g.o + oc) * P;
        for (int64_t p = 0; p < P; ++p) s += d[p];
      }
      db[oc] += s;
    }
  }
  const TapCrop c = crop_taps(g);
  if (!dw || c.empty) return;  // taps that never touch the image get exactly zero gradient
  if (!c.cropped) return backward_weights_full(g, x, dy, dw);
  const int64_t kh = c.g.kh, kw = c.g.kw, planes = g.o * g.c;
  T* dwc = scratch<T>(xfer::detail::Scratch::Taps, planes * kh * kw);
  XFER_OMP_FOR(planes * kh * kw)
  for (int64_t q = 0; q < planes * kh * kw; ++q) dwc[q] = T(0);
  backward_weights_full(c.g, x, dy, dwc);
  XFER_OMP_FOR(planes * g.kh * g.kw)
  for (int64_t q = 0; q < planes; ++q)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) dw[(q * g.kh + c.i0 + i) * g.kw + c.j0 + j] += dwc[(q * kh + i) * kw + j];
}

// ---- naive references (tests only) ---------------------------------------------------------------
template <class T>
void conv2d_forward_reference(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          double s = bias ? static_cast<double>(bias[o]) : 0.0;
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                s += static_cast<double>(w[((o * g.c + c) * g.kh + i) * g.kw + j]) *
                     static_cast<double>(x[((n * g.c + c) * g.h + iy) * g.w + ix]);
              }
          y[((n * g.o + o) * g.oh + oy) * g.ow + ox] = static_cast<T>(s);
        }
}

template <class T>
void conv2d_backward_data_reference(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  std::fill(dx, dx + g.n * g.c * g.h * g.w, T(0));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const T d = dy[((n * g.o + o) * g.oh + oy) * g.ow + ox];
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                dx[((n * g.c + c) * g.h + iy) * g.w + ix] += d * w[((o * g.c + c) * g.kh + i) * g.kw + j];
              }
        }
}

template <class T>
void conv2d_backward_weights_reference(const Conv2dGeometry& g, const T* x, const T* dy, T* dw, T* db) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const T d = dy[((n * g.o + o) * g.oh + oy) * g.ow + ox];
          if (db) db[o] += d;
          if (!dw) continue;
          for (int64_t c = 0; c < g.c; ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                dw[((o * g.c + c) * g.kh + i) * g.kw + j] += d * x[((n * g.c + c) * g.h + iy) * g.w + ix];
              }
        }
}

}  // namespace xfer::kernels
