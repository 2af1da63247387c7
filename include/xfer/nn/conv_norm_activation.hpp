// conv_norm_activation(): torchvision's Conv2dNormActivation (ops/misc.py) as a Sequential of
// "0" Conv2d (no bias, padding (k - 1) / 2 * dilation), "1" BatchNorm2d (the model's eps and
// momentum) and "2" the activation (none for a linear projection), so parameter names match
// torchvision's (features.0.0.weight, features.0.1.running_mean, ...). Conv and BN always run as one
// nn::ConvBnAct unit; a ReLU joins the unit, Hardswish / SiLU run after it.
#pragma once

#include <memory>

#include "xfer/nn/activations.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::nn {

struct ConvNormActivationOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_size = 3;
  int64_t stride = 1;
  int64_t groups = 1;
  int64_t dilation = 1;
  Activation activation = Activation::ReLU;
  double bn_eps = 1e-5;
  double bn_momentum = 0.1;
};

template <class T>
std::shared_ptr<Sequential<T>> conv_norm_activation(const ConvNormActivationOptions& o, Rng& rng = global_rng()) {
  auto s = std::make_shared<Sequential<T>>();
  s->push_back(std::make_shared<Conv2d<T>>(
      Conv2dOptions{.in_channels = o.in_channels, .out_channels = o.out_channels, .kernel_size = o.kernel_size,
                    .stride = o.stride, .padding = (o.kernel_size - 1) / 2 * o.dilation, .bias = false,
                    .dilation = o.dilation, .groups = o.groups},
      rng));
  s->push_back(std::make_shared<BatchNorm2d<T>>(
      BatchNorm2dOptions{.num_features = o.out_channels, .eps = o.bn_eps, .momentum = o.bn_momentum}));
  if (o.activation != Activation::None) s->push_back(make_activation<T>(o.activation));
  s->fuse(0, {.relu = o.activation == Activation::ReLU});
  return s;
}

}  // namespace xfer::nn
