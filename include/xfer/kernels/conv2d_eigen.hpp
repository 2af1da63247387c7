// The Eigen convolution paths (double, and float on the generic ISA): im2col/col2im into column
// buffers in chunks of images, and Eigen's GEMM on them. Kernels on the geometry as given (the
// public functions in conv2d.hpp crop taps first).
#pragma once

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "xfer/core/parallel.hpp"
#include "xfer/core/workspace.hpp"
#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/im2col.hpp"

namespace xfer::kernels::detail {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapM = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMapM = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

// y = bias + conv(x, w).
template <class T>
void forward_eigen(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t P = g.out_plane(), K = g.ckk();
  CMapM<T> W(w, g.o, K, Eigen::OuterStride<>(K));
  for_each_chunk(g.n, chunk_images<T>(g), [&](int64_t n0, int64_t nb) {
    const int64_t cols_n = nb * P;
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
  });
}

// dy of images [n0, n0 + nb) as one (O, nb * P) matrix: in place for one image, gathered otherwise.
template <class T>
const T* images_of_dy(const Conv2dGeometry& g, const T* dy, int64_t n0, int64_t nb) {
  const int64_t P = g.out_plane();
  if (nb == 1) return dy + n0 * g.o * P;
  T* buf = scratch<T>(xfer::detail::Scratch::Gather, g.o * nb * P);
  gather_planes(dy, g.o, P, n0, nb, buf);
  return buf;
}

template <class T>
void backward_data_eigen(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  const int64_t P = g.out_plane(), K = g.ckk();
  CMapM<T> W(w, g.o, K, Eigen::OuterStride<>(K));
  for_each_chunk(g.n, chunk_images<T>(g), [&](int64_t n0, int64_t nb) {
    const int64_t cols_n = nb * P;
    const T* dys = images_of_dy(g, dy, n0, nb);
    CMapM<T> DY(dys, g.o, cols_n, Eigen::OuterStride<>(cols_n));
    if (g.pointwise() && nb == 1) {
      MapM<T> DX(dx + n0 * g.c * P, K, P, Eigen::OuterStride<>(P));
      DX.noalias() = W.transpose() * DY;
      return;
    }
    T* cols = scratch<T>(xfer::detail::Scratch::Columns, K * cols_n);
    MapM<T> DC(cols, K, cols_n, Eigen::OuterStride<>(cols_n));
    DC.noalias() = W.transpose() * DY;
    if (g.pointwise())
      scatter_planes<T>(cols, g.c, P, n0, nb, nullptr, dx);
    else
      col2im(g, cols, n0, nb, dx);
  });
}

template <class T>
void backward_weights_eigen(const Conv2dGeometry& g, const T* x, const T* dy, T* dw) {
  const int64_t P = g.out_plane(), K = g.ckk();
  MapM<T> DW(dw, g.o, K, Eigen::OuterStride<>(K));
  for_each_chunk(g.n, chunk_images<T>(g), [&](int64_t n0, int64_t nb) {
    const int64_t cols_n = nb * P;
    const T* dys = images_of_dy(g, dy, n0, nb);
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
  });
}

}  // namespace xfer::kernels::detail
