// What every meta-learner shares: task targets (labels or tensors), task losses, and the
// evaluation of a query set (loss, and accuracy for labels).
#pragma once

#include <cstdint>
#include <functional>
#include <variant>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/nn/loss.hpp"

namespace xfer::meta {

// What a task's targets are: class labels (classification) or a tensor shaped like the prediction.
template <class T>
using Target = std::variant<nn::Labels, Tensor<T>>;

// A task loss: mean loss and its gradient with respect to the prediction.
template <class T>
using TaskLoss = std::function<nn::LossResult<T>(const Tensor<T>& prediction, const Target<T>& target)>;

// Loss and, for label targets, the number of correct argmax predictions.
struct Evaluation {
  double loss = 0;
  int64_t correct = -1;  // -1 for tensor targets
  int64_t count = 0;
  double accuracy() const { return count > 0 && correct >= 0 ? static_cast<double>(correct) / count : 0.0; }
};

// The task loss of a prediction: `loss` when set, else cross-entropy for labels (checked against
// the number of outputs) and MSE for tensor targets. `who`/`which` name the caller and the set
// ("support", "query") in errors.
template <class T>
nn::LossResult<T> task_loss(const TaskLoss<T>& loss, const Tensor<T>& pred, const Target<T>& y, const char* who,
                            const char* which) {
  if (loss) return loss(pred, y);
  if (const auto* labels = std::get_if<nn::Labels>(&y)) {
    XFER_CHECK(pred.ndim() == 2, who, ": ", which, " predictions must be [N, classes] logits for label targets, got ",
               shape_str(pred.shape()));
    const int64_t N = pred.dim(0), C = pred.dim(1);
    XFER_CHECK(static_cast<int64_t>(labels->size()) == N, who, ": ", labels->size(), " ", which,
               " labels for a batch of ", N);
    for (int64_t i = 0; i < N; ++i) {
      const int32_t l = (*labels)[static_cast<size_t>(i)];
      XFER_CHECK(l >= 0 && l < C, who, ": ", which, " label ", l, " of sample ", i, " is outside [0, ", C,
                 ") (the model has ", C, " outputs; remap episode labels to 0..N-1)");
    }
    return nn::cross_entropy(pred, *labels);
  }
  return nn::mse_loss(pred, std::get<Tensor<T>>(y));
}

// Loss (and accuracy for labels) of a prediction, with task_loss's choice of loss.
template <class T>
Evaluation evaluate_task(const TaskLoss<T>& loss, const Tensor<T>& pred, const Target<T>& y, const char* who,
                         const char* which) {
  Evaluation e;
  e.loss = static_cast<double>(task_loss(loss, pred, y, who, which).loss);
  e.count = pred.ndim() >= 1 ? pred.dim(0) : 0;
  if (const auto* labels = std::get_if<nn::Labels>(&y)) e.correct = nn::count_correct(pred, *labels);
  return e;
}

}  // namespace xfer::meta
