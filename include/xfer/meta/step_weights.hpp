// msl_weights: MAML++'s multi-step loss importance (Antoniou et al. 2019, "How to train your MAML"):
// the query loss after every inner step counts, with weights that start equal (1/k each) and
// anneal towards the final step's loss, so early meta-training gets gradients from every step.
//
// The one thing to know: the schedule is the reference implementation's
// (get_per_step_loss_importance_vector) with "epoch / multi_step_loss_num_epochs" replaced by
// iteration / anneal_iterations: non-final weights fall linearly to 0.03 / k, the final one rises
// to 1 - (k - 1) * 0.03 / k. anneal_iterations = 0 gives the plain MAML loss (final step only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "xfer/core/error.hpp"

namespace xfer::meta {

// Weights of the query losses after 1, 2, ..., k inner steps at meta-iteration `iteration`.
inline std::vector<double> msl_weights(int k, int64_t iteration, int64_t anneal_iterations) {
  XFER_CHECK(k >= 0 && iteration >= 0 && anneal_iterations >= 0, "msl_weights: need k, iteration and ",
             "anneal_iterations >= 0, got ", k, ", ", iteration, ", ", anneal_iterations);
  std::vector<double> w(static_cast<size_t>(k), 0.0);
  if (k == 0) return w;
  if (anneal_iterations == 0 || k == 1) {
    w.back() = 1.0;
    return w;
  }
  const double kk = k, t = static_cast<double>(iteration) / static_cast<double>(anneal_iterations);
  const double decay = 1.0 / kk, floor = 0.03 / kk;
  for (int i = 0; i + 1 < k; ++i) w[static_cast<size_t>(i)] = std::max(1.0 / kk - t * decay, floor);
  w.back() = std::min(1.0 / kk + t * (kk - 1) * decay, 1.0 - (kk - 1) * floor);
  return w;
}

}  // namespace xfer::meta
