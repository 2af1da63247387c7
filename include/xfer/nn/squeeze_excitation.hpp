// SqueezeExcitation: torchvision's block (ops/misc.py), y = x * scale_activation(fc2(activation(
// fc1(avgpool(x))))), with fc1/fc2 1x1 convolutions with bias, so the parameter names are
// torchvision's (features.4.block.2.fc1.weight, ...). MobileNetV3 uses ReLU / Hardsigmoid,
// EfficientNet SiLU / Sigmoid.
// The one thing to know: x feeds both the product and the squeeze branch, so dx is the sum of
// dy * scale and the branch's gradient, whose output gradient is sum over the plane of dy * x.
#pragma once

#include <memory>

#include "xfer/core/parallel.hpp"
#include "xfer/nn/activations.hpp"
#include "xfer/nn/chain.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/pooling.hpp"

namespace xfer::nn {

struct SqueezeExcitationOptions {
  int64_t input_channels = 0;
  int64_t squeeze_channels = 0;
  Activation activation = Activation::ReLU;
  Activation scale_activation = Activation::Sigmoid;
};

template <class T>
class SqueezeExcitation : public Module<T> {
 public:
  explicit SqueezeExcitation(SqueezeExcitationOptions o, Rng& rng = global_rng()) : opt_(o) {
    XFER_CHECK(o.input_channels > 0 && o.squeeze_channels > 0, "SqueezeExcitation: channels must be positive, got ",
               o.input_channels, " -> ", o.squeeze_channels);
    XFER_CHECK(o.activation != Activation::None && o.scale_activation != Activation::None,
               "SqueezeExcitation: activation and scale_activation are required");
    auto pool = this->register_module("avgpool", std::make_shared<AdaptiveAvgPool2d<T>>(1));
    fc1_ = this->register_module("fc1", std::make_shared<Conv2d<T>>(
        Conv2dOptions{.in_channels = o.input_channels, .out_channels = o.squeeze_channels, .kernel_size = 1}, rng));
    fc2_ = this->register_module("fc2", std::make_shared<Conv2d<T>>(
        Conv2dOptions{.in_channels = o.squeeze_channels, .out_channels = o.input_channels, .kernel_size = 1}, rng));
    auto act = this->register_module("activation", make_activation<T>(o.activation));
    auto scale = this->register_module("scale_activation", make_activation<T>(o.scale_activation));
    pool_ = pool.get();
    for (Module<T>* m : {static_cast<Module<T>*>(pool.get()), static_cast<Module<T>*>(fc1_.get()), act.get(),
                         static_cast<Module<T>*>(fc2_.get()), scale.get()})
      branch_.push(*m);
  }
  std::string type_name() const override { return "SqueezeExcitation"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.input_channels, " -> ", opt_.squeeze_channels);
  }
  const SqueezeExcitationOptions& options() const { return opt_; }
  Conv2d<T>& fc1() { return *fc1_; }
  Conv2d<T>& fc2() { return *fc2_; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() == 4 && x.dim(1) == opt_.input_channels, this->label(), ": expected an [N, ",
               opt_.input_channels, ", H, W] input, got shape ", shape_str(x.shape()));
    x_ = &x;
    s_ = &branch_.forward(x);  // [N, C, 1, 1]
    y_.resize(x.shape());
    const int64_t planes = x.dim(0) * x.dim(1), P = x.numel() / planes;
    const T *a = x.data(), *s = s_->data();
    T* y = y_.data();
    XFER_OMP_FOR(x.numel())
    for (int64_t t = 0; t < planes; ++t)
      for (int64_t p = 0; p < P; ++p) y[t * P + p] = a[t * P + p] * s[t];
    return y_;
  }

  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    this->check_output_grad(dy, y_.shape());
    const int64_t planes = dy.dim(0) * dy.dim(1), P = dy.numel() / planes;
    const T *g = dy.data(), *a = x_->data(), *s = s_->data();
    if (need_input_grad || fc1_->needs_grad() || fc2_->needs_grad()) {
      ds_.resize(s_->shape());
      T* d = ds_.data();
      XFER_OMP_FOR(dy.numel())
      for (int64_t t = 0; t < planes; ++t) {
        T acc = 0;
        for (int64_t p = 0; p < P; ++p) acc += g[t * P + p] * a[t * P + p];
        d[t] = acc;
      }
    }
    const Tensor<T>* db = (need_input_grad || fc1_->needs_grad() || fc2_->needs_grad())
                              ? &branch_.backward(ds_, need_input_grad) : nullptr;
    if (!need_input_grad) return this->empty_tensor();
    dx_.resize(dy.shape());
    const T* b = db->data();
    T* dx = dx_.data();
    XFER_OMP_FOR(dy.numel())
    for (int64_t t = 0; t < planes; ++t)
      for (int64_t p = 0; p < P; ++p) dx[t * P + p] = g[t * P + p] * s[t] + b[t * P + p];
    pool_->release_input_grad();  // the branch's input gradient is consumed
    return dx_;
  }

 private:
  SqueezeExcitationOptions opt_;
  std::shared_ptr<Conv2d<T>> fc1_, fc2_;
  Module<T>* pool_ = nullptr;
  Chain<T> branch_;  // avgpool -> fc1 -> activation -> fc2 -> scale_activation
  const Tensor<T>* x_ = nullptr;
  const Tensor<T>* s_ = nullptr;
  Tensor<T> y_, ds_, dx_;
};

}  // namespace xfer::nn
