// Explicit column buffers for the convolution GEMMs: im2col (image -> [c*kh*kw, images*P]), its
// adjoint col2im, and the plane gather/scatter that fold a batch into GEMM columns. Portable C++;
// used by the Eigen path, by double, and by the packed paths when 32-bit offsets do not fit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "xfer/core/parallel.hpp"
#include "xfer/kernels/geometry.hpp"

namespace xfer::kernels::detail {

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

}  // namespace xfer::kernels::detail
