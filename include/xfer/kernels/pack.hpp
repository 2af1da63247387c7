// Portable packing for the GEMM micro-kernels of any panel shape (MR rows of A, NR columns of B,
// both k-major and zero padded), including implicit im2col: the convolution's column matrix is
// packed straight from the image, never stored. Plain C++ (the copies are short fixed-size runs the
// compiler turns into vector moves); the AVX-512 path has its own masked/gather versions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xfer/kernels/geometry.hpp"
#include "xfer/kernels/view.hpp"

namespace xfer::kernels::detail::pack {

// Rows [r0, r0+mc) x cols [k0, k0+kc) of A into MR-row panels: panel[k * MR + i].
template <int64_t MR>
void a(const View<const float>& A, int64_t r0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  for (int64_t ip = 0; ip < mc; ip += MR) {
    float* panel = out + ip * kc;
    const int64_t h = std::min(MR, mc - ip);
    if (h == MR && !A.row.folded() && A.row.stride == 1 && !A.col.folded()) {
      // Transposed source (W^T): the MR rows of one k are contiguous.
      const float* s = A.data + r0 + ip;
      for (int64_t k = 0; k < kc; ++k) std::memcpy(panel + k * MR, s + (k0 + k) * A.col.stride, MR * sizeof(float));
      continue;
    }
    for (int64_t i = 0; i < MR; ++i) {
      if (i >= h) {
        for (int64_t k = 0; k < kc; ++k) panel[k * MR + i] = 0.0f;
        continue;
      }
      const float* rowp = A.data + A.row.offset(r0 + ip + i);
      if (!A.col.folded()) {
        const int64_t st = A.col.stride;
        const float* s = rowp + k0 * st;
        for (int64_t k = 0; k < kc; ++k) panel[k * MR + i] = s[k * st];
      } else {
        int64_t q = k0 / A.col.period, m = k0 % A.col.period;
        for (int64_t k = 0; k < kc; ++k) {
          panel[k * MR + i] = rowp[q * A.col.outer + m * A.col.stride];
          if (++m == A.col.period) m = 0, ++q;
        }
      }
    }
  }
}

// Rows [k0, k0+kc) x cols [c0, c0+nc) of B into NR-column panels: panel[k * NR + j].
template <int64_t NR>
void b(const View<const float>& B, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
  for (int64_t jp = 0; jp < nc; jp += NR) {
    float* panel = out + jp * kc;
    const int64_t w = std::min(NR, nc - jp);
    int64_t off[NR];
    bool contiguous = w == NR;
    for (int64_t j = 0; j < w; ++j) {
      off[j] = B.col.offset(c0 + jp + j);
      if (j > 0 && off[j] != off[j - 1] + 1) contiguous = false;
    }
    if (contiguous) {
      for (int64_t k = 0; k < kc; ++k)
        std::memcpy(panel + k * NR, B.data + B.row.offset(k0 + k) + off[0], NR * sizeof(float));
    } else if (!B.row.folded() && B.row.stride == 1) {
      // Transposed source: each column is contiguous along k.
      for (int64_t j = 0; j < NR; ++j) {
        if (j >= w) {
          for (int64_t k = 0; k < kc; ++k) panel[k * NR + j] = 0.0f;
          continue;
        }
        const float* s = B.data + off[j] + k0;
        for (int64_t k = 0; k < kc; ++k) panel[k * NR + j] = s[k];
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = B.data + B.row.offset(k0 + k);
        float* d = panel + k * NR;
        int64_t j = 0;
        for (; j < w; ++j) d[j] = s[off[j]];
        for (; j < NR; ++j) d[j] = 0.0f;
      }
    }
  }
}

// For im2col rows k in [c0, c0+nc): tap (i, j) and the offset ch*h*w + i*w + j into an image
// (one table per thread, reused by the transposing packers).
struct TapTable {
  std::vector<int64_t> off, i, j;
};
inline const TapTable& tap_table(const Conv2dGeometry& g, int64_t c0, int64_t nc) {
  thread_local TapTable t;
  const int64_t KK = g.kh * g.kw;
  t.off.resize(static_cast<size_t>(nc));
  t.i.resize(static_cast<size_t>(nc));
  t.j.resize(static_cast<size_t>(nc));
  for (int64_t col = 0; col < nc; ++col) {
    const int64_t k = c0 + col, ch = k / KK, i = (k % KK) / g.kw, j = k % g.kw;
    const auto c = static_cast<size_t>(col);
    t.i[c] = i, t.j[c] = j, t.off[c] = ch * g.h * g.w + i * g.w + j;
  }
  return t;
}

// One panel's lanes of the im2col matrix, copied in groups of L lanes whose pixels are consecutive
// in x (L = NR, 8, 4 or 1): a group whose taps all land inside the image is one fixed-size copy.
template <int64_t NR, int64_t L>
void im2col_panel(const Conv2dGeometry& g, const float* x, const int64_t* base, const int64_t* iy0, const int64_t* ix0,
                  int64_t width, int64_t k0, int64_t kc, float* panel) {
  const int64_t HW = g.h * g.w, KK = g.kh * g.kw;
  int64_t ch = k0 / KK, t = k0 % KK, i = t / g.kw, j = t % g.kw;
  for (int64_t k = 0; k < kc; ++k) {
    float* dst = panel + k * NR;
    const float* src = x + ch * HW + i * g.w + j;
    for (int64_t s0 = 0; s0 < NR; s0 += L) {
      const int64_t iy = iy0[s0] + i, ix = ix0[s0] + j;
      if (s0 + L <= width && iy >= 0 && iy < g.h && ix >= 0 && ix + L <= g.w) {
        std::memcpy(dst + s0, src + base[s0], L * sizeof(float));
        continue;
      }
      for (int64_t l = s0; l < s0 + L; ++l) {
        const int64_t yy = iy0[l] + i, xx = ix0[l] + j;
        dst[l] = l < width && yy >= 0 && yy < g.h && xx >= 0 && xx < g.w ? src[base[l]] : 0.0f;
      }
    }
    if (++j == g.kw) {
      j = 0;
      if (++i == g.kh) i = 0, ++ch;
    }
  }
}

// Rows [k0, k0+kc) x cols [c0, c0+nc) of the im2col matrix of x (row k = (ch*kh + i)*kw + j,
// col = img*P + oy*ow + ox) into NR-column panels.
template <int64_t NR>
void im2col_b(const Conv2dGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
  const int64_t P = g.out_plane(), CHW = g.c * g.h * g.w;
  for (int64_t jp = 0; jp < nc; jp += NR) {
    float* panel = out + jp * kc;
    const int64_t width = std::min<int64_t>(NR, nc - jp);
    int64_t base[NR], iy0[NR], ix0[NR];
    for (int64_t l = 0; l < NR; ++l) {
      const int64_t col = c0 + jp + std::min(l, width - 1), img = col / P, p = col % P, oy = p / g.ow, ox = p % g.ow;
      iy0[l] = oy * g.sh - g.ph;
      ix0[l] = ox * g.sw - g.pw;
      base[l] = img * CHW + iy0[l] * g.w + ix0[l];
    }
    // Longest group length whose lanes are consecutive pixels of one row of x, for every group.
    auto groups_of = [&](int64_t L) {
      for (int64_t s0 = 0; s0 < NR; s0 += L)
        for (int64_t l = 1; l < L; ++l)
          if (s0 + l < width && (base[s0 + l] != base[s0] + l || iy0[s0 + l] != iy0[s0])) return false;
      return true;
    };
    if (groups_of(NR)) im2col_panel<NR, NR>(g, x, base, iy0, ix0, width, k0, kc, panel);
    else if (NR > 8 && groups_of(8)) im2col_panel<NR, 8>(g, x, base, iy0, ix0, width, k0, kc, panel);
    else if (groups_of(4)) im2col_panel<NR, 4>(g, x, base, iy0, ix0, width, k0, kc, panel);
    else im2col_panel<NR, 1>(g, x, base, iy0, ix0, width, k0, kc, panel);
  }
}

// Rows [r0, r0+rc) x cols [c0, c0+nc) of the transposed im2col matrix (row = pixel col, column =
// tap k), for the weight gradient dW[o, k] = sum_col dy[o, col] * im2col[k, col].
template <int64_t NR>
void im2col_t_b(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc, float* out) {
  const int64_t P = g.out_plane(), HW = g.h * g.w, CHW = g.c * HW, KK = g.kh * g.kw;
  for (int64_t jp = 0; jp < nc; jp += NR) {
    float* panel = out + jp * rc;
    const int64_t width = std::min<int64_t>(NR, nc - jp);
    int64_t off[NR], ti[NR], tj[NR];
    for (int64_t l = 0; l < NR; ++l) {
      if (l < width) {
        const int64_t k = c0 + jp + l, ch = k / KK, i = (k % KK) / g.kw, j = k % g.kw;
        ti[l] = i, tj[l] = j, off[l] = ch * HW + i * g.w + j;
      } else {
        ti[l] = tj[l] = -(int64_t{1} << 40), off[l] = 0;
      }
    }
    int64_t img = r0 / P, p = r0 % P, oy = p / g.ow, ox = p % g.ow;
    for (int64_t r = 0; r < rc; ++r) {
      const int64_t iy0 = oy * g.sh - g.ph, ix0 = ox * g.sw - g.pw;
      const int64_t at = img * CHW + iy0 * g.w + ix0;  // may be negative: only valid taps add it
      float* dst = panel + r * NR;
      for (int64_t l = 0; l < NR; ++l) {
        const int64_t iy = iy0 + ti[l], ix = ix0 + tj[l];
        dst[l] = static_cast<uint64_t>(iy) < static_cast<uint64_t>(g.h) && static_cast<uint64_t>(ix) < static_cast<uint64_t>(g.w)
                     ? x[at + off[l]]
                     : 0.0f;
      }
      if (++ox == g.ow) {
        ox = 0;
        if (++oy == g.oh) oy = 0, ++img;
      }
    }
  }
}

}  // namespace xfer::kernels::detail::pack
