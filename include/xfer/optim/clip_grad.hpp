// clip_grad_norm: gradient clipping by the global norm, torch.nn.utils.clip_grad_norm_ (1.13).
// The total norm is the norm of all gradients taken together (as if concatenated into one vector);
// when it exceeds max_norm every gradient is multiplied by max_norm / (total + 1e-6). Returns the
// total norm before clipping, which is worth logging.
//
// The one thing to know: only trainable parameters count (a frozen parameter has no gradient in
// xfer, like a parameter whose .grad is None in PyTorch). A non-finite total norm (an inf or NaN
// gradient) throws when error_if_nonfinite is set; otherwise, as in torch, the gradients are
// multiplied by the resulting NaN coefficient, so the optimizer step that follows shows the problem.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/parameter.hpp"

namespace xfer::optim {

struct ClipGradOptions {
  double norm_type = 2.0;  // p of the p-norm; std::numeric_limits<double>::infinity() for the max-norm
  bool error_if_nonfinite = false;
};

template <class T>
double clip_grad_norm(const std::vector<nn::Parameter<T>*>& params, double max_norm, ClipGradOptions opt = {}) {
  XFER_CHECK(std::isfinite(max_norm) && max_norm >= 0, "clip_grad_norm: max_norm must be a finite value >= 0, got ",
             max_norm);
  XFER_CHECK(opt.norm_type > 0 || std::isinf(opt.norm_type), "clip_grad_norm: norm_type must be > 0 or inf, got ",
             opt.norm_type);
  std::vector<nn::Parameter<T>*> ps;
  for (auto* p : params) {
    XFER_CHECK(p != nullptr, "clip_grad_norm: null parameter pointer");
    if (p->trainable && p->numel > 0) ps.push_back(p);
  }
  if (ps.empty()) return 0.0;
  const bool inf_norm = std::isinf(opt.norm_type);
  const double pn = opt.norm_type;
  // Per-parameter norms first, then the norm of those (torch's order), accumulated in double.
  double total = 0;
  for (auto* p : ps) {
    const T* g = p->grad;
    double acc = 0;
    if (inf_norm) {
      for (int64_t i = 0; i < p->numel; ++i) {
        const double a = std::abs(static_cast<double>(g[i]));
        acc = (std::isnan(a) || a > acc) ? a : acc;  // NaN propagates like torch's max
        if (std::isnan(acc)) break;
      }
      total = (std::isnan(acc) || acc > total) ? acc : total;
      if (std::isnan(total)) break;
    } else if (pn == 2.0) {
      for (int64_t i = 0; i < p->numel; ++i) acc += static_cast<double>(g[i]) * static_cast<double>(g[i]);
      total += acc;  // sum of squares: sqrt(sum sqrt(acc)^2) == sqrt(sum acc)
    } else if (pn == 1.0) {
      for (int64_t i = 0; i < p->numel; ++i) acc += std::abs(static_cast<double>(g[i]));
      total += acc;
    } else {
      for (int64_t i = 0; i < p->numel; ++i) acc += std::pow(std::abs(static_cast<double>(g[i])), pn);
      total += acc;
    }
  }
  if (!inf_norm) total = pn == 2.0 ? std::sqrt(total) : (pn == 1.0 ? total : std::pow(total, 1.0 / pn));
  XFER_CHECK(!opt.error_if_nonfinite || std::isfinite(total), "clip_grad_norm: the total norm of order ", opt.norm_type,
             " of the gradients of ", ps.size(),
             " parameters is non-finite (", total, "), so it cannot be clipped (error_if_nonfinite is set)");
  // torch multiplies by min(coef, 1) unconditionally; a factor of exactly 1 changes nothing, so skip it.
  const double coef = max_norm / (total + 1e-6);
  if (!(coef < 1.0) && !std::isnan(coef)) return total;
  const T c = static_cast<T>(coef);
  for (auto* p : ps)
    for (int64_t i = 0; i < p->numel; ++i) p->grad[i] *= c;
  return total;
}

// Over every trainable parameter of a model.
template <class T>
double clip_grad_norm(nn::Module<T>& model, double max_norm, ClipGradOptions opt = {}) {
  return clip_grad_norm(model.parameters(), max_norm, opt);
}

// torch.nn.utils.clip_grad_value_: clamps every gradient element of the trainable parameters to
// [-clip_value, clip_value].
template <class T>
void clip_grad_value(const std::vector<nn::Parameter<T>*>& params, double clip_value) {
  XFER_CHECK(std::isfinite(clip_value) && clip_value >= 0, "clip_grad_value: clip_value must be a finite value >= 0, got ",
             clip_value);
  const T c = static_cast<T>(clip_value);
  for (auto* p : params) {
    XFER_CHECK(p != nullptr, "clip_grad_value: null parameter pointer");
    if (!p->trainable) continue;
    for (int64_t i = 0; i < p->numel; ++i) p->grad[i] = std::clamp(p->grad[i], -c, c);
  }
}

}  // namespace xfer::optim
