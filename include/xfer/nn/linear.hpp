// Linear: y = x W^T + b for x of shape [N, in_features] (names: weight [out, in], bias [out]).
#pragma once

#include <type_traits>

#include "xfer/kernels/gemm.hpp"
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
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat>;
  using MMap = Eigen::Map<Mat>;

  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() == 2 && x.dim(1) == opt_.in_features, this->label(), ": expected input of shape [N, ",
               opt_.in_features, "], got ", shape_str(x.shape()));
    x_ = &x;
    const int64_t N = x.dim(0);
    y_.resize({N, opt_.out_features});
    CMap X(x.data(), N, opt_.in_features), W(weight_.value, opt_.out_features, opt_.in_features);
    MMap Y(y_.data(), N, opt_.out_features);
#ifdef __AVX512F__
    if constexpr (std::is_same_v<T, float>) {
      // xfer's GEMM, not Eigen's: Eigen's threaded GEMM spin-waits between its own threads, which
      // costs more than the product itself on a small head (and nests badly with OpenMP).
      // Y^T[out, N] = W[out, in] X^T, with the bias per row of Y^T.
      const int64_t I = opt_.in_features, O = opt_.out_features;
      kernels::gemm(O, N, I, kernels::row_major(weight_.value, I), kernels::transposed(x.data(), I),
                    kernels::View<float>{y_.data(), {1}, {O}}, {.row_bias = bias_ ? bias_->value : nullptr});
      return y_;
    }
#endif
    Y.noalias() = X * W.transpose();
    if (bias_) Y.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias_->value, opt_.out_features);
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    XFER_CHECK(dy.shape() == y_.shape(), this->label(), ": output gradient has shape ", shape_str(dy.shape()),
               ", expected ", shape_str(y_.shape()));
    const int64_t N = dy.dim(0);
#ifdef __AVX512F__
    if constexpr (std::is_same_v<T, float>) {
      const int64_t I = opt_.in_features, O = opt_.out_features;
      // dW[out, in] += G^T X;  db += column sums of G;  dX[N, in] = G W.
      if (weight_.trainable)
        kernels::gemm(O, I, N, kernels::transposed(dy.data(), O), kernels::row_major(x_->data(), I),
                      kernels::View<float>{weight_.grad, {I}, {1}}, {.accumulate = true});
      if (bias_ && bias_->trainable)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t o = 0; o < O; ++o) bias_->grad[o] += dy[n * O + o];
      if (!need_input_grad) return this->empty_tensor();
      dx_.resize(x_->shape());
      kernels::gemm(N, I, O, kernels::row_major(dy.data(), O), kernels::row_major<float>(weight_.value, I),
                    kernels::View<float>{dx_.data(), {I}, {1}});
      return dx_;
    }
#endif
    CMap G(dy.data(), N, opt_.out_features), X(x_->data(), N, opt_.in_features);
    if (weight_.trainable) MMap(weight_.grad, opt_.out_features, opt_.in_features).noalias() += G.transpose() * X;
    if (bias_ && bias_->trainable)
      Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias_->grad, opt_.out_features) += G.colwise().sum();
    if (!need_input_grad) return this->empty_tensor();
    dx_.resize(x_->shape());
    MMap(dx_.data(), N, opt_.in_features).noalias() =
        G * CMap(weight_.value, opt_.out_features, opt_.in_features);
    return dx_;
  }

 private:
  LinearOptions opt_;
  Parameter<T>& weight_;
  Parameter<T>* bias_;
  const Tensor<T>* x_ = nullptr;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::nn
