// Threading: one knob (set_num_threads / XFER_NUM_THREADS) for OpenMP, and Eigen's GEMM runs on
// the same OpenMP threads. xfer never calls Eigen products from inside its own parallel regions,
// so there is exactly one level of parallelism and no oversubscription.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <Eigen/Core>

namespace xfer {

inline void set_num_threads(int n) {
  if (n < 1) n = 1;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
}

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Reads XFER_NUM_THREADS if set (returns true when it applied a value).
inline bool threads_from_env() {
  if (const char* s = std::getenv("XFER_NUM_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) {
      set_num_threads(n);
      return true;
    }
  }
  return false;
}

// Calls f(first, count) on consecutive chunks of at most `chunk` items that cover [0, n): the
// kernels' loop over groups of images whose column buffers fit a memory budget.
template <class F>
void for_each_chunk(int64_t n, int64_t chunk, F&& f) {
  if (chunk < 1) chunk = 1;
  for (int64_t first = 0; first < n; first += chunk) f(first, n - first < chunk ? n - first : chunk);
}

namespace detail {
// Loops with less total work than this stay serial: thread start-up costs more than they save.
inline constexpr int64_t kMinParallelWork = 1 << 15;
}  // namespace detail

}  // namespace xfer

// Parallel-for over [0, n) when the total work is worth it; `work` is an estimate of scalar ops.
#ifdef _OPENMP
#define XFER_PRAGMA(x) _Pragma(#x)
#define XFER_OMP_FOR(work) XFER_PRAGMA(omp parallel for schedule(static) if ((work) > ::xfer::detail::kMinParallelWork))
#else
#define XFER_OMP_FOR(work)
#endif
