// Parameter<T>: one learnable tensor of a module (value, gradient, shape, trainable flag).
// `trainable` is the user's choice (freeze / unfreeze, the optimizers skip frozen tensors);
// `masked` is a temporary mask that an algorithm sets for a scope and clears again (meta::MAML's
// inner steps need gradients of the adapted parameters only). Backward computes a gradient exactly
// when needs_grad(): trainable and not masked.
// Before the model is flattened each parameter owns its storage; flatten_parameters() moves all
// of them into one contiguous arena (values and gradients as two buffers), after which `value`
// and `grad` point into it. MAML rebinds the pointers to a buffer of fast weights with the same
// layout, which is why layers always read parameters through these pointers.
#pragma once

#include <algorithm>
#include <string>

#include "xfer/core/tensor.hpp"

namespace xfer::nn {

template <class T>
struct Parameter {
  std::string local_name;  // "weight"; the full dotted name comes from the module tree
  Shape shape;
  int64_t numel = 0;
  T* value = nullptr;
  T* grad = nullptr;
  bool trainable = true;
  bool masked = false;  // never set by users: see the comment at the top
  int64_t offset = -1;  // position in the arena, -1 before flattening

  // Storage used before the parameter is adopted by an arena.
  AlignedVector<T> own_value, own_grad;

  Parameter(std::string name, Shape s) : local_name(std::move(name)), shape(std::move(s)) {
    numel = shape_numel(shape);
    own_value.assign(static_cast<size_t>(numel), T(0));
    own_grad.assign(static_cast<size_t>(numel), T(0));
    value = own_value.data();
    grad = own_grad.data();
  }
  Parameter(const Parameter&) = delete;
  Parameter& operator=(const Parameter&) = delete;

  bool needs_grad() const { return trainable && !masked; }
  void zero_grad() { std::fill(grad, grad + numel, T(0)); }
  typename Tensor<T>::ArrayMap value_array() { return typename Tensor<T>::ArrayMap(value, numel); }
  typename Tensor<T>::ArrayMap grad_array() { return typename Tensor<T>::ArrayMap(grad, numel); }
};

// A parameter with its full dotted name ("layer1.0.conv1.weight").
template <class T>
struct NamedParameter {
  std::string name;
  Parameter<T>* param;
};

// A state tensor that is saved but not learned (BatchNorm running statistics). Exactly one of
// `tensor` and `counter` is set; `counter` is the int64 num_batches_tracked.
template <class T>
struct Buffer {
  std::string local_name;
  Tensor<T>* tensor = nullptr;
  int64_t* counter = nullptr;
};

template <class T>
struct NamedBuffer {
  std::string name;
  Buffer<T> buffer;
};

}  // namespace xfer::nn
