// MixUp / CutMix against their definitions (torchvision v2 / timm): Beta(alpha, alpha) moments,
// the mixed images and soft targets, CutMix's clipped box and area-corrected lambda, and the
// soft-target loss being the lambda-weighted sum of the two hard-label losses.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <xfer/data/mix.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_mix {

using namespace xfer;
using namespace xfer::data;

namespace {
Tensor<float> ramp_batch(int64_t N, int64_t C, int64_t H, int64_t W) {
  Tensor<float> b({N, C, H, W});
  for (int64_t i = 0; i < b.numel(); ++i) b[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
  return b;
}
}  // namespace

TEST_CASE("sample_beta has the mean and variance of Beta(alpha, alpha)") {
  for (double alpha : {0.2, 0.4, 1.0, 2.0}) {
    INFO("alpha " << alpha);
    Rng rng(42);
    const int n = 40000;
    double s = 0, s2 = 0;
    int below_quarter = 0;
    for (int i = 0; i < n; ++i) {
      const double x = sample_beta(rng, alpha, alpha);
      REQUIRE((x >= 0 && x <= 1));
      s += x;
      s2 += x * x;
      below_quarter += x < 0.25;
    }
    const double mean = s / n, var = s2 / n - mean * mean;
    CHECK(std::abs(mean - 0.5) < 0.006);
    CHECK(std::abs(var - 1.0 / (4 * (2 * alpha + 1))) < 0.004);
    if (alpha == 1.0) CHECK(std::abs(below_quarter / static_cast<double>(n) - 0.25) < 0.01);  // uniform
  }
}

TEST_CASE("MixUp blends each sample with the previous one and mixes one-hot targets with lambda") {
  const int64_t N = 4, C = 2, H = 3, W = 5;
  Tensor<float> batch = ramp_batch(N, C, H, W);
  const Tensor<float> orig = batch;
  const nn::Labels y = {0, 2, 1, 2};
  MixUp mix({.alpha = 0.4, .num_classes = 3});
  const double lam = 0.7;
  const Tensor<float> t = mix.apply_params(batch, y, lam);
  const int64_t per = C * H * W;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t prev = (i + N - 1) % N;
    for (int64_t k = 0; k < per; ++k)
      CHECK(batch[i * per + k] == Approx(0.7 * orig[i * per + k] + 0.3 * orig[prev * per + k]).margin(1e-6));
  }
  const std::vector<float> want = {0.7f, 0.0f, 0.3f, 0.3f, 0.0f, 0.7f, 0.0f, 0.7f, 0.3f, 0.0f, 0.3f, 0.7f};
  REQUIRE(t.numel() == 12);
  for (int64_t i = 0; i < 12; ++i) CHECK(t[i] == Approx(want[static_cast<size_t>(i)]).margin(1e-7));
  // soft CE on the mixed target = lam * CE(y_i) + (1 - lam) * CE(y_{i-1}), gradients alike
  Tensor<float> logits({N, 3});
  for (int64_t i = 0; i < logits.numel(); ++i) logits[i] = static_cast<float>(std::cos(1.1 * static_cast<double>(i)));
  const nn::Labels y_prev = {2, 0, 2, 1};
  const auto soft = nn::soft_cross_entropy(logits, t);
  const auto a = nn::cross_entropy(logits, y), b = nn::cross_entropy(logits, y_prev);
  CHECK(soft.loss == Approx(lam * a.loss + (1 - lam) * b.loss).epsilon(1e-6));
  for (int64_t i = 0; i < logits.numel(); ++i)
    CHECK(soft.grad[i] == Approx(lam * a.grad[i] + (1 - lam) * b.grad[i]).margin(1e-7));
}

TEST_CASE("CutMix pastes the clipped box from the previous sample and corrects lambda to the kept area") {
  const auto p = CutMix::box_for(0.75, /*cx=*/2, /*cy=*/30, /*height=*/32, /*width=*/32);
  CHECK(p.x1 == 0);
  CHECK(p.x2 == 10);
  CHECK(p.y1 == 22);
  CHECK(p.y2 == 32);
  CHECK(p.lambda_adjusted == Approx(1.0 - 100.0 / 1024.0).epsilon(1e-15));
  const auto centre = CutMix::box_for(0.36, 16, 16, 32, 32);  // r = 0.4: half sides int(12.8) = 12
  CHECK(centre.x2 - centre.x1 == 24);
  CHECK(centre.lambda_adjusted == Approx(1.0 - 576.0 / 1024.0).epsilon(1e-15));

  const int64_t N = 3, C = 2, H = 32, W = 32;
  Tensor<float> batch = ramp_batch(N, C, H, W);
  const Tensor<float> orig = batch;
  const nn::Labels y = {1, 0, 1};
  CutMix cm({.alpha = 1.0, .num_classes = 2});
  const Tensor<float> t = cm.apply_params(batch, y, p);
  int64_t from_prev = 0;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t yy = 0; yy < H; ++yy)
        for (int64_t x = 0; x < W; ++x) {
          const bool in_box = x >= p.x1 && x < p.x2 && yy >= p.y1 && yy < p.y2;
          const int64_t src = in_box ? (i + N - 1) % N : i;
          CHECK(batch[((i * C + c) * H + yy) * W + x] == orig[((src * C + c) * H + yy) * W + x]);
          from_prev += in_box;
        }
  CHECK(from_prev == N * C * 100);
  const float l = static_cast<float>(p.lambda_adjusted);
  CHECK(t[0 * 2 + 1] == Approx(1.0f));    // sample 0 and its partner (sample 2) both have label 1
  CHECK(t[0] == 0.0f);
  CHECK(t[1 * 2 + 0] == Approx(l));       // sample 1: label 0, partner (sample 0) label 1
  CHECK(t[1 * 2 + 1] == Approx(1.0f - l));
}

TEST_CASE("CutMix's random box follows its lambda; MixUp and CutMix refuse bad input") {
  CutMix cm({.alpha = 1.0, .num_classes = 10});
  Rng rng(5);
  double gap = 0;
  for (int i = 0; i < 2000; ++i) {
    const auto p = cm.get_params(64, 48, rng);
    REQUIRE((p.x1 >= 0 && p.x2 <= 48 && p.y1 >= 0 && p.y2 <= 64 && p.x1 <= p.x2 && p.y1 <= p.y2));
    CHECK(p.lambda_adjusted >= p.lambda - 1e-12);  // clipping and int() only shrink the box
    gap += p.lambda_adjusted - p.lambda;
  }
  CHECK(gap / 2000 > 0.01);  // boxes at the border are clipped often
  CHECK_THROWS_WITH(MixUp({.alpha = 0.0, .num_classes = 3}), Catch::Contains("alpha must be > 0"));
  CHECK_THROWS_WITH(CutMix({.alpha = 1.0}), Catch::Contains("num_classes is required"));
  Tensor<float> batch({2, 1, 4, 4}, 0.0f);
  MixUp mu({.alpha = 1.0, .num_classes = 3});
  CHECK_THROWS_WITH(mu.apply_params(batch, {0, 3}, 0.5), Catch::Contains("label 3 of sample 1"));
  CHECK_THROWS_WITH(mu.apply_params(batch, {0}, 0.5), Catch::Contains("1 labels for a batch of 2"));
}

}  // namespace unit_mix
