// Packed single-precision GEMM: C (+)= A * B with an epilogue (per-row scale and bias, residual,
// ReLU), where A, B and C are strided views (view.hpp) that may fold the batch into a dimension.
// One driver (tiles, packing, threads) runs the micro-kernel of the ISA chosen at run time:
// AVX-512 (8x32), AVX2+FMA (6x16) or portable C++ (4x16); see core/cpu.hpp for the choice.
//
// The one thing to know: it is parallel inside (one OpenMP region over C tiles, each thread packs
// its own panels) and must not be called from inside another parallel region: it then runs
// serially.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/kernels/gemm_avx2.hpp"
#include "xfer/kernels/gemm_avx512.hpp"
#include "xfer/kernels/gemm_generic.hpp"
#include "xfer/kernels/im2col_avx512.hpp"
#include "xfer/kernels/pack.hpp"
#include "xfer/kernels/view.hpp"

namespace xfer::kernels {

namespace detail {

// The per-ISA policies the driver runs: panel shape, blocking, micro-kernel and packers.
template <int64_t MR_, int64_t NR_>
struct PortablePacking {
  static constexpr int64_t MR = MR_, NR = NR_, KC = 256, MC = 128, NC = 384;
  static void pack_a(const View<const float>& A, int64_t r0, int64_t mc, int64_t k0, int64_t kc, float* out) {
    pack::a<MR>(A, r0, mc, k0, kc, out);
  }
  static void pack_b(const View<const float>& B, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
    pack::b<NR>(B, k0, kc, c0, nc, out);
  }
  static void pack_im2col(const Conv2dGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
    pack::im2col_b<NR>(g, x, k0, kc, c0, nc, out);
  }
  static void pack_im2col_t(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc, float* out) {
    pack::im2col_t_b<NR>(g, x, r0, rc, c0, nc, out);
  }
};

struct GenericGemm : PortablePacking<generic::kMR, generic::kNR> {
  static constexpr Isa isa = Isa::generic;
  static void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool first) {
    generic::micro_kernel_4x16(kc, a, b, c, ldc, first);
  }
  // All micro-tiles of a packed block (mcp x ncp), in one call compiled for this ISA.
  static void block(int64_t kc, const float* a, const float* b, float* c, int64_t mcp, int64_t ncp, bool first) {
    generic::micro_block(kc, a, b, c, mcp, ncp, first);
  }
};

#if XFER_HAVE_AVX2_KERNELS
struct Avx2Gemm : PortablePacking<avx2::kMR, avx2::kNR> {
  static constexpr Isa isa = Isa::avx2;
  static void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool first) {
    avx2::micro_kernel_6x16(kc, a, b, c, ldc, first);
  }
  // All micro-tiles of a packed block (mcp x ncp), in one call compiled for this ISA.
  static void block(int64_t kc, const float* a, const float* b, float* c, int64_t mcp, int64_t ncp, bool first) {
    avx2::micro_block(kc, a, b, c, mcp, ncp, first);
  }
  static void pack_im2col_t(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc, float* out) {
    avx2::pack_im2col_t_b(g, x, r0, rc, c0, nc, out);
  }
};
#endif

#if XFER_HAVE_AVX512_KERNELS
struct Avx512Gemm : PortablePacking<avx512::kMR, avx512::kNR> {
  static constexpr Isa isa = Isa::avx512;
  static void micro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool first) {
    avx512::micro_kernel_8x32(kc, a, b, c, ldc, first);
  }
  // All micro-tiles of a packed block (mcp x ncp), in one call compiled for this ISA.
  static void block(int64_t kc, const float* a, const float* b, float* c, int64_t mcp, int64_t ncp, bool first) {
    avx512::micro_block(kc, a, b, c, mcp, ncp, first);
  }
  static void pack_a(const View<const float>& A, int64_t r0, int64_t mc, int64_t k0, int64_t kc, float* out) {
    avx512::pack_a(A, r0, mc, k0, kc, out);
  }
  static void pack_b(const View<const float>& B, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
    avx512::pack_b(B, k0, kc, c0, nc, out);
  }
  static void pack_im2col(const Conv2dGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) {
    avx512::pack_im2col_b(g, x, k0, kc, c0, nc, out);
  }
  static void pack_im2col_t(const Conv2dGeometry& g, const float* x, int64_t r0, int64_t rc, int64_t c0, int64_t nc, float* out) {
    avx512::pack_im2col_t_b(g, x, r0, rc, c0, nc, out);
  }
};
#endif

// Calls f(Policy{}) with the GEMM policy of `isa` (counted in isa_path_calls).
template <class F>
decltype(auto) with_gemm_kernels(Isa isa, F&& f) {
#if XFER_HAVE_AVX512_KERNELS
  if (isa == Isa::avx512) return note_path(isa), f(Avx512Gemm{});
#endif
#if XFER_HAVE_AVX2_KERNELS
  if (isa == Isa::avx2) return note_path(isa), f(Avx2Gemm{});
#endif
  return note_path(Isa::generic), f(GenericGemm{});
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
template <class Kern, class PackB>
void gemm_tile(int64_t K, const View<const float>& A, const float* a_packed, int64_t Mp, const PackB& pack_B,
               const View<float>& C, int64_t r0, int64_t mc, int64_t c0, int64_t nc, const GemmEpilogue& ep) {
  constexpr int64_t kMR = Kern::MR, kNR = Kern::NR, kKC = Kern::KC;
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
      Kern::pack_a(A, r0, mc, k0, kc, ap);
    pack_B(k0, kc, c0, nc, bp);
    Kern::block(kc, a, bp, cp, mcp, ncp, k0 == 0);
  }
  store_tile(cp, ncp, C, r0, mc, c0, nc, ep);
}

// C (M x N) = A (M x K) * B (K x N), then the epilogue, where B is given by its packing routine
// pack_B(k0, kc, c0, nc, out): rows [k0, k0+kc) x cols [c0, c0+nc) into Kern::NR-column k-major panels,
// zero padded (conv2d.hpp packs straight from the image: implicit im2col), with the micro-kernel and
// packers of Kern (one of the per-ISA policies above). Parallel over C tiles.
template <class Kern, class PackB>
void gemm_packed_b_with(int64_t M, int64_t N, int64_t K, const View<const float>& A, const PackB& pack_B,
                   const View<float>& C, const GemmEpilogue& ep = {}) {
  constexpr int64_t kMR = Kern::MR, kNR = Kern::NR, kKC = Kern::KC, kMC = Kern::MC, kNC = Kern::NC;
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
        Kern::pack_a(A, 0, M, k0, std::min(kKC, K - k0), a_packed + k0 * Mp);
      }
    }
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t r0 = (t / nt) * mc, c0 = (t % nt) * nc;
      gemm_tile<Kern>(K, A, a_packed, Mp, pack_B, C, r0, std::min(mc, M - r0), c0, std::min(nc, N - c0), ep);
    }
  }
}

// C (M x N) = A (M x K) * B (K x N), then the epilogue, with Kern's micro-kernel and packers.
template <class Kern>
void gemm_with(int64_t M, int64_t N, int64_t K, const View<const float>& A, const View<const float>& B,
               const View<float>& C, const GemmEpilogue& ep = {}) {
  gemm_packed_b_with<Kern>(
      M, N, K, A, [&B](int64_t k0, int64_t kc, int64_t c0, int64_t nc, float* out) { Kern::pack_b(B, k0, kc, c0, nc, out); },
      C, ep);
}

}  // namespace detail

// C (M x N) = A (M x K) * B (K x N), then the epilogue, with the micro-kernel of the active ISA.
// Parallel over C tiles.
inline void gemm(int64_t M, int64_t N, int64_t K, const View<const float>& A, const View<const float>& B,
                 const View<float>& C, const GemmEpilogue& ep = {}) {
  detail::with_gemm_kernels(active_isa(), [&](auto kern) { detail::gemm_with<decltype(kern)>(M, N, K, A, B, C, ep); });
}

}  // namespace xfer::kernels
