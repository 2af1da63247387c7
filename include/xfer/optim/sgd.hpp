// SGD: stochastic gradient descent with momentum, dampening, Nesterov momentum, L2 weight decay
// and maximize, with exactly torch.optim.SGD's (1.13) update rule:
//   d = g (+ wd * p);  buf = d on the first step, else momentum * buf + (1 - dampening) * d;
//   d = nesterov ? d + momentum * buf : buf;  p -= lr * d.
// The one thing to know: lr has no default (as in PyTorch); leaving it unset throws.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/optim/optimizer.hpp"

namespace xfer::optim {

struct SGDOptions {
  double lr = std::numeric_limits<double>::quiet_NaN();  // required
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
  bool maximize = false;
};

namespace detail {
inline void validate(const SGDOptions& o, const std::string& where) {
  XFER_CHECK(!std::isnan(o.lr), where, ": lr is required (torch.optim.SGD has no default either), e.g. {.lr = 0.1}");
  check_lr(o.lr, where);
  check_weight_decay(o.weight_decay, where);
  XFER_CHECK(std::isfinite(o.momentum) && o.momentum >= 0, where, ": momentum must be a finite value >= 0, got ",
             o.momentum);
  XFER_CHECK(std::isfinite(o.dampening), where, ": dampening must be finite, got ", o.dampening);
  XFER_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), where,
             ": Nesterov momentum requires momentum > 0 and dampening = 0, got momentum ", o.momentum, ", dampening ",
             o.dampening);
}
}  // namespace detail

template <class T>
class SGD : public Optimizer<T> {
 public:
  // One group over `params` (e.g. net.parameters()).
  SGD(const std::vector<nn::Parameter<T>*>& params, SGDOptions o) : opt_(o) {
    detail::validate(opt_, "SGD");
    this->init_groups(params);
  }
  // Several groups; each may set its own lr / weight_decay: {{.params = net.parameters("fc"), .lr = 0.1}, ...}.
  SGD(const std::vector<ParamGroupSpec<T>>& groups, SGDOptions o) : opt_(o) {
    detail::validate(opt_, "SGD");
    this->init_groups(groups);
  }

  std::string kind() const override { return "SGD"; }
  const SGDOptions& options() const { return opt_; }
  // Sets the momentum (OneCycleLR cycles it); validated like the constructor's option.
  void set_momentum(double m) {
    SGDOptions o = opt_;
    o.momentum = m;
    detail::validate(o, "SGD::set_momentum");
    opt_ = o;
  }

 protected:
  using typename Optimizer<T>::ParamState;

  void update(const ParamGroup<T>& group, nn::Parameter<T>& p, ParamState& st) override {
    ++st.step;
    const int64_t n = p.numel;
    T* __restrict w = p.value;
    const T* __restrict g = p.grad;
    const bool use_wd = group.weight_decay != 0, use_mom = opt_.momentum != 0;
    const bool first = use_mom && st.slots.empty();
    if (first) st.slots.emplace_back(p.shape);
    T* __restrict buf = use_mom ? st.slots[0].data() : nullptr;
    // Scalars are rounded to T like PyTorch does for Python numbers applied to a T tensor.
    const T wd = static_cast<T>(group.weight_decay), mom = static_cast<T>(opt_.momentum),
            keep = static_cast<T>(1 - opt_.dampening), neg_lr = static_cast<T>(-group.lr);
    const bool nesterov = opt_.nesterov, maximize = opt_.maximize;
    // Parallel over fixed blocks, so the result does not depend on the thread count.
    constexpr int64_t B = 1024;
    const int64_t blocks = (n + B - 1) / B;
    XFER_OMP_FOR(n * 4)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t end = std::min(n, (blk + 1) * B);
      for (int64_t i = blk * B; i < end; ++i) {
        T d = maximize ? -g[i] : g[i];
        if (use_wd) d = d + wd * w[i];
        if (use_mom) {
          const T b = first ? d : buf[i] * mom + keep * d;
          buf[i] = b;
          d = nesterov ? d + mom * b : b;
        }
        w[i] = w[i] + neg_lr * d;
      }
    }
  }

  Options saved_options() const override {
    return {{"lr", opt_.lr},
            {"momentum", opt_.momentum},
            {"dampening", opt_.dampening},
            {"weight_decay", opt_.weight_decay},
            {"nesterov", opt_.nesterov},
            {"maximize", opt_.maximize}};
  }
  void load_options(const Options& saved, const std::string& where, bool apply) override {
    SGDOptions o;
    o.lr = detail::option<double>(saved, "lr", where);
    o.momentum = detail::option<double>(saved, "momentum", where);
    o.dampening = detail::option<double>(saved, "dampening", where);
    o.weight_decay = detail::option<double>(saved, "weight_decay", where);
    o.nesterov = detail::option<bool>(saved, "nesterov", where);
    o.maximize = detail::option<bool>(saved, "maximize", where);
    detail::validate(o, where);
    if (apply) opt_ = o;
  }
  std::vector<std::string> slot_names(const Options& saved) const override {
    if (detail::option<double>(saved, "momentum", "SGD options") != 0) return {"momentum_buffer"};
    return {};
  }
  double default_lr() const override { return opt_.lr; }
  double default_weight_decay() const override { return opt_.weight_decay; }

 private:
  SGDOptions opt_;
};

}  // namespace xfer::optim
