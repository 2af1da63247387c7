// 2-D convolution kernels (NCHW input, OIHW weights): forward, backward-data, backward-weights.
// All are GEMMs with the batch folded into the GEMM columns (small late-stage maps otherwise give
// GEMMs with a handful of columns). Taps that only see padding are cropped first (taps.hpp). For
// float the GEMM is gemm.hpp's packed kernel of the ISA chosen at run time (AVX-512 or AVX2+FMA;
// conv2d_packed.hpp); double, and float on the generic ISA, use Eigen (conv2d_eigen.hpp). The naive
// references the tests compare against live in tests/reference_kernels.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/workspace.hpp"
#include "xfer/kernels/conv2d_eigen.hpp"
#include "xfer/kernels/conv2d_packed.hpp"
#include "xfer/kernels/gemm.hpp"
#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/taps.hpp"

namespace xfer::kernels {

namespace detail {

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

// The backward kernels on the geometry as given (no tap cropping): packed GEMM of the active ISA
// for float, Eigen for double and on the generic ISA.
template <class T>
void backward_data_full(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  if constexpr (std::is_same_v<T, float>) {
    if (const Isa isa = active_isa(); isa != Isa::generic)
      return with_gemm_kernels(isa, [&](auto kern) { backward_data_packed<decltype(kern)>(g, dy, w, dx); });
    note_path(Isa::generic);
  }
  backward_data_eigen(g, dy, w, dx);
}
template <class T>
void backward_weights_full(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  if constexpr (std::is_same_v<T, float>) {
    if (const Isa isa = active_isa(); isa != Isa::generic)
      return with_gemm_kernels(isa, [&](auto kern) { backward_weights_packed<decltype(kern)>(g, x, dy, dw); });
    note_path(Isa::generic);
  }
  backward_weights_eigen(g, x, dy, dw);
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
  if constexpr (std::is_same_v<T, float>) {
    if (const Isa isa = active_isa(); isa != Isa::generic) {
      with_gemm_kernels(isa, [&](auto kern) {
        forward_packed<decltype(kern)>(c.g, x, w, GemmEpilogue{.row_scale = ep.scale, .row_bias = ep.shift,
                                                               .relu = ep.relu, .residual = ep.residual}, y);
      });
      return;
    }
    note_path(Isa::generic);
  }
  const bool bias_only = !ep.scale && !ep.residual && !ep.relu;
  forward_eigen(c.g, x, w, bias_only ? ep.shift : nullptr, y);
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

}  // namespace xfer::kernels
