// Parameter initialisers with torchvision's conventions, drawing from an explicit Rng.
#pragma once

#include <cmath>

#include "xfer/core/rng.hpp"
#include "xfer/nn/parameter.hpp"

namespace xfer::nn::init {

// fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field (PyTorch's definition).
template <class T>
int64_t fan_in(const Parameter<T>& p) {
  int64_t rf = 1;
  for (size_t i = 2; i < p.shape.size(); ++i) rf *= p.shape[i];
  return p.shape.size() > 1 ? p.shape[1] * rf : p.shape[0];
}
template <class T>
int64_t fan_out(const Parameter<T>& p) {
  int64_t rf = 1;
  for (size_t i = 2; i < p.shape.size(); ++i) rf *= p.shape[i];
  return p.shape[0] * rf;
}

template <class T>
void constant(Parameter<T>& p, T v) {
  std::fill(p.value, p.value + p.numel, v);
}
template <class T>
void uniform(Parameter<T>& p, double lo, double hi, Rng& rng) {
  rng.fill_uniform(p.value, p.numel, lo, hi);
}
template <class T>
void normal(Parameter<T>& p, double mean, double stddev, Rng& rng) {
  rng.fill_normal(p.value, p.numel, mean, stddev);
}
// kaiming_normal_(mode="fan_out", nonlinearity="relu"): what torchvision's ResNet/VGG use for convs.
template <class T>
void kaiming_normal_fan_out(Parameter<T>& p, Rng& rng) {
  normal(p, 0.0, std::sqrt(2.0 / static_cast<double>(fan_out(p))), rng);
}
// PyTorch's default for Linear/Conv weights: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
template <class T>
void default_weight(Parameter<T>& p, Rng& rng) {
  const double b = 1.0 / std::sqrt(static_cast<double>(fan_in(p)));
  uniform(p, -b, b, rng);
}
// PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the weight's fan_in.
template <class T>
void default_bias(Parameter<T>& bias, int64_t weight_fan_in, Rng& rng) {
  const double b = weight_fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(weight_fan_in)) : 0.0;
  uniform(bias, -b, b, rng);
}

}  // namespace xfer::nn::init
