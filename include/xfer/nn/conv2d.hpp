// Conv2d: 2-D convolution over NCHW input with OIHW weights (torchvision names: weight, bias).
// A model may pair it with the BatchNorm2d that consumes its output and the ReLU after that
// (fold_into()); while that BN is foldable() the convolution applies BN (and the ReLU, and a
// residual the ResNet block hands it) in the GEMM epilogue, and those layers pass its output through.
#pragma once

#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/kernels/conv2d.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/relu.hpp"

namespace xfer::nn {

struct Conv2dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_size = 3;
  int64_t stride = 1;
  int64_t padding = 0;
  bool bias = true;
};

template <class T>
class Conv2d : public Module<T> {
 public:
  explicit Conv2d(Conv2dOptions o, Rng& rng = global_rng())
      : opt_(o),
        weight_(this->register_parameter("weight", {o.out_channels, o.in_channels, o.kernel_size, o.kernel_size})),
        bias_(o.bias ? &this->register_parameter("bias", {o.out_channels}) : nullptr) {
    XFER_CHECK(o.in_channels > 0 && o.out_channels > 0 && o.kernel_size > 0 && o.stride > 0 && o.padding >= 0,
               "Conv2d: invalid options in_channels=", o.in_channels, " out_channels=", o.out_channels,
               " kernel_size=", o.kernel_size, " stride=", o.stride, " padding=", o.padding,
               " (channels, kernel and stride must be positive, padding non-negative)");
    reset_parameters(rng);
  }

  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_channels, ", ", opt_.out_channels, ", kernel=", opt_.kernel_size,
                          ", stride=", opt_.stride, ", padding=", opt_.padding, opt_.bias ? "" : ", bias=false");
  }
  const Conv2dOptions& options() const { return opt_; }
  Parameter<T>& weight() { return weight_; }
  Parameter<T>* bias() { return bias_; }

  void reset_parameters(Rng& rng) override {
    init::default_weight(weight_, rng);
    if (bias_) init::default_bias(*bias_, init::fan_in(weight_), rng);
  }

  // Pairs this convolution with the BatchNorm2d that is applied to its output, and nothing else,
  // and optionally the ReLU applied right after that BN.
  void fold_into(BatchNorm2d<T>* bn, ReLU<T>* relu = nullptr) {
    XFER_CHECK(bn == nullptr || bn->options().num_features == opt_.out_channels, this->label(),
               ": cannot fold a BatchNorm2d with ", bn ? bn->options().num_features : 0, " channels");
    XFER_CHECK(bn != nullptr || relu == nullptr, this->label(), ": a ReLU can only be fused together with a BatchNorm2d");
    if (bn_) bn_->set_following_relu(nullptr);
    bn_ = bn;
    relu_ = relu;
    if (bn_) bn_->set_following_relu(relu_);  // unfolded, BN applies the ReLU in its own pass
  }
  // True when the next forward applies the paired BN in its epilogue.
  bool folds_bn() const { return bn_ != nullptr && bn_->foldable(); }
  // A tensor shaped like the output that the next folded forward adds before the ReLU (the ResNet
  // block's shortcut); only valid while folds_bn(). Cleared by passing nullptr.
  void set_residual(const Tensor<T>* r) { residual_ = r; }

  // The geometry this layer applies to an input of the given shape (validates the shape).
  kernels::Conv2dGeometry geometry(const Shape& s) const {
    XFER_CHECK(s.size() == 4, this->label(), ": expected a 4-D NCHW input, got shape ", shape_str(s));
    XFER_CHECK(s[1] == opt_.in_channels, this->label(), ": expected input with ", opt_.in_channels,
               " channels, got shape ", shape_str(s), " (", s[1], " channels)");
    kernels::Conv2dGeometry g{.n = s[0], .c = s[1], .h = s[2], .w = s[3], .o = opt_.out_channels,
                              .kh = opt_.kernel_size, .kw = opt_.kernel_size, .sh = opt_.stride,
                              .sw = opt_.stride, .ph = opt_.padding, .pw = opt_.padding};
    g.finish();
    XFER_CHECK(g.oh > 0 && g.ow > 0, this->label(), ": input ", shape_str(s), " is smaller than the kernel (",
               opt_.kernel_size, "x", opt_.kernel_size, " with padding ", opt_.padding, ")");
    return g;
  }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    geom_ = geometry(x.shape());
    x_ = &x;
    y_.resize({geom_.n, geom_.o, geom_.oh, geom_.ow});
    if (folds_bn()) {
      // y = relu?(scale * conv(x, w) + shift + residual), with BN's scale/shift recomputed each time
      // (O values) so the fold can never go stale when parameters or statistics change.
      const int64_t O = geom_.o;
      folded_.resize(static_cast<size_t>(2 * O));
      T* scale = folded_.data() + O;
      T* shift = folded_.data();
      bn_->fold_coefficients(scale, shift);
      if (bias_)
        for (int64_t o = 0; o < O; ++o) shift[o] += bias_->value[o] * scale[o];
      if (residual_)
        XFER_CHECK(residual_->shape() == y_.shape(), this->label(), ": residual of shape ", shape_str(residual_->shape()),
                   ", expected ", shape_str(y_.shape()));
      kernels::conv2d_forward(geom_, x.data(), weight_.value, y_.data(),
                              kernels::ConvEpilogue<T>{.scale = scale, .shift = shift,
                                                       .residual = residual_ ? residual_->data() : nullptr,
                                                       .relu = relu_ != nullptr});
      bn_->set_folded_input(&y_);
      if (relu_) relu_->set_fused_input(&y_);
      return y_;
    }
    XFER_CHECK(residual_ == nullptr, this->label(), ": a residual is only fused while the paired BatchNorm2d folds");
    if (bn_) bn_->set_folded_input(nullptr);  // BN normalises (and applies the ReLU) itself
    kernels::conv2d_forward(geom_, x.data(), weight_.value, bias_ ? bias_->value : nullptr, y_.data());
    return y_;
  }

  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    XFER_CHECK(dy.shape() == y_.shape(), this->label(), ": output gradient has shape ", shape_str(dy.shape()),
               ", expected ", shape_str(y_.shape()));
    T* dw = weight_.trainable ? weight_.grad : nullptr;
    T* db = (bias_ && bias_->trainable) ? bias_->grad : nullptr;
    if (dw || db) kernels::conv2d_backward_weights(geom_, x_->data(), dy.data(), dw, db);
    if (!need_input_grad) return this->empty_tensor();
    dx_.resize(x_->shape());
    kernels::conv2d_backward_data(geom_, dy.data(), weight_.value, dx_.data());
    return dx_;
  }

 private:
  Conv2dOptions opt_;
  Parameter<T>& weight_;
  Parameter<T>* bias_;
  kernels::Conv2dGeometry geom_;
  const Tensor<T>* x_ = nullptr;
  Tensor<T> y_, dx_;
  BatchNorm2d<T>* bn_ = nullptr;  // paired BN (owned by the model), see fold_into()
  ReLU<T>* relu_ = nullptr;       // paired ReLU after that BN
  const Tensor<T>* residual_ = nullptr;
  AlignedVector<T> folded_;  // BN's folded shift and scale
};

}  // namespace xfer::nn
