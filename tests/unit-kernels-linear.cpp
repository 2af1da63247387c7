// Linear<float> (packed GEMM on AVX2/AVX-512, Eigen on the generic ISA; every ISA this CPU has)
// agrees with Linear<double> (Eigen): forward, input gradient and accumulated parameter gradients,
// including batch 1 and odd sizes.
#include <catch2/catch.hpp>
#include <cmath>

#include "xfer/core/rng.hpp"
#include "xfer/nn/linear.hpp"
#include "isa_loop.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_kernels_linear {

using namespace xfer;

TEST_CASE("Linear float forward and backward match the double implementation") {
  Rng rng(21);
  struct Case { int64_t n, in, out; };
  test::for_each_isa([&] {
  for (Case c : {Case{1, 7, 3}, Case{64, 512, 10}, Case{5, 300, 257}, Case{33, 1, 40}}) {
    INFO("N=" << c.n << " in=" << c.in << " out=" << c.out);
    Rng init(1);
    nn::Linear<double> ld({.in_features = c.in, .out_features = c.out}, init);
    Rng init2(1);
    nn::Linear<float> lf({.in_features = c.in, .out_features = c.out}, init2);
    for (int64_t i = 0; i < c.out * c.in; ++i) lf.weight().value[i] = static_cast<float>(ld.weight().value[i]);
    for (int64_t i = 0; i < c.out; ++i) lf.bias()->value[i] = static_cast<float>(ld.bias()->value[i]);
    // Gradients accumulate onto existing values.
    for (int64_t i = 0; i < c.out * c.in; ++i) ld.weight().grad[i] = lf.weight().grad[i] = 0.5f;
    Tensor<double> xd({c.n, c.in}), gd({c.n, c.out});
    for (auto& v : xd) v = static_cast<float>(rng.uniform(-1, 1));
    for (auto& v : gd) v = static_cast<float>(rng.uniform(-1, 1));
    const Tensor<float> xf = xd.cast<float>(), gf = gd.cast<float>();
    const auto& yd = ld.forward(xd);
    const auto& yf = lf.forward(xf);
    for (int64_t i = 0; i < yd.numel(); ++i) CHECK(std::abs(yf[i] - yd[i]) < 1e-4 * (1 + std::abs(yd[i])));
    const auto& dxd = ld.backward(gd);
    const auto& dxf = lf.backward(gf);
    for (int64_t i = 0; i < dxd.numel(); ++i) CHECK(std::abs(dxf[i] - dxd[i]) < 1e-4 * (1 + std::abs(dxd[i])));
    for (int64_t i = 0; i < c.out * c.in; ++i)
      CHECK(std::abs(lf.weight().grad[i] - ld.weight().grad[i]) < 1e-4 * (1 + std::abs(ld.weight().grad[i])));
    for (int64_t i = 0; i < c.out; ++i)
      CHECK(std::abs(lf.bias()->grad[i] - ld.bias()->grad[i]) < 1e-4 * (1 + std::abs(ld.bias()->grad[i])));
  }
  });
}

}  // namespace unit_kernels_linear
