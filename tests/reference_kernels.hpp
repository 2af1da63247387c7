// Naive reference kernels (tests only): direct loops over the definitions, summed in double, that the
// fast kernels of include/xfer/kernels/ are compared against. The convolutions take any groups
// and dilation (Conv2dGeometry).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "xfer/core/rng.hpp"
#include "xfer/kernels/geometry.hpp"

namespace xfer::kernels {

template <class T>
void conv2d_forward_reference(const Conv2dGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const int64_t cg = g.c / g.groups, og = g.o / g.groups;  // channels per group
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          double s = bias ? static_cast<double>(bias[o]) : 0.0;
          for (int64_t cl = 0; cl < cg; ++cl)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t c = o / og * cg + cl;
                const int64_t iy = oy * g.sh - g.ph + i * g.dil_h, ix = ox * g.sw - g.pw + j * g.dil_w;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                s += static_cast<double>(w[((o * cg + cl) * g.kh + i) * g.kw + j]) *
                     static_cast<double>(x[((n * g.c + c) * g.h + iy) * g.w + ix]);
              }
          y[((n * g.o + o) * g.oh + oy) * g.ow + ox] = static_cast<T>(s);
        }
}

template <class T>
void conv2d_backward_data_reference(const Conv2dGeometry& g, const T* dy, const T* w, T* dx) {
  const int64_t cg = g.c / g.groups, og = g.o / g.groups;  // channels per group
  std::fill(dx, dx + g.n * g.c * g.h * g.w, T(0));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const T d = dy[((n * g.o + o) * g.oh + oy) * g.ow + ox];
          for (int64_t cl = 0; cl < cg; ++cl)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t c = o / og * cg + cl;
                const int64_t iy = oy * g.sh - g.ph + i * g.dil_h, ix = ox * g.sw - g.pw + j * g.dil_w;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                dx[((n * g.c + c) * g.h + iy) * g.w + ix] += d * w[((o * cg + cl) * g.kh + i) * g.kw + j];
              }
        }
}

template <class T>
void conv2d_backward_weights_reference(const Conv2dGeometry& g, const T* x, const T* dy, T* dw, T* db) {
  const int64_t cg = g.c / g.groups, og = g.o / g.groups;  // channels per group
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t o = 0; o < g.o; ++o)
      for (int64_t oy = 0; oy < g.oh; ++oy)
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const T d = dy[((n * g.o + o) * g.oh + oy) * g.ow + ox];
          if (db) db[o] += d;
          if (!dw) continue;
          for (int64_t cl = 0; cl < cg; ++cl)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t c = o / og * cg + cl;
                const int64_t iy = oy * g.sh - g.ph + i * g.dil_h, ix = ox * g.sw - g.pw + j * g.dil_w;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                dw[((o * cg + cl) * g.kh + i) * g.kw + j] += d * x[((n * g.c + c) * g.h + iy) * g.w + ix];
              }
        }
}

// ---- helpers shared by the kernel tests ----------------------------------------------------------

// n values uniform in [-1, 1).
template <class T>
std::vector<T> random_values(int64_t n, Rng& rng) {
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& e : v) e = static_cast<T>(rng.uniform(-1, 1));
  return v;
}

// Largest |a - b| relative to the largest |b| (scale-free, so long sums in float are judged fairly).
// Throws on a size mismatch, which a Catch2 CHECK around the call reports as a failure.
template <class T>
double max_rel_diff(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) throw std::logic_error("max_rel_diff: sizes differ");
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return worst / scale;
}

// One line naming a convolution's shape, for test messages.
inline std::string describe(const Conv2dGeometry& g) {
  return "n=" + std::to_string(g.n) + " c=" + std::to_string(g.c) + " " + std::to_string(g.h) + "x" +
         std::to_string(g.w) + " o=" + std::to_string(g.o) + " k=" + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
         " s=" + std::to_string(g.sh) + "," + std::to_string(g.sw) + " p=" + std::to_string(g.ph) + "," +
         std::to_string(g.pw) + " groups=" + std::to_string(g.groups) + " dil=" + std::to_string(g.dil_h) + "," +
         std::to_string(g.dil_w);
}

}  // namespace xfer::kernels
