// models::conv4: the Conv-4 backbone of the few-shot literature (Vinyals et al. 2016, Finn et al.
// 2017, Snell et al. 2017, Chen et al. 2019): four blocks of [3x3 conv (padding 1), BatchNorm,
// ReLU, 2x2 max-pool], flattened, with an optional linear head "fc".
//
// The one thing to know: names are "block1.conv.weight" ... "block4.bn.running_var", "fc.weight";
// with num_classes = 0 there is no head and the output is the [N, feature_dim] feature vector (what
// ProtoNet and the transfer baselines use). feature_dim = width * (image_size / 16)^2.
#pragma once

#include <memory>
#include <string>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/linear.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::models {

struct Conv4Options {
  int64_t in_channels = 3;
  int64_t width = 32;       // channels of every block (32 in MAML's miniImageNet runs, 64 in ProtoNet's)
  int64_t image_size = 32;  // square input side; must be >= 16
  int64_t num_classes = 0;  // 0: no head, the model outputs features
  uint64_t seed = 0;
};

// Features after the four blocks, flattened.
inline int64_t conv4_feature_dim(const Conv4Options& o) {
  const int64_t s = o.image_size / 16;
  return o.width * s * s;
}

template <class T>
std::shared_ptr<nn::Sequential<T>> conv4(const Conv4Options& o = {}) {
  XFER_CHECK(o.in_channels > 0 && o.width > 0, "conv4: in_channels and width must be positive, got ", o.in_channels,
             " and ", o.width);
  XFER_CHECK(o.image_size >= 16, "conv4: image_size must be >= 16 (four 2x2 poolings), got ", o.image_size);
  XFER_CHECK(o.num_classes >= 0, "conv4: num_classes must be >= 0, got ", o.num_classes);
  Rng rng(o.seed);
  auto net = std::make_shared<nn::Sequential<T>>();
  int64_t in = o.in_channels;
  for (int b = 1; b <= 4; ++b) {
    auto block = std::make_shared<nn::Sequential<T>>();
    block->add("conv", std::make_shared<nn::Conv2d<T>>(
                           nn::Conv2dOptions{.in_channels = in, .out_channels = o.width, .kernel_size = 3, .padding = 1}, rng));
    block->add("bn", std::make_shared<nn::BatchNorm2d<T>>(o.width));
    block->add("relu", std::make_shared<nn::ReLU<T>>());
    block->add("pool", std::make_shared<nn::MaxPool2d<T>>(nn::MaxPool2dOptions{.kernel_size = 2}));
    block->fuse(0);  // conv -> bn -> relu as one nn::ConvBnAct unit
    net->add("block" + std::to_string(b), block);
    in = o.width;
  }
  net->add("flatten", std::make_shared<nn::Flatten<T>>());
  if (o.num_classes > 0)
    net->add("fc", std::make_shared<nn::Linear<T>>(
                       nn::LinearOptions{.in_features = conv4_feature_dim(o), .out_features = o.num_classes}, rng));
  net->flatten_parameters();
  return net;
}

}  // namespace xfer::models
