// gradcheck: compares a module's backward with central finite differences (use T = double).
// The scalar checked is L = sum(forward(x) * R) for a fixed random R, so dL/dy = R exercises every
// output. Reports the relative error ||analytic - numeric|| / max(||analytic||, ||numeric||) for the
// input and for each parameter (like dlib's test_layer, public so users can check their own layers).
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "xfer/nn/module.hpp"

namespace xfer::nn {

struct GradcheckOptions {
  double step = 1e-6;
  uint64_t seed = 1;
  bool check_input = true;
  // Called before every forward (e.g. to reseed a Dropout so the mask stays fixed).
  std::function<void()> before_forward;
};

struct GradcheckResult {
  std::string name;  // "input" or the parameter's dotted name
  double relative_error = 0;
  double analytic_norm = 0;
};

namespace detail {
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b, double* norm_a) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += (a[i] - b[i]) * (a[i] - b[i]);
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  *norm_a = std::sqrt(na);
  const double denom = std::max(std::sqrt(na), std::sqrt(nb));
  return denom == 0 ? 0 : std::sqrt(d) / denom;
}
}  // namespace detail

template <class T>
std::vector<GradcheckResult> gradcheck(Module<T>& m, Tensor<T> x, GradcheckOptions opt = {}) {
  Rng rng(opt.seed);
  auto run = [&](const Tensor<T>& in) -> const Tensor<T>& {
    if (opt.before_forward) opt.before_forward();
    return m.forward(in);
  };
  const Tensor<T>& y0 = run(x);
  Tensor<T> R(y0.shape());
  for (auto& v : R) v = static_cast<T>(rng.normal());
  auto loss = [&](const Tensor<T>& in) {
    const Tensor<T>& y = run(in);
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(y[i]) * static_cast<double>(R[i]);
    return s;
  };

  // Analytic gradients.
  m.zero_grad();
  run(x);
  const Tensor<T>& dx = m.backward(R, opt.check_input);
  std::vector<double> dx_analytic(dx.begin(), dx.end());
  auto params = m.named_parameters();
  std::vector<std::vector<double>> dp_analytic;
  for (auto& np : params) dp_analytic.emplace_back(np.param->grad, np.param->grad + np.param->numel);

  std::vector<GradcheckResult> out;
  auto numeric = [&](T* values, int64_t n, const Tensor<T>& in) {
    std::vector<double> g(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const T saved = values[i];
      values[i] = saved + static_cast<T>(opt.step);
      const double lp = loss(in);
      values[i] = saved - static_cast<T>(opt.step);
      const double lm = loss(in);
      values[i] = saved;
      g[static_cast<size_t>(i)] = (lp - lm) / (2 * opt.step);
    }
    return g;
  };
  if (opt.check_input) {
    Tensor<T> xin = x;
    auto g = numeric(xin.data(), xin.numel(), xin);
    GradcheckResult r{"input"};
    r.relative_error = detail::relative_error(dx_analytic, g, &r.analytic_norm);
    out.push_back(r);
  }
  for (size_t k = 0; k < params.size(); ++k) {
    if (!params[k].param->trainable) continue;
    auto g = numeric(params[k].param->value, params[k].param->numel, x);
    GradcheckResult r{params[k].name};
    r.relative_error = detail::relative_error(dp_analytic[k], g, &r.analytic_norm);
    out.push_back(r);
  }
  return out;
}

}  // namespace xfer::nn
