// ResNet-18 with torchvision's layout and parameter names (conv1, bn1, layer1.0.conv1, ...,
// layer2.0.downsample.0, fc). Stem::ImageNet is torchvision's 7x7/2 conv + 3x3/2 max-pool;
// Stem::Cifar is the 3x3/1 conv without max-pool used for 32x32 inputs (same parameter names,
// conv1.weight is [64, 3, 3, 3]). The block beside the model, as in torchvision's resnet.py:
// BasicBlock, relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); conv1 carries the stride; the
// shortcut is identity or downsample = Sequential(1x1 conv, BN), giving torchvision's names
// (conv1, bn1, conv2, bn2, downsample.0, downsample.1).
#pragma once

#include <array>
#include <memory>

#include "xfer/models/model.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::models {

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
      auto ds_conv = downsample_->push_back(std::make_shared<nn::Conv2d<T>>(nn::Conv2dOptions{o.in_channels, o.out_channels, 1, o.stride, 0, false}, rng));
      ds_conv->fold_into(downsample_->push_back(std::make_shared<nn::BatchNorm2d<T>>(o.out_channels)).get());
    }
    // Eval-mode / frozen BN folds into the convolutions; conv2 then also adds the shortcut and
    // applies the final ReLU in its epilogue (see forward_impl).
    conv1_->fold_into(bn1_.get(), &relu_mid_);
    conv2_->fold_into(bn2_.get(), &relu_out_);
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

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    const Tensor<T>& s = downsample_ ? downsample_->forward(x) : x;
    const Tensor<T>& mid = relu_mid_.forward(bn1_->forward(conv1_->forward(x)));
    if (conv2_->folds_bn()) {
      // relu(bn2(conv2(mid)) + s) in conv2's epilogue: bn2 and relu_out_ pass its output through.
      const Shape expect{s.dim(0), conv2_->options().out_channels, mid.dim(2), mid.dim(3)};
      XFER_CHECK(s.shape() == expect, this->label(), ": shortcut shape ", shape_str(s.shape()),
                 " differs from residual branch shape ", shape_str(expect));
      conv2_->set_residual(&s);
      struct Clear {
        nn::Conv2d<T>* c;
        ~Clear() { c->set_residual(nullptr); }
      } clear{conv2_.get()};
      return relu_out_.forward(bn2_->forward(conv2_->forward(mid)));
    }
    // Otherwise bn2 adds the shortcut and applies the ReLU in its normalisation pass.
    const Tensor<T>& h = conv2_->forward(mid);
    XFER_CHECK(h.shape() == s.shape(), this->label(), ": residual branch shape ", shape_str(h.shape()),
               " differs from shortcut shape ", shape_str(s.shape()));
    bn2_->set_residual(&s);
    struct Clear {
      nn::BatchNorm2d<T>* b;
      ~Clear() { b->set_residual(nullptr); }
    } clear{bn2_.get()};
    return relu_out_.forward(bn2_->forward(h));
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    const Tensor<T>& d = relu_out_.backward(dy);
    std::vector<nn::Module<T>*> main{conv1_.get(), bn1_.get(), &relu_mid_, conv2_.get(), bn2_.get()};
    const Tensor<T>* dmain = nn::detail::chain_backward(main, d, need_input_grad);
    const Tensor<T>* dshort = &d;
    if (downsample_) {
      const bool run = need_input_grad || downsample_->has_trainable();
      dshort = run ? &downsample_->backward(d, need_input_grad) : nullptr;
    }
    if (!need_input_grad) {
      relu_out_.release_input_grad();
      return this->empty_tensor();
    }
    dx_.resize(dmain->shape());
    const int64_t n = dx_.numel();
    const T *a = dmain->data(), *b = dshort->data();
    T* out = dx_.data();
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
    // All three gradients are consumed (dshort may be d itself: released once, through relu_out_).
    conv1_->release_input_grad();
    if (downsample_) downsample_->release_input_grad();
    relu_out_.release_input_grad();
    return dx_;
  }

 private:
  BasicBlockOptions opt_;
  std::shared_ptr<nn::Conv2d<T>> conv1_, conv2_;
  std::shared_ptr<nn::BatchNorm2d<T>> bn1_, bn2_;
  std::shared_ptr<nn::Sequential<T>> downsample_;
  nn::ReLU<T> relu_mid_, relu_out_;  // stateful (they cache outputs), so one per use; no parameters
  Tensor<T> dx_;
};

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
        stage->push_back(std::make_shared<BasicBlock<T>>(BasicBlockOptions{in, widths[static_cast<size_t>(s)], stride}, rng));
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
        if (auto* block = dynamic_cast<BasicBlock<T>*>(m)) nn::init::constant(block->bn2().weight(), T(0));
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
