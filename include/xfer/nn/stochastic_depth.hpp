// StochasticDepth: torchvision's ops.StochasticDepth(p, mode). In training, mode "row" keeps each
// sample's whole tensor with probability 1 - p (scaled by 1 / (1 - p)) and zeroes it otherwise;
// mode "batch" draws once for the batch. Identity in eval and when p == 0. EfficientNet applies it
// to the residual branch of each MBConv (p growing linearly with depth). Draws from its own Rng.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "xfer/nn/module.hpp"

namespace xfer::nn {

enum class StochasticDepthMode { Row, Batch };

template <class T>
class StochasticDepth : public Module<T> {
 public:
  explicit StochasticDepth(double p, StochasticDepthMode mode = StochasticDepthMode::Row)
      : p_(p), mode_(mode), rng_(global_rng().next_u64()) {
    XFER_CHECK(p >= 0 && p <= 1, "StochasticDepth: drop probability has to be between 0 and 1, got ", p);
  }
  std::string type_name() const override { return "StochasticDepth"; }
  std::string extra_repr() const override {
    return xfer::detail::concat("p=", p_, ", mode=", mode_ == StochasticDepthMode::Row ? "row" : "batch");
  }
  double p() const { return p_; }
  void set_seed(uint64_t s) { rng_.seed(s); }
  // The per-sample factors of the last training forward (0 or 1 / (1 - p)).
  const std::vector<T>& noise() const { return noise_; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() >= 1 && x.dim(0) > 0, this->label(), ": expected a batch, got shape ", shape_str(x.shape()));
    y_.resize(x.shape());
    active_ = this->is_training() && p_ > 0;
    if (!active_) {
      std::copy(x.begin(), x.end(), y_.begin());
      return y_;
    }
    const int64_t rows = x.dim(0), per = x.numel() / rows;
    const double survival = 1.0 - p_;
    noise_.assign(static_cast<size_t>(rows), T(0));
    T draw = T(0);
    for (int64_t r = 0; r < rows; ++r) {
      if (r == 0 || mode_ == StochasticDepthMode::Row)
        draw = rng_.uniform() < survival ? static_cast<T>(1.0 / survival) : T(0);
      noise_[static_cast<size_t>(r)] = draw;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < per; ++i) y_[r * per + i] = x[r * per + i] * noise_[static_cast<size_t>(r)];
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_tensor();
    this->check_output_grad(dy, y_.shape());
    dx_.resize(dy.shape());
    if (!active_) {
      std::copy(dy.begin(), dy.end(), dx_.begin());
      return dx_;
    }
    const int64_t rows = dy.dim(0), per = dy.numel() / rows;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < per; ++i) dx_[r * per + i] = dy[r * per + i] * noise_[static_cast<size_t>(r)];
    return dx_;
  }

 private:
  double p_;
  StochasticDepthMode mode_;
  Rng rng_;
  bool active_ = false;
  std::vector<T> noise_;
  Tensor<T> y_, dx_;
};

}  // namespace xfer::nn
