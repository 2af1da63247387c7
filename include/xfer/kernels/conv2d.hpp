// 2-D convolution kernels (NCHW input, OIHW weights): forward, backward-data, backward-weights.
// All are GEMMs with the batch folded into the GEMM columns (small late-stage maps otherwise give
// GEMMs with a handful of columns). Taps that only see padding are cropped first (taps.hpp). For
// float the GEMM is gemm.hpp's packed kernel of the ISA chosen at run time (AVX-512 or AVX2+FMA;
// conv2d_packed.hpp); double, and float on the generic ISA, use Eigen (conv2d_eigen.hpp). The naive
// references the tests compare against live in tests/reference_kernels.hpp.
//
// Groups and dilation: depthwise convolutions (groups == input channels) run the direct kernels of
// depthwise.hpp; other grouped convolutions run the dense kernels once per group on gathered
// channel slices; a dilated kernel runs as the dense kernel with zeros between its taps (exact,
// d^2 times the work: no zoo model dilates).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/workspace.hpp"
#include "xfer/kernels/conv2d_eigen.hpp"
#include "xfer/kernels/conv2d_packed.hpp"
#include "xfer/kernels/depthwise.hpp"
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

// The dense kernels (groups 1, no dilation).
template <class T>
void dense_forward(const Conv2dGeometry& g, const T* x, const T* w, T* y, const ConvEpilogue<T>& ep) {
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

template <class T>
void dense_backward_data(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  const TapCrop c = crop_taps(g);
  if (c.empty) {
    std::fill(dx, dx + g.n * g.c * g.h * g.w, T(0));
    return;
  }
  w = weights_for(g, c, w);
  backward_data_full(c.g, dy, w, dx);
}

template <class T>
void dense_backward_weights(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
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

// Channels [c0, c0 + cs) of every image of an (n, C, P) tensor into a contiguous (n, cs, P) one, and back.
template <class T>
void gather_channels(const T* src, int64_t n, int64_t C, int64_t P, int64_t c0, int64_t cs, T* dst) {
  XFER_OMP_FOR(n * cs * P)
  for (int64_t t = 0; t < n * cs; ++t) std::copy_n(src + ((t / cs) * C + c0 + t % cs) * P, P, dst + t * P);
}
template <class T>
void scatter_channels(const T* src, int64_t n, int64_t C, int64_t P, int64_t c0, int64_t cs, T* dst) {
  XFER_OMP_FOR(n * cs * P)
  for (int64_t t = 0; t < n * cs; ++t) std::copy_n(src + t * P, P, dst + ((t / cs) * C + c0 + t % cs) * P);
}

// The geometry of group slice: c / groups input and o / groups output channels, groups 1.
inline Conv2dGeometry group_slice(const Conv2dGeometry& g) {
  Conv2dGeometry s = g;
  s.c = g.c_per_group(), s.o = g.o_per_group(), s.groups = 1;
  return s;
}

// A dilated kernel as the dense kernel with zeros between its taps: the same geometry with
// dilation 1 and kernel (k - 1) * d + 1, whose output size is the same.
inline Conv2dGeometry undilated(const Conv2dGeometry& g) {
  Conv2dGeometry e = g;
  e.kh = (g.kh - 1) * g.dil_h + 1, e.kw = (g.kw - 1) * g.dil_w + 1, e.dil_h = 1, e.dil_w = 1;
  return e;
}
// w [o, cg, kh, kw] -> we [o, cg, kh', kw'] (zeros between taps), or back (adding the taps of we to w).
template <class T>
void expand_dilated(const Conv2dGeometry& g, const Conv2dGeometry& e, const T* w, T* we) {
  const int64_t planes = g.o * g.ckk() / (g.kh * g.kw);
  std::fill(we, we + planes * e.kh * e.kw, T(0));
  for (int64_t q = 0; q < planes; ++q)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) we[(q * e.kh + i * g.dil_h) * e.kw + j * g.dil_w] = w[(q * g.kh + i) * g.kw + j];
}
template <class T>
void add_dilated_taps(const Conv2dGeometry& g, const Conv2dGeometry& e, const T* we, T* w) {
  const int64_t planes = g.o * g.ckk() / (g.kh * g.kw);
  for (int64_t q = 0; q < planes; ++q)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) w[(q * g.kh + i) * g.kw + j] += we[(q * e.kh + i * g.dil_h) * e.kw + j * g.dil_w];
}

}  // namespace detail

// y[n, o, oy, ox] = relu?(scale[o] * sum_{c in group(o), i, j} w[o, c, i, j] * x[n, c, oy*sh - ph + i*dh, ox*sw - pw + j*dw]
//                        + shift[o] + residual[n, o, oy, ox])
// with every part of the epilogue optional (ConvEpilogue). y must not alias x or the residual.
template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, T* y, const ConvEpilogue<T>& ep) {
  using namespace detail;
  if (g.dense()) return dense_forward(g, x, w, y, ep);
  if (g.depthwise()) return depthwise_forward(g, x, w, y, ep);
  if (g.dil_h != 1 || g.dil_w != 1) {
    const Conv2dGeometry e = undilated(g);
    T* we = scratch<T>(xfer::detail::Scratch::Dilated, g.o * e.ckk());
    expand_dilated(g, e, w, we);
    return conv2d_forward(e, x, we, y, ep);
  }
  const Conv2dGeometry s = group_slice(g);
  const int64_t HW = g.h * g.w, P = g.out_plane();
  T* xs = scratch<T>(xfer::detail::Scratch::GroupIn, g.n * s.c * HW);
  T* ys = scratch<T>(xfer::detail::Scratch::GroupOut, g.n * s.o * P);
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    gather_channels(x, g.n, g.c, HW, gi * s.c, s.c, xs);
    dense_forward(s, xs, w + gi * s.o * s.ckk(), ys, ConvEpilogue<T>{});
    scatter_channels(ys, g.n, g.o, P, gi * s.o, s.o, y);
  }
  apply_epilogue(g, ep, y);
}

// y[n, o, oy, ox] = bias[o] + the convolution sum above.
template <class T>
void conv2d_forward(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  conv2d_forward(g, x, w, y, ConvEpilogue<T>{.shift = bias});
}

// dx = conv2d_forward's adjoint applied to dy (overwrites dx).
template <class T>
void conv2d_backward_data(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  using namespace detail;
  if (g.dense()) return dense_backward_data(g, dy, w, dx);
  if (g.depthwise()) return depthwise_backward_data(g, dy, w, dx);
  if (g.dil_h != 1 || g.dil_w != 1) {
    const Conv2dGeometry e = undilated(g);
    T* we = scratch<T>(xfer::detail::Scratch::Dilated, g.o * e.ckk());
    expand_dilated(g, e, w, we);
    return conv2d_backward_data(e, dy, we, dx);
  }
  const Conv2dGeometry s = group_slice(g);
  const int64_t HW = g.h * g.w, P = g.out_plane();
  T* dxs = scratch<T>(xfer::detail::Scratch::GroupIn, g.n * s.c * HW);
  T* dys = scratch<T>(xfer::detail::Scratch::GroupOut, g.n * s.o * P);
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    gather_channels(dy, g.n, g.o, P, gi * s.o, s.o, dys);
    dense_backward_data(s, dys, w + gi * s.o * s.ckk(), dxs);
    scatter_channels(dxs, g.n, g.c, HW, gi * s.c, s.c, dx);
  }
}

// dw += dy (x) im2col(x) (per group), db += sum over n, oy, ox of dy (either may be null to skip it).
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
  if (!dw) return;
  if (g.dense()) return dense_backward_weights(g, x, dy, dw);
  if (g.depthwise()) return depthwise_backward_weights(g, x, dy, dw);
  if (g.dil_h != 1 || g.dil_w != 1) {
    const Conv2dGeometry e = undilated(g);
    T* we = scratch<T>(xfer::detail::Scratch::Dilated, g.o * e.ckk());
    std::fill(we, we + g.o * e.ckk(), T(0));
    conv2d_backward_weights(e, x, dy, we, static_cast<T*>(nullptr));
    add_dilated_taps(g, e, we, dw);
    return;
  }
  const Conv2dGeometry s = group_slice(g);
  const int64_t HW = g.h * g.w;
  T* xs = scratch<T>(xfer::detail::Scratch::GroupIn, g.n * s.c * HW);
  T* dys = scratch<T>(xfer::detail::Scratch::GroupOut, g.n * s.o * P);
  for (int64_t gi = 0; gi < g.groups; ++gi) {
    gather_channels(x, g.n, g.c, HW, gi * s.c, s.c, xs);
    gather_channels(dy, g.n, g.o, P, gi * s.o, s.o, dys);
    dense_backward_weights(s, xs, dys, dw + gi * s.o * s.ckk());
  }
}

}  // namespace xfer::kernels
