// Meta-training over MPI: the tasks of a meta-batch are split across ranks, each rank accumulates
// the meta-gradients of its own tasks, and one allreduce sums them, so every rank takes the same
// outer step as one process running the whole meta-batch.
//
//   const auto mine = dist::split_tasks(meta_batch, comm.rank(), comm.size());
//   maml.zero_grad();
//   for (int64_t t = mine.begin; t < mine.end; ++t)        // episode ids stay global: task t is
//     maml.accumulate(sx[t], sy[t], qx[t], qy[t], 1.0 / meta_batch);  // the same task on any rank
//   dist::allreduce_gradients(comm, maml.parameters());
//   opt.step();
//
// The one thing to know: weight each task by 1 / (the whole meta-batch), not by the rank's share;
// the allreduce is a sum. A rank may get no task (meta-batch smaller than the world); it still
// takes part in the allreduce with zero gradients.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "xfer/core/tensor.hpp"
#include "xfer/dist/communicator.hpp"
#include "xfer/nn/parameter.hpp"

namespace xfer::dist {

// Tasks [begin, end) of a meta-batch that one rank runs: contiguous, sizes differ by at most one.
struct TaskRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

inline TaskRange split_tasks(int64_t tasks, int rank, int world) {
  XFER_CHECK(tasks >= 0 && world >= 1 && rank >= 0 && rank < world, "dist::split_tasks: ", tasks,
             " tasks for rank ", rank, " of ", world, " (expected tasks >= 0 and 0 <= rank < world)");
  const int64_t base = tasks / world, extra = tasks % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

// Sums the gradients of the trainable parameters over all ranks (one allreduce of a packed buffer;
// frozen parameters are not sent). Every rank must pass the same parameters in the same order.
template <class T>
void allreduce_gradients(const Communicator& comm, const std::vector<nn::Parameter<T>*>& params) {
  int64_t n = 0;
  for (const auto* p : params)
    if (p->trainable) n += p->numel;
  AlignedVector<T> buf(static_cast<size_t>(n));
  int64_t at = 0;
  for (const auto* p : params)
    if (p->trainable) at = std::copy(p->grad, p->grad + p->numel, buf.begin() + at) - buf.begin();
  comm.allreduce_sum(buf.data(), n);
  at = 0;
  for (auto* p : params)
    if (p->trainable) {
      std::copy(buf.begin() + at, buf.begin() + at + p->numel, p->grad);
      at += p->numel;
    }
}

}  // namespace xfer::dist
