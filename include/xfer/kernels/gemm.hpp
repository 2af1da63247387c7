// Packed single-precision GEMM for the convolution kernels: C (+)= A * B with an epilogue
// (per-row bias, ReLU), where A, B and C are strided views that may fold the batch into a
// dimension (column j of an NCHW tensor seen as [channels, n*P] lives at (j/P)*C*P + j%P), so
// convolutions need no gather/scatter copies around the GEMM.
//
// The one thing to know: it is parallel inside (one OpenMP region over C tiles, each thread packs
// its own panels) and must not be called from inside another parallel region — it then runs
// serially. The AVX-512 micro-kernel is used when compiled with -mavx512f (gemm_available());
// without it conv2d.hpp uses Eigen's GEMM instead.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include "xfer/core/parallel.hpp"
#include "xfer/core/tensor.hpp"

namespace xfer::kernels {

// One index of a strided view: offset(i) = (i / period) * outer + (i % period) * stride.
struct Axis {
  int64_t stride = 1;
  int64_t period = std::numeric_limits<int64_t>::max();
  int64_t outer = 0;
  int64_t offset(int64_t i) const { return period == std::numeric_limits<int64_t>::max() ? i * stride : (i / period) * outer + (i % period) * stride; }
  bool folded() const { return period != std::numeric_limits<int64_t>::max(); }
};

// A rows x cols view: element (r, c) is at data[row.offset(r) + col.offset(c)].
template <class P>
struct View {
  P* data = nullptr;
  Axis row, col;
};
template <class T>
View<const T> row_major(const T* data, int64_t ld) { return {data, {ld}, {1}}; }
template <class T>
View<const T> transposed(const T* data, int64_t ld) { return {data, {1}, {ld}}; }
// [channels, n*P] view of an NCHW tensor with `channels` planes of P elements per image.
template <class T>
View<T> batch_folded(T* data, int64_t channels, int64_t P) {
  return {data, {P}, {1, P, channels * P}};
}

// C = relu?(row_scale[r] * (A*B) + row_bias[r] + residual (+ C when accumulating)); null terms are left out.
struct GemmEpilogue {
  bool accumulate = false;           // C += ... instead of C = ...
  const float* row_scale = nullptr;  // multiplies every element of row r of A*B
  const float* row_bias = nullptr;   // added to every element of row r
  bool relu = false;                 // max(., 0) last
  const float* residual = nullptr;   // added element-wise; laid out like C (same view, other base)
};

inline constexpr bool gemm_available() {
#ifdef __AVX512F__
  return true;
#else
  return false;
#endif
}

#ifdef __AVX512F__
namespace detail {

inline constexpr int64_t kMR = 8, kNR = 32, kKC = 256, kMC = 128, kNC = 384;

// C[8 x 32] (+)= A[kc x 8]^T B[kc x 32]; A packed k-major with 8 rows, B k-major with 32 columns.
inline void micro_kernel_8x32(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c,
                              int64_t ldc, bool first) {
  __m512 acc[8][2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b + k * 32), b1 = _mm512_load_ps(b + k * 32 + 16);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const __m512 av = _mm512_set1_ps(a[k * 8 + i]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    float* row = c + i * ldc;
    if (!first) {
      acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_load_ps(row));
      acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_load_ps(row + 16));
    }
    _mm512_store_ps(row, acc[i][0]);
    _mm512_store_ps(row + 16, acc[i][1]);
  }
}

// 8x8 transpose: rows r[0..7] (8 floats each, stride ld) -> out[k*8 + i] = r[i][k].
inline void transpose_8x8(const float* src, int64_t ld, float* out) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld), r2 = _mm256_loadu_ps(src + 2 * ld),
         r3 = _mm256_loadu_ps(src + 3 * ld), r4 = _mm256_loadu_ps(src + 4 * ld), r5 = _mm256_loadu_ps(src + 5 * ld),
         r6 = _mm256_loadu_ps(src + 6 * ld), r7 = _mm256_loadu_ps(src + 7 * ld);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE), u2 = _mm256_shuffle_ps(t1, t3, 0x44),
         u3 = _mm256_shuffle_ps(t1, t3, 0xEE), u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_store_ps(out + 0, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_store_ps(out + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_store_ps(out + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_store_ps(out + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_store_ps(out + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_store_ps(out + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_store_ps(out + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_store_ps(out + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// Packs rows [r0, r0+mc) x cols [k0, k0+kc) of A into 8-row panels (k-major), zero padded.
inline void pack_a(const View<const float>& A, int64_t r0, int64_t mc, int64_t k0, int64_t kc, float* out) {
  for (int64_t ip = 0; ip < mc; ip += kMR) {
    float* panel = out + ip * kc;
    const int64_t h = std::min(kMR, mc - ip);
    if (h == kMR && !A.row.folded() && A.row.stride == 1 && !A.col.folded()) {
      // Transposed source (W^T): the 8 rows of one k are contiguous.
      const float* s = A.data + r0 + ip;
      for (int64_t k = 0; k < kc; ++k) _mm256_store_ps(panel + k * kMR, _mm256_loadu_ps(s + (k0 + k) * A.col.stride));
      continue;
    }
    const float* rows[kMR];
    for (int64_t i = 0; i < h; ++i) rows[i] = A.data + A.row.offset(r0 + ip + i);
    int64_t k = 0;
    if (h == kMR && A.col.stride == 1 && !A.row.folded()) {
      // Row-major source: 8x8 transposes over runs of columns that stay inside one fold period.
      const int64_t ld = A.row.stride;
      while (k < kc) {
        const int64_t c = k0 + k;
        const int64_t run = A.col.folded() ? std::min(kc - k, A.col.period - c % A.col.period) : kc - k;
        const float* base = rows[0] + A.col.offset(c);
        int64_t q = 0;
        for (; q + 8 <= run; q += 8) transpose_8x8(base + q, ld, panel + (k + q) * kMR);
        for (; q < run; ++q)
          for (int64_t i = 0; i < kMR; ++i) panel[(k + q) * kMR + i] = base[i * ld + q];
        k += run;
      }
      continue;
    }
    for (int64_t i = 0; i < kMR; ++i) {
      if (i >= h) {
        for (int64_t kk = 0; kk < kc; ++kk) panel[kk * kMR + i] = 0.0f;
        continue;
      }
      const float* rowp = rows[i];
      if (!A.col.folded()) {
        const int64_t st = A.col.stride;
        const float* s = rowp + k0 * st;
        for (int64_t kk = 0; kk < kc; ++kk) panel[kk * kMR + i] = s[kk * st];
      } else {
        // Folded columns: walk the period incrementally.
        int64_t q = k0 / A.col.period, m = k0 % A.col.period;
        for (int64_t kk = 0; kk < kc; ++kk) {
          panel[kk * kMR + i] = rowp[q * A.col.outer + m * A.col.stride];
          if (++m == A.col.period) m = 0, ++q;
        }
      }
    }
  }
}

// Packs rows [k0, k0+kc) x cols [c0, c0+nc) of B into 32-column panels (k-major), zero padded.
inline void pack_b(const View<const float>& B, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
  for (int64_t jp = 0; jp < nc; jp += kNR) {
    float* panel = out + jp * kc;
    const int64_t w = std::min(kNR, nc - jp);
    // Column offsets of this panel (the row part is added per k).
    int64_t off[kNR];
    bool contiguous = w == kNR;
    for (int64_t j = 0; j < w; ++j) {
      off[j] = B.col.offset(c0 + jp + j);
      if (j > 0 && off[j] != off[j - 1] + 1) contiguous = false;
    }
    if (contiguous) {
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = B.data + B.row.offset(k0 + k) + off[0];
        _mm512_store_ps(panel + k * kNR, _mm512_loadu_ps(s));
        _mm512_store_ps(panel + k * kNR + 16, _mm512_loadu_ps(s + 16));
      }
    } else if (!B.row.folded() && B.row.stride == 1) {
      // Transposed source: each column is contiguous along k.
      for (int64_t j = 0; j < kNR; ++j) {
        if (j >= w) {
          for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = 0.0f;
          continue;
        }
        const float* s = B.data + off[j] + k0;
        for (int64_t k = 0; k < kc; ++k) panel[k * kNR + j] = s[k];
      }
    } else if (off[w - 1] - off[0] < (int64_t{1} << 30) && off[0] - off[w - 1] < (int64_t{1} << 30)) {
      // Scattered columns (batch-folded with small planes): two masked gathers per k.
      alignas(64) int32_t rel[kNR] = {};
      for (int64_t j = 0; j < w; ++j) rel[j] = static_cast<int32_t>(off[j] - off[0]);
      const __mmask16 m0 = w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << w) - 1);
      const __mmask16 m1 = w >= 32 ? __mmask16(0xFFFF) : w > 16 ? __mmask16((1u << (w - 16)) - 1) : __mmask16(0);
      const __m512i r0 = _mm512_load_si512(rel), r1 = _mm512_load_si512(rel + 16);
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = B.data + B.row.offset(k0 + k) + off[0];
        _mm512_store_ps(panel + k * kNR, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, r0, s, 4));
        _mm512_store_ps(panel + k * kNR + 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, r1, s, 4));
      }
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = B.data + B.row.offset(k0 + k);
        float* d = panel + k * kNR;
        int64_t j = 0;
        for (; j < w; ++j) d[j] = s[off[j]];
        for (; j < kNR; ++j) d[j] = 0.0f;
      }
    }
  }
}

// Writes the mc x nc tile buffer (row stride ldt) into C at (r0, c0) through the epilogue.
inline void store_tile(const float* tile, int64_t ldt, const View<float>& C, int64_t r0, int64_t mc, int64_t c0,
                       int64_t nc, const GemmEpilogue& ep) {
  // Runs of consecutive destination columns (one per image plane when the batch is folded into
  // the columns), found once per tile: on 1x1 maps every column is its own run.
  struct Run {
    int64_t j, len, off;
  };
  thread_local std::vector<Run> runs;
  runs.clear();
  for (int64_t j = 0; j < nc;) {
    const int64_t c = c0 + j;
    int64_t len = nc - j;
    if (C.col.folded()) len = std::min(len, C.col.period - c % C.col.period);
    runs.push_back({j, len, C.col.offset(c)});
    j += len;
  }
  const int64_t st = C.col.stride;
  const bool plain = !ep.accumulate && !ep.relu && !ep.residual;
  for (int64_t i = 0; i < mc; ++i) {
    const float* t = tile + i * ldt;
    const int64_t row_off = C.row.offset(r0 + i);
    float* rowp = C.data + row_off;
    const float* res_row = ep.residual ? ep.residual + row_off : nullptr;
    const float scale = ep.row_scale ? ep.row_scale[r0 + i] : 1.0f;
    const float bias = ep.row_bias ? ep.row_bias[r0 + i] : 0.0f;
    for (const Run& run : runs) {
      float* d = rowp + run.off;
      const float* r = res_row ? res_row + run.off : nullptr;
      const float* s = t + run.j;
      if (st == 1 && plain) {
        for (int64_t q = 0; q < run.len; ++q) d[q] = s[q] * scale + bias;
      } else if (st == 1) {
        for (int64_t q = 0; q < run.len; ++q) {
          float v = s[q] * scale + bias;
          if (r) v += r[q];
          if (ep.accumulate) v += d[q];
          d[q] = ep.relu && v < 0.0f ? 0.0f : v;
        }
      } else {
        for (int64_t q = 0; q < run.len; ++q) {
          float v = s[q] * scale + bias;
          if (r) v += r[q * st];
          if (ep.accumulate) v += d[q * st];
          d[q * st] = ep.relu && v < 0.0f ? 0.0f : v;
        }
      }
    }
  }
}

template <class U>
U* aligned_scratch(AlignedVector<U>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// One thread's part: tile (r0, c0) of size mc x nc, all of K.
// a_packed: all of A packed once per call (k block k0 at a_packed + k0*Mp), or null to pack here.
template <class PackB>
void gemm_tile(int64_t K, const View<const float>& A, const float* a_packed, int64_t Mp, const PackB& pack_B,
               const View<float>& C, int64_t r0, int64_t mc, int64_t c0, int64_t nc, const GemmEpilogue& ep) {
  thread_local AlignedVector<float> abuf, bbuf, cbuf;
  const int64_t mcp = (mc + kMR - 1) / kMR * kMR, ncp = (nc + kNR - 1) / kNR * kNR;
  float* ap = aligned_scratch(abuf, mcp * kKC);
  float* bp = aligned_scratch(bbuf, ncp * kKC);
  float* cp = aligned_scratch(cbuf, mcp * ncp);
  if (K == 0) std::fill(cp, cp + mcp * ncp, 0.0f);
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const float* a = ap;
    if (a_packed)
      a = a_packed + k0 * Mp + r0 * kc;
    else
      pack_a(A, r0, mc, k0, kc, ap);
    pack_B(k0, kc, c0, nc, bp);
    for (int64_t jp = 0; jp < ncp; jp += kNR)
      for (int64_t ip = 0; ip < mcp; ip += kMR)
        micro_kernel_8x32(kc, a + ip * kc, bp + jp * kc, cp + ip * ncp + jp, ncp, k0 == 0);
  }
  store_tile(cp, ncp, C, r0, mc, c0, nc, ep);
}

}  // namespace detail

// C (M x N) = A (M x K) * B (K x N), then the epilogue, where B is given by its packing routine
// pack_B(k0, kc, c0, nc, out): rows [k0, k0+kc) x cols [c0, c0+nc) into 32-column k-major panels,
// zero padded (conv2d.hpp packs straight from the image: implicit im2col). Parallel over C tiles.
template <class PackB>
void gemm_packed_b(int64_t M, int64_t N, int64_t K, const View<const float>& A, const PackB& pack_B,
                   const View<float>& C, const GemmEpilogue& ep = {}) {
  using namespace detail;
  if (M <= 0 || N <= 0) return;
  int threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel() && 2.0 * M * N * K > 2e6) threads = omp_get_max_threads();
#endif
  // Tiles of at most kMC x kNC, and at least 4 per thread, handed out dynamically: on a shared
  // machine a thread that loses its core for a while then costs its own tiles, not a barrier wait
  // of the whole team. Columns are split first (A is packed once per call, B per tile).
  int64_t mt = (M + kMC - 1) / kMC, nt = (N + kNC - 1) / kNC;
  const int64_t n_panels = (N + kNR - 1) / kNR, m_panels = (M + kMR - 1) / kMR;
  if (threads > 1) {
    while (mt * nt < 4 * threads) {
      if (nt < n_panels && (N / nt >= 64 || mt >= m_panels)) ++nt;
      else if (mt < m_panels) ++mt;
      else break;
    }
  }
  const int64_t mc = (m_panels + mt - 1) / mt * kMR, nc = (n_panels + nt - 1) / nt * kNR;
  mt = (M + mc - 1) / mc;
  nt = (N + nc - 1) / nc;
  const int64_t tiles = mt * nt;
  threads = static_cast<int>(std::min<int64_t>(threads, tiles));
  // When several column tiles share rows of A, pack A once for all of them (the weights of a
  // small-map convolution would otherwise be re-packed by every tile).
  const int64_t Mp = m_panels * kMR;
  float* a_packed = nullptr;
  if (nt > 1 && Mp * K <= (int64_t{8} << 20)) {
    thread_local AlignedVector<float> abuf;
    a_packed = aligned_scratch(abuf, Mp * K);
  }
  const int64_t k_blocks = (K + kKC - 1) / kKC;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    if (a_packed) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t kb = 0; kb < k_blocks; ++kb) {
        const int64_t k0 = kb * kKC;
        pack_a(A, 0, M, k0, std::min(kKC, K - k0), a_packed + k0 * Mp);
      }
    }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = (t / nt) * mc, c0 = (t % nt) * nc;
      gemm_tile(K, A, a_packed, Mp, pack_B, C, r0, std::min(mc, M - r0), c0, std::min(nc, N - c0), ep);
    }
  }
}

// C (M x N) = A (M x K) * B (K x N), then the epilogue. Parallel over C tiles.
inline void gemm(int64_t M, int64_t N, int64_t K, const View<const float>& A, const View<const float>& B,
                 const View<float>& C, const GemmEpilogue& ep = {}) {
  gemm_packed_b(
      M, N, K, A, [&B](int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) { detail::pack_b(B, k0, kc, c0, nc, out); },
      C, ep);
}
#endif  // __AVX512F__

}  // namespace xfer::kernels
