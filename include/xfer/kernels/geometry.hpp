// Geometry of a 2-D convolution (NCHW input, OIHW weights) and the epilogue a forward may fuse.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

namespace xfer::kernels {

// Weights are [o, c / groups, kh, kw]: output channel oc sees input channels
// [(oc / (o / groups)) * (c / groups), + c / groups) only. Tap (i, j) reads input pixel
// (oy * sh - ph + i * dil_h, ox * sw - pw + j * dil_w).
struct Conv2dGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t o = 0, kh = 0, kw = 0;       // weights
  int64_t sh = 1, sw = 1, ph = 0, pw = 0;
  int64_t oh = 0, ow = 0;  // output, derived
  int64_t groups = 1, dil_h = 1, dil_w = 1;

  void finish() {
    oh = (h + 2 * ph - dil_h * (kh - 1) - 1) / sh + 1;
    ow = (w + 2 * pw - dil_w * (kw - 1) - 1) / sw + 1;
  }
  int64_t c_per_group() const { return c / groups; }
  int64_t o_per_group() const { return o / groups; }
  int64_t ckk() const { return c_per_group() * kh * kw; }  // weights per output channel
  int64_t out_plane() const { return oh * ow; }
  // groups == 1 and no dilation: the GEMM kernels' case.
  bool dense() const { return groups == 1 && dil_h == 1 && dil_w == 1; }
  // Each output channel reads one input channel (depthwise, with any channel multiplier).
  bool depthwise() const { return groups > 1 && groups == c; }
  // A 1x1 convolution whose output plane is its input plane (the GEMM reads x as it is).
  bool pointwise() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && oh == h && ow == w && groups == 1;
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

}  // namespace detail

}  // namespace xfer::kernels
