// MobileNetV3 (Large and Small) with torchvision's layout, parameter names, BN settings (eps 0.001,
// momentum 0.01) and initialisation: features.0 = 3x3/2 conv-BN-Hardswish stem, features.1..n =
// InvertedResidual blocks (depthwise convs, SqueezeExcitation with ReLU / Hardsigmoid), the last
// 1x1 conv-BN-Hardswish; classifier = Linear, Hardswish, Dropout(0.2), Linear (the head, "classifier.3").
#pragma once

#include <array>
#include <memory>
#include <vector>

#include "xfer/models/features_classifier.hpp"
#include "xfer/models/inverted_residual.hpp"
#include "xfer/nn/dropout.hpp"

namespace xfer::models {

enum class MobileNetV3Size { Large, Small };

struct MobileNetV3Options {
  int64_t num_classes = 1000;
  MobileNetV3Size size = MobileNetV3Size::Large;
  uint64_t seed = 0;
  double dropout = 0.2;
};

template <class T>
class MobileNetV3 : public FeaturesClassifier<T> {
 public:
  explicit MobileNetV3(MobileNetV3Options o) : FeaturesClassifier<T>(o.seed), opt_(o) {
    XFER_CHECK(o.num_classes > 0, "mobilenet_v3: num_classes must be positive, got ", o.num_classes);
    Rng& rng = this->rng_;
    using A = nn::Activation;
    // torchvision's table: in, kernel, expanded, out, SE, Hardswish (else ReLU), stride.
    struct Row { int64_t in, k, exp, out; bool se, hs; int64_t stride; };
    const std::vector<Row> large = {
        {16, 3, 16, 16, false, false, 1},  {16, 3, 64, 24, false, false, 2},  {24, 3, 72, 24, false, false, 1},
        {24, 5, 72, 40, true, false, 2},   {40, 5, 120, 40, true, false, 1},  {40, 5, 120, 40, true, false, 1},
        {40, 3, 240, 80, false, true, 2},  {80, 3, 200, 80, false, true, 1},  {80, 3, 184, 80, false, true, 1},
        {80, 3, 184, 80, false, true, 1},  {80, 3, 480, 112, true, true, 1},  {112, 3, 672, 112, true, true, 1},
        {112, 5, 672, 160, true, true, 2}, {160, 5, 960, 160, true, true, 1}, {160, 5, 960, 160, true, true, 1}};
    const std::vector<Row> small = {
        {16, 3, 16, 16, true, false, 2},  {16, 3, 72, 24, false, false, 2}, {24, 3, 88, 24, false, false, 1},
        {24, 5, 96, 40, true, true, 2},   {40, 5, 240, 40, true, true, 1},  {40, 5, 240, 40, true, true, 1},
        {40, 5, 120, 48, true, true, 1},  {48, 5, 144, 48, true, true, 1},  {48, 5, 288, 96, true, true, 2},
        {96, 5, 576, 96, true, true, 1},  {96, 5, 576, 96, true, true, 1}};
    const bool is_large = o.size == MobileNetV3Size::Large;
    const std::vector<Row>& rows = is_large ? large : small;
    const int64_t last_channel = is_large ? 1280 : 1024;
    const double eps = 1e-3, momentum = 1e-2;

    auto features = std::make_shared<nn::Sequential<T>>();
    features->push_back(nn::conv_norm_activation<T>(
        {.in_channels = 3, .out_channels = rows.front().in, .kernel_size = 3, .stride = 2, .activation = A::Hardswish,
         .bn_eps = eps, .bn_momentum = momentum}, rng));
    for (const Row& r : rows)
      features->push_back(std::make_shared<InvertedResidual<T>>(
          InvertedResidualOptions{.in_channels = r.in, .expanded_channels = r.exp, .out_channels = r.out,
                                  .kernel_size = r.k, .stride = r.stride, .activation = r.hs ? A::Hardswish : A::ReLU,
                                  .se_channels = r.se ? make_divisible(static_cast<double>(r.exp / 4)) : 0,
                                  .se_activation = A::ReLU, .se_scale_activation = A::Hardsigmoid, .bn_eps = eps,
                                  .bn_momentum = momentum},
          rng));
    const int64_t last_conv = 6 * rows.back().out;
    features->push_back(nn::conv_norm_activation<T>(
        {.in_channels = rows.back().out, .out_channels = last_conv, .kernel_size = 1, .activation = A::Hardswish,
         .bn_eps = eps, .bn_momentum = momentum}, rng));

    auto classifier = std::make_shared<nn::Sequential<T>>();
    classifier->push_back(std::make_shared<nn::Linear<T>>(nn::LinearOptions{last_conv, last_channel}, rng));
    classifier->push_back(std::make_shared<nn::Hardswish<T>>());
    classifier->push_back(std::make_shared<nn::Dropout<T>>(o.dropout));
    classifier->push_back(std::make_shared<nn::Linear<T>>(nn::LinearOptions{last_channel, o.num_classes}, rng));
    this->finish(features, classifier, 3);
  }

  std::string type_name() const override {
    return opt_.size == MobileNetV3Size::Large ? "MobileNetV3(large)" : "MobileNetV3(small)";
  }
  const MobileNetV3Options& options() const { return opt_; }

 protected:
  LinearInit linear_init() const override { return LinearInit::Normal001; }

 private:
  MobileNetV3Options opt_;
};

template <class T>
std::shared_ptr<MobileNetV3<T>> mobilenet_v3_large(MobileNetV3Options o = {}) {
  o.size = MobileNetV3Size::Large;
  return std::make_shared<MobileNetV3<T>>(o);
}
template <class T>
std::shared_ptr<MobileNetV3<T>> mobilenet_v3_small(MobileNetV3Options o = {}) {
  o.size = MobileNetV3Size::Small;
  return std::make_shared<MobileNetV3<T>>(o);
}

}  // namespace xfer::models
