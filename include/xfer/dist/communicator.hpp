// MPI for xfer (target xfer::mpi): Environment starts and ends MPI for a program, Communicator wraps
// a communicator with the few typed collectives data parallelism needs.
//
// The one thing to know: MPI is called only from the thread that called Environment (the main
// thread; MPI_THREAD_FUNNELED) - OpenMP workers and the loader's prefetch thread never touch it.
// An MPI failure throws xfer::Error naming the call and the rank.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "xfer/core/error.hpp"

namespace xfer::dist {

namespace detail {
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, int>) return MPI_INT;
  else if constexpr (std::is_same_v<T, char>) return MPI_CHAR;
  else static_assert(sizeof(T) == 0, "xfer::dist: no MPI datatype for this type");
}
inline void check(int rc, const char* call, int rank) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(xfer::detail::concat("xfer::dist: ", call, " failed on rank ", rank, ": ", std::string(msg, len)));
}
}  // namespace detail

// RAII for MPI_Init_thread / MPI_Finalize. A program started without mpirun is a world of one.
class Environment {
 public:
  Environment(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;  // someone else owns MPI
    int provided = 0;
    detail::check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", -1);
    owner_ = true;
  }
  Environment() : Environment(dummy_argc_, dummy_argv_) {}
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }
  static int world_size() {
    int n = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    return n;
  }
  // Ends the whole job now (every rank), e.g. after an error only this rank saw: mpirun exits non-zero.
  [[noreturn]] static void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();
  }

 private:
  bool owner_ = false;
  int dummy_argc_ = 0;
  char** dummy_argv_ = nullptr;
};

// An owned duplicate of a communicator (default MPI_COMM_WORLD), so xfer's collectives never mix
// with the application's own messages.
class Communicator {
 public:
  explicit Communicator(MPI_Comm base = MPI_COMM_WORLD) {
    MPI_Comm_rank(base, &rank_);
    MPI_Comm_size(base, &size_);
    detail::check(MPI_Comm_dup(base, &comm_), "MPI_Comm_dup", rank_);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  MPI_Comm handle() const { return comm_; }

  template <class T>
  void allreduce_sum(T* data, int64_t n) const {
    for (int64_t at = 0; at < n; at += kChunk)
      detail::check(MPI_Allreduce(MPI_IN_PLACE, data + at, count(n - at), detail::mpi_type<T>(), MPI_SUM, comm_),
                    "MPI_Allreduce", rank_);
  }
  template <class T>
  T allreduce_max(T v) const {
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, detail::mpi_type<T>(), MPI_MAX, comm_), "MPI_Allreduce", rank_);
    return v;
  }
  template <class T>
  T allreduce_min(T v) const {
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, detail::mpi_type<T>(), MPI_MIN, comm_), "MPI_Allreduce", rank_);
    return v;
  }
  template <class T>
  void broadcast(T* data, int64_t n, int root = 0) const {
    for (int64_t at = 0; at < n; at += kChunk)
      detail::check(MPI_Bcast(data + at, count(n - at), detail::mpi_type<T>(), root, comm_), "MPI_Bcast", rank_);
  }
  // Rank `root`'s string on every rank.
  std::string broadcast(std::string s, int root = 0) const {
    int64_t n = static_cast<int64_t>(s.size());
    broadcast(&n, 1, root);
    s.resize(static_cast<size_t>(n));
    broadcast(s.data(), n, root);
    return s;
  }
  // Throws (on every rank alike) unless all ranks pass the same value.
  void require_same(int64_t v, const std::string& what) const {
    const int64_t lo = allreduce_min(v), hi = allreduce_max(v);
    XFER_CHECK(lo == hi, "xfer::dist: the ranks disagree on ", what, ": values from ", lo, " to ", hi, " (rank ", rank_,
               " has ", v, ")");
  }
  void barrier() const { detail::check(MPI_Barrier(comm_), "MPI_Barrier", rank_); }

  // Starts a non-blocking in-place sum of data[0, n) (n < 2^31); complete it with wait().
  template <class T>
  MPI_Request iallreduce_sum(T* data, int64_t n) const {
    XFER_CHECK(n < kChunk, "xfer::dist: iallreduce_sum of ", n, " values; buckets must stay below 2^31");
    MPI_Request req = MPI_REQUEST_NULL;
    detail::check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), detail::mpi_type<T>(), MPI_SUM, comm_, &req),
                  "MPI_Iallreduce", rank_);
    return req;
  }
  // Drives MPI's progress engine for outstanding requests (returns true when all are complete).
  bool test_all(std::vector<MPI_Request>& reqs) const {
    if (reqs.empty()) return true;
    int done = 0;
    detail::check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall",
                  rank_);
    return done != 0;
  }
  void wait_all(std::vector<MPI_Request>& reqs) const {
    if (reqs.empty()) return;
    detail::check(MPI_Waitall(static_cast<int>(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall", rank_);
  }

 private:
  static constexpr int64_t kChunk = int64_t(1) << 30;
  static int count(int64_t left) { return static_cast<int>(left < kChunk ? left : kChunk); }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};

}  // namespace xfer::dist
