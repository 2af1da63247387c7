// Test helper: run a check once per ISA this CPU supports, asserting that each ISA's kernels
// really served calls (a test cannot silently exercise one path only).
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>

#include "xfer/core/cpu.hpp"
#include "xfer/kernels/simd.hpp"

namespace xfer::test {

// Runs body() once per ISA this CPU supports (XFER_ISA does not restrict it) and checks that each
// run went through the kernel path path_of(isa) (the ISA itself unless a kernel has no path of its
// own for it); returns how many ISAs ran.
template <class F, class Path = Isa (*)(Isa)>
int for_each_isa(F&& body, Path path_of = [](Isa isa) { return isa; }) {
  int ran = 0;
  for (Isa isa : available_isas()) {
    INFO("ISA " << isa_name(isa));
    set_isa(isa);
    const Isa path = path_of(isa);
    const int64_t before = kernels::isa_path_calls(path).load();
    body();
    CHECK(kernels::isa_path_calls(path).load() > before);
    ++ran;
  }
  reset_isa();
  // CI machines have AVX2 + FMA; XFER_EXPECT_ISA=avx2 turns a CPU without it (or a detection bug)
  // into a failure instead of a run that quietly tested the generic path alone.
  if (const char* want = std::getenv("XFER_EXPECT_ISA")) {
    const Isa need = detail::isa_from_env(want, Isa::avx512);
    CHECK(static_cast<int>(cpu_info().best) >= static_cast<int>(need));
    CHECK(ran >= static_cast<int>(need) + 1);
  }
  CHECK(ran == static_cast<int>(cpu_info().best) + 1);
  return ran;
}

}  // namespace xfer::test
