// Conv2d: 2-D convolution over NCHW input with OIHW weights (torchvision names: weight, bias).
// A plain layer: BatchNorm (+ ReLU, + residual) applied in the GEMM epilogue is the job of
// nn::ConvBnAct (conv_bn_act.hpp), a unit that a block owns over its conv and BN children.
// groups and dilation as in PyTorch: weight is [out, in / groups, k, k]; groups == in_channels is
// a depthwise convolution (its own memory-bound kernel, kernels/depthwise.hpp).
#pragma once

#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/kernels/conv2d.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::nn {

struct Conv2dOptions {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_size = 3;
  int64_t stride = 1;
  int64_t padding = 0;
  bool bias = true;
  int64_t dilation = 1;
  int64_t groups = 1;  // must divide in_channels and out_channels
};

template <class T>
class Conv2d : public Module<T> {
 public:
  explicit Conv2d(Conv2dOptions o, Rng& rng = global_rng())
      : opt_(checked(o)),
        weight_(this->register_parameter("weight", {o.out_channels, o.in_channels / o.groups, o.kernel_size, o.kernel_size})),
        bias_(o.bias ? &this->register_parameter("bias", {o.out_channels}) : nullptr) {
    reset_parameters(rng);
  }

  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_channels, ", ", opt_.out_channels, ", kernel=", opt_.kernel_size,
                          ", stride=", opt_.stride, ", padding=", opt_.padding,
                          opt_.dilation != 1 ? ", dilation=" + std::to_string(opt_.dilation) : "",
                          opt_.groups != 1 ? ", groups=" + std::to_string(opt_.groups) : "", opt_.bias ? "" : ", bias=false");
  }
  const Conv2dOptions& options() const { return opt_; }
  Parameter<T>& weight() { return weight_; }
  Parameter<T>* bias() { return bias_; }

  void reset_parameters(Rng& rng) override {
    init::default_weight(weight_, rng);
    if (bias_) init::default_bias(*bias_, init::fan_in(weight_), rng);
  }

  // The geometry this layer applies to an input of the given shape (validates the shape).
  kernels::Conv2dGeometry geometry(const Shape& s) const {
    XFER_CHECK(s.size() == 4, this->label(), ": expected a 4-D NCHW input, got shape ", shape_str(s));
    XFER_CHECK(s[1] == opt_.in_channels, this->label(), ": expected input with ", opt_.in_channels,
               " channels, got shape ", shape_str(s), " (", s[1], " channels)");
    kernels::Conv2dGeometry g{.n = s[0], .c = s[1], .h = s[2], .w = s[3], .o = opt_.out_channels,
                              .kh = opt_.kernel_size, .kw = opt_.kernel_size, .sh = opt_.stride,
                              .sw = opt_.stride, .ph = opt_.padding, .pw = opt_.padding, .groups = opt_.groups,
                              .dil_h = opt_.dilation, .dil_w = opt_.dilation};
    g.finish();
    XFER_CHECK(g.oh > 0 && g.ow > 0, this->label(), ": input ", shape_str(s), " is smaller than the kernel (",
               opt_.kernel_size, "x", opt_.kernel_size, " with padding ", opt_.padding, " and dilation ", opt_.dilation, ")");
    return g;
  }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    geom_ = geometry(x.shape());
    x_ = &x;
    y_.resize({geom_.n, geom_.o, geom_.oh, geom_.ow});
    kernels::conv2d_forward(geom_, x.data(), weight_.value, bias_ ? bias_->value : nullptr, y_.data());
    return y_;
  }

  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    this->check_output_grad(dy, y_.shape());
    T* dw = weight_.needs_grad() ? weight_.grad : nullptr;
    T* db = (bias_ && bias_->needs_grad()) ? bias_->grad : nullptr;
    if (dw || db) kernels::conv2d_backward_weights(geom_, x_->data(), dy.data(), dw, db);
    if (!need_input_grad) return this->empty_tensor();
    dx_.resize(x_->shape());
    kernels::conv2d_backward_data(geom_, dy.data(), weight_.value, dx_.data());
    return dx_;
  }

 private:
  static Conv2dOptions checked(const Conv2dOptions& o) {
    XFER_CHECK(o.in_channels > 0 && o.out_channels > 0 && o.kernel_size > 0 && o.stride > 0 && o.padding >= 0 &&
                   o.dilation > 0 && o.groups > 0,
               "Conv2d: invalid options in_channels=", o.in_channels, " out_channels=", o.out_channels,
               " kernel_size=", o.kernel_size, " stride=", o.stride, " padding=", o.padding, " dilation=", o.dilation,
               " groups=", o.groups, " (channels, kernel, stride, dilation and groups must be positive, padding non-negative)");
    XFER_CHECK(o.in_channels % o.groups == 0 && o.out_channels % o.groups == 0, "Conv2d(", o.in_channels, ", ",
               o.out_channels, "): groups=", o.groups, " must divide both in_channels (", o.in_channels,
               ") and out_channels (", o.out_channels, ")");
    return o;
  }

  Conv2dOptions opt_;
  Parameter<T>& weight_;
  Parameter<T>* bias_;
  kernels::Conv2dGeometry geom_;
  const Tensor<T>* x_ = nullptr;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::nn
