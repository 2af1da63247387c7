// Tap cropping: kernel taps that only ever multiply padding (a 3x3/pad-1 kernel on a 1x1 map uses
// its centre alone) are cut away before any convolution kernel runs, and the weights cropped to match.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "xfer/core/parallel.hpp"
#include "xfer/core/workspace.hpp"
#include "xfer/kernels/geometry.hpp"

namespace xfer::kernels::detail {

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

}  // namespace xfer::kernels::detail
