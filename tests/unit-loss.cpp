#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <cmath>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_loss {

using namespace xfer;
using namespace xfer::nn;

TEST_CASE("cross_entropy equals -log softmax at the label, averaged over the batch") {
  Tensor<double> z({2, 3}, {1, 2, 3, 0, 0, 0});
  auto r = cross_entropy(z, {2, 0});
  const double l0 = -(3 - std::log(std::exp(1) + std::exp(2) + std::exp(3)));
  const double l1 = std::log(3.0);
  CHECK(r.loss == Approx((l0 + l1) / 2).epsilon(1e-12));
  // gradient = (softmax - onehot) / N
  CHECK(r.grad[3] == Approx((1.0 / 3 - 1) / 2));
  CHECK(r.grad[4] == Approx((1.0 / 3) / 2));
}

TEST_CASE("cross_entropy is stable for huge logits") {
  Tensor<float> z({1, 3}, {1000.f, -1000.f, 0.f});
  auto r = cross_entropy(z, {1});
  CHECK(std::isfinite(r.loss));
  CHECK(r.loss == Approx(2000.f));
  for (float g : r.grad) CHECK(std::isfinite(g));
}

TEST_CASE("cross_entropy with label smoothing matches PyTorch's definition") {
  // torch.nn.functional.cross_entropy(torch.tensor([[1.,2.,3.]]), torch.tensor([0]), label_smoothing=0.1)
  Tensor<double> z({1, 3}, {1, 2, 3});
  auto r = cross_entropy(z, {0}, {.label_smoothing = 0.1});
  CHECK(r.loss == Approx(2.3076059644443806).epsilon(1e-12));
}

TEST_CASE("cross_entropy gradient matches finite differences") {
  Rng rng(1);
  Tensor<double> z({3, 4});
  for (auto& v : z) v = rng.normal();
  const Labels y{1, 3, 0};
  auto r = cross_entropy(z, y, {.label_smoothing = 0.2});
  for (int64_t i = 0; i < z.numel(); ++i) {
    Tensor<double> p = z, m = z;
    p[i] += 1e-6;
    m[i] -= 1e-6;
    const double num = (cross_entropy(p, y, {.label_smoothing = 0.2}).loss - cross_entropy(m, y, {.label_smoothing = 0.2}).loss) / 2e-6;
    CHECK(r.grad[i] == Approx(num).epsilon(1e-6).margin(1e-9));
  }
}

TEST_CASE("cross_entropy rejects labels out of range and mismatched batch sizes") {
  Tensor<float> z({2, 3});
  CHECK_THROWS_WITH(cross_entropy(z, {0, 3}), Catch::Contains("label 3") && Catch::Contains("[0, 3)"));
  CHECK_THROWS_WITH(cross_entropy(z, {0}), Catch::Contains("1 labels for a batch of 2"));
  CHECK_THROWS_AS(cross_entropy(z, {0, -1}), Error);
}

TEST_CASE("mse_loss is the mean squared difference with gradient 2(p-t)/n") {
  Tensor<double> p({2, 2}, {1, 2, 3, 4}), t({2, 2}, {1, 0, 3, 0});
  auto r = mse_loss(p, t);
  CHECK(r.loss == Approx((4 + 16) / 4.0));
  CHECK(r.grad[1] == Approx(1.0));
  CHECK(r.grad[3] == Approx(2.0));
  CHECK_THROWS_AS(mse_loss(p, Tensor<double>({4})), Error);
}

TEST_CASE("count_correct counts argmax hits") {
  Tensor<float> z({3, 2}, {0, 1, 1, 0, 2, 3});
  CHECK(count_correct(z, {1, 1, 1}) == 2);
}

}  // namespace unit_loss
