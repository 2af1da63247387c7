// Depthwise convolution kernels (groups == input channels: each output channel reads one input
// channel, any channel multiplier, stride, padding and dilation): forward with the fused epilogue,
// backward-data and backward-weights as direct loops over image rows, not a GEMM. A 3x3 depthwise
// conv does 9 multiply-adds per value it reads, so it is memory-bound and an im2col matrix would
// only multiply the traffic.
//
// The one thing to know: the row loops are written once (detail::dw_*_body, element-wise over
// contiguous rows so the compiler vectorises them) and compiled per ISA through target attributes
// (AVX-512, AVX2+FMA, generic); the plane loop picks one from active_isa() at run time and is
// parallel over planes (batch x channels). The naive reference lives in tests/reference_kernels.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/simd.hpp"

namespace xfer::kernels {

namespace detail {

// Output columns [lo, hi) whose tap at offset `off` (= j * dilation - padding) reads inside a row
// of `in` pixels: 0 <= ox * s + off < in.
inline std::pair<int64_t, int64_t> dw_columns(int64_t out, int64_t in, int64_t s, int64_t off) {
  const int64_t lo = off >= 0 ? 0 : (-off + s - 1) / s;
  const int64_t top = in - 1 - off;  // ox * s <= top
  const int64_t hi = top < 0 ? 0 : top / s + 1;
  return {std::min(lo, out), std::clamp<int64_t>(hi, 0, out)};
}

// One output plane: y = relu?(sum_taps w * x * scale + shift + residual); r may be null.
template <class T>
[[gnu::always_inline]] inline void dw_forward_body(const Conv2dGeometry& g, const T* xp, const T* wp, T* yp, T sc,
                                                   T sh, const T* r, bool relu) {
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    T* yr = yp + oy * g.ow;
    for (int64_t ox = 0; ox < g.ow; ++ox) yr[ox] = T(0);
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t iy = oy * g.sh - g.ph + i * g.dil_h;
      if (iy < 0 || iy >= g.h) continue;
      const T* xr = xp + iy * g.w;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t off = j * g.dil_w - g.pw;
        const auto [lo, hi] = dw_columns(g.ow, g.w, g.sw, off);
        const T wv = wp[i * g.kw + j];
        if (g.sw == 1) {
          const T* xs = xr + off;
          for (int64_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xs[ox];
        } else {
          for (int64_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox * g.sw + off];
        }
      }
    }
    const T* rr = r ? r + oy * g.ow : nullptr;
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      T v = yr[ox] * sc + sh;
      if (rr) v += rr[ox];
      yr[ox] = relu && v < T(0) ? T(0) : v;
    }
  }
}

// One input plane (channel c of one image): dx = sum over its m output channels of the adjoint.
template <class T>
[[gnu::always_inline]] inline void dw_backward_data_body(const Conv2dGeometry& g, int64_t m, const T* dyp, const T* wp,
                                                         T* dxp) {
  const int64_t P = g.out_plane(), KK = g.kh * g.kw;
  for (int64_t q = 0; q < g.h * g.w; ++q) dxp[q] = T(0);
  for (int64_t mq = 0; mq < m; ++mq) {
    const T* dyc = dyp + mq * P;
    const T* wc = wp + mq * KK;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const T* dyr = dyc + oy * g.ow;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t iy = oy * g.sh - g.ph + i * g.dil_h;
        if (iy < 0 || iy >= g.h) continue;
        T* dxr = dxp + iy * g.w;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t off = j * g.dil_w - g.pw;
          const auto [lo, hi] = dw_columns(g.ow, g.w, g.sw, off);
          const T wv = wc[i * g.kw + j];
          if (g.sw == 1) {
            T* ds = dxr + off;
            for (int64_t ox = lo; ox < hi; ++ox) ds[ox] += wv * dyr[ox];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) dxr[ox * g.sw + off] += wv * dyr[ox];
          }
        }
      }
    }
  }
}

// acc[(i * kw + j) * ow + ox] += dy[oy, ox] * x[iy, ox * sw + off] over one plane pair: per-lane
// partial sums (vectorisable without reassociating a reduction); the caller sums the lanes.
template <class T>
[[gnu::always_inline]] inline void dw_backward_weights_body(const Conv2dGeometry& g, const T* xp, const T* dyp, T* acc) {
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const T* dyr = dyp + oy * g.ow;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t iy = oy * g.sh - g.ph + i * g.dil_h;
      if (iy < 0 || iy >= g.h) continue;
      const T* xr = xp + iy * g.w;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t off = j * g.dil_w - g.pw;
        const auto [lo, hi] = dw_columns(g.ow, g.w, g.sw, off);
        T* a = acc + (i * g.kw + j) * g.ow;
        if (g.sw == 1) {
          const T* xs = xr + off;
          for (int64_t ox = lo; ox < hi; ++ox) a[ox] += dyr[ox] * xs[ox];
        } else {
          for (int64_t ox = lo; ox < hi; ++ox) a[ox] += dyr[ox] * xr[ox * g.sw + off];
        }
      }
    }
  }
}

#if XFER_HAVE_AVX2_KERNELS
XFER_TARGET_AVX2 inline void dw_forward_avx2(const Conv2dGeometry& g, const float* xp, const float* wp, float* yp,
                                             float sc, float sh, const float* r, bool relu) {
  dw_forward_body(g, xp, wp, yp, sc, sh, r, relu);
}
XFER_TARGET_AVX2 inline void dw_backward_data_avx2(const Conv2dGeometry& g, int64_t m, const float* dyp, const float* wp,
                                                   float* dxp) {
  dw_backward_data_body(g, m, dyp, wp, dxp);
}
XFER_TARGET_AVX2 inline void dw_backward_weights_avx2(const Conv2dGeometry& g, const float* xp, const float* dyp, float* acc) {
  dw_backward_weights_body(g, xp, dyp, acc);
}
#endif
#if XFER_HAVE_AVX512_KERNELS
XFER_TARGET_AVX512 inline void dw_forward_avx512(const Conv2dGeometry& g, const float* xp, const float* wp, float* yp,
                                                 float sc, float sh, const float* r, bool relu) {
  dw_forward_body(g, xp, wp, yp, sc, sh, r, relu);
}
XFER_TARGET_AVX512 inline void dw_backward_data_avx512(const Conv2dGeometry& g, int64_t m, const float* dyp,
                                                       const float* wp, float* dxp) {
  dw_backward_data_body(g, m, dyp, wp, dxp);
}
XFER_TARGET_AVX512 inline void dw_backward_weights_avx512(const Conv2dGeometry& g, const float* xp, const float* dyp,
                                                          float* acc) {
  dw_backward_weights_body(g, xp, dyp, acc);
}
#endif

// The ISA the depthwise loops run for scalar type T (double always runs the generic loops), noted
// for the tests that check every ISA path ran.
template <class T>
Isa dw_isa() {
  if constexpr (std::is_same_v<T, float>) {
    const Isa isa = active_isa();
    note_path(isa);
    return isa;
  }
  return Isa::generic;
}

// A per-thread accumulator of `n` elements (the weight gradient's lanes), zeroed.
template <class T>
T* dw_lanes(int64_t n) {
  thread_local AlignedVector<T> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  std::fill(buf.begin(), buf.begin() + n, T(0));
  return buf.data();
}

}  // namespace detail

// y[n, oc] = relu?(scale[oc] * (w[oc] * x[n, oc / m]) + shift[oc] + residual[n, oc]), m = o / c;
// g.depthwise() must hold. y must not alias x or the residual.
template <class T>
void depthwise_forward(const Conv2dGeometry& g, const T* x, const T* w, T* y, const ConvEpilogue<T>& ep) {
  using namespace detail;
  const int64_t m = g.o / g.c, P = g.out_plane(), KK = g.kh * g.kw, HW = g.h * g.w;
  [[maybe_unused]] const Isa isa = dw_isa<T>();
  XFER_OMP_FOR(g.n * g.o * P * KK)
  for (int64_t t = 0; t < g.n * g.o; ++t) {
    const int64_t n = t / g.o, oc = t % g.o;
    const T* xp = x + (n * g.c + oc / m) * HW;
    const T sc = ep.scale ? ep.scale[oc] : T(1), sh = ep.shift ? ep.shift[oc] : T(0);
    const T* r = ep.residual ? ep.residual + t * P : nullptr;
    if constexpr (std::is_same_v<T, float>) {
#if XFER_HAVE_AVX512_KERNELS
      if (isa == Isa::avx512) {
        dw_forward_avx512(g, xp, w + oc * KK, y + t * P, sc, sh, r, ep.relu);
        continue;
      }
#endif
#if XFER_HAVE_AVX2_KERNELS
      if (isa == Isa::avx2) {
        dw_forward_avx2(g, xp, w + oc * KK, y + t * P, sc, sh, r, ep.relu);
        continue;
      }
#endif
    }
    dw_forward_body(g, xp, w + oc * KK, y + t * P, sc, sh, r, ep.relu);
  }
}

// dx = the adjoint of depthwise_forward (no epilogue) applied to dy; overwrites dx.
template <class T>
void depthwise_backward_data(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  using namespace detail;
  const int64_t m = g.o / g.c, P = g.out_plane(), KK = g.kh * g.kw, HW = g.h * g.w;
  [[maybe_unused]] const Isa isa = dw_isa<T>();
  XFER_OMP_FOR(g.n * g.o * P * KK)
  for (int64_t t = 0; t < g.n * g.c; ++t) {
    const int64_t n = t / g.c, c = t % g.c;
    const T* dyp = dy + (n * g.o + c * m) * P;
    const T* wp = w + c * m * KK;
    if constexpr (std::is_same_v<T, float>) {
#if XFER_HAVE_AVX512_KERNELS
      if (isa == Isa::avx512) {
        dw_backward_data_avx512(g, m, dyp, wp, dx + t * HW);
        continue;
      }
#endif
#if XFER_HAVE_AVX2_KERNELS
      if (isa == Isa::avx2) {
        dw_backward_data_avx2(g, m, dyp, wp, dx + t * HW);
        continue;
      }
#endif
    }
    dw_backward_data_body(g, m, dyp, wp, dx + t * HW);
  }
}

// dw[oc] += sum over images and output pixels of dy[n, oc] * (shifted x[n, oc / m]).
template <class T>
void depthwise_backward_weights(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  using namespace detail;
  const int64_t m = g.o / g.c, P = g.out_plane(), KK = g.kh * g.kw, HW = g.h * g.w;
  [[maybe_unused]] const Isa isa = dw_isa<T>();
  XFER_OMP_FOR(g.n * g.o * P * KK)
  for (int64_t oc = 0; oc < g.o; ++oc) {
    T* acc = dw_lanes<T>(KK * g.ow);
    for (int64_t n = 0; n < g.n; ++n) {
      const T* xp = x + (n * g.c + oc / m) * HW;
      const T* dyp = dy + (n * g.o + oc) * P;
      bool done = false;
      if constexpr (std::is_same_v<T, float>) {
#if XFER_HAVE_AVX512_KERNELS
        if (isa == Isa::avx512) dw_backward_weights_avx512(g, xp, dyp, acc), done = true;
#endif
#if XFER_HAVE_AVX2_KERNELS
        if (!done && isa == Isa::avx2) dw_backward_weights_avx2(g, xp, dyp, acc), done = true;
#endif
      }
      if (!done) dw_backward_weights_body(g, xp, dyp, acc);
    }
    for (int64_t q = 0; q < KK; ++q) {
      double s = 0;
      for (int64_t ox = 0; ox < g.ow; ++ox) s += static_cast<double>(acc[q * g.ow + ox]);
      dw[oc * KK + q] += static_cast<T>(s);
    }
  }
}

}  // namespace xfer::kernels
