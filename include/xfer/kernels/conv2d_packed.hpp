// The packed-GEMM convolution paths (float, any ISA policy of gemm.hpp): the batch is folded into
// the GEMM's column views, the im2col matrix is packed straight from the image (implicit im2col),
// pointwise convolutions need no copies at all, and stride-1 backward-data runs as a forward
// convolution with the flipped kernel. Only inputs too large for 32-bit offsets fall back to
// explicit column buffers, in chunks of images.
#pragma once

#include <algorithm>
#include <cstdint>

#include "xfer/core/parallel.hpp"
#include "xfer/core/workspace.hpp"
#include "xfer/kernels/gemm.hpp"
#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/im2col.hpp"

namespace xfer::kernels::detail {

// Implicit im2col needs 32-bit offsets into x.
inline bool implicit_im2col_fits(const Conv2dGeometry& g) { return g.n * g.c * g.h * g.w < (int64_t{1} << 30); }

template <class Kern>
void forward_packed(const Conv2dGeometry& g, const float* x, const float* w, const GemmEpilogue& ep, float* y) {
  const int64_t P = g.out_plane(), K = g.ckk();
  if (g.pointwise()) {
    gemm_with<Kern>(g.o, g.n * P, K, row_major(w, K), batch_folded(x, g.c, P), batch_folded(y, g.o, P), ep);
    return;
  }
  if (implicit_im2col_fits(g)) {
    gemm_packed_b_with<Kern>(
        g.o, g.n * P, K, row_major(w, K),
        [&](int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) { Kern::pack_im2col(g, x, k0, kc, c0, nc, out); },
        batch_folded(y, g.o, P), ep);
    return;
  }
  for_each_chunk(g.n, chunk_images<float>(g), [&](int64_t n0, int64_t nb) {
    const int64_t cols_n = nb * P;
    float* cols = scratch<float>(xfer::detail::Scratch::Columns, K * cols_n);
    im2col(g, x, n0, nb, cols);
    GemmEpilogue chunk_ep = ep;
    if (ep.residual) chunk_ep.residual = ep.residual + n0 * g.o * P;
    gemm_with<Kern>(g.o, cols_n, K, row_major(w, K), row_major<float>(cols, cols_n), batch_folded(y + n0 * g.o * P, g.o, P),
         chunk_ep);
  });
}

template <class Kern>
void backward_data_packed(const Conv2dGeometry& g, const float* dy, const float* w, float* dx) {
  const int64_t P = g.out_plane(), K = g.ckk();
  if (g.pointwise()) {
    gemm_with<Kern>(K, g.n * P, g.o, transposed(w, K), batch_folded(dy, g.o, P), batch_folded(dx, g.c, P));
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
      forward_packed<Kern>(t, dy, wt, GemmEpilogue{}, dx);
      return;
    }
  }
  for_each_chunk(g.n, chunk_images<float>(g), [&](int64_t n0, int64_t nb) {
    const int64_t cols_n = nb * P;
    float* cols = scratch<float>(xfer::detail::Scratch::Columns, K * cols_n);
    gemm_with<Kern>(K, cols_n, g.o, transposed(w, K), batch_folded(dy + n0 * g.o * P, g.o, P), View<float>{cols, {cols_n}, {1}});
    col2im(g, cols, n0, nb, dx);
  });
}

template <class Kern>
void backward_weights_packed(const Conv2dGeometry& g, const float* x, const float* dy, float* dw) {
  const int64_t P = g.out_plane(), K = g.ckk();
  const GemmEpilogue ep{.accumulate = true};
  const View<float> DW{dw, {K}, {1}};
  if (g.pointwise()) {
    // B(col, ch) = x[image(col), ch, pixel(col)]: folded along B's rows.
    const View<const float> X{x, {1, P, g.c * P}, {P}};
    gemm_with<Kern>(g.o, K, g.n * P, batch_folded(dy, g.o, P), X, DW, ep);
    return;
  }
  if (implicit_im2col_fits(g)) {
    gemm_packed_b_with<Kern>(
        g.o, K, g.n * P, batch_folded(dy, g.o, P),
        [&](int64_t r0, int64_t rc, int64_t c0, int64_t nc, float* out) { Kern::pack_im2col_t(g, x, r0, rc, c0, nc, out); },
        DW, ep);
    return;
  }
  for_each_chunk(g.n, chunk_images<float>(g), [&](int64_t n0, int64_t nb) {
    const int64_t cols_n = nb * P;
    float* cols = scratch<float>(xfer::detail::Scratch::Columns, K * cols_n);
    im2col(g, x, n0, nb, cols);
    gemm_with<Kern>(g.o, K, cols_n, batch_folded(dy + n0 * g.o * P, g.o, P), transposed<float>(cols, cols_n), DW, ep);
  });
}

}  // namespace xfer::kernels::detail
