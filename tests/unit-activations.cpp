// Hardsigmoid, Hardswish and SiLU (nn/activations.hpp): backward against finite differences in
// double, forward and input gradient against torch 1.13 (tests/fixtures/gen_activations.py),
// including the kinks at -3 and 3.
#include <catch2/catch.hpp>
#include <xfer/nn/activations.hpp>
#include <xfer/nn/gradcheck.hpp>

#include "fixture_json.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_activations {

using namespace xfer;
using namespace xfer::nn;

namespace {
template <template <class> class Layer>
void check_gradients(const char* name) {
  // Normal values, scaled to cover the saturated parts; none within 1e-3 of a kink (the finite
  // difference would straddle it).
  Rng rng(5);
  Tensor<double> x({2, 3, 4, 5});
  for (auto& v : x) {
    do v = 3.0 * rng.normal();
    while (std::abs(std::abs(v) - 3.0) < 1e-3);
  }
  Layer<double> m;
  const auto results = gradcheck(m, x);
  REQUIRE(results.size() == 1);
  INFO(name << " relative error " << results[0].relative_error);
  CHECK(results[0].analytic_norm > 0);
  CHECK(results[0].relative_error < 1e-8);
}

template <class T, template <class> class Layer>
void check_torch(const std::string& name, const std::string& key, double tol, double tol_dx) {
  const auto& j = fixture_json("activations.json");
  const auto xs = j.at("x").get<std::vector<double>>(), dys = j.at("dy").get<std::vector<double>>();
  const auto ys = j.at(name + "." + key + ".y").get<std::vector<double>>();
  const auto dxs = j.at(name + "." + key + ".dx").get<std::vector<double>>();
  const auto n = static_cast<int64_t>(xs.size());
  REQUIRE(n == 64);
  Tensor<T> x({n}), dy({n});
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<T>(xs[static_cast<size_t>(i)]), dy[i] = static_cast<T>(dys[static_cast<size_t>(i)]);
  Layer<T> m;
  const Tensor<T>& y = m.forward(x);
  const Tensor<T>& dx = m.backward(dy);
  double ey = 0, edx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double ry = ys[static_cast<size_t>(i)], rdx = dxs[static_cast<size_t>(i)];
    ey = std::max(ey, std::abs(static_cast<double>(y[i]) - ry) / std::max(1.0, std::abs(ry)));
    edx = std::max(edx, std::abs(static_cast<double>(dx[i]) - rdx) / std::max(1.0, std::abs(rdx)));
  }
  INFO(name << " " << key << ": max relative |y - torch| " << ey << ", |dx - torch| " << edx);
  CHECK(ey <= tol);
  CHECK(edx <= tol_dx);
}
}  // namespace

TEST_CASE("Hardsigmoid, Hardswish and SiLU backward match finite differences") {
  check_gradients<Hardsigmoid>("Hardsigmoid");
  check_gradients<Hardswish>("Hardswish");
  check_gradients<SiLU>("SiLU");
}

TEST_CASE("Hardsigmoid, Hardswish and SiLU match torch 1.13, kinks included") {
  for (const char* name : {"Hardsigmoid", "Hardswish", "SiLU"}) {
    const std::string n = name;
    // Relative to max(1, |torch|). float: a few ulps (torch vectorises exp); double: rounding only,
    // except torch's double hardsigmoid gradient, which multiplies by 1/6 rounded to float
    // (measured 5.0e-9 from the exact 1/6 we use).
    if (n == "Hardsigmoid") check_torch<float, Hardsigmoid>(n, "f32", 1e-6, 1e-6), check_torch<double, Hardsigmoid>(n, "f64", 1e-14, 1e-7);
    if (n == "Hardswish") check_torch<float, Hardswish>(n, "f32", 1e-6, 1e-6), check_torch<double, Hardswish>(n, "f64", 1e-14, 1e-14);
    if (n == "SiLU") check_torch<float, SiLU>(n, "f32", 1e-6, 1e-6), check_torch<double, SiLU>(n, "f64", 1e-14, 1e-14);
  }
}

}  // namespace unit_activations
