// init_like_torchvision(): the initialisation torchvision's VGG, MobileNetV3 and EfficientNet
// constructors apply to a fresh model, in module order: Conv2d weights Kaiming-normal (fan-out)
// with zero bias, BatchNorm2d weight 1 and bias 0, Linear weights as the model says with zero bias.
#pragma once

#include <cmath>

#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/linear.hpp"

namespace xfer::models {

enum class LinearInit {
  Normal001,         // N(0, 0.01): VGG, MobileNetV3
  UniformOutFeatures  // U(-1/sqrt(out_features), 1/sqrt(out_features)): EfficientNet
};

template <class T>
void init_like_torchvision(nn::Module<T>& net, LinearInit linear, Rng& rng) {
  for (auto& [name, m] : net.named_modules()) {
    if (auto* conv = dynamic_cast<nn::Conv2d<T>*>(m)) {
      nn::init::kaiming_normal_fan_out(conv->weight(), rng);
      if (conv->bias()) nn::init::constant(*conv->bias(), T(0));
    } else if (auto* bn = dynamic_cast<nn::BatchNorm2d<T>*>(m)) {
      nn::init::constant(bn->weight(), T(1));
      nn::init::constant(bn->bias(), T(0));
    } else if (auto* l = dynamic_cast<nn::Linear<T>*>(m)) {
      if (linear == LinearInit::Normal001) {
        nn::init::normal(l->weight(), 0.0, 0.01, rng);
      } else {
        const double r = 1.0 / std::sqrt(static_cast<double>(l->options().out_features));
        nn::init::uniform(l->weight(), -r, r, rng);
      }
      if (l->bias()) nn::init::constant(*l->bias(), T(0));
    }
  }
}

}  // namespace xfer::models
