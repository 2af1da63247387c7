// The float paths of MaxPool2d (AVX-512 rows where the CPU has them, scalar otherwise) agree with the scalar double path (values, argmax via
// backward), including padding, odd sizes, ties, -inf and NaN (NaN wins, like PyTorch).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "xfer/core/rng.hpp"
#include "xfer/nn/pooling.hpp"
#include "isa_loop.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_kernels_pool {

using namespace xfer;

TEST_CASE("MaxPool2d float forward and backward match the double reference on odd shapes with NaN and ties") {
  Rng rng(3);
  struct Case { int64_t n, c, h, w, k, s, p; };
  // The AVX-512 rows have their own path; every other ISA runs the scalar loop.
  test::for_each_isa([&] {
  for (Case cs : {Case{2, 3, 16, 16, 3, 2, 1}, Case{1, 2, 7, 37, 3, 2, 1}, Case{3, 1, 9, 5, 2, 2, 0},
                  Case{1, 4, 33, 19, 3, 1, 1}, Case{2, 2, 5, 5, 5, 3, 2}}) {
    INFO("h=" << cs.h << " w=" << cs.w << " k=" << cs.k << " s=" << cs.s << " p=" << cs.p);
    Tensor<double> xd({cs.n, cs.c, cs.h, cs.w});
    for (auto& v : xd) {
      const double u = rng.uniform();
      v = u < 0.05 ? std::numeric_limits<double>::quiet_NaN()
        : u < 0.1  ? -std::numeric_limits<double>::infinity()
        : u < 0.3  ? 0.5  // ties: the first in scan order wins
                   : static_cast<double>(static_cast<float>(rng.uniform(-1, 1)));  // exact in float
    }
    Tensor<float> xf = xd.cast<float>();
    nn::MaxPool2d<double> pd({.kernel_size = cs.k, .stride = cs.s, .padding = cs.p});
    nn::MaxPool2d<float> pf({.kernel_size = cs.k, .stride = cs.s, .padding = cs.p});
    const auto& yd = pd.forward(xd);
    const auto& yf = pf.forward(xf);
    REQUIRE(yd.shape() == yf.shape());
    for (int64_t i = 0; i < yd.numel(); ++i) {
      if (std::isnan(yd[i])) {
        CHECK(std::isnan(yf[i]));
      } else {
        CHECK(static_cast<double>(yf[i]) == yd[i]);
      }
    }
    // Backward routes each output gradient to its argmax: equal dx means equal argmax.
    Tensor<double> gd(yd.shape());
    for (int64_t i = 0; i < gd.numel(); ++i) gd[i] = static_cast<double>(i % 7 + 1);
    Tensor<float> gf = gd.cast<float>();
    const auto& dxd = pd.backward(gd);
    const auto& dxf = pf.backward(gf);
    for (int64_t i = 0; i < dxd.numel(); ++i) CHECK(static_cast<double>(dxf[i]) == dxd[i]);
  }
  }, [](Isa isa) { return isa == Isa::avx512 ? isa : Isa::generic; });
}

}  // namespace unit_kernels_pool
