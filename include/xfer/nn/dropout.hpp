// Dropout (inverted): in training zeroes each element with probability p and scales the rest by
// 1/(1-p); identity in eval. Draws from its own Rng (seeded from global_rng() or set_seed).
#pragma once

#include <vector>

#include "xfer/nn/module.hpp"

namespace xfer::nn {

template <class T>
class Dropout : public Module<T> {
 public:
  explicit Dropout(double p = 0.5) : p_(p), rng_(global_rng().next_u64()) {
    XFER_CHECK(p >= 0 && p < 1, "Dropout: probability must be in [0, 1), got ", p);
  }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override { return xfer::detail::concat("p=", p_); }
  void set_seed(uint64_t s) { rng_.seed(s); }
  Rng& rng() { return rng_; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    y_.resize(x.shape());
    active_ = this->is_training() && p_ > 0;
    if (!active_) {
      std::copy(x.begin(), x.end(), y_.begin());
      return y_;
    }
    mask_.resize(x.shape());
    const T keep_scale = static_cast<T>(1.0 / (1.0 - p_));
    for (int64_t i = 0; i < x.numel(); ++i) {
      mask_[i] = rng_.uniform() < p_ ? T(0) : keep_scale;
      y_[i] = x[i] * mask_[i];
    }
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    this->check_output_grad(dy, y_.shape());
    dx_.resize(dy.shape());
    for (int64_t i = 0; i < dy.numel(); ++i) dx_[i] = active_ ? dy[i] * mask_[i] : dy[i];
    return dx_;
  }

 private:
  double p_;
  Rng rng_;
  bool active_ = false;
  Tensor<T> y_, dx_, mask_;
};

}  // namespace xfer::nn
