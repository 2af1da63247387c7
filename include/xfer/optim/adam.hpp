// Adam and AdamW with exactly torch.optim.Adam / AdamW's (1.13) update rule, per parameter:
//   step += 1;  Adam: g += wd * p  |  AdamW: p *= 1 - lr * wd   (decoupled decay)
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g  (amsgrad: v_max = max(v_max, v))
//   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// The one thing to know: eps is added after the bias-corrected square root, as PyTorch does (not
// to v_hat inside the root), and the step count is kept per parameter, so a parameter that joins
// or unfreezes later starts its own bias correction at step 1.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/optim/optimizer.hpp"

namespace xfer::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::array<double, 2> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;  // L2 penalty added to the gradient
  bool amsgrad = false;
  bool maximize = false;
};

// Same fields as AdamOptions; only the weight-decay default differs (PyTorch's AdamW uses 1e-2).
struct AdamWOptions {
  double lr = 1e-3;
  std::array<double, 2> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p *= 1 - lr * weight_decay before the Adam step
  bool amsgrad = false;
  bool maximize = false;
};

namespace detail {
inline void validate(const AdamOptions& o, const std::string& where) {
  check_lr(o.lr, where);
  check_weight_decay(o.weight_decay, where);
  XFER_CHECK(std::isfinite(o.eps) && o.eps >= 0, where, ": eps must be a finite value >= 0, got ", o.eps);
  for (int k = 0; k < 2; ++k)
    XFER_CHECK(o.betas[k] >= 0 && o.betas[k] < 1, where, ": betas[", k, "] must be in [0, 1), got ", o.betas[k]);
}
template <class T>
struct AdamScalars {
  T b1, b2, one_minus_b1, one_minus_b2, bc2_sqrt, eps, neg_step_size, wd, decay_factor, sign;
};

// One Adam step over n elements, in PyTorch's order of operations. Works in L1-sized blocks so the
// square root runs through Eigen's vectorised (correctly rounded) sqrt: a plain std::sqrt keeps
// GCC's errno branch in the loop and the loop scalar. Threads split the fixed blocks, so the
// result does not depend on the thread count.
template <class T, bool Amsgrad, bool L2>
void adam_kernel(int64_t n, T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v,
                 T* __restrict vmax, const AdamScalars<T> k) {
  constexpr int64_t B = 1024;
  const int64_t blocks = (n + B - 1) / B;
  XFER_OMP_FOR(n * 12)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    alignas(64) T root[B];
    const int64_t i0 = blk * B, len = std::min(B, n - i0);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t i = i0 + j;
      const T wi = w[i] * k.decay_factor;  // AdamW's decoupled decay (factor 1 for Adam)
      T gi = k.sign * g[i];
      if constexpr (L2) gi = gi + k.wd * wi;  // Adam's weight decay
      w[i] = wi;
      m[i] = m[i] * k.b1 + k.one_minus_b1 * gi;
      const T vi = v[i] * k.b2 + k.one_minus_b2 * gi * gi;
      v[i] = vi;
      if constexpr (Amsgrad)
        root[j] = vmax[i] = std::max(vmax[i], vi);
      else
        root[j] = vi;
    }
    Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, Eigen::Aligned64> r(root, len);
    r = r.sqrt();
    for (int64_t j = 0; j < len; ++j) {
      const int64_t i = i0 + j;
      const T denom = root[j] / k.bc2_sqrt + k.eps;
      w[i] = w[i] + k.neg_step_size * (m[i] / denom);
    }
  }
}

inline AdamOptions as_adam(const AdamWOptions& o) {
  return {.lr = o.lr, .betas = o.betas, .eps = o.eps, .weight_decay = o.weight_decay, .amsgrad = o.amsgrad,
          .maximize = o.maximize};
}
}  // namespace detail

template <class T>
class Adam : public Optimizer<T> {
 public:
  Adam(const std::vector<nn::Parameter<T>*>& params, AdamOptions o = {}) : opt_(o) {
    detail::validate(opt_, kind());
    this->init_groups(params);
  }
  Adam(const std::vector<ParamGroupSpec<T>>& groups, AdamOptions o = {}) : opt_(o) {
    detail::validate(opt_, kind());
    this->init_groups(groups);
  }

  std::string kind() const override { return decoupled_ ? "AdamW" : "Adam"; }
  const AdamOptions& options() const { return opt_; }
  // Sets betas[0] (OneCycleLR cycles it as the momentum); validated like the constructor's option.
  void set_beta1(double b1) {
    AdamOptions o = opt_;
    o.betas[0] = b1;
    detail::validate(o, kind() + "::set_beta1");
    opt_ = o;
  }

 protected:
  using typename Optimizer<T>::ParamState;

  // For AdamW.
  Adam(AdamOptions o, bool decoupled) : opt_(o), decoupled_(decoupled) { detail::validate(opt_, kind()); }

  void update(const ParamGroup<T>& group, nn::Parameter<T>& p, ParamState& st) override {
    const bool ams = opt_.amsgrad;
    if (st.slots.empty()) {
      st.slots.emplace_back(p.shape);  // exp_avg
      st.slots.emplace_back(p.shape);  // exp_avg_sq
      if (ams) st.slots.emplace_back(p.shape);  // max_exp_avg_sq
    }
    ++st.step;
    // Scalar factors in double, as PyTorch computes them in Python, then rounded to T.
    const double beta1 = opt_.betas[0], beta2 = opt_.betas[1];
    const double step = static_cast<double>(st.step);
    const double bias_correction1 = 1 - std::pow(beta1, step);
    const double bias_correction2 = 1 - std::pow(beta2, step);
    const T neg_step_size = static_cast<T>(-(group.lr / bias_correction1));
    const T bc2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
    const T one_minus_b1 = static_cast<T>(1 - beta1), one_minus_b2 = static_cast<T>(1 - beta2);
    const T eps = static_cast<T>(opt_.eps);
    // Decoupled decay and maximize as factors (x * 1 and x * -1 are exact), so the loop has no
    // branches and vectorises.
    const bool l2 = !decoupled_ && group.weight_decay != 0;
    const T wd = static_cast<T>(group.weight_decay);
    const T decay_factor = static_cast<T>(decoupled_ ? 1 - group.lr * group.weight_decay : 1.0);
    const T sign = opt_.maximize ? T(-1) : T(1);
    detail::AdamScalars<T> k{b1, b2, one_minus_b1, one_minus_b2, bc2_sqrt, eps, neg_step_size, wd, decay_factor, sign};
    T* vmax = ams ? st.slots[2].data() : nullptr;
    auto run = [&](auto kernel) { kernel(p.numel, p.value, p.grad, st.slots[0].data(), st.slots[1].data(), vmax, k); };
    if (ams)
      l2 ? run(detail::adam_kernel<T, true, true>) : run(detail::adam_kernel<T, true, false>);
    else
      l2 ? run(detail::adam_kernel<T, false, true>) : run(detail::adam_kernel<T, false, false>);
  }

  Options saved_options() const override {
    return {{"lr", opt_.lr},
            {"betas", std::vector<double>{opt_.betas[0], opt_.betas[1]}},
            {"eps", opt_.eps},
            {"weight_decay", opt_.weight_decay},
            {"amsgrad", opt_.amsgrad},
            {"maximize", opt_.maximize}};
  }
  void load_options(const Options& saved, const std::string& where, bool apply) override {
    AdamOptions o;
    o.lr = detail::option<double>(saved, "lr", where);
    o.betas = detail::option<std::array<double, 2>>(saved, "betas", where);
    o.eps = detail::option<double>(saved, "eps", where);
    o.weight_decay = detail::option<double>(saved, "weight_decay", where);
    o.amsgrad = detail::option<bool>(saved, "amsgrad", where);
    o.maximize = detail::option<bool>(saved, "maximize", where);
    detail::validate(o, where);
    if (apply) opt_ = o;
  }
  std::vector<std::string> slot_names(const Options& saved) const override {
    if (detail::option<bool>(saved, "amsgrad", kind() + " options")) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    return {"exp_avg", "exp_avg_sq"};
  }
  double default_lr() const override { return opt_.lr; }
  double default_weight_decay() const override { return opt_.weight_decay; }

 private:
  AdamOptions opt_;
  bool decoupled_ = false;
};

// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), torch.optim.AdamW.
template <class T>
class AdamW : public Adam<T> {
 public:
  AdamW(const std::vector<nn::Parameter<T>*>& params, AdamWOptions o = {}) : Adam<T>(detail::as_adam(o), true) {
    this->init_groups(params);
  }
  AdamW(const std::vector<ParamGroupSpec<T>>& groups, AdamWOptions o = {}) : Adam<T>(detail::as_adam(o), true) {
    this->init_groups(groups);
  }
};

}  // namespace xfer::optim
