// ResNet-18 with torchvision's layout and parameter names (conv1, bn1, layer1.0.conv1, ...,
// layer2.0.downsample.0, fc). Stem::ImageNet is torchvision's 7x7/2 conv + 3x3/2 max-pool;
// Stem::Cifar is the 3x3/1 conv without max-pool used for 32x32 inputs (same parameter names,
// conv1.weight is [64, 3, 3, 3]).
#pragma once

#include <array>
#include <memory>

#include "xfer/models/model.hpp"
#include "xfer/nn/basic_block.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/pooling.hpp"

namespace xfer::models {

enum class Stem { ImageNet, Cifar };

struct ResNetOptions {
  int64_t num_classes = 1000;
  Stem stem = Stem::ImageNet;
  uint64_t seed = 0;
  std::array<int, 4> layers = {2, 2, 2, 2};  // blocks per stage: {2,2,2,2} is ResNet-18, {3,4,6,3} ResNet-34
  bool zero_init_residual = false;          // torchvision's option: bn2.weight = 0 in every block
};

template <class T>
class ResNet : public Model<T> {
 public:
  explicit ResNet(ResNetOptions o) : Model<T>(o.seed), opt_(o) {
    XFER_CHECK(o.num_classes > 0, "resnet: num_classes must be positive, got ", o.num_classes);
    Rng& rng = this->rng_;
    const bool imagenet = o.stem == Stem::ImageNet;
    conv1_ = this->register_module("conv1", std::make_shared<nn::Conv2d<T>>(
        nn::Conv2dOptions{3, 64, imagenet ? 7 : 3, imagenet ? 2 : 1, imagenet ? 3 : 1, false}, rng));
    bn1_ = this->register_module("bn1", std::make_shared<nn::BatchNorm2d<T>>(64));
    relu_ = this->register_module("relu", std::make_shared<nn::ReLU<T>>());
    chain_ = {conv1_.get(), bn1_.get(), relu_.get()};
    if (imagenet) {
      auto pool = this->register_module("maxpool", std::make_shared<nn::MaxPool2d<T>>(nn::MaxPool2dOptions{3, 2, 1}));
      chain_.push_back(pool.get());
    }
    int64_t in = 64;
    const std::array<int64_t, 4> widths = {64, 128, 256, 512};
    for (int s = 0; s < 4; ++s) {
      auto stage = std::make_shared<nn::Sequential<T>>();
      for (int b = 0; b < o.layers[static_cast<size_t>(s)]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stage->push_back(std::make_shared<nn::BasicBlock<T>>(nn::BasicBlockOptions{in, widths[static_cast<size_t>(s)], stride}, rng));
        in = widths[static_cast<size_t>(s)];
      }
      chain_.push_back(this->register_module("layer" + std::to_string(s + 1), stage).get());
    }
    chain_.push_back(this->register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d<T>>(1)).get());
    chain_.push_back(&flatten_);
    fc_ = this->register_module("fc", std::make_shared<nn::Linear<T>>(nn::LinearOptions{512, o.num_classes}, rng));
    chain_.push_back(fc_.get());
    init_like_torchvision(rng);
    pair_conv_bn();
    this->flatten_parameters();
  }

  std::string type_name() const override { return opt_.stem == Stem::ImageNet ? "ResNet" : "ResNet(cifar stem)"; }
  std::string head_name() const override { return "fc"; }
  int64_t num_classes() const override { return fc_->options().out_features; }
  int64_t num_features() const override { return 512; }
  const ResNetOptions& options() const { return opt_; }
  nn::Linear<T>& fc() { return *fc_; }

  // Re-draws every parameter the way torchvision initialises a fresh model.
  void reset_parameters(Rng& rng) override {
    nn::Module<T>::reset_parameters(rng);
    init_like_torchvision(rng);
  }

 protected:
  void install_head(std::shared_ptr<nn::Linear<T>> head) override {
    chain_.back() = head.get();
    fc_ = head;
    this->replace_module("fc", std::move(head));
  }
  const Tensor<T>& forward_model(const Tensor<T>& x) override {
    const Tensor<T>* cur = &x;
    for (nn::Module<T>* m : chain_) cur = &m->forward(*cur);
    return *cur;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    const Tensor<T>* dx = nn::detail::chain_backward(chain_, dy, need_input_grad);
    return dx ? *dx : this->empty_tensor();
  }

 private:
  void init_like_torchvision(Rng& rng) {
    for (auto& [name, m] : this->named_modules()) {
      if (auto* conv = dynamic_cast<nn::Conv2d<T>*>(m)) nn::init::kaiming_normal_fan_out(conv->weight(), rng);
      if (opt_.zero_init_residual)
        if (auto* block = dynamic_cast<nn::BasicBlock<T>*>(m)) nn::init::constant(block->bn2().weight(), T(0));
    }
  }

  // The stem's conv feeds exactly one BN and then the ReLU: pair them so eval-mode / frozen BN
  // folds into the conv (the blocks pair their own layers).
  void pair_conv_bn() { conv1_->fold_into(bn1_.get(), relu_.get()); }

  ResNetOptions opt_;
  std::shared_ptr<nn::Conv2d<T>> conv1_;
  std::shared_ptr<nn::BatchNorm2d<T>> bn1_;
  std::shared_ptr<nn::ReLU<T>> relu_;
  std::shared_ptr<nn::Linear<T>> fc_;
  nn::Flatten<T> flatten_;  // torchvision uses torch.flatten here, not a module
  std::vector<nn::Module<T>*> chain_;
};

template <class T>
std::shared_ptr<ResNet<T>> resnet18(ResNetOptions o = {}) {
  o.layers = {2, 2, 2, 2};
  return std::make_shared<ResNet<T>>(o);
}
template <class T>
std::shared_ptr<ResNet<T>> resnet34(ResNetOptions o = {}) {
  o.layers = {3, 4, 6, 3};
  return std::make_shared<ResNet<T>>(o);
}

}  // namespace xfer::models
