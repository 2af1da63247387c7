// Grouped, depthwise and dilated convolution (Conv2dOptions::groups / dilation): the kernels against
// the naive reference of tests/reference_kernels.hpp on every ISA path of this CPU (the depthwise
// kernel of kernels/depthwise.hpp, the per-group and the dilated paths of kernels/conv2d.hpp),
// nn::Conv2d's backward against finite differences in double, the folded conv-BN unit over a
// depthwise conv against the plain layers, and the errors for group counts that do not divide.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "xfer/core/rng.hpp"
#include "xfer/kernels/conv2d.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/conv_bn_act.hpp"
#include "xfer/nn/gradcheck.hpp"
#include "isa_loop.hpp"
#include "reference_kernels.hpp"

namespace unit_conv_groups {

using xfer::Rng;
using xfer::Tensor;
using xfer::kernels::Conv2dGeometry;
using xfer::kernels::describe;
using xfer::kernels::max_rel_diff;
using xfer::kernels::random_values;

// Forward (plain, with bias, with the fused epilogue), backward-data and backward-weights (which
// accumulate) against the reference; returns the worst relative error.
template <class T>
double check_kernels(Conv2dGeometry g, Rng& rng, double tol) {
  g.finish();
  INFO(describe(g));
  const int64_t nx = g.n * g.c * g.h * g.w, ny = g.n * g.o * g.oh * g.ow, nw = g.o * g.ckk();
  auto x = random_values<T>(nx, rng), w = random_values<T>(nw, rng), b = random_values<T>(g.o, rng);
  auto dy = random_values<T>(ny, rng);
  double worst = 0;
  auto check = [&](double e) {
    worst = std::max(worst, e);
    CHECK(e < tol);
  };
  std::vector<T> y(static_cast<size_t>(ny), T(7)), y_ref(static_cast<size_t>(ny));
  xfer::kernels::conv2d_forward(g, x.data(), w.data(), b.data(), y.data());
  xfer::kernels::conv2d_forward_reference(g, x.data(), w.data(), b.data(), y_ref.data());
  check(max_rel_diff(y, y_ref));

  auto scale = random_values<T>(g.o, rng), res = random_values<T>(ny, rng);
  std::vector<T> yf(static_cast<size_t>(ny), T(7)), yf_ref(static_cast<size_t>(ny));
  xfer::kernels::conv2d_forward(g, x.data(), w.data(), yf.data(),
                                xfer::kernels::ConvEpilogue<T>{.scale = scale.data(), .shift = b.data(),
                                                               .residual = res.data(), .relu = true});
  for (int64_t i = 0; i < ny; ++i) {
    const size_t o = static_cast<size_t>((i / (g.oh * g.ow)) % g.o), k = static_cast<size_t>(i);
    const T v = (y_ref[k] - b[o]) * scale[o] + b[o] + res[k];  // y_ref includes the bias once
    yf_ref[k] = v > T(0) ? v : T(0);
  }
  check(max_rel_diff(yf, yf_ref));

  std::vector<T> dx(static_cast<size_t>(nx), T(7)), dx_ref(static_cast<size_t>(nx));
  xfer::kernels::conv2d_backward_data(g, dy.data(), w.data(), dx.data());
  xfer::kernels::conv2d_backward_data_reference(g, dy.data(), w.data(), dx_ref.data());
  check(max_rel_diff(dx, dx_ref));

  auto dw = random_values<T>(nw, rng), db = random_values<T>(g.o, rng);
  auto dw_ref = dw, db_ref = db;
  xfer::kernels::conv2d_backward_weights(g, x.data(), dy.data(), dw.data(), db.data());
  xfer::kernels::conv2d_backward_weights_reference(g, x.data(), dy.data(), dw_ref.data(), db_ref.data());
  check(max_rel_diff(dw, dw_ref));
  check(max_rel_diff(db, db_ref));
  return worst;
}

// Depthwise shapes of MobileNetV3 / EfficientNet-B0 (3x3 and 5x5, stride 1 and 2) and edge cases:
// channel multiplier, dilation, rectangular kernels and strides, maps smaller than the kernel.
std::vector<Conv2dGeometry> depthwise_shapes() {
  return {
      {.n = 2, .c = 16, .h = 12, .w = 12, .o = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 16},
      {.n = 2, .c = 8, .h = 13, .w = 11, .o = 8, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .groups = 8},
      {.n = 3, .c = 6, .h = 14, .w = 14, .o = 6, .kh = 5, .kw = 5, .sh = 2, .sw = 2, .ph = 2, .pw = 2, .groups = 6},
      {.n = 1, .c = 5, .h = 9, .w = 40, .o = 5, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .ph = 2, .pw = 2, .groups = 5},
      {.n = 2, .c = 4, .h = 7, .w = 9, .o = 12, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 4},  // multiplier 3
      {.n = 2, .c = 6, .h = 11, .w = 10, .o = 6, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 2, .pw = 2, .groups = 6,
       .dil_h = 2, .dil_w = 2},
      {.n = 1, .c = 3, .h = 10, .w = 12, .o = 3, .kh = 3, .kw = 2, .sh = 2, .sw = 3, .ph = 0, .pw = 1, .groups = 3,
       .dil_h = 3, .dil_w = 1},
      {.n = 4, .c = 7, .h = 1, .w = 1, .o = 7, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 7},  // 1x1 map
      {.n = 2, .c = 9, .h = 2, .w = 3, .o = 9, .kh = 5, .kw = 5, .sh = 2, .sw = 2, .ph = 2, .pw = 2, .groups = 9},
  };
}

// Grouped (1 < groups < channels) and dilated dense convolutions (the per-group and zero-expanded paths).
std::vector<Conv2dGeometry> grouped_dilated_shapes() {
  return {
      {.n = 2, .c = 8, .h = 9, .w = 9, .o = 12, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .groups = 2},
      {.n = 3, .c = 12, .h = 8, .w = 7, .o = 6, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .groups = 3},
      {.n = 2, .c = 8, .h = 6, .w = 6, .o = 16, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0, .groups = 4},  // grouped 1x1
      {.n = 2, .c = 5, .h = 11, .w = 9, .o = 7, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 2, .pw = 2, .groups = 1,
       .dil_h = 2, .dil_w = 2},
      {.n = 1, .c = 4, .h = 13, .w = 12, .o = 6, .kh = 3, .kw = 2, .sh = 2, .sw = 1, .ph = 3, .pw = 0, .groups = 2,
       .dil_h = 3, .dil_w = 2},
  };
}

// What to compare: a small convolution of each kind through nn::Conv2d.
struct LayerCase {
  xfer::nn::Conv2dOptions opt;
  xfer::Shape in;
};
std::vector<LayerCase> layer_cases() {
  return {
      {{.in_channels = 4, .out_channels = 4, .kernel_size = 3, .stride = 1, .padding = 1, .groups = 4}, {2, 4, 5, 5}},
      {{.in_channels = 3, .out_channels = 6, .kernel_size = 5, .stride = 2, .padding = 2, .bias = false, .groups = 3},
       {2, 3, 7, 6}},
      {{.in_channels = 4, .out_channels = 6, .kernel_size = 3, .stride = 2, .padding = 1, .groups = 2}, {2, 4, 6, 5}},
      {{.in_channels = 2, .out_channels = 3, .kernel_size = 3, .stride = 1, .padding = 2, .dilation = 2}, {1, 2, 7, 6}},
      {{.in_channels = 3, .out_channels = 3, .kernel_size = 3, .stride = 1, .padding = 2, .bias = false,
        .dilation = 2, .groups = 3}, {2, 3, 6, 6}},
  };
}

}  // namespace unit_conv_groups

TEST_CASE("depthwise, grouped and dilated float kernels match the naive reference on every ISA path") {
  using namespace unit_conv_groups;
  Rng rng(41);
  double worst = 0;
  const int isas = xfer::test::for_each_isa([&] {
    for (int threads : {1, 2}) {
      xfer::set_num_threads(threads);
      for (const auto& g : depthwise_shapes()) worst = std::max(worst, check_kernels<float>(g, rng, 2e-5));
      for (const auto& g : grouped_dilated_shapes()) worst = std::max(worst, check_kernels<float>(g, rng, 2e-5));
    }
  });
  CHECK(isas >= 1);
  INFO("worst relative error " << worst);
  CHECK(worst > 0);
}

TEST_CASE("depthwise, grouped and dilated double kernels match the naive reference") {
  using namespace unit_conv_groups;
  Rng rng(42);
  xfer::set_num_threads(2);
  for (const auto& g : depthwise_shapes()) check_kernels<double>(g, rng, 1e-12);
  for (const auto& g : grouped_dilated_shapes()) check_kernels<double>(g, rng, 1e-12);
}

TEST_CASE("Conv2d with groups and dilation: backward matches finite differences") {
  using namespace unit_conv_groups;
  uint64_t seed = 50;
  for (const auto& c : layer_cases()) {
    Rng rng(seed++);
    xfer::nn::Conv2d<double> conv(c.opt, rng);
    CHECK(conv.weight().shape == xfer::Shape{c.opt.out_channels, c.opt.in_channels / c.opt.groups, c.opt.kernel_size,
                                             c.opt.kernel_size});
    Tensor<double> x(c.in);
    for (auto& v : x) v = rng.normal();
    const auto results = xfer::nn::gradcheck(conv, x);
    REQUIRE(results.size() == (c.opt.bias ? 3u : 2u));
    for (const auto& r : results) {
      INFO(conv.label() << " gradient of " << r.name << ": relative error " << r.relative_error);
      CHECK(r.analytic_norm > 0);
      CHECK(r.relative_error < 1e-6);
    }
  }
}

TEST_CASE("ConvBnAct over a depthwise conv equals the plain layers, folded and with batch statistics") {
  using namespace unit_conv_groups;
  for (bool frozen : {true, false}) {
    INFO((frozen ? "frozen statistics (BN folded into the depthwise epilogue)" : "batch statistics"));
    std::vector<std::vector<double>> outs[2];
    for (int fused = 0; fused < 2; ++fused) {
      Rng rng(60);
      xfer::nn::Conv2d<double> conv({.in_channels = 6, .out_channels = 6, .kernel_size = 3, .stride = 2, .padding = 1,
                                     .bias = false, .groups = 6}, rng);
      xfer::nn::BatchNorm2d<double> bn({.num_features = 6, .eps = 1e-3, .momentum = 0.01});
      for (int64_t o = 0; o < 6; ++o) {
        bn.running_mean()[o] = rng.uniform(-0.5, 0.5);
        bn.running_var()[o] = rng.uniform(0.5, 2.0);
        bn.weight().value[o] = rng.uniform(0.5, 1.5);
        bn.bias().value[o] = rng.uniform(-0.3, 0.3);
      }
      bn.set_running_stats_frozen(frozen);
      Tensor<double> x({3, 6, 9, 8}), dy;
      for (auto& v : x) v = rng.uniform(-1, 1);
      std::vector<std::vector<double>>& out = outs[fused];
      auto keep = [&](const double* p, int64_t n) { out.emplace_back(p, p + n); };
      if (fused) {
        xfer::nn::ConvBnAct<double> unit(conv, bn, {.relu = true});
        const Tensor<double>& y = unit.forward(x);
        CHECK(unit.folded() == frozen);
        dy = Tensor<double>(y.shape());
        for (auto& v : dy) v = rng.uniform(-1, 1);
        keep(y.data(), y.numel());
        const Tensor<double>& dx = unit.backward(dy, true);
        keep(dx.data(), dx.numel());
      } else {
        Tensor<double> y = bn.forward(conv.forward(x));
        for (auto& v : y) v = std::max(v, 0.0);
        dy = Tensor<double>(y.shape());
        for (auto& v : dy) v = rng.uniform(-1, 1);
        Tensor<double> dpre = dy;
        for (int64_t i = 0; i < y.numel(); ++i) dpre[i] = y[i] > 0 ? dy[i] : 0.0;
        keep(y.data(), y.numel());
        const Tensor<double>& dx = conv.backward(bn.backward(dpre, true), true);
        keep(dx.data(), dx.numel());
      }
      keep(conv.weight().grad, conv.weight().numel);
      keep(bn.weight().grad, 6);
      keep(bn.bias().grad, 6);
    }
    REQUIRE(outs[0].size() == 5);
    REQUIRE(outs[1].size() == 5);
    for (size_t i = 0; i < 5; ++i) {
      INFO("output " << i << " (y, dx, d conv.weight, d bn.weight, d bn.bias)");
      CHECK(max_rel_diff(outs[1][i], outs[0][i]) < 1e-12);
    }
  }
}

TEST_CASE("Conv2d rejects a group count that does not divide the channels") {
  using xfer::nn::Conv2d;
  using xfer::nn::Conv2dOptions;
  CHECK_THROWS_WITH(Conv2d<float>(Conv2dOptions{.in_channels = 6, .out_channels = 8, .kernel_size = 3, .groups = 4}),
                    Catch::Contains("groups=4 must divide both in_channels (6) and out_channels (8)"));
  CHECK_THROWS_WITH(Conv2d<float>(Conv2dOptions{.in_channels = 8, .out_channels = 6, .kernel_size = 3, .groups = 4}),
                    Catch::Contains("groups=4 must divide"));
  CHECK_THROWS_WITH(Conv2d<float>(Conv2dOptions{.in_channels = 8, .out_channels = 8, .kernel_size = 3, .groups = 0}),
                    Catch::Contains("groups=0"));
  CHECK_THROWS_WITH(Conv2d<float>(Conv2dOptions{.in_channels = 8, .out_channels = 8, .kernel_size = 3, .dilation = 0}),
                    Catch::Contains("dilation=0"));
  CHECK_NOTHROW(Conv2d<float>(Conv2dOptions{.in_channels = 8, .out_channels = 16, .kernel_size = 3, .groups = 8}));
}
