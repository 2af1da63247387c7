// EfficientNet-B0 with torchvision's layout, parameter names, BN settings (PyTorch defaults for B0)
// and initialisation: features.0 = 3x3/2 conv-BN-SiLU stem, features.1..7 = stages of MBConv blocks
// (InvertedResidual with SiLU, SqueezeExcitation SiLU / Sigmoid, StochasticDepth p = 0.2 * block /
// 16), features.8 = 1x1 conv-BN-SiLU to 1280; classifier = Dropout(0.2), Linear (the head, "classifier.1").
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "xfer/models/features_classifier.hpp"
#include "xfer/models/inverted_residual.hpp"
#include "xfer/nn/dropout.hpp"

namespace xfer::models {

struct EfficientNetOptions {
  int64_t num_classes = 1000;
  uint64_t seed = 0;
  double dropout = 0.2;
  double stochastic_depth_prob = 0.2;
};

template <class T>
class EfficientNet : public FeaturesClassifier<T> {
 public:
  explicit EfficientNet(EfficientNetOptions o) : FeaturesClassifier<T>(o.seed), opt_(o) {
    XFER_CHECK(o.num_classes > 0, "efficientnet_b0: num_classes must be positive, got ", o.num_classes);
    Rng& rng = this->rng_;
    using A = nn::Activation;
    // torchvision's B0 table: expand ratio, kernel, stride, in, out, layers.
    struct Stage { int64_t expand, k, stride, in, out, layers; };
    const std::vector<Stage> stages = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                                       {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                                       {6, 3, 1, 192, 320, 1}};
    const double eps = 1e-5, momentum = 0.1;
    int64_t total = 0, id = 0;
    for (const Stage& s : stages) total += s.layers;

    auto features = std::make_shared<nn::Sequential<T>>();
    features->push_back(nn::conv_norm_activation<T>(
        {.in_channels = 3, .out_channels = stages.front().in, .kernel_size = 3, .stride = 2, .activation = A::SiLU,
         .bn_eps = eps, .bn_momentum = momentum}, rng));
    for (const Stage& s : stages) {
      auto stage = std::make_shared<nn::Sequential<T>>();
      for (int64_t b = 0; b < s.layers; ++b, ++id) {
        const int64_t in = b == 0 ? s.in : s.out;
        stage->push_back(std::make_shared<InvertedResidual<T>>(
            InvertedResidualOptions{.in_channels = in, .expanded_channels = make_divisible(static_cast<double>(in * s.expand)),
                                    .out_channels = s.out, .kernel_size = s.k, .stride = b == 0 ? s.stride : 1,
                                    .activation = A::SiLU, .se_channels = std::max<int64_t>(1, in / 4),
                                    .se_activation = A::SiLU, .se_scale_activation = A::Sigmoid, .bn_eps = eps,
                                    .bn_momentum = momentum,
                                    .stochastic_depth_prob = o.stochastic_depth_prob * static_cast<double>(id) / static_cast<double>(total)},
            rng));
      }
      features->push_back(stage);
    }
    const int64_t last_conv = 4 * stages.back().out;
    features->push_back(nn::conv_norm_activation<T>(
        {.in_channels = stages.back().out, .out_channels = last_conv, .kernel_size = 1, .activation = A::SiLU,
         .bn_eps = eps, .bn_momentum = momentum}, rng));

    auto classifier = std::make_shared<nn::Sequential<T>>();
    classifier->push_back(std::make_shared<nn::Dropout<T>>(o.dropout));
    classifier->push_back(std::make_shared<nn::Linear<T>>(nn::LinearOptions{last_conv, o.num_classes}, rng));
    this->finish(features, classifier, 1);
  }

  std::string type_name() const override { return "EfficientNet(b0)"; }
  const EfficientNetOptions& options() const { return opt_; }

 protected:
  LinearInit linear_init() const override { return LinearInit::UniformOutFeatures; }

 private:
  EfficientNetOptions opt_;
};

template <class T>
std::shared_ptr<EfficientNet<T>> efficientnet_b0(EfficientNetOptions o = {}) {
  return std::make_shared<EfficientNet<T>>(o);
}

}  // namespace xfer::models
