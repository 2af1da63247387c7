// What every meta-learner shares: task targets (labels or tensors), task losses, and the
// evaluation of a query set (loss, and accuracy for labels).
#pragma once

#include <cstdint>
#include <functional>
#include <variant>

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

}  // namespace xfer::meta
