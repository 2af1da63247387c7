// ResNet-18 with torchvision's layout and parameter names (conv1, bn1, layer1.0.conv1, ...,
// layer2.0.downsample.0, fc). Stem::ImageNet is torchvision's 7x7/2 conv + 3x3/2 max-pool;
// Stem::Cifar is the 3x3/1 conv without max-pool used for 32x32 inputs (same parameter names,
// conv1.weight is [64, 3, 3, 3]). The block beside the model, as in torchvision's resnet.py:
// BasicBlock, relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); conv1 carries the stride; the
// shortcut is identity or downsample = Sequential(1x1 conv, BN), giving torchvision's names
// (conv1, bn1, conv2, bn2, downsample.0, downsample.1). Each conv + BN (+ ReLU) pair runs as an
// nn::ConvBnAct unit over those children; conv2's unit also adds the shortcut before its ReLU, so
// with folded BN the whole tail of the block is one GEMM epilogue.
// ResNet-50 uses Bottleneck (torchvision's v1.5: the stride on the 3x3 conv2),
// relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x)) with 4x expansion, names
// conv1..3, bn1..3, downsample.0/1; again each conv + BN pair is an nn::ConvBnAct unit.
#pragma once

#include <array>
#include <memory>

#include "xfer/models/model.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/chain.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/conv_bn_act.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::models {

namespace detail {
// The shortcut's part of a residual block's backward: the gradient at the block's output sum (dres)
// passes through the downsample when there is one; nullptr when nothing below needs it.
template <class T>
const Tensor<T>* shortcut_grad(nn::Sequential<T>* downsample, const Tensor<T>& dres, bool need_input_grad) {
  if (!downsample) return &dres;
  return need_input_grad || downsample->needs_grad() ? &downsample->backward(dres, need_input_grad) : nullptr;
}
// dx of a residual block = the main branch's dx + the shortcut's.
template <class T>
void sum_branch_grads(Tensor<T>& dx, const Tensor<T>& dmain, const Tensor<T>& dshort) {
  dx.resize(dmain.shape());
  const int64_t n = dx.numel();
  const T *a = dmain.data(), *b = dshort.data();
  T* out = dx.data();
  XFER_OMP_FOR(n)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
}  // namespace detail

struct BasicBlockOptions {
  int64_t in_channels = 64;
  int64_t out_channels = 64;
  int64_t stride = 1;
};

template <class T>
class BasicBlock : public nn::Module<T> {
 public:
  explicit BasicBlock(BasicBlockOptions o, Rng& rng = global_rng()) : opt_(o) {
    conv1_ = this->register_module("conv1", std::make_shared<nn::Conv2d<T>>(
        nn::Conv2dOptions{o.in_channels, o.out_channels, 3, o.stride, 1, false}, rng));
    bn1_ = this->register_module("bn1", std::make_shared<nn::BatchNorm2d<T>>(o.out_channels));
    conv2_ = this->register_module("conv2", std::make_shared<nn::Conv2d<T>>(
        nn::Conv2dOptions{o.out_channels, o.out_channels, 3, 1, 1, false}, rng));
    bn2_ = this->register_module("bn2", std::make_shared<nn::BatchNorm2d<T>>(o.out_channels));
    if (o.stride != 1 || o.in_channels != o.out_channels) {
      downsample_ = this->register_module("downsample", std::make_shared<nn::Sequential<T>>());
      downsample_->push_back(std::make_shared<nn::Conv2d<T>>(nn::Conv2dOptions{o.in_channels, o.out_channels, 1, o.stride, 0, false}, rng));
      downsample_->push_back(std::make_shared<nn::BatchNorm2d<T>>(o.out_channels));
      downsample_->fuse(0, {.relu = false});
    }
    unit1_ = std::make_unique<nn::ConvBnAct<T>>(*conv1_, *bn1_);
    unit2_ = std::make_unique<nn::ConvBnAct<T>>(*conv2_, *bn2_);
  }
  std::string type_name() const override { return "BasicBlock"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_channels, " -> ", opt_.out_channels, ", stride=", opt_.stride);
  }
  nn::Conv2d<T>& conv1() { return *conv1_; }
  nn::Conv2d<T>& conv2() { return *conv2_; }
  nn::BatchNorm2d<T>& bn1() { return *bn1_; }
  nn::BatchNorm2d<T>& bn2() { return *bn2_; }
  nn::Sequential<T>* downsample() { return downsample_.get(); }

  std::vector<nn::ConvBnAct<T>*> own_fusion_units() override { return {unit1_.get(), unit2_.get()}; }

 protected:
  // relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)): the shortcut is unit2's residual.
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    const Tensor<T>& s = downsample_ ? downsample_->forward(x) : x;
    return unit2_->forward(unit1_->forward(x), &s);
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    const bool need_mid = need_input_grad || unit1_->needs_grad();
    const Tensor<T>& dmid = unit2_->backward(dy, need_mid);
    const Tensor<T>& dres = unit2_->residual_grad();  // d loss / d (branch + shortcut)
    const Tensor<T>* dmain = need_mid ? &unit1_->backward(dmid, need_input_grad) : nullptr;
    const Tensor<T>* dshort = detail::shortcut_grad(downsample_.get(), dres, need_input_grad);
    if (need_input_grad) detail::sum_branch_grads(dx_, *dmain, *dshort);
    // All gradients are consumed: unit1's dx, the downsample's, unit2's dx and residual gradient.
    if (need_mid) unit1_->release_input_grad();
    if (downsample_ && dshort) downsample_->release_input_grad();
    unit2_->release_input_grad();
    return need_input_grad ? dx_ : this->empty_tensor();
  }

 private:
  BasicBlockOptions opt_;
  std::shared_ptr<nn::Conv2d<T>> conv1_, conv2_;
  std::shared_ptr<nn::BatchNorm2d<T>> bn1_, bn2_;
  std::shared_ptr<nn::Sequential<T>> downsample_;
  std::unique_ptr<nn::ConvBnAct<T>> unit1_, unit2_;  // conv1 -> bn1 -> ReLU, conv2 -> bn2 (+ shortcut) -> ReLU
  Tensor<T> dx_;
};

struct BottleneckOptions {
  int64_t in_channels = 64;
  int64_t width = 64;  // the 3x3 conv's channels; the block outputs 4 * width
  int64_t stride = 1;
};

template <class T>
class Bottleneck : public nn::Module<T> {
 public:
  static constexpr int64_t expansion = 4;
  explicit Bottleneck(BottleneckOptions o, Rng& rng = global_rng()) : opt_(o) {
    const int64_t w = o.width, out = w * expansion;
    auto conv = [&](const char* name, int64_t in, int64_t outc, int64_t k, int64_t stride) {
      return this->register_module(name, std::make_shared<nn::Conv2d<T>>(nn::Conv2dOptions{in, outc, k, stride, k / 2, false}, rng));
    };
    conv1_ = conv("conv1", o.in_channels, w, 1, 1);
    bn1_ = this->register_module("bn1", std::make_shared<nn::BatchNorm2d<T>>(w));
    conv2_ = conv("conv2", w, w, 3, o.stride);
    bn2_ = this->register_module("bn2", std::make_shared<nn::BatchNorm2d<T>>(w));
    conv3_ = conv("conv3", w, out, 1, 1);
    bn3_ = this->register_module("bn3", std::make_shared<nn::BatchNorm2d<T>>(out));
    if (o.stride != 1 || o.in_channels != out) {
      downsample_ = this->register_module("downsample", std::make_shared<nn::Sequential<T>>());
      downsample_->push_back(std::make_shared<nn::Conv2d<T>>(nn::Conv2dOptions{o.in_channels, out, 1, o.stride, 0, false}, rng));
      downsample_->push_back(std::make_shared<nn::BatchNorm2d<T>>(out));
      downsample_->fuse(0, {.relu = false});
    }
    unit1_ = std::make_unique<nn::ConvBnAct<T>>(*conv1_, *bn1_);
    unit2_ = std::make_unique<nn::ConvBnAct<T>>(*conv2_, *bn2_);
    unit3_ = std::make_unique<nn::ConvBnAct<T>>(*conv3_, *bn3_);
  }
  std::string type_name() const override { return "Bottleneck"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_channels, " -> ", opt_.width, " -> ", opt_.width * expansion, ", stride=", opt_.stride);
  }
  nn::Conv2d<T>& conv1() { return *conv1_; }
  nn::Conv2d<T>& conv2() { return *conv2_; }
  nn::Conv2d<T>& conv3() { return *conv3_; }
  nn::BatchNorm2d<T>& bn1() { return *bn1_; }
  nn::BatchNorm2d<T>& bn2() { return *bn2_; }
  nn::BatchNorm2d<T>& bn3() { return *bn3_; }
  nn::Sequential<T>* downsample() { return downsample_.get(); }

  std::vector<nn::ConvBnAct<T>*> own_fusion_units() override { return {unit1_.get(), unit2_.get(), unit3_.get()}; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    const Tensor<T>& s = downsample_ ? downsample_->forward(x) : x;
    return unit3_->forward(unit2_->forward(unit1_->forward(x)), &s);
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    const bool need1 = need_input_grad || unit1_->needs_grad();  // unit1's output gradient is needed
    const bool need2 = need1 || unit2_->needs_grad();
    const Tensor<T>& d3 = unit3_->backward(dy, need2);
    const Tensor<T>& dres = unit3_->residual_grad();
    const Tensor<T>* d2 = need2 ? &unit2_->backward(d3, need1) : nullptr;
    const Tensor<T>* dmain = need1 ? &unit1_->backward(*d2, need_input_grad) : nullptr;
    const Tensor<T>* dshort = detail::shortcut_grad(downsample_.get(), dres, need_input_grad);
    if (need_input_grad) detail::sum_branch_grads(dx_, *dmain, *dshort);
    if (need1) unit1_->release_input_grad();
    if (need2) unit2_->release_input_grad();
    if (downsample_ && dshort) downsample_->release_input_grad();
    unit3_->release_input_grad();
    return need_input_grad ? dx_ : this->empty_tensor();
  }

 private:
  BottleneckOptions opt_;
  std::shared_ptr<nn::Conv2d<T>> conv1_, conv2_, conv3_;
  std::shared_ptr<nn::BatchNorm2d<T>> bn1_, bn2_, bn3_;
  std::shared_ptr<nn::Sequential<T>> downsample_;
  std::unique_ptr<nn::ConvBnAct<T>> unit1_, unit2_, unit3_;
  Tensor<T> dx_;
};

enum class Stem { ImageNet, Cifar };

struct ResNetOptions {
  int64_t num_classes = 1000;
  Stem stem = Stem::ImageNet;
  uint64_t seed = 0;
  std::array<int, 4> layers = {2, 2, 2, 2};  // blocks per stage: {2,2,2,2} is ResNet-18, {3,4,6,3} ResNet-34
  bool zero_init_residual = false;          // torchvision's option: bn2.weight (bn3.weight) = 0 in every block
  bool bottleneck = false;                  // Bottleneck blocks ({3,4,6,3}: ResNet-50), else BasicBlock
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
    relu_ = this->register_module("relu", std::make_shared<nn::ReLU<T>>());  // runs inside stem_
    stem_ = std::make_unique<nn::ConvBnAct<T>>(*conv1_, *bn1_);
    chain_.push(*stem_);
    if (imagenet)
      chain_.push(*this->register_module("maxpool", std::make_shared<nn::MaxPool2d<T>>(nn::MaxPool2dOptions{3, 2, 1})));
    int64_t in = 64;
    const std::array<int64_t, 4> widths = {64, 128, 256, 512};
    const int64_t expansion = o.bottleneck ? Bottleneck<T>::expansion : 1;
    for (int s = 0; s < 4; ++s) {
      auto stage = std::make_shared<nn::Sequential<T>>();
      const int64_t width = widths[static_cast<size_t>(s)];
      for (int b = 0; b < o.layers[static_cast<size_t>(s)]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        if (o.bottleneck)
          stage->push_back(std::make_shared<Bottleneck<T>>(BottleneckOptions{in, width, stride}, rng));
        else
          stage->push_back(std::make_shared<BasicBlock<T>>(BasicBlockOptions{in, width, stride}, rng));
        in = width * expansion;
      }
      chain_.push(*this->register_module("layer" + std::to_string(s + 1), stage));
    }
    chain_.push(*this->register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d<T>>(1)));
    chain_.push(*this->register_module("flatten", std::make_shared<nn::Flatten<T>>()));  // torch.flatten in torchvision
    fc_ = this->register_module("fc", std::make_shared<nn::Linear<T>>(nn::LinearOptions{in, o.num_classes}, rng));
    chain_.push(*fc_);
    init_like_torchvision(rng);
    this->flatten_parameters();
  }

  std::string type_name() const override { return opt_.stem == Stem::ImageNet ? "ResNet" : "ResNet(cifar stem)"; }
  std::string head_name() const override { return "fc"; }
  int64_t num_classes() const override { return fc_->options().out_features; }
  int64_t num_features() const override { return opt_.bottleneck ? 2048 : 512; }
  const ResNetOptions& options() const { return opt_; }
  nn::Linear<T>& fc() { return *fc_; }
  std::vector<nn::ConvBnAct<T>*> own_fusion_units() override { return {stem_.get()}; }

  // Re-draws every parameter the way torchvision initialises a fresh model.
  void reset_parameters(Rng& rng) override {
    nn::Module<T>::reset_parameters(rng);
    init_like_torchvision(rng);
  }

 protected:
  void install_head(std::shared_ptr<nn::Linear<T>> head) override {
    chain_.set(chain_.size() - 1, *head);
    fc_ = head;
    this->replace_module("fc", std::move(head));
  }
  const Tensor<T>& forward_model(const Tensor<T>& x) override { return chain_.forward(x); }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    return chain_.backward(dy, need_input_grad);
  }

 private:
  void init_like_torchvision(Rng& rng) {
    for (auto& [name, m] : this->named_modules()) {
      if (auto* conv = dynamic_cast<nn::Conv2d<T>*>(m)) nn::init::kaiming_normal_fan_out(conv->weight(), rng);
      if (opt_.zero_init_residual) {
        if (auto* block = dynamic_cast<BasicBlock<T>*>(m)) nn::init::constant(block->bn2().weight(), T(0));
        if (auto* block = dynamic_cast<Bottleneck<T>*>(m)) nn::init::constant(block->bn3().weight(), T(0));
      }
    }
  }

  ResNetOptions opt_;
  std::shared_ptr<nn::Conv2d<T>> conv1_;
  std::shared_ptr<nn::BatchNorm2d<T>> bn1_;
  std::shared_ptr<nn::ReLU<T>> relu_;
  std::shared_ptr<nn::Linear<T>> fc_;
  std::unique_ptr<nn::ConvBnAct<T>> stem_;  // conv1 -> bn1 -> relu
  nn::Chain<T> chain_;
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
template <class T>
std::shared_ptr<ResNet<T>> resnet50(ResNetOptions o = {}) {
  o.layers = {3, 4, 6, 3};
  o.bottleneck = true;
  return std::make_shared<ResNet<T>>(o);
}

}  // namespace xfer::models
