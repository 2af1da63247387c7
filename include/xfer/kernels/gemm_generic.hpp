// The portable GEMM micro-kernel: C[4 x 16] (+)= A-panel^T B-panel in plain C++, which the compiler
// vectorises for whatever the program is built with. It keeps gemm() working on any CPU; the
// convolutions on the generic ISA use Eigen's GEMM instead (faster than this without wide SIMD).
#pragma once

#include <cstdint>

namespace xfer::kernels::detail::generic {

inline constexpr int64_t kMR = 4, kNR = 16;

inline void micro_kernel_4x16(int64_t kc, const float* __restrict a, const float* __restrict b, float* __restrict c,
                              int64_t ldc, bool first) {
  float acc[kMR][kNR] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t i = 0; i < kMR; ++i) {
      const float av = a[k * kMR + i];
#pragma omp simd
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] += av * b[k * kNR + j];
    }
  for (int64_t i = 0; i < kMR; ++i)
    for (int64_t j = 0; j < kNR; ++j) c[i * ldc + j] = first ? acc[i][j] : c[i * ldc + j] + acc[i][j];
}

// Every micro-tile of one packed block (see avx2::micro_block).
inline void micro_block(int64_t kc, const float* a, const float* b, float* c, int64_t mcp, int64_t ncp, bool first) {
  for (int64_t jp = 0; jp < ncp; jp += kNR)
    for (int64_t ip = 0; ip < mcp; ip += kMR) micro_kernel_4x16(kc, a + ip * kc, b + jp * kc, c + ip * ncp + jp, ncp, first);
}

}  // namespace xfer::kernels::detail::generic
