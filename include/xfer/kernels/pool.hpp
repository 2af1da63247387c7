// Max-pooling forward kernel (NCHW planes; padding acts as -inf like PyTorch): values and the argmax
// index of each window inside its plane, which the backward routes gradients to. NaN wins and stays;
// among equal values the first in scan order wins. Float rows run 16 outputs at a time with AVX-512
// gathers when active_isa() is avx512; everything else runs the scalar loop.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/kernels/simd.hpp"

namespace xfer::kernels {

struct Pool2dGeometry {
  int64_t planes = 0, h = 0, w = 0;  // planes = batch * channels
  int64_t k = 1, s = 1, p = 0;
  int64_t oh = 0, ow = 0;
};

namespace detail {

// Outputs [ox, ow) of output row oy of one plane (window rows [y0, y1) already clipped).
template <class T>
void maxpool_row_scalar(const Pool2dGeometry& g, const T* plane, int64_t y0, int64_t y1, int64_t ox, T* y,
                        int32_t* arg_out) {
  for (; ox < g.ow; ++ox) {
    const int64_t x0 = std::max<int64_t>(ox * g.s - g.p, 0), x1 = std::min<int64_t>(ox * g.s - g.p + g.k, g.w);
    int64_t arg = y0 * g.w + x0;
    T best = plane[arg];
    for (int64_t iy = y0; iy < y1; ++iy)
      for (int64_t ix = x0; ix < x1; ++ix) {
        const T v = plane[iy * g.w + ix];
        const bool take = (v > best) | (v != v);  // no short-circuit: keep it branch-free
        best = take ? v : best;
        arg = take ? iy * g.w + ix : arg;
      }
    y[ox] = best;
    arg_out[ox] = static_cast<int32_t>(arg);
  }
}

#if XFER_HAVE_AVX512_KERNELS
// 16 outputs of the row at once: gathers and masked blends, same visiting order and tie/NaN rules
// as the scalar loop. Returns the first output it did not write (always ow).
XFER_TARGET_AVX512 inline int64_t maxpool_row_avx512(const Pool2dGeometry& g, const float* plane, int64_t y0,
                                                     int64_t y1, float* y, int32_t* arg_out) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i vW = _mm512_set1_epi32(static_cast<int32_t>(g.w));
  int64_t ox = 0;
  for (; ox < g.ow; ox += 16) {
    const __mmask16 lanes = g.ow - ox >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (g.ow - ox)) - 1);
    const __m512i vx0 = _mm512_sub_epi32(
        _mm512_mullo_epi32(_mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(ox))),
                           _mm512_set1_epi32(static_cast<int32_t>(g.s))),
        _mm512_set1_epi32(static_cast<int32_t>(g.p)));
    __m512 best = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    __m512i arg = _mm512_set1_epi32(-1);
    __mmask16 have = 0;
    for (int64_t iy = y0; iy < y1; ++iy)
      for (int64_t j = 0; j < g.k; ++j) {
        const __m512i vix = _mm512_add_epi32(vx0, _mm512_set1_epi32(static_cast<int32_t>(j)));
        const __mmask16 valid = lanes & _mm512_cmplt_epu32_mask(vix, vW);
        const __m512i idx = _mm512_add_epi32(vix, _mm512_set1_epi32(static_cast<int32_t>(iy * g.w)));
        const __m512 v = _mm512_mask_i32gather_ps(best, valid, idx, plane, 4);
        const __mmask16 take = valid & (_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                        _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) | static_cast<__mmask16>(~have));
        best = _mm512_mask_mov_ps(best, take, v);
        arg = _mm512_mask_mov_epi32(arg, take, idx);
        have |= valid;
      }
    _mm512_mask_storeu_ps(y + ox, lanes, best);
    _mm512_mask_storeu_epi32(arg_out + ox, lanes, arg);
  }
  return g.ow;
}
#endif

}  // namespace detail

// y[plane, oy, ox] = max over the window (clipped to the image); argmax[...] = its index iy*w + ix.
template <class T>
void maxpool2d_forward(const Pool2dGeometry& g, const T* x, T* y, int32_t* argmax) {
  const bool wide = std::is_same_v<T, float> && XFER_HAVE_AVX512_KERNELS && active_isa() == Isa::avx512;
  detail::note_path(wide ? Isa::avx512 : Isa::generic);
  XFER_OMP_FOR(g.planes * g.oh * g.ow * g.k * g.k)
  for (int64_t pl = 0; pl < g.planes; ++pl) {
    const T* plane = x + pl * g.h * g.w;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      // The window clipped to the image once per row, so the inner loops test nothing but values.
      const int64_t y0 = std::max<int64_t>(oy * g.s - g.p, 0), y1 = std::min<int64_t>(oy * g.s - g.p + g.k, g.h);
      const int64_t o = (pl * g.oh + oy) * g.ow;
      int64_t ox = 0;
#if XFER_HAVE_AVX512_KERNELS
      if constexpr (std::is_same_v<T, float>)
        if (wide) ox = detail::maxpool_row_avx512(g, plane, y0, y1, y + o, argmax + o);
#endif
      detail::maxpool_row_scalar(g, plane, y0, y1, ox, y + o, argmax + o);
    }
  }
}

}  // namespace xfer::kernels
