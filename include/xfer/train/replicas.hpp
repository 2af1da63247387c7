// Replicas: what a training loop needs from data parallelism, without depending on MPI.
// dist::DataParallel (xfer::mpi) implements it; train_epoch takes one through its options, so the
// same loop trains on one process or on many.
//
// The one thing to know: every call is collective - all ranks make the same calls in the same
// order - and an error that every rank raises at the same point is an AgreedError, so a program can
// tell "all ranks stop together" (exit normally) from "this rank alone failed" (abort the job).
#pragma once

#include <cstdint>

#include "xfer/core/error.hpp"

namespace xfer::train {

// Thrown identically on every rank (a non-finite loss anywhere): no rank is left waiting.
class AgreedError : public Error {
 public:
  using Error::Error;
};

class Replicas {
 public:
  virtual ~Replicas() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Before backward: every rank reports its mean loss and local batch size. Returns the first rank
  // whose loss is not finite, or -1 when all are finite (then gradients may be averaged).
  virtual int begin_step(double loss, int64_t batch) = 0;
  // After backward, before the optimizer step: returns when the gradients are averaged.
  virtual void end_step() = 0;
  // Sums `n` values over all ranks in place.
  virtual void sum(double* values, int n) = 0;
  // End of an epoch: makes the non-learned state (BatchNorm running statistics) equal on all ranks.
  virtual void end_epoch() = 0;
};

}  // namespace xfer::train
