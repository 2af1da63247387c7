// VGG-11/13/16 with BatchNorm in torchvision's layout (vgg11_bn, ...): features.N (conv, BN, ReLU,
// max-pool), avgpool to 7x7, classifier.{0,3,6} = Linear(25088, 4096), Linear(4096, 4096),
// Linear(4096, classes) with ReLU and Dropout between. The CIFAR variant keeps the same features
// and replaces pooling + classifier with a single Linear(512, classes) named "classifier". Each
// features conv -> BN -> ReLU triple runs as an nn::ConvBnAct unit (Sequential::fuse).
#pragma once

#include <memory>
#include <vector>

#include "xfer/models/init.hpp"
#include "xfer/models/model.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/chain.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/dropout.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::models {

enum class VggDepth { Vgg11 = 11, Vgg13 = 13, Vgg16 = 16 };

struct VggOptions {
  VggDepth depth = VggDepth::Vgg11;
  int64_t num_classes = 1000;
  bool cifar = false;  // 512 -> classes head for 32x32 inputs
  double dropout = 0.5;
  uint64_t seed = 0;
};

template <class T>
class VGG : public Model<T> {
 public:
  explicit VGG(VggOptions o) : Model<T>(o.seed), opt_(o) {
    XFER_CHECK(o.num_classes > 0, "vgg: num_classes must be positive, got ", o.num_classes);
    Rng& rng = this->rng_;
    features_ = this->register_module("features", std::make_shared<nn::Sequential<T>>());
    int64_t in = 3;
    for (int v : config(o.depth)) {
      if (v == 0) {
        features_->push_back(std::make_shared<nn::MaxPool2d<T>>(nn::MaxPool2dOptions{2, 2, 0}));
        continue;
      }
      const size_t at = features_->size();
      features_->push_back(std::make_shared<nn::Conv2d<T>>(nn::Conv2dOptions{in, v, 3, 1, 1, true}, rng));
      features_->push_back(std::make_shared<nn::BatchNorm2d<T>>(v));
      features_->push_back(std::make_shared<nn::ReLU<T>>());
      features_->fuse(at);
      in = v;
    }
    chain_.push(*features_);
    if (o.cifar) {
      chain_.push(*this->register_module("flatten", std::make_shared<nn::Flatten<T>>()));  // torch.flatten in torchvision
      head_ = this->register_module("classifier", std::make_shared<nn::Linear<T>>(nn::LinearOptions{512, o.num_classes}, rng));
      chain_.push(*head_);
    } else {
      chain_.push(*this->register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d<T>>(7)));
      chain_.push(*this->register_module("flatten", std::make_shared<nn::Flatten<T>>()));
      classifier_ = this->register_module("classifier", std::make_shared<nn::Sequential<T>>());
      classifier_->push_back(std::make_shared<nn::Linear<T>>(nn::LinearOptions{512 * 7 * 7, 4096}, rng));
      classifier_->push_back(std::make_shared<nn::ReLU<T>>());
      classifier_->push_back(std::make_shared<nn::Dropout<T>>(o.dropout));
      classifier_->push_back(std::make_shared<nn::Linear<T>>(nn::LinearOptions{4096, 4096}, rng));
      classifier_->push_back(std::make_shared<nn::ReLU<T>>());
      classifier_->push_back(std::make_shared<nn::Dropout<T>>(o.dropout));
      head_ = classifier_->push_back(std::make_shared<nn::Linear<T>>(nn::LinearOptions{4096, o.num_classes}, rng));
      chain_.push(*classifier_);
    }
    init_like_torchvision(rng);
    this->flatten_parameters();
  }

  std::string type_name() const override { return "VGG" + std::to_string(static_cast<int>(opt_.depth)) + "_bn"; }
  std::string head_name() const override { return opt_.cifar ? "classifier" : "classifier.6"; }
  int64_t num_classes() const override { return head_->options().out_features; }
  int64_t num_features() const override { return opt_.cifar ? 512 : 4096; }
  const VggOptions& options() const { return opt_; }

  void reset_parameters(Rng& rng) override {
    nn::Module<T>::reset_parameters(rng);
    init_like_torchvision(rng);
  }

  // Layer widths per depth; 0 marks a 2x2 max-pool (torchvision's cfgs A, B, D).
  static std::vector<int> config(VggDepth d) {
    switch (d) {
      case VggDepth::Vgg11: return {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
      case VggDepth::Vgg13: return {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
      case VggDepth::Vgg16: return {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
    }
    throw Error("vgg: unknown depth");
  }

 protected:
  void install_head(std::shared_ptr<nn::Linear<T>> head) override {
    if (opt_.cifar) {
      chain_.set(chain_.size() - 1, *head);
      this->replace_module("classifier", head);
    } else {
      classifier_->replace(6, head);
    }
    head_ = std::move(head);
  }
  const Tensor<T>& forward_model(const Tensor<T>& x) override { return chain_.forward(x); }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    return chain_.backward(dy, need_input_grad);
  }

 private:
  void init_like_torchvision(Rng& rng) { models::init_like_torchvision(*this, LinearInit::Normal001, rng); }

  VggOptions opt_;
  std::shared_ptr<nn::Sequential<T>> features_, classifier_;
  std::shared_ptr<nn::Linear<T>> head_;
  nn::Chain<T> chain_;
};

template <class T>
std::shared_ptr<VGG<T>> vgg(VggOptions o) {
  return std::make_shared<VGG<T>>(o);
}

}  // namespace xfer::models
