// The one place that pulls in the x86 intrinsics, plus the target attributes the per-ISA kernels
// carry. A function marked XFER_TARGET_AVX2 / XFER_TARGET_AVX512 is compiled for that ISA whatever
// the program's own flags (no -march needed), and may only be called once core/cpu.hpp's
// active_isa() says so. Lambdas inside such a function do not inherit the attribute: write it after
// their parameter list when they use intrinsics.
//
// XFER_HAVE_AVX2_KERNELS / XFER_HAVE_AVX512_KERNELS are 1 where the compiler can build those paths
// (GCC and Clang on x86-64); elsewhere only the generic kernels exist.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "xfer/core/cpu.hpp"

#if XFER_X86 && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define XFER_HAVE_AVX2_KERNELS 1
#define XFER_HAVE_AVX512_KERNELS 1
#define XFER_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define XFER_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#else
#define XFER_HAVE_AVX2_KERNELS 0
#define XFER_HAVE_AVX512_KERNELS 0
#define XFER_TARGET_AVX2
#define XFER_TARGET_AVX512
#endif

#if XFER_HAVE_AVX2_KERNELS
namespace xfer::kernels::simd {

// 8x8 transpose: rows src[i * ld .. + 8] -> out[k * 8 + i] (out 32-byte aligned).
XFER_TARGET_AVX2 inline void transpose_8x8(const float* src, int64_t ld, float* out) {
  __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld), r2 = _mm256_loadu_ps(src + 2 * ld),
         r3 = _mm256_loadu_ps(src + 3 * ld), r4 = _mm256_loadu_ps(src + 4 * ld), r5 = _mm256_loadu_ps(src + 5 * ld),
         r6 = _mm256_loadu_ps(src + 6 * ld), r7 = _mm256_loadu_ps(src + 7 * ld);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE), u2 = _mm256_shuffle_ps(t1, t3, 0x44),
         u3 = _mm256_shuffle_ps(t1, t3, 0xEE), u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(out + 0, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(out + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(out + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(out + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(out + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
}

}  // namespace xfer::kernels::simd
#endif

namespace xfer::kernels {

// How many kernel calls each ISA's path has served in this process (tests assert that every
// available ISA really ran).
inline std::atomic<int64_t>& isa_path_calls(Isa isa) {
  static std::array<std::atomic<int64_t>, 3> calls{};
  return calls[static_cast<size_t>(isa)];
}
namespace detail {
inline void note_path(Isa isa) { isa_path_calls(isa).fetch_add(1, std::memory_order_relaxed); }
}  // namespace detail

}  // namespace xfer::kernels
