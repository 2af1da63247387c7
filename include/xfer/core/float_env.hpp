// Subnormal floats off for the duration of xfer's own work. A subnormal (|x| < 1.2e-38 in float)
// operand or result can cost an x86 core a microcode assist of ~100 cycles per instruction, and
// training makes many of them (Adam's moments of parameters whose gradient is zero decay into the
// subnormal range and stay there; see issue 17: the main job ran 2.6x slower). FlushDenormals
// sets FTZ and DAZ on the calling thread and on every thread of its OpenMP team, and puts the
// caller's bits back when it ends (also when an exception leaves the scope), so the caller's own
// code keeps whatever floating-point mode it had. Model/Module forward and backward,
// Optimizer::step and MAML's adapt/accumulate hold one each.
//
//   xfer::set_flush_denormals(false);   // opt out: IEEE subnormals everywhere (or XFER_FLUSH_DENORMALS=0)
//   { xfer::FlushDenormals scope; my_kernel_calls(); }   // protect code that calls kernels directly
//
// The one thing to know: the mode is per thread. Guards nest (the team is set once, by the first
// guard whose work can go parallel), a guard opened inside a parallel region covers just that
// thread, and OpenMP threads created while a guard is open (a region wider than the team it set)
// inherit the flush mode and keep it. Where there are no flush bits (not x86) all of it is a no-op.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "xfer/core/error.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/kernels/float_env.hpp"

namespace xfer {

namespace detail {
// XFER_FLUSH_DENORMALS: unset or empty means on; "1", "on", "true", "yes" on; "0", "off",
// "false", "no" off; anything else is an error.
inline bool parse_flush_setting(const char* s) {
  if (s == nullptr || *s == '\0') return true;
  const std::string v(s);
  if (v == "1" || v == "on" || v == "true" || v == "yes") return true;
  if (v == "0" || v == "off" || v == "false" || v == "no") return false;
  throw Error("XFER_FLUSH_DENORMALS='" + v + "': expected 1/on/true/yes or 0/off/false/no (0 keeps IEEE subnormals)");
}
inline std::atomic<bool>& flush_setting() {
  static std::atomic<bool> on{parse_flush_setting(std::getenv("XFER_FLUSH_DENORMALS"))};
  return on;
}

// Per thread: how many guards are open on it, its flush bits from before the first, and (on the
// thread that opened it) whether an open guard has set the whole team.
struct FlushThreadState {
  int depth = 0;
  kernels::fp_control_t saved = 0;
  bool team_set = false;
};
inline thread_local FlushThreadState flush_thread_state;

inline void flush_enter() {
  FlushThreadState& s = flush_thread_state;
  if (s.depth++ == 0) s.saved = kernels::set_flush_bits(kernels::kFlushDenormals);
}
inline void flush_leave() {
  FlushThreadState& s = flush_thread_state;
  if (s.depth > 0 && --s.depth == 0) kernels::set_flush_bits(s.saved);
}
// Runs f on every thread of the team xfer's parallel regions would get here (just this thread
// inside a parallel region that cannot nest). OpenMP gives a team of the same size the same
// threads in the same order, so the restoring region meets the threads the setting one set.
inline void on_team(int team, void (*f)()) {
#ifdef _OPENMP
  if (team > 1) {
#pragma omp parallel num_threads(team)
    f();
    return;
  }
#endif
  f();
}
// Scopes whose work estimate is below this set only the calling thread. The estimates bound a whole
// pass from above while xfer's loops go parallel one by one above kMinParallelWork, so the margin
// keeps the two OpenMP regions of a team scope (microseconds idle, milliseconds on an overloaded
// machine) away from passes that take less than about a millisecond. A loop of such a pass that
// does go parallel runs its workers' share in the workers' own mode (IEEE unless set otherwise).
inline constexpr int64_t kFlushTeamWork = 64 * kMinParallelWork;

inline int flush_team_size() {
#ifdef _OPENMP
  if (omp_get_active_level() < omp_get_max_active_levels()) return omp_get_max_threads();
#endif
  return 1;
}
}  // namespace detail

// Whether xfer flushes subnormals in its own work (default: yes; XFER_FLUSH_DENORMALS=0 says no).
inline bool flush_denormals_enabled() { return detail::flush_setting().load(std::memory_order_relaxed); }
// Process-wide switch; returns the previous setting. Guards already open keep what they did.
inline bool set_flush_denormals(bool on) { return detail::flush_setting().exchange(on); }

// Scoped FTZ + DAZ on the calling thread and, when the scope's work can go parallel, its OpenMP
// team (see the top of this file).
class FlushDenormals {
 public:
  // The calling thread and its whole team.
  FlushDenormals() : FlushDenormals([] { return std::numeric_limits<int64_t>::max(); }) {}
  // `work` returns an estimate (from above) of the scalar operations in the scope, the measure
  // XFER_OMP_FOR uses: at or below detail::kFlushTeamWork only the calling thread is set and the
  // two OpenMP regions are saved (they cost more than a small model's whole forward). It is
  // called only when the answer matters.
  template <class F>
    requires std::is_invocable_r_v<int64_t, F>
  explicit FlushDenormals(F&& work) {
    if (!kernels::has_flush_control() || !flush_denormals_enabled()) return;
    detail::FlushThreadState& s = detail::flush_thread_state;
    if (!s.team_set) {
      const int team = detail::flush_team_size();
      if (team > 1 && work() > detail::kFlushTeamWork) {
        detail::on_team(team, detail::flush_enter);
        s.team_set = true;
        team_ = team;
        return;
      }
    }
    detail::flush_enter();  // this thread (nested in a scope that set the team, or serial work)
    team_ = 1;
  }
  ~FlushDenormals() {
    if (team_ > 1) {
      detail::on_team(team_, detail::flush_leave);
      detail::flush_thread_state.team_set = false;
    } else if (team_ == 1) {
      detail::flush_leave();
    }
  }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  int team_ = 0;  // 0: did nothing; 1: this thread; more: the team it set
};

}  // namespace xfer
