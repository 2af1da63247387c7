// BatchNorm folded into the preceding convolution by the conv + BN units (nn::ConvBnAct) of whole
// models (eval with prepare_inference, frozen BN statistics in training) computes what the unfolded
// network computes (eval mode without inference folding: the same running statistics, applied by
// BN's own pass), is never stale, and gives every gradient, BN's affine parameters included.
#include <catch2/catch.hpp>
#include <cmath>
#include <iostream>

#include "xfer/core/rng.hpp"
#include "xfer/models/zoo.hpp"
#include "xfer/nn/conv_bn_act.hpp"
#include "xfer/nn/loss.hpp"

using namespace xfer;

namespace {

Tensor<float> random_input(int64_t n, int64_t hw, uint64_t seed) {
  Rng rng(seed);
  Tensor<float> x({n, 3, hw, hw});
  for (auto& v : x) v = static_cast<float>(rng.normal());
  return x;
}

// Gives every BN non-trivial running statistics and affine parameters.
void randomize_bn(models::Model<float>& net, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, m] : net.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm2d<float>*>(m)) {
      for (int64_t c = 0; c < bn->options().num_features; ++c) {
        bn->running_mean()[c] = static_cast<float>(rng.uniform(-0.5, 0.5));
        bn->running_var()[c] = static_cast<float>(rng.uniform(0.5, 2.0));
        bn->weight().value[c] = static_cast<float>(rng.uniform(0.5, 1.5));
        bn->bias().value[c] = static_cast<float>(rng.uniform(-0.2, 0.2));
      }
    }
}

// How many conv + BN units apply BN in the convolution's epilogue on the next forward.
int folding_units(models::Model<float>& net) {
  int n = 0;
  for (auto* u : nn::fusion_units(net)) n += u->folds() ? 1 : 0;
  return n;
}

// Two identical resnet18s with the same random BN state; the second runs in eval mode without
// inference folding: the same running statistics, applied by BN's own pass (the unfused path).
std::pair<std::shared_ptr<models::Model<float>>, std::shared_ptr<models::Model<float>>> twin_resnet18(
    uint64_t seed, uint64_t bn_seed) {
  auto fused = models::create<float>("resnet18", {.num_classes = 10, .seed = seed});
  auto plain = models::create<float>("resnet18", {.num_classes = 10, .seed = seed});
  randomize_bn(*fused, bn_seed);
  randomize_bn(*plain, bn_seed);
  plain->eval();
  return {fused, plain};
}

double max_rel_diff(const Tensor<float>& a, const Tensor<float>& b) {
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
int compare_grads(models::Model<float>& f, models::Model<float>& p, double tol, double times, double* worst_out) {
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

TEST_CASE("prepare_inference folds BN into convs: same logits and gradients as unfolded, never stale") {
  for (const std::string name : {"resnet18", "resnet18-cifar", "vgg11-cifar"}) {
    INFO(name);
    auto folded = models::create<float>(name, {.num_classes = 10, .seed = 5});
    auto plain = models::create<float>(name, {.num_classes = 10, .seed = 5});
    randomize_bn(*folded, 9);
    randomize_bn(*plain, 9);
    const auto x = random_input(3, 32, 1);

    REQUIRE(nn::prepare_inference(*folded) > 0);
    CHECK(folding_units(*folded) == (name == "vgg11-cifar" ? 8 : 20));
    plain->eval();
    CHECK(folding_units(*plain) == 0);
    const Tensor<float> ref = plain->forward(x);
    CHECK(max_rel_diff(folded->forward(x), ref) < 1e-4);

    // Parameters and statistics change after the first folded forward: the fold follows.
    randomize_bn(*folded, 10);
    randomize_bn(*plain, 10);
    folded->arena().values[0] += 0.25f;  // conv1.weight[0]
    plain->arena().values[0] += 0.25f;
    const Tensor<float> ref2 = plain->forward(x);
    CHECK(max_rel_diff(ref2, ref) > 1e-3);
    CHECK(max_rel_diff(folded->forward(x), ref2) < 1e-4);

    // A backward through the folded forward gives every gradient (BN's affine ones too).
    folded->zero_grad();
    plain->zero_grad();
    auto [loss, grad] = nn::cross_entropy(folded->forward(x), nn::Labels{1, 2, 3});
    auto [loss_p, grad_p] = nn::cross_entropy(plain->forward(x), nn::Labels{1, 2, 3});
    const Tensor<float> dx_folded = folded->backward(grad);
    CHECK(max_rel_diff(dx_folded, plain->backward(grad_p)) < 1e-3);
    double worst = 0;
    CHECK(compare_grads(*folded, *plain, 1e-4, 1.0, &worst) == static_cast<int>(folded->arena().params.size()));
    std::cout << name << " prepare_inference: worst gradient rel diff " << worst << "\n";

    // Switching folding off restores the ordinary path.
    nn::prepare_inference(*folded, false);
    CHECK(folding_units(*folded) == 0);
    CHECK(max_rel_diff(folded->forward(x), ref2) < 1e-4);
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
  const auto x = random_input(4, 32, 2);
  const nn::Labels y{0, 3, 5, 9};
  auto [lf, gf] = nn::cross_entropy(folded->forward(x), y);
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < 1e-4 * std::abs(lp));
  folded->backward(gf, true);  // input gradient too: runs backward through every folded pair
  const Tensor<float> dx_folded = folded->backward(gf, true);
  const Tensor<float> dx_plain = plain->backward(gp, true);
  CHECK(max_rel_diff(dx_folded, dx_plain) < 1e-3);
  double worst = 0;
  CHECK(compare_grads(*folded, *plain, 1e-4, 2.0, &worst) == 2);  // fc: folded ran backward twice
}

TEST_CASE("frozen BN under trainable convolutions: the fused conv+BN+residual+ReLU path trains the convs exactly") {
  // Fine-tuning with BN fixed (affine and statistics) but convolutions learning: every conv runs
  // with BN, the ReLU and (conv2 of each block) the shortcut in its epilogue, and its weight
  // gradient flows back through the fused ReLU mask.
  auto [fused, plain] = twin_resnet18(8, 12);
  fused->train();
  for (auto* net : {fused.get(), plain.get()}) {
    for (auto& [name, m] : net->named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm2d<float>*>(m)) bn->weight().trainable = bn->bias().trainable = false;
    net->zero_grad();
  }
  fused->set_bn_stats_frozen(nn::all(), true);
  const auto x = random_input(3, 40, 4);
  const nn::Labels y{2, 7, 1};
  auto [lf, gf] = nn::cross_entropy(fused->forward(x), y);
  CHECK(folding_units(*fused) == 20);  // every convolution of resnet18, downsample ones included
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < 1e-4 * std::abs(lp));
  const Tensor<float> dx_fused = fused->backward(gf, true);
  const Tensor<float> dx_plain = plain->backward(gp, true);
  CHECK(max_rel_diff(dx_fused, dx_plain) < 1e-3);
  double worst = 0;
  CHECK(compare_grads(*fused, *plain, 1e-3, 1.0, &worst) == 22);  // 20 conv weights + fc weight and bias
}

TEST_CASE("Frozen BN statistics, learning affine parameters: folded units give every gradient") {
  // Fine-tuning everything with BN statistics fixed: every unit folds and its backward gives the
  // conv weights', BN gammas' and betas' gradients from the fused output alone.
  auto [fused, plain] = twin_resnet18(10, 14);
  fused->train();
  fused->set_bn_stats_frozen(nn::all(), true);
  fused->zero_grad();
  plain->zero_grad();
  const auto x = random_input(3, 32, 6);
  const nn::Labels y{4, 0, 8};
  auto [lf, gf] = nn::cross_entropy(fused->forward(x), y);
  CHECK(folding_units(*fused) == 20);
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < 1e-4 * std::abs(lp));
  const Tensor<float> dx_fused = fused->backward(gf, true);
  CHECK(max_rel_diff(dx_fused, plain->backward(gp, true)) < 1e-3);
  double worst = 0;
  CHECK(compare_grads(*fused, *plain, 2e-4, 1.0, &worst) == 62);  // 20 convs + 20 x (gamma, beta) + fc (2)
  std::cout << "resnet18 frozen BN statistics, all learning: worst gradient rel diff " << worst << "\n";
}
