// BatchNorm folded into the preceding convolution by the conv + BN units (nn::ConvBnAct) of whole
// models (eval with prepare_inference, frozen BN statistics in training) computes what the unfolded
// network computes (eval mode without inference folding: the same running statistics, applied by
// BN's own pass), is never stale, and gives every gradient, BN's affine parameters included.
// Gradients are compared in double: the two paths round differently, and in float a pre-activation
// within rounding of zero can pass one ReLU and not the other, which moves a BN bias gradient by
// ~1e-2 relative (seen under an -O1 build); in double such a flip is out of reach. The forward
// comparisons also run in float (the AVX2/AVX-512 kernels; a ReLU is continuous, so no flip there).
#include <catch2/catch.hpp>
#include <cmath>
#include <iostream>
#include <string>
#include <type_traits>

#include "xfer/core/rng.hpp"
#include "xfer/models/zoo.hpp"
#include "xfer/nn/conv_bn_act.hpp"
#include "xfer/nn/loss.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_kernels_fold {

using namespace xfer;

// Double-precision comparisons: the worst measured difference is 4.3e-15 (gradients, vgg11-cifar).
constexpr double kTol = 5e-13;

namespace {

template <class T>
Tensor<T> random_input(int64_t n, int64_t hw, uint64_t seed) {
  Rng rng(seed);
  Tensor<T> x({n, 3, hw, hw});
  for (auto& v : x) v = static_cast<T>(rng.normal());
  return x;
}

// Gives every BN non-trivial running statistics and affine parameters.
template <class T>
void randomize_bn(models::Model<T>& net, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, m] : net.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm2d<T>*>(m)) {
      for (int64_t c = 0; c < bn->options().num_features; ++c) {
        bn->running_mean()[c] = static_cast<T>(rng.uniform(-0.5, 0.5));
        bn->running_var()[c] = static_cast<T>(rng.uniform(0.5, 2.0));
        bn->weight().value[c] = static_cast<T>(rng.uniform(0.5, 1.5));
        bn->bias().value[c] = static_cast<T>(rng.uniform(-0.2, 0.2));
      }
    }
}

// How many conv + BN units apply BN in the convolution's epilogue on the next forward.
template <class T>
int folding_units(models::Model<T>& net) {
  int n = 0;
  for (auto* u : nn::fusion_units(net)) n += u->folds() ? 1 : 0;
  return n;
}

// Two identical resnet18s with the same random BN state; the second runs in eval mode without
// inference folding: the same running statistics, applied by BN's own pass (the unfused path).
std::pair<std::shared_ptr<models::Model<double>>, std::shared_ptr<models::Model<double>>> twin_resnet18(
    uint64_t seed, uint64_t bn_seed) {
  auto fused = models::create<double>("resnet18", {.num_classes = 10, .seed = seed});
  auto plain = models::create<double>("resnet18", {.num_classes = 10, .seed = seed});
  randomize_bn(*fused, bn_seed);
  randomize_bn(*plain, bn_seed);
  plain->eval();
  return {fused, plain};
}

template <class T>
double max_rel_diff(const Tensor<T>& a, const Tensor<T>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0, scale = 1e-12;
  for (int64_t i = 0; i < a.numel(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return worst / scale;
}

// Compares the gradients of every parameter that needs one (af scaled by 1/times); returns how many
// tensors it compared and the worst relative difference.
template <class T>
int compare_grads(models::Model<T>& f, models::Model<T>& p, double tol, double times, double* worst_out) {
  auto& af = f.arena();
  auto& ap = p.arena();
  int checked = 0;
  for (auto& np : af.params)
    if (np.param->trainable) {
      INFO(np.name);
      double worst = 0, scale = 1e-12;
      for (int64_t i = 0; i < np.param->numel; ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(af.grads[np.param->offset + i]) / times -
                                         ap.grads[np.param->offset + i]));
        scale = std::max(scale, std::abs(static_cast<double>(ap.grads[np.param->offset + i])));
      }
      CHECK(worst / scale < tol);
      *worst_out = std::max(*worst_out, worst / scale);
      ++checked;
    }
  return checked;
}

}  // namespace

// prepare_inference on model `name` in precision T: logits as unfolded, never stale; in double also
// every gradient of a backward through the folded forward.
template <class T>
void check_prepare_inference(const std::string& name, double tol) {
  INFO(name << (std::is_same_v<T, float> ? " float" : " double"));
  auto folded = models::create<T>(name, {.num_classes = 10, .seed = 5});
  auto plain = models::create<T>(name, {.num_classes = 10, .seed = 5});
  randomize_bn(*folded, 9);
  randomize_bn(*plain, 9);
  const auto x = random_input<T>(3, 32, 1);

  REQUIRE(nn::prepare_inference(*folded) > 0);
  CHECK(folding_units(*folded) == (name == "vgg11-cifar" ? 8 : 20));
  plain->eval();
  CHECK(folding_units(*plain) == 0);
  const Tensor<T> ref = plain->forward(x);
  CHECK(max_rel_diff(folded->forward(x), ref) < tol);

  // Parameters and statistics change after the first folded forward: the fold follows.
  randomize_bn(*folded, 10);
  randomize_bn(*plain, 10);
  folded->arena().values[0] += T(0.25);  // conv1.weight[0]
  plain->arena().values[0] += T(0.25);
  const Tensor<T> ref2 = plain->forward(x);
  CHECK(max_rel_diff(ref2, ref) > 1e-3);
  CHECK(max_rel_diff(folded->forward(x), ref2) < tol);

  if constexpr (std::is_same_v<T, double>) {
    // A backward through the folded forward gives every gradient (BN's affine ones too).
    folded->zero_grad();
    plain->zero_grad();
    auto [loss, grad] = nn::cross_entropy(folded->forward(x), nn::Labels{1, 2, 3});
    auto [loss_p, grad_p] = nn::cross_entropy(plain->forward(x), nn::Labels{1, 2, 3});
    const Tensor<T> dx_folded = folded->backward(grad);
    CHECK(max_rel_diff(dx_folded, plain->backward(grad_p)) < tol);
    double worst = 0;
    CHECK(compare_grads(*folded, *plain, tol, 1.0, &worst) == static_cast<int>(folded->arena().params.size()));
    std::cout << name << " prepare_inference: worst gradient rel diff " << worst << "\n";
  }

  // Switching folding off restores the ordinary path.
  nn::prepare_inference(*folded, false);
  CHECK(folding_units(*folded) == 0);
  CHECK(max_rel_diff(folded->forward(x), ref2) < tol);
}

TEST_CASE("prepare_inference folds BN into convs: same logits and gradients as unfolded, never stale") {
  for (const std::string name : {"resnet18", "resnet18-cifar", "vgg11-cifar"}) {
    check_prepare_inference<float>(name, 1e-4);
    check_prepare_inference<double>(name, kTol);
  }
}

TEST_CASE("a frozen backbone with frozen BN statistics folds BN and trains the head exactly as unfolded") {
  auto [folded, plain] = twin_resnet18(6, 11);
  folded->train();
  folded->freeze_backbone({.bn_stats = true});
  plain->freeze_backbone();  // eval mode: the same running statistics, unfolded
  CHECK(folding_units(*folded) == 20);
  CHECK(folding_units(*plain) == 0);
  folded->zero_grad();
  plain->zero_grad();
  const auto x = random_input<double>(4, 32, 2);
  const nn::Labels y{0, 3, 5, 9};
  auto [lf, gf] = nn::cross_entropy(folded->forward(x), y);
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < kTol * std::abs(lp));
  folded->backward(gf, true);  // input gradient too: runs backward through every folded pair
  const Tensor<double> dx_folded = folded->backward(gf, true);
  const Tensor<double> dx_plain = plain->backward(gp, true);
  CHECK(max_rel_diff(dx_folded, dx_plain) < kTol);
  double worst = 0;
  CHECK(compare_grads(*folded, *plain, kTol, 2.0, &worst) == 2);  // fc: folded ran backward twice
}

TEST_CASE("frozen BN under trainable convolutions: the fused conv+BN+residual+ReLU path trains the convs exactly") {
  // Fine-tuning with BN fixed (affine and statistics) but convolutions learning: every conv runs
  // with BN, the ReLU and (conv2 of each block) the shortcut in its epilogue, and its weight
  // gradient flows back through the fused ReLU mask.
  auto [fused, plain] = twin_resnet18(8, 12);
  fused->train();
  for (auto* net : {fused.get(), plain.get()}) {
    for (auto& [name, m] : net->named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm2d<double>*>(m)) bn->weight().trainable = bn->bias().trainable = false;
    net->zero_grad();
  }
  fused->set_bn_stats_frozen(nn::all(), true);
  const auto x = random_input<double>(3, 40, 4);
  const nn::Labels y{2, 7, 1};
  auto [lf, gf] = nn::cross_entropy(fused->forward(x), y);
  CHECK(folding_units(*fused) == 20);  // every convolution of resnet18, downsample ones included
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < kTol * std::abs(lp));
  const Tensor<double> dx_fused = fused->backward(gf, true);
  const Tensor<double> dx_plain = plain->backward(gp, true);
  CHECK(max_rel_diff(dx_fused, dx_plain) < kTol);
  double worst = 0;
  CHECK(compare_grads(*fused, *plain, kTol, 1.0, &worst) == 22);  // 20 conv weights + fc weight and bias
}

TEST_CASE("Frozen BN statistics, learning affine parameters: folded units give every gradient") {
  // Fine-tuning everything with BN statistics fixed: every unit folds and its backward gives the
  // conv weights', BN gammas' and betas' gradients from the fused output alone.
  auto [fused, plain] = twin_resnet18(10, 14);
  fused->train();
  fused->set_bn_stats_frozen(nn::all(), true);
  fused->zero_grad();
  plain->zero_grad();
  const auto x = random_input<double>(3, 32, 6);
  const nn::Labels y{4, 0, 8};
  auto [lf, gf] = nn::cross_entropy(fused->forward(x), y);
  CHECK(folding_units(*fused) == 20);
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < kTol * std::abs(lp));
  const Tensor<double> dx_fused = fused->backward(gf, true);
  CHECK(max_rel_diff(dx_fused, plain->backward(gp, true)) < kTol);
  double worst = 0;
  CHECK(compare_grads(*fused, *plain, kTol, 1.0, &worst) == 62);  // 20 convs + 20 x (gamma, beta) + fc (2)
  std::cout << "resnet18 frozen BN statistics, all learning: worst gradient rel diff " << worst << "\n";
}

}  // namespace unit_kernels_fold
