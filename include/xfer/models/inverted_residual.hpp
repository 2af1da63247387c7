// InvertedResidual: the block of MobileNetV3 (torchvision's InvertedResidual) and of EfficientNet
// (torchvision's MBConv, which adds a StochasticDepth child), with torchvision's layout:
//   block = Sequential(expand 1x1 conv-BN-act (absent when expand == in), depthwise kxk
//           conv-BN-act, SqueezeExcitation (optional), project 1x1 conv-BN), then
//   y = [stochastic_depth](block(x)) + x when stride == 1 and in == out, else block(x).
// Names: block.0.0.weight, block.1.fc1.bias, ... like torchvision's state dict.
#pragma once

#include <memory>
#include <string>

#include "xfer/core/parallel.hpp"
#include "xfer/nn/conv_norm_activation.hpp"
#include "xfer/nn/sequential.hpp"
#include "xfer/nn/squeeze_excitation.hpp"
#include "xfer/nn/stochastic_depth.hpp"

namespace xfer::models {

// torchvision's _make_divisible(v, 8): the nearest multiple of `divisor` >= divisor, never below 0.9 v.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t n = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(n) < 0.9 * v) n += divisor;
  return n;
}

struct InvertedResidualOptions {
  int64_t in_channels = 16;
  int64_t expanded_channels = 16;
  int64_t out_channels = 16;
  int64_t kernel_size = 3;
  int64_t stride = 1;
  int64_t dilation = 1;
  nn::Activation activation = nn::Activation::ReLU;
  int64_t se_channels = 0;  // 0: no SqueezeExcitation
  nn::Activation se_activation = nn::Activation::ReLU;
  nn::Activation se_scale_activation = nn::Activation::Hardsigmoid;
  double bn_eps = 1e-3;
  double bn_momentum = 0.01;
  double stochastic_depth_prob = -1;  // >= 0: EfficientNet's MBConv with StochasticDepth(p, "row")
};

template <class T>
class InvertedResidual : public nn::Module<T> {
 public:
  explicit InvertedResidual(InvertedResidualOptions o, Rng& rng = global_rng()) : opt_(o) {
    XFER_CHECK(o.stride == 1 || o.stride == 2, "InvertedResidual: illegal stride ", o.stride, " (expected 1 or 2)");
    block_ = this->register_module("block", std::make_shared<nn::Sequential<T>>());
    const nn::ConvNormActivationOptions base{.activation = o.activation, .bn_eps = o.bn_eps, .bn_momentum = o.bn_momentum};
    auto cna = [&](int64_t in, int64_t out, int64_t k, int64_t stride, int64_t groups, int64_t dilation, nn::Activation a) {
      nn::ConvNormActivationOptions c = base;
      c.in_channels = in, c.out_channels = out, c.kernel_size = k, c.stride = stride, c.groups = groups;
      c.dilation = dilation, c.activation = a;
      block_->push_back(nn::conv_norm_activation<T>(c, rng));
    };
    if (o.expanded_channels != o.in_channels) cna(o.in_channels, o.expanded_channels, 1, 1, 1, 1, o.activation);
    cna(o.expanded_channels, o.expanded_channels, o.kernel_size, o.dilation > 1 ? 1 : o.stride, o.expanded_channels,
        o.dilation, o.activation);
    if (o.se_channels > 0)
      block_->push_back(std::make_shared<nn::SqueezeExcitation<T>>(
          nn::SqueezeExcitationOptions{.input_channels = o.expanded_channels, .squeeze_channels = o.se_channels,
                                       .activation = o.se_activation, .scale_activation = o.se_scale_activation},
          rng));
    cna(o.expanded_channels, o.out_channels, 1, 1, 1, 1, nn::Activation::None);
    if (o.stochastic_depth_prob >= 0)
      sd_ = this->register_module("stochastic_depth", std::make_shared<nn::StochasticDepth<T>>(o.stochastic_depth_prob));
    residual_ = o.stride == 1 && o.in_channels == o.out_channels;
  }
  std::string type_name() const override { return sd_ ? "MBConv" : "InvertedResidual"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_channels, " -> ", opt_.expanded_channels, " -> ", opt_.out_channels,
                                ", kernel=", opt_.kernel_size, ", stride=", opt_.stride, opt_.se_channels ? ", se" : "");
  }
  const InvertedResidualOptions& options() const { return opt_; }
  bool has_residual() const { return residual_; }
  nn::Sequential<T>& block() { return *block_; }
  nn::StochasticDepth<T>* stochastic_depth() { return sd_.get(); }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    const Tensor<T>& r = block_->forward(x);
    if (!residual_) return r;
    const Tensor<T>& b = sd_ ? sd_->forward(r) : r;
    y_.resize(x.shape());
    const int64_t n = x.numel();
    const T *a = b.data(), *s = x.data();
    T* y = y_.data();
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + s[i];
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!residual_) return block_->backward(dy, need_input_grad);
    if (!need_input_grad && !block_->needs_grad()) return this->empty_tensor();
    const Tensor<T>& g = sd_ ? sd_->backward(dy, true) : dy;
    const Tensor<T>& db = block_->backward(g, need_input_grad);
    if (sd_) sd_->release_input_grad();
    if (!need_input_grad) return this->empty_tensor();
    dx_.resize(dy.shape());
    const int64_t n = dy.numel();
    const T *a = db.data(), *d = dy.data();
    T* dx = dx_.data();
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) dx[i] = a[i] + d[i];
    block_->release_input_grad();
    return dx_;
  }

 private:
  InvertedResidualOptions opt_;
  std::shared_ptr<nn::Sequential<T>> block_;
  std::shared_ptr<nn::StochasticDepth<T>> sd_;
  bool residual_ = false;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::models
