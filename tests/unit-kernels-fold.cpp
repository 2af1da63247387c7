// BatchNorm folded into the preceding convolution (eval with prepare_inference, or frozen BN in a
// frozen backbone) computes what the unfolded network computes, is never stale, and refuses a
// backward that would need BN's input.
#include <catch2/catch.hpp>
#include <cmath>

#include "xfer/core/rng.hpp"
#include "xfer/models/zoo.hpp"
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

void unpair_all(models::Model<float>& net) {
  for (auto& [name, m] : net.named_modules())
    if (auto* conv = dynamic_cast<nn::Conv2d<float>*>(m)) conv->fold_into(nullptr);
}

// Two identical resnet18s with the same random BN state; the second has every conv unpaired, so
// it runs BN and ReLU as separate layers.
std::pair<std::shared_ptr<models::Model<float>>, std::shared_ptr<models::Model<float>>> twin_resnet18(
    uint64_t seed, uint64_t bn_seed) {
  auto fused = models::create<float>("resnet18", {.num_classes = 10, .seed = seed});
  auto plain = models::create<float>("resnet18", {.num_classes = 10, .seed = seed});
  randomize_bn(*fused, bn_seed);
  randomize_bn(*plain, bn_seed);
  unpair_all(*plain);
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

}  // namespace

TEST_CASE("prepare_inference folds BN into convs: same logits as the unfolded model, never stale") {
  for (const std::string name : {"resnet18", "resnet18-cifar", "vgg11-cifar"}) {
    INFO(name);
    auto folded = models::create<float>(name, {.num_classes = 10, .seed = 5});
    auto plain = models::create<float>(name, {.num_classes = 10, .seed = 5});
    randomize_bn(*folded, 9);
    randomize_bn(*plain, 9);
    unpair_all(*plain);
    const auto x = random_input(3, 32, 1);

    REQUIRE(nn::prepare_inference(*folded) > 0);
    plain->eval();
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

    // A backward through a folded forward would need BN's input for the affine gradients.
    auto [loss, grad] = nn::cross_entropy(folded->forward(x), nn::Labels{1, 2, 3});
    CHECK_THROWS_AS(folded->backward(grad), Error);

    // Switching folding off restores the ordinary path.
    nn::prepare_inference(*folded, false);
    CHECK(max_rel_diff(folded->forward(x), ref2) < 1e-4);
    auto [loss2, grad2] = nn::cross_entropy(folded->forward(x), nn::Labels{1, 2, 3});
    CHECK_NOTHROW(folded->backward(grad2));
  }
}

TEST_CASE("a frozen backbone with frozen BN statistics folds BN and trains the head exactly as unfolded") {
  auto [folded, plain] = twin_resnet18(6, 11);
  for (auto* net : {folded.get(), plain.get()}) {
    net->train();
    net->freeze_backbone({.bn_stats = true});
    net->zero_grad();
  }
  const auto x = random_input(4, 32, 2);
  const nn::Labels y{0, 3, 5, 9};
  auto [lf, gf] = nn::cross_entropy(folded->forward(x), y);
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < 1e-4 * std::abs(lp));
  folded->backward(gf, true);  // input gradient too: runs backward through every folded pair
  const Tensor<float> dx_folded = folded->backward(gf, true);
  const Tensor<float> dx_plain = plain->backward(gp, true);
  CHECK(max_rel_diff(dx_folded, dx_plain) < 1e-3);
  auto& af = folded->arena();
  auto& ap = plain->arena();
  for (auto& np : af.params)
    if (np.param->trainable) {
      INFO(np.name);
      double worst = 0, scale = 1e-12;
      for (int64_t i = 0; i < np.param->numel; ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(af.grads[np.param->offset + i]) / 2 -
                                         ap.grads[np.param->offset + i]));
        scale = std::max(scale, std::abs(static_cast<double>(ap.grads[np.param->offset + i])));
      }
      CHECK(worst / scale < 1e-4);  // folded ran backward twice: its gradients are doubled
    }
}

TEST_CASE("frozen BN under trainable convolutions: the fused conv+BN+residual+ReLU path trains the convs exactly") {
  // Fine-tuning with BN fixed (affine and statistics) but convolutions learning: every conv runs
  // with BN, the ReLU and (conv2 of each block) the shortcut in its epilogue, and its weight
  // gradient flows back through the fused ReLU mask.
  auto [fused, plain] = twin_resnet18(8, 12);
  for (auto* net : {fused.get(), plain.get()}) {
    net->train();
    for (auto& [name, m] : net->named_modules())
      if (auto* bn = dynamic_cast<nn::BatchNorm2d<float>*>(m)) {
        bn->weight().trainable = bn->bias().trainable = false;
        bn->set_running_stats_frozen(true);
      }
    net->zero_grad();
  }
  int fused_convs = 0;
  const auto x = random_input(3, 40, 4);
  const nn::Labels y{2, 7, 1};
  auto [lf, gf] = nn::cross_entropy(fused->forward(x), y);
  for (auto& [name, m] : fused->named_modules())
    if (auto* conv = dynamic_cast<nn::Conv2d<float>*>(m)) fused_convs += conv->folds_bn();
  CHECK(fused_convs == 20);  // every convolution of resnet18, downsample ones included
  auto [lp, gp] = nn::cross_entropy(plain->forward(x), y);
  CHECK(std::abs(lf - lp) < 1e-4 * std::abs(lp));
  const Tensor<float> dx_fused = fused->backward(gf, true);
  const Tensor<float> dx_plain = plain->backward(gp, true);
  CHECK(max_rel_diff(dx_fused, dx_plain) < 1e-3);
  auto& af = fused->arena();
  auto& ap = plain->arena();
  int checked = 0;
  for (auto& np : af.params)
    if (np.param->trainable) {
      INFO(np.name);
      double worst = 0, scale = 1e-12;
      for (int64_t i = 0; i < np.param->numel; ++i) {
        worst = std::max(worst, std::abs(static_cast<double>(af.grads[np.param->offset + i]) - ap.grads[np.param->offset + i]));
        scale = std::max(scale, std::abs(static_cast<double>(ap.grads[np.param->offset + i])));
      }
      CHECK(worst / scale < 1e-3);
      ++checked;
    }
  CHECK(checked == 22);  // 20 conv weights + fc weight and bias
}

TEST_CASE("fusion announcements last one forward: unpairing after fused forwards gives the plain result") {
  auto plain = models::create<float>("resnet18", {.num_classes = 10, .seed = 9});
  randomize_bn(*plain, 13);
  unpair_all(*plain);
  const auto x = random_input(2, 32, 5);
  for (bool training : {false, true}) {
    INFO((training ? "train mode (BN + ReLU fused)" : "inference (conv + BN + ReLU fused)"));
    auto fresh = models::create<float>("resnet18", {.num_classes = 10, .seed = 9});
    randomize_bn(*fresh, 13);
    if (training) {
      fresh->train();
      plain->train();
    } else {
      nn::prepare_inference(*fresh);
      nn::prepare_inference(*plain);
    }
    (void)fresh->forward(x);  // fused: conv/BN announce their outputs to the layers after them
    unpair_all(*fresh);
    const Tensor<float> out = fresh->forward(x);
    CHECK(max_rel_diff(out, plain->forward(x)) < 1e-4);
  }
}
