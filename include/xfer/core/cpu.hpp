// Which instruction set the kernels run: detected once from CPUID (and XGETBV, so the operating
// system must also save the wide registers), independent of the flags the program was compiled
// with. Kernels compiled for several ISAs through target attributes (kernels/simd.hpp) ask
// active_isa() and run the best path the CPU has.
//
//   XFER_ISA=generic|avx2|avx512   forces a lower ISA (for tests and when chasing a bug). Asking
//                                  for an ISA the CPU lacks, or a name not in this list, throws
//                                  xfer::Error on first use: a run never silently tests another path.
//   xfer::set_isa(Isa) / reset_isa()   the same from code (tests loop over available_isas()).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define XFER_X86 1
#else
#define XFER_X86 0
#endif

#include "xfer/core/error.hpp"

namespace xfer {

// Ordered: each ISA's kernels need everything the lower ones need.
enum class Isa : int {
  generic = 0,  // portable C++ (Eigen for the convolution GEMMs), whatever the compiler flags allow
  avx2 = 1,     // AVX2 + FMA (Haswell, Zen and later)
  avx512 = 2,   // AVX-512 F/VL/BW/DQ (Skylake-SP and later, Zen 4)
};

inline const char* isa_name(Isa i) {
  switch (i) {
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    default: return "generic";
  }
}

struct CpuInfo {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD", ... (empty off x86)
  std::string brand;   // "AMD EPYC", ...
  bool avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512vl = false, avx512bw = false, avx512dq = false;
  bool os_ymm = false;  // XCR0: the OS saves YMM state
  bool os_zmm = false;  // XCR0: the OS saves opmask and ZMM state
  Isa best = Isa::generic;  // highest ISA whose kernels may run here
};

namespace detail {

#if XFER_X86
inline uint64_t read_xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

inline CpuInfo detect_cpu() {
  CpuInfo c;
#if XFER_X86
  unsigned a = 0, b = 0, cx = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  for (int i = 0; i < 4; ++i) {
    vendor[i] = static_cast<char>(b >> (8 * i));
    vendor[4 + i] = static_cast<char>(d >> (8 * i));
    vendor[8 + i] = static_cast<char>(cx >> (8 * i));
  }
  c.vendor = vendor;
  if (__get_cpuid(0x80000000u, &a, &b, &cx, &d) && a >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned leaf = 0; leaf < 3; ++leaf) {
      unsigned r[4];
      __get_cpuid(0x80000002u + leaf, &r[0], &r[1], &r[2], &r[3]);
      for (int q = 0; q < 4; ++q)
        for (int k = 0; k < 4; ++k) brand[leaf * 16 + q * 4 + k] = static_cast<char>(r[q] >> (8 * k));
    }
    c.brand = brand;
    while (!c.brand.empty() && c.brand.back() == ' ') c.brand.pop_back();
    while (!c.brand.empty() && c.brand.front() == ' ') c.brand.erase(0, 1);
  }
  __get_cpuid(1, &a, &b, &cx, &d);
  const bool osxsave = cx & (1u << 27);
  c.avx = cx & (1u << 28);
  c.fma = cx & (1u << 12);
  if (osxsave) {
    const uint64_t xcr0 = read_xcr0();
    c.os_ymm = (xcr0 & 0x6) == 0x6;     // SSE and AVX state
    c.os_zmm = (xcr0 & 0xE6) == 0xE6;   // plus opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (max_leaf >= 7) {
    __get_cpuid_count(7, 0, &a, &b, &cx, &d);
    c.avx2 = b & (1u << 5);
    c.avx512f = b & (1u << 16);
    c.avx512dq = b & (1u << 17);
    c.avx512bw = b & (1u << 30);
    c.avx512vl = b & (1u << 31);
  }
  if (c.avx && c.avx2 && c.fma && c.os_ymm) c.best = Isa::avx2;
  if (c.best == Isa::avx2 && c.avx512f && c.avx512vl && c.avx512bw && c.avx512dq && c.os_zmm) c.best = Isa::avx512;
#endif
  return c;
}

// The ISA that XFER_ISA's value asks for, checked against what the CPU has (null: no request).
inline Isa isa_from_env(const char* value, Isa best) {
  if (!value || !*value) return best;
  const std::string_view v(value);
  Isa want;
  if (v == "generic") want = Isa::generic;
  else if (v == "avx2") want = Isa::avx2;
  else if (v == "avx512") want = Isa::avx512;
  else throw Error(concat("XFER_ISA='", v, "' is not an ISA xfer knows; expected generic, avx2 or avx512"));
  XFER_CHECK(want <= best, "XFER_ISA=", v, " asks for an ISA this CPU does not support (best here: ", isa_name(best),
             "); use one of the ISAs up to ", isa_name(best));
  return want;
}

inline std::atomic<int>& isa_override() {
  static std::atomic<int> v{-1};
  return v;
}

}  // namespace detail

// What CPUID says about this machine (detected once).
inline const CpuInfo& cpu_info() {
  static const CpuInfo info = detail::detect_cpu();
  return info;
}

// The ISA the kernels run now: set_isa()'s choice, else XFER_ISA, else the best the CPU has.
inline Isa active_isa() {
  const int o = detail::isa_override().load(std::memory_order_relaxed);
  if (o >= 0) return static_cast<Isa>(o);
  static const Isa from_env = detail::isa_from_env(std::getenv("XFER_ISA"), cpu_info().best);
  return from_env;
}

// Every ISA this CPU can run, lowest first (generic is always there).
inline std::vector<Isa> available_isas() {
  std::vector<Isa> v;
  for (int i = 0; i <= static_cast<int>(cpu_info().best); ++i) v.push_back(static_cast<Isa>(i));
  return v;
}

// Forces the kernels onto `isa` (at most cpu_info().best) until reset_isa(); overrides XFER_ISA.
// Not meant to be flipped while kernels run on other threads.
inline void set_isa(Isa isa) {
  XFER_CHECK(isa <= cpu_info().best, "set_isa(", isa_name(isa), "): this CPU supports at most ",
             isa_name(cpu_info().best));
  detail::isa_override().store(static_cast<int>(isa), std::memory_order_relaxed);
}
inline void reset_isa() { detail::isa_override().store(-1, std::memory_order_relaxed); }

// One line for logs and benchmarks: "avx2 (best avx2, AMD EPYC)".
inline std::string isa_summary() {
  const CpuInfo& c = cpu_info();
  return detail::concat(isa_name(active_isa()), " (best ", isa_name(c.best), ", ", c.brand.empty() ? c.vendor : c.brand, ")");
}

}  // namespace xfer
