// nn::ConvBnAct, the named conv + BN (+ residual) (+ ReLU) unit, against the unfused chain of plain
// layers (Conv2d, BatchNorm2d, then the residual add and the ReLU by hand): forward, dx, the
// residual's gradient and every parameter gradient, in double (exact up to rounding) and in float on
// every ISA path of this CPU. Both BN states: batch statistics (the unit runs conv, then BN + residual
// + ReLU in BN's pass) and frozen running statistics (BN folded into the conv GEMM epilogue, backward
// from the unit's output alone, affine parameters learning too).
#include <catch2/catch.hpp>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "xfer/core/rng.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/conv_bn_act.hpp"
#include "isa_loop.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_conv_bn_act {

using namespace xfer;

namespace {

struct Case {
  int64_t n, c, hw, o, k, stride, pad;
  bool bias, relu, residual, frozen_stats;
  std::string str() const {
    return "n=" + std::to_string(n) + " c=" + std::to_string(c) + " hw=" + std::to_string(hw) + " o=" +
           std::to_string(o) + " k=" + std::to_string(k) + " s=" + std::to_string(stride) + " p=" + std::to_string(pad) +
           (bias ? " bias" : "") + (relu ? " relu" : "") + (residual ? " residual" : "") +
           (frozen_stats ? " frozen-stats" : " batch-stats");
  }
};

template <class T>
struct Run {
  std::vector<Tensor<T>> out;  // y, dx, d residual, then d conv.weight, d conv.bias, d bn.weight, d bn.bias
};

template <class T>
Tensor<T> random_tensor(Shape s, Rng& rng) {
  Tensor<T> t(std::move(s));
  for (auto& v : t) v = static_cast<T>(rng.uniform(-1, 1));
  return t;
}

template <class T>
Tensor<T> grad_of(nn::Parameter<T>& p) {
  Tensor<T> t({p.numel});
  std::copy(p.grad, p.grad + p.numel, t.begin());
  return t;
}

// One forward + backward of the case, through the unit (fused = true) or the plain layers.
template <class T>
Run<T> run(const Case& cs, bool fused) {
  Rng rng(17);
  nn::Conv2d<T> conv({cs.c, cs.o, cs.k, cs.stride, cs.pad, cs.bias}, rng);
  nn::BatchNorm2d<T> bn(cs.o);
  for (int64_t o = 0; o < cs.o; ++o) {
    bn.running_mean()[o] = static_cast<T>(rng.uniform(-0.5, 0.5));
    bn.running_var()[o] = static_cast<T>(rng.uniform(0.5, 2.0));
    bn.weight().value[o] = static_cast<T>(rng.uniform(0.5, 1.5));
    bn.bias().value[o] = static_cast<T>(rng.uniform(-0.3, 0.3));
  }
  if (cs.bias)
    for (int64_t o = 0; o < cs.o; ++o) conv.bias()->value[o] = static_cast<T>(rng.uniform(-0.5, 0.5));
  bn.set_running_stats_frozen(cs.frozen_stats);
  const Tensor<T> x = random_tensor<T>({cs.n, cs.c, cs.hw, cs.hw}, rng);
  const auto g = conv.geometry(x.shape());
  const Shape ys{cs.n, cs.o, g.oh, g.ow};
  const Tensor<T> r = random_tensor<T>(ys, rng);
  const Tensor<T> dy = random_tensor<T>(ys, rng);
  Run<T> res;
  if (fused) {
    nn::ConvBnAct<T> unit(conv, bn, {.relu = cs.relu});
    REQUIRE(unit.folds() == cs.frozen_stats);
    res.out.push_back(unit.forward(x, cs.residual ? &r : nullptr));
    REQUIRE(unit.folded() == cs.frozen_stats);
    res.out.push_back(unit.backward(dy, true));
    res.out.push_back(unit.residual_grad());
  } else {
    Tensor<T> y = bn.forward(conv.forward(x));
    for (int64_t i = 0; i < y.numel(); ++i) {
      if (cs.residual) y[i] += r[i];
      if (cs.relu) y[i] = std::max(y[i], T(0));
    }
    Tensor<T> dpre = dy;
    if (cs.relu)
      for (int64_t i = 0; i < y.numel(); ++i) dpre[i] = y[i] > T(0) ? dy[i] : T(0);
    res.out.push_back(y);
    res.out.push_back(conv.backward(bn.backward(dpre, true), true));
    res.out.push_back(dpre);
  }
  res.out.push_back(grad_of(conv.weight()));
  if (cs.bias) res.out.push_back(grad_of(*conv.bias()));
  res.out.push_back(grad_of(bn.weight()));
  res.out.push_back(grad_of(bn.bias()));
  return res;
}

template <class T>
double rel_err(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0, scale = 1e-30;
  for (int64_t i = 0; i < a.numel(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return worst / scale;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (bool frozen : {true, false})
    for (bool relu : {true, false})
      for (bool residual : {true, false}) {
        out.push_back({3, 5, 9, 6, 3, 1, 1, false, relu, residual, frozen});
        out.push_back({2, 4, 11, 7, 3, 2, 1, true, relu, residual, frozen});
      }
  out.push_back({2, 6, 8, 5, 1, 2, 0, false, false, false, true});  // the ResNet downsample shape
  out.push_back({1, 3, 13, 8, 7, 2, 3, false, true, false, true});  // the ImageNet stem shape
  return out;
}

// Compares every output of the unit with the unfused chain; returns how many tensors it compared.
template <class T>
int compare_all(double tol, double* worst) {
  int compared = 0;
  for (const Case& cs : cases()) {
    INFO(cs.str());
    const Run<T> f = run<T>(cs, true), p = run<T>(cs, false);
    REQUIRE(f.out.size() == p.out.size());
    REQUIRE(f.out.size() == (cs.bias ? 7u : 6u));
    for (size_t i = 0; i < f.out.size(); ++i) {
      INFO("output " << i << " (y, dx, d residual, d conv.weight, [d conv.bias], d bn.weight, d bn.bias)");
      const double e = rel_err(f.out[i], p.out[i]);
      *worst = std::max(*worst, e);
      CHECK(e <= tol);
      ++compared;
    }
  }
  return compared;
}

}  // namespace

TEST_CASE("ConvBnAct equals the unfused layers in double: output and every gradient") {
  double worst = 0;
  // 16 cases with 6 or 7 tensors (8 with conv bias) + downsample (6) + stem (6).
  CHECK(compare_all<double>(1e-13, &worst) == 8 * 6 + 8 * 7 + 6 + 6);
  std::cout << "ConvBnAct vs unfused, double: worst rel err " << worst << "\n";
}

TEST_CASE("ConvBnAct equals the unfused layers in float on every ISA path") {
  double worst = 0;
  const int isas = test::for_each_isa([&] { CHECK(compare_all<float>(5e-5, &worst) == 8 * 6 + 8 * 7 + 6 + 6); });
  CHECK(isas >= 1);
  std::cout << "ConvBnAct vs unfused, float over " << isas << " ISA paths: worst rel err " << worst << "\n";
}

TEST_CASE("ConvBnAct folds from the explicit BN state, never from trainable flags") {
  Rng rng(3);
  nn::Conv2d<double> conv({2, 3, 3, 1, 1, false}, rng);
  nn::BatchNorm2d<double> bn(3);
  nn::ConvBnAct<double> unit(conv, bn);
  CHECK_FALSE(unit.folds());  // training: batch statistics
  bn.weight().trainable = bn.bias().trainable = false;
  CHECK_FALSE(unit.folds());  // frozen affine alone changes nothing
  bn.eval();
  CHECK_FALSE(unit.folds());  // eval without inference folding: the separate BN pass
  bn.set_inference_folding(true);
  CHECK(unit.folds());
  bn.set_inference_folding(false);
  bn.train();
  bn.set_running_stats_frozen(true);
  CHECK(unit.folds());  // frozen statistics fold in training mode
  bn.weight().trainable = bn.bias().trainable = true;
  CHECK(unit.folds());  // ... also while the affine parameters learn
  nn::BatchNorm2d<double> wrong(4);
  CHECK_THROWS_AS(nn::ConvBnAct<double>(conv, wrong), Error);
}

}  // namespace unit_conv_bn_act
