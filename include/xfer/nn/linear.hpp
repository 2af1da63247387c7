// Linear: y = x W^T + b for x of shape [N, in_features] (names: weight [out, in], bias [out]).
#pragma once

#include "xfer/kernels/linear.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::nn {

struct LinearOptions {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
};

template <class T>
class Linear : public Module<T> {
 public:
  explicit Linear(LinearOptions o, Rng& rng = global_rng())
      : opt_(o),
        weight_(this->register_parameter("weight", {std::max<int64_t>(o.out_features, 0), std::max<int64_t>(o.in_features, 0)})),
        bias_(o.bias ? &this->register_parameter("bias", {std::max<int64_t>(o.out_features, 0)}) : nullptr) {
    XFER_CHECK(o.in_features > 0 && o.out_features > 0, "Linear: in_features and out_features must be positive, got ",
               o.in_features, " -> ", o.out_features);
    reset_parameters(rng);
  }
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_features, " -> ", opt_.out_features, opt_.bias ? "" : ", bias=false");
  }
  const LinearOptions& options() const { return opt_; }
  Parameter<T>& weight() { return weight_; }
  Parameter<T>* bias() { return bias_; }

  void reset_parameters(Rng& rng) override {
    init::default_weight(weight_, rng);
    if (bias_) init::default_bias(*bias_, opt_.in_features, rng);
  }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() == 2 && x.dim(1) == opt_.in_features, this->label(), ": expected input of shape [N, ",
               opt_.in_features, "], got ", shape_str(x.shape()));
    x_ = &x;
    const int64_t N = x.dim(0);
    y_.resize({N, opt_.out_features});
    kernels::linear_forward(N, opt_.in_features, opt_.out_features, x.data(), weight_.value,
                            bias_ ? bias_->value : static_cast<const T*>(nullptr), y_.data());
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    this->check_output_grad(dy, y_.shape());
    if (need_input_grad) dx_.resize(x_->shape());
    kernels::linear_backward(dy.dim(0), opt_.in_features, opt_.out_features, x_->data(), weight_.value, dy.data(),
                             weight_.needs_grad() ? weight_.grad : nullptr,
                             bias_ && bias_->needs_grad() ? bias_->grad : nullptr, need_input_grad ? dx_.data() : nullptr);
    return need_input_grad ? dx_ : this->empty_tensor();
  }

 private:
  LinearOptions opt_;
  Parameter<T>& weight_;
  Parameter<T>* bias_;
  const Tensor<T>* x_ = nullptr;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::nn
