// The floating-point control bits that decide how subnormal floats are handled: on x86 the
// MXCSR register's FTZ (flush subnormal results to zero) and DAZ (read subnormal inputs as zero)
// bits, which govern every SSE/AVX instruction of the thread.
//
// The one thing to know: the register is per thread, and these functions read and write only the
// calling thread's (xfer/core/float_env.hpp sets it for a whole OpenMP team). On other
// architectures has_flush_control() is false and every function is a no-op.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64) || (defined(__i386__) && defined(__SSE2__)) || \
    (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <xmmintrin.h>
#define XFER_HAS_MXCSR 1
#else
#define XFER_HAS_MXCSR 0
#endif

namespace xfer::kernels {

using fp_control_t = uint32_t;

#if XFER_HAS_MXCSR
inline constexpr fp_control_t kFlushToZero = 0x8000;       // MXCSR.FTZ (bit 15)
inline constexpr fp_control_t kDenormalsAreZero = 0x0040;  // MXCSR.DAZ (bit 6)
#else
inline constexpr fp_control_t kFlushToZero = 0;
inline constexpr fp_control_t kDenormalsAreZero = 0;
#endif
// Both bits: subnormals neither enter nor leave an arithmetic instruction.
inline constexpr fp_control_t kFlushDenormals = kFlushToZero | kDenormalsAreZero;

// True where the flush bits exist (x86 with SSE2); elsewhere the functions below do nothing.
inline constexpr bool has_flush_control() { return XFER_HAS_MXCSR != 0; }

// The calling thread's control register (0 where there is none).
inline fp_control_t fp_control() {
#if XFER_HAS_MXCSR
  return static_cast<fp_control_t>(_mm_getcsr());
#else
  return 0;
#endif
}

// Sets the flush bits of the calling thread's control register to those of `bits` (only the
// kFlushDenormals bits are taken from it); every other control bit and the sticky exception
// flags stay as they are. Returns the register as it was.
inline fp_control_t set_flush_bits(fp_control_t bits) {
#if XFER_HAS_MXCSR
  const fp_control_t cur = fp_control();
  const fp_control_t want = (cur & ~kFlushDenormals) | (bits & kFlushDenormals);
  if (want != cur) _mm_setcsr(want);
  return cur;
#else
  (void)bits;
  return 0;
#endif
}

}  // namespace xfer::kernels
