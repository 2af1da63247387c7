// ReLU: y = max(x, 0). Backward uses the output's sign, so the input need not be kept.
// (After a conv + BN, nn::ConvBnAct applies it inside the unit; this layer then does not run.)
#pragma once

#include "xfer/core/parallel.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::nn {

namespace detail {
// dx = dy where the ReLU's output y is positive, else 0 (shapes equal; dx is resized).
template <class T>
void relu_backward(const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>& dx) {
  dx.resize(dy.shape());
  const int64_t n = dy.numel();
  const T* g = dy.data();
  const T* o = y.data();
  T* d = dx.data();
  XFER_OMP_FOR(n)
  for (int64_t i = 0; i < n; ++i) d[i] = o[i] > T(0) ? g[i] : T(0);
}
}  // namespace detail

template <class T>
class ReLU : public Module<T> {
 public:
  std::string type_name() const override { return "ReLU"; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    y_.resize(x.shape());
    const int64_t n = x.numel();
    const T* a = x.data();
    T* b = y_.data();
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) b[i] = a[i] > T(0) ? a[i] : T(0);
    out_ = &y_;
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    XFER_CHECK(out_ != nullptr, this->label(), ": backward called before forward");
    this->check_output_grad(dy, out_->shape());
    detail::relu_backward(*out_, dy, dx_);
    return dx_;
  }

 private:
  Tensor<T> y_, dx_;
  const Tensor<T>* out_ = nullptr;  // the last output
};

}  // namespace xfer::nn
