// Flatten: [N, d1, d2, ...] -> [N, d1*d2*...].
#pragma once

#include "xfer/nn/module.hpp"

namespace xfer::nn {

template <class T>
class Flatten : public Module<T> {
 public:
  std::string type_name() const override { return "Flatten"; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() >= 1, this->label(), ": expected at least a 1-D input");
    in_shape_ = x.shape();
    y_.resize({x.dim(0), x.dim(0) ? x.numel() / x.dim(0) : 0});
    std::copy(x.begin(), x.end(), y_.begin());
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    XFER_CHECK(dy.numel() == shape_numel(in_shape_), this->label(), ": output gradient has shape ",
               shape_str(dy.shape()), ", expected ", shape_str(y_.shape()));
    dx_.resize(in_shape_);
    std::copy(dy.begin(), dy.end(), dx_.begin());
    return dx_;
  }

 private:
  Shape in_shape_;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::nn
