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

// dw_columns for every kernel column j, computed once per plane instead of once per row and tap
// (two integer divisions each: on 7x7 maps they cost as much as the multiply-adds).
struct DwColumns {
  static constexpr int64_t kMax = 32;
  int64_t lo[kMax], hi[kMax];
  explicit DwColumns(const Conv2dGeometry& g) {
    for (int64_t j = 0; j < std::min(g.kw, kMax); ++j) {
      const auto [a, b] = dw_columns(g.ow, g.w, g.sw, j * g.dil_w - g.pw);
      lo[j] = a, hi[j] = b;
    }
  }
  std::pair<int64_t, int64_t> at(const Conv2dGeometry& g, int64_t j) const {
    return j < kMax ? std::pair<int64_t, int64_t>{lo[j], hi[j]} : dw_columns(g.ow, g.w, g.sw, j * g.dil_w - g.pw);
  }
};

// Calls f(i, j, iy, off, lo, hi) for every tap (i, j) of output row oy whose input row iy lies
// inside the image; [lo, hi) are the output columns whose input column ox * sw + off does too.
template <class F>
[[gnu::always_inline]] inline void dw_row_taps(const Conv2dGeometry& g, const DwColumns& cols, int64_t oy, F&& f) {
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t iy = oy * g.sh - g.ph + i * g.dil_h;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t j = 0; j < g.kw; ++j) {
      const auto [lo, hi] = cols.at(g, j);
      f(i, j, iy, j * g.dil_w - g.pw, lo, hi);
    }
  }
}

// The lambdas below are inlined into the per-ISA copies of the bodies, so their loops are
// vectorised for that ISA (the stride-1 branches are the contiguous, vectorisable case).
#define XFER_DW_INLINE __attribute__((always_inline))

// One output plane: y = relu?(sum_taps w * x * scale + shift + residual); r may be null.
template <class T>
[[gnu::always_inline]] inline void dw_forward_body(const Conv2dGeometry& g, const T* xp, const T* wp, T* yp, T sc,
                                                   T sh, const T* r, bool relu) {
  const DwColumns cols(g);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    T* yr = yp + oy * g.ow;
    for (int64_t ox = 0; ox < g.ow; ++ox) yr[ox] = T(0);
    dw_row_taps(g, cols, oy, [&](int64_t i, int64_t j, int64_t iy, int64_t off, int64_t lo, int64_t hi) XFER_DW_INLINE {
      const T* xr = xp + iy * g.w;
      const T wv = wp[i * g.kw + j];
      if (g.sw == 1)
        for (int64_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox + off];
      else
        for (int64_t ox = lo; ox < hi; ++ox) yr[ox] += wv * xr[ox * g.sw + off];
    });
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
  const DwColumns cols(g);
  for (int64_t q = 0; q < g.h * g.w; ++q) dxp[q] = T(0);
  for (int64_t mq = 0; mq < m; ++mq) {
    const T* wc = wp + mq * KK;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      const T* dyr = dyp + mq * P + oy * g.ow;
      dw_row_taps(g, cols, oy, [&](int64_t i, int64_t j, int64_t iy, int64_t off, int64_t lo, int64_t hi) XFER_DW_INLINE {
        T* dxr = dxp + iy * g.w;
        const T wv = wc[i * g.kw + j];
        if (g.sw == 1)
          for (int64_t ox = lo; ox < hi; ++ox) dxr[ox + off] += wv * dyr[ox];
        else
          for (int64_t ox = lo; ox < hi; ++ox) dxr[ox * g.sw + off] += wv * dyr[ox];
      });
    }
  }
}

// acc[(i * kw + j) * ow + ox] += dy[oy, ox] * x[iy, ox * sw + off] over one plane pair: per-lane
// partial sums (vectorisable without reassociating a reduction); the caller sums the lanes.
template <class T>
[[gnu::always_inline]] inline void dw_backward_weights_body(const Conv2dGeometry& g, const T* xp, const T* dyp, T* acc) {
  const DwColumns cols(g);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const T* dyr = dyp + oy * g.ow;
    dw_row_taps(g, cols, oy, [&](int64_t i, int64_t j, int64_t iy, int64_t off, int64_t lo, int64_t hi) XFER_DW_INLINE {
      const T* xr = xp + iy * g.w;
      T* a = acc + (i * g.kw + j) * g.ow;
      if (g.sw == 1)
        for (int64_t ox = lo; ox < hi; ++ox) a[ox] += dyr[ox] * xr[ox + off];
      else
        for (int64_t ox = lo; ox < hi; ++ox) a[ox] += dyr[ox] * xr[ox * g.sw + off];
    });
  }
}
#undef XFER_DW_INLINE

// The three plane loops as function pointers: the bodies above compiled for one ISA.
template <class T>
struct DwLoops {
  void (*forward)(const Conv2dGeometry&, const T*, const T*, T*, T, T, const T*, bool);
  void (*backward_data)(const Conv2dGeometry&, int64_t, const T*, const T*, T*);
  void (*backward_weights)(const Conv2dGeometry&, const T*, const T*, T*);
};

// Defines dw_loops_SUFFIX(): the bodies inlined into functions compiled with TARGET.
#define XFER_DW_LOOPS_FOR(SUFFIX, TARGET)                                                                       \
  struct DwLoops_##SUFFIX {                                                                                     \
    TARGET static void forward(const Conv2dGeometry& g, const float* xp, const float* wp, float* yp, float sc,  \
                               float sh, const float* r, bool relu) {                                          \
      dw_forward_body(g, xp, wp, yp, sc, sh, r, relu);                                                          \
    }                                                                                                           \
    TARGET static void backward_data(const Conv2dGeometry& g, int64_t m, const float* dyp, const float* wp,     \
                                     float* dxp) {                                                              \
      dw_backward_data_body(g, m, dyp, wp, dxp);                                                                \
    }                                                                                                           \
    TARGET static void backward_weights(const Conv2dGeometry& g, const float* xp, const float* dyp, float* acc) { \
      dw_backward_weights_body(g, xp, dyp, acc);                                                                \
    }                                                                                                           \
  };                                                                                                            \
  inline DwLoops<float> dw_loops_##SUFFIX() {                                                                   \
    return {&DwLoops_##SUFFIX::forward, &DwLoops_##SUFFIX::backward_data, &DwLoops_##SUFFIX::backward_weights}; \
  }
#if XFER_HAVE_AVX2_KERNELS
XFER_DW_LOOPS_FOR(avx2, XFER_TARGET_AVX2)
#endif
#if XFER_HAVE_AVX512_KERNELS
XFER_DW_LOOPS_FOR(avx512, XFER_TARGET_AVX512)
#endif
#undef XFER_DW_LOOPS_FOR

// The loops for scalar type T on this CPU (double always runs the generic ones); the ISA is
// noted for the tests that check every ISA path ran.
template <class T>
DwLoops<T> dw_loops() {
  if constexpr (std::is_same_v<T, float>) {
    const Isa isa = active_isa();
    note_path(isa);
#if XFER_HAVE_AVX512_KERNELS
    if (isa == Isa::avx512) return dw_loops_avx512();
#endif
#if XFER_HAVE_AVX2_KERNELS
    if (isa == Isa::avx2) return dw_loops_avx2();
#endif
  }
  return {&dw_forward_body<T>, &dw_backward_data_body<T>, &dw_backward_weights_body<T>};
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
  const DwLoops<T> loops = dw_loops<T>();
  XFER_OMP_FOR(g.n * g.o * P * KK)
  for (int64_t t = 0; t < g.n * g.o; ++t) {
    const int64_t n = t / g.o, oc = t % g.o;
    const T* xp = x + (n * g.c + oc / m) * HW;
    const T sc = ep.scale ? ep.scale[oc] : T(1), sh = ep.shift ? ep.shift[oc] : T(0);
    const T* r = ep.residual ? ep.residual + t * P : nullptr;
    loops.forward(g, xp, w + oc * KK, y + t * P, sc, sh, r, ep.relu);
  }
}

// dx = the adjoint of depthwise_forward (no epilogue) applied to dy; overwrites dx.
template <class T>
void depthwise_backward_data(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  using namespace detail;
  const int64_t m = g.o / g.c, P = g.out_plane(), KK = g.kh * g.kw, HW = g.h * g.w;
  const DwLoops<T> loops = dw_loops<T>();
  XFER_OMP_FOR(g.n * g.o * P * KK)
  for (int64_t t = 0; t < g.n * g.c; ++t) {
    const int64_t n = t / g.c, c = t % g.c;
    const T* dyp = dy + (n * g.o + c * m) * P;
    const T* wp = w + c * m * KK;
    loops.backward_data(g, m, dyp, wp, dx + t * HW);
  }
}

// dw[oc] += sum over images and output pixels of dy[n, oc] * (shifted x[n, oc / m]).
template <class T>
void depthwise_backward_weights(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  using namespace detail;
  const int64_t m = g.o / g.c, P = g.out_plane(), KK = g.kh * g.kw, HW = g.h * g.w;
  const DwLoops<T> loops = dw_loops<T>();
  XFER_OMP_FOR(g.n * g.o * P * KK)
  for (int64_t oc = 0; oc < g.o; ++oc) {
    T* acc = dw_lanes<T>(KK * g.ow);
    for (int64_t n = 0; n < g.n; ++n) {
      const T* xp = x + (n * g.c + oc / m) * HW;
      const T* dyp = dy + (n * g.o + oc) * P;
      loops.backward_weights(g, xp, dyp, acc);
    }
    for (int64_t q = 0; q < KK; ++q) {
      double s = 0;
      for (int64_t ox = 0; ox < g.ow; ++ox) s += static_cast<double>(acc[q * g.ow + ox]);
      dw[oc * KK + q] += static_cast<T>(s);
    }
  }
}

}  // namespace xfer::kernels
