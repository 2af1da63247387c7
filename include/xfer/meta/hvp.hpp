// central_difference_hvp: v -= H(theta) u for the Hessian H of a loss whose gradient g(.) we can
// evaluate, by central differences  H u ~ (g(theta + eps u) - g(theta - eps u)) / (2 eps),
// eps = h (1 + rms(theta)) / rms(u): 2 gradient evaluations (a third for g(theta) when the caller
// has none). meta::MAML's second order is built on it: 2 extra forward+backward passes on the
// support batch per inner step (a k-step task costs 3k + 1 passes instead of k + 1 for first
// order); memory is k + 5 parameter-sized buffers.
// The error is O(h^2) truncation plus O(machine eps / h) rounding, plus ReLU/max-pool kinks: a unit
// that changes sign inside the +-eps probe adds an O(1/h) error that autograd does not see, so h is
// small. In double (h = 3e-7) the meta-gradient matches PyTorch's create_graph=True to ~1e-10
// relative on the test net (tests/unit-maml.cpp). In float (h = 1e-4) it is ~1e-4 relative on the
// same net; large float ReLU nets will see kink crossings, so use double for exact second order and
// first order (the usual choice on CPU) for large float models.
//
// The one thing to know (kink guard): the one-sided differences D+ = (g+ - g0)/eps and
// D- = (g0 - g-)/eps agree to O(h) where the loss is smooth; a ReLU/max-pool switch inside one side
// makes that side's difference O(1/eps). When they disagree by more than 10% the side with the
// smaller norm is used alone, and the function returns true.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "xfer/core/tensor.hpp"

namespace xfer::meta {

template <class T>
struct HvpScratch {
  AlignedVector<T>&probe, &gp, &gm, &g0;  // parameter-sized; g0 is filled when no centre gradient is given
};

// grad(at, g) writes the gradient at `at` into g. Returns whether the kink fallback was taken.
template <class T, class Grad>
bool central_difference_hvp(AlignedVector<T>& theta, const AlignedVector<T>& u, AlignedVector<T>& v, double h,
                            const AlignedVector<T>* g0, HvpScratch<T> s, Grad&& grad) {
  const int64_t n = static_cast<int64_t>(theta.size());
  double tt = 0, uu = 0;
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    tt += static_cast<double>(theta[k]) * theta[k];
    if (u[k] != T(0)) {
      uu += static_cast<double>(u[k]) * u[k];
      ++m;
    }
  }
  if (uu == 0) return false;
  const double rms_t = std::sqrt(tt / static_cast<double>(n)), rms_u = std::sqrt(uu / static_cast<double>(m));
  const T eps = static_cast<T>(h * (1.0 + rms_t) / rms_u);
  for (int64_t i = 0; i < n; ++i) s.probe[static_cast<size_t>(i)] = theta[static_cast<size_t>(i)] + eps * u[static_cast<size_t>(i)];
  grad(s.probe, s.gp);
  for (int64_t i = 0; i < n; ++i) s.probe[static_cast<size_t>(i)] = theta[static_cast<size_t>(i)] - eps * u[static_cast<size_t>(i)];
  grad(s.probe, s.gm);
  if (!g0) {
    grad(theta, s.g0);
    g0 = &s.g0;
  }
  const AlignedVector<T>& c = *g0;
  double pp = 0, mm = 0, dd = 0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const double dp = static_cast<double>(s.gp[k]) - c[k], dm = static_cast<double>(c[k]) - s.gm[k];
    pp += dp * dp, mm += dm * dm, dd += (dp - dm) * (dp - dm);
  }
  if (dd > 0.01 * std::max(pp, mm)) {
    const bool plus = pp <= mm;
    const T inv = T(1) / eps;
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      v[k] -= (plus ? s.gp[k] - c[k] : c[k] - s.gm[k]) * inv;
    }
    return true;
  }
  const T inv = T(1) / (T(2) * eps);
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    v[k] -= (s.gp[k] - s.gm[k]) * inv;
  }
  return false;
}

}  // namespace xfer::meta
