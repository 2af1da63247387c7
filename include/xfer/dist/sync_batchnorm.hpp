// Synchronized BatchNorm: every BatchNorm2d of a model takes its batch statistics (and the sums its
// backward needs) over the batches of all ranks, as if one process saw the global batch. Costs two
// small blocking allreduces per BN layer in forward and one in backward (2C + 1 and 2C doubles).
// DataParallelOptions{.sync_batchnorm = true} turns it on; the default is local statistics.
#pragma once

#include "xfer/dist/communicator.hpp"
#include "xfer/nn/batchnorm.hpp"

namespace xfer::dist {

// Returns how many BatchNorm2d layers were switched (on = false switches them back to local).
template <class T>
int enable_sync_batchnorm(nn::Module<T>& model, const Communicator& comm, bool on = true) {
  int n = 0;
  for (auto& [name, m] : model.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm2d<T>*>(m)) {
      if (on) bn->set_cross_replica_sum([&comm](double* v, int64_t k) { comm.allreduce_sum(v, k); });
      else bn->set_cross_replica_sum({});
      ++n;
    }
  return n;
}

}  // namespace xfer::dist
