// MAMLOptions: what meta::MAML does (inner steps and rates, order, ANIL selector, Meta-SGD, the
// MAML++ options) and TaskResult, what one task of meta-training reports.
// The one thing to know: the MAML++ schedules (multi-step loss annealing, derivative-order
// annealing) are driven by MAML::set_iteration(); set_schedule() changes their lengths later.
#pragma once

#include <cstdint>
#include <vector>

#include "xfer/meta/task.hpp"
#include "xfer/nn/selector.hpp"

namespace xfer::meta {

// Inner learning rate of the parameters a selector matches (first matching group wins).
struct InnerLrGroup {
  nn::Selector select;
  double lr = 0.01;
};

template <class T>
struct MAMLOptions {
  double inner_lr = 0.01;  // alpha for adapted parameters no group matches
  int inner_steps = 1;     // k inner SGD steps in adapt() and accumulate()
  bool first_order = false;
  // Meta-SGD: alpha becomes a per-element parameter (inner_lrs()) trained by the outer optimizer.
  bool learn_inner_lr = false;
  // Which parameters the inner loop moves; nn::Selector("fc") gives ANIL. The meta-gradient still
  // flows to every trainable parameter.
  nn::Selector adapt = nn::all();
  std::vector<InnerLrGroup> inner_lr_groups = {};
  // Empty: cross-entropy for label targets, mean squared error for tensor targets.
  TaskLoss<T> loss = {};
  // Relative step h of the Hessian-vector differences; 0 picks 3e-7 for double, 1e-4 for float.
  double hvp_step = 0;
  // ---- MAML++ ----
  // Multi-step loss: the objective is sum_j w_j L_query(theta_j) over the k inner steps, with the
  // weights of msl_weights(k, iteration, msl_anneal_iterations) (set_iteration) or
  // set_step_loss_weights(). Off: the final step's query loss only.
  bool multi_step_loss = false;
  int64_t msl_anneal_iterations = 0;
  // LSLR: one learned inner learning rate per parameter tensor and inner step (step_lrs(), shape
  // [k, tensors], initialised from inner_lr / inner_lr_groups), trained by the outer optimizer.
  // adapt() with more than k steps keeps using the last step's rates.
  bool learn_step_lrs = false;
  // Separate BatchNorm running statistics per inner step (see the header comment).
  bool per_step_bn_stats = false;
  // Let inner-loop forwards update the model's own BatchNorm running statistics (off: untouched).
  bool update_bn_stats = false;
  // Derivative-order annealing: first order while set_iteration()'s iteration is below this.
  int64_t first_order_iterations = 0;
};

struct TaskResult {
  std::vector<double> support_losses;  // before each inner step
  Evaluation query;                    // after adaptation
  double objective = 0;                // the (multi-step) loss whose gradient was accumulated
};

}  // namespace xfer::meta
