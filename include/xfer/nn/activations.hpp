// The activations of MobileNetV3 and EfficientNet, elementwise like PyTorch's modules:
//   Hardsigmoid(x) = relu6(x + 3) / 6,  Hardswish(x) = x * relu6(x + 3) / 6,  SiLU(x) = x * sigmoid(x),
//   Sigmoid(x) = 1 / (1 + exp(-x)); and make_activation(Activation) for blocks that take one by name.
// The one thing to know: the derivatives at the kinks follow PyTorch 1.13 (hardsigmoid: 1/6 only
// strictly inside (-3, 3); hardswish: x / 3 + 1/2 on [-3, 3), 1 at 3), and the formulas are torch's
// own, so values and gradients agree with torch's at every input, kinks included. (torch's double
// hardsigmoid gradient uses 1/6 rounded to float; ours is exact.) Each layer keeps a pointer to its
// input for backward. Float SiLU and Sigmoid run the vectorised kernels of kernels/activation.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>
#include <string>

#include "xfer/core/parallel.hpp"
#include "xfer/kernels/activation.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/relu.hpp"

namespace xfer::nn {

namespace detail {
// An elementwise layer from F::value(x) and F::derivative(x).
template <class T, class F>
class Elementwise : public Module<T> {
 public:
  std::string type_name() const override { return F::name(); }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    x_ = &x;
    y_.resize(x.shape());
    const int64_t n = x.numel();
    const T* a = x.data();
    T* b = y_.data();
    if constexpr (std::is_same_v<T, float> && requires { F::kernel; }) {
      kernels::exp_activation_forward<F::kernel>(a, b, n);
      return y_;
    }
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) b[i] = F::value(a[i]);
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    this->check_output_grad(dy, x_->shape());
    dx_.resize(dy.shape());
    const int64_t n = dy.numel();
    const T *g = dy.data(), *a = x_->data();
    T* d = dx_.data();
    if constexpr (std::is_same_v<T, float> && requires { F::kernel; }) {
      kernels::exp_activation_backward<F::kernel>(a, g, d, n);
      return dx_;
    }
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) d[i] = g[i] * F::derivative(a[i]);
    return dx_;
  }

 private:
  const Tensor<T>* x_ = nullptr;
  Tensor<T> y_, dx_;
};

struct HardsigmoidFn {
  static std::string name() { return "Hardsigmoid"; }
  template <class T>
  static T value(T x) {
    return std::min(std::max(x + T(3), T(0)), T(6)) / T(6);
  }
  template <class T>
  static T derivative(T x) {
    return x > T(-3) && x < T(3) ? T(1) / T(6) : T(0);
  }
};
struct HardswishFn {
  static std::string name() { return "Hardswish"; }
  template <class T>
  static T value(T x) {
    return x * std::min(std::max(x + T(3), T(0)), T(6)) / T(6);
  }
  template <class T>
  static T derivative(T x) {
    return x < T(-3) ? T(0) : x < T(3) ? x / T(3) + T(0.5) : T(1);
  }
};
struct SiLUFn {
  static constexpr kernels::ExpActivation kernel = kernels::ExpActivation::SiLU;  // the float path
  static std::string name() { return "SiLU"; }
  template <class T>
  static T sigmoid(T x) {
    return T(1) / (T(1) + std::exp(-x));
  }
  template <class T>
  static T value(T x) {
    return x / (T(1) + std::exp(-x));
  }
  template <class T>
  static T derivative(T x) {
    const T s = sigmoid(x);
    return s * (T(1) + x * (T(1) - s));
  }
};
struct SigmoidFn {
  static constexpr kernels::ExpActivation kernel = kernels::ExpActivation::Sigmoid;  // the float path
  static std::string name() { return "Sigmoid"; }
  template <class T>
  static T value(T x) {
    return T(1) / (T(1) + std::exp(-x));
  }
  template <class T>
  static T derivative(T x) {
    const T s = value(x);
    return s * (T(1) - s);
  }
};
}  // namespace detail

template <class T>
class Hardsigmoid : public detail::Elementwise<T, detail::HardsigmoidFn> {};
template <class T>
class Hardswish : public detail::Elementwise<T, detail::HardswishFn> {};
template <class T>
class SiLU : public detail::Elementwise<T, detail::SiLUFn> {};
template <class T>
class Sigmoid : public detail::Elementwise<T, detail::SigmoidFn> {};

// The activation a block is configured with (torchvision passes the class; None: no module).
enum class Activation { None, ReLU, Hardswish, Hardsigmoid, SiLU, Sigmoid };

template <class T>
std::shared_ptr<Module<T>> make_activation(Activation a) {
  switch (a) {
    case Activation::ReLU: return std::make_shared<ReLU<T>>();
    case Activation::Hardswish: return std::make_shared<Hardswish<T>>();
    case Activation::Hardsigmoid: return std::make_shared<Hardsigmoid<T>>();
    case Activation::SiLU: return std::make_shared<SiLU<T>>();
    case Activation::Sigmoid: return std::make_shared<Sigmoid<T>>();
    case Activation::None: break;
  }
  return nullptr;
}

}  // namespace xfer::nn
