// Class-weighted and soft-target cross-entropy: loss and gradient against torch 1.13's
// F.cross_entropy(weight=..., label_smoothing=...) (fixture from tests/fixtures/gen_train_basics.py),
// gradients against finite differences, and the checks on bad weights / targets.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixture_json.hpp"
#include <xfer/nn/loss.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_loss_weighted {

using namespace xfer;
using json = nlohmann::json;

namespace {
const json& reference() { return fixture_json("train_basics.json"); }
template <class T>
Tensor<T> tensor_from(const json& values, int64_t n, int64_t c) {
  Tensor<T> t({n, c});
  const auto v = values.get<std::vector<double>>();
  REQUIRE(static_cast<int64_t>(v.size()) == n * c);
  for (int64_t i = 0; i < n * c; ++i) t[i] = static_cast<T>(v[static_cast<size_t>(i)]);
  return t;
}
template <class T>
nn::LossResult<T> run(const json& ce, const json& c, const Tensor<T>& logits) {
  nn::CrossEntropyOptions o{.label_smoothing = c["label_smoothing"].get<double>()};
  if (!c["weight"].is_null()) o.weight = c["weight"].get<std::vector<double>>();
  const int64_t N = ce["N"], C = ce["C"];
  if (c["kind"] == "index") return nn::cross_entropy(logits, ce["labels"].get<nn::Labels>(), o);
  return nn::soft_cross_entropy(logits, tensor_from<T>(ce["probs"], N, C), o);
}
}  // namespace

TEST_CASE("Weighted and soft-target cross_entropy match torch's loss and gradient (double and float)") {
  const auto& ce = reference()["cross_entropy"];
  const int64_t N = ce["N"], C = ce["C"];
  int checked = 0, weighted = 0;
  for (const auto& c : ce["cases"]) {
    INFO(c["kind"] << " weight " << c["weight"].dump() << " smoothing " << c["label_smoothing"]);
    const auto grad = c["grad"].get<std::vector<double>>();
    {
      const auto r = run<double>(ce, c, tensor_from<double>(ce["logits"], N, C));
      CHECK(r.loss == Approx(c["loss"].get<double>()).epsilon(1e-12));
      for (size_t i = 0; i < grad.size(); ++i) CHECK(r.grad[static_cast<int64_t>(i)] == Approx(grad[i]).margin(1e-14));
    }
    {
      const auto r = run<float>(ce, c, tensor_from<float>(ce["logits"], N, C));
      CHECK(r.loss == Approx(c["loss"].get<double>()).epsilon(1e-6));
      for (size_t i = 0; i < grad.size(); ++i) CHECK(r.grad[static_cast<int64_t>(i)] == Approx(grad[i]).margin(1e-7));
    }
    ++checked;
    weighted += !c["weight"].is_null();
  }
  CHECK(checked == 12);
  CHECK(weighted == 6);
}

TEST_CASE("Weighted cross_entropy gradients match central finite differences") {
  const auto& ce = reference()["cross_entropy"];
  const int64_t N = ce["N"], C = ce["C"];
  for (const auto& c : ce["cases"]) {
    if (c["weight"].is_null()) continue;
    Tensor<double> z = tensor_from<double>(ce["logits"], N, C);
    const auto r = run<double>(ce, c, z);
    const double h = 1e-6;
    for (int64_t i = 0; i < z.numel(); ++i) {
      const double keep = z[i];
      z[i] = keep + h;
      const double up = run<double>(ce, c, z).loss;
      z[i] = keep - h;
      const double down = run<double>(ce, c, z).loss;
      z[i] = keep;
      CHECK(r.grad[i] == Approx((up - down) / (2 * h)).margin(1e-8));
    }
  }
}

TEST_CASE("Unit class weights give the unweighted cross_entropy") {
  const auto& ce = reference()["cross_entropy"];
  const int64_t N = ce["N"], C = ce["C"];
  const auto z = tensor_from<double>(ce["logits"], N, C);
  const auto labels = ce["labels"].get<nn::Labels>();
  const auto a = nn::cross_entropy(z, labels, {.label_smoothing = 0.2});
  const auto b = nn::cross_entropy(z, labels, {.label_smoothing = 0.2, .weight = std::vector<double>(5, 1.0)});
  CHECK(a.loss == Approx(b.loss).epsilon(1e-14));
  for (int64_t i = 0; i < z.numel(); ++i) CHECK(a.grad[i] == Approx(b.grad[i]).margin(1e-15));
}

TEST_CASE("cross_entropy rejects bad class weights and soft_cross_entropy bad targets") {
  Tensor<float> z({2, 3}, 0.5f);
  const nn::Labels y = {0, 2};
  CHECK_THROWS_WITH(nn::cross_entropy(z, y, {.weight = {1.0, 2.0}}), Catch::Contains("2 class weights for 3 classes"));
  CHECK_THROWS_WITH(nn::cross_entropy(z, y, {.weight = {1.0, -1.0, 1.0}}), Catch::Contains("weight of class 1"));
  CHECK_THROWS_WITH(nn::cross_entropy(z, y, {.weight = {0.0, 1.0, 0.0}}), Catch::Contains("total class weight 0"));
  CHECK_THROWS_WITH(nn::soft_cross_entropy(z, Tensor<float>({2, 4}, 0.25f)), Catch::Contains("targets of shape"));
  Tensor<float> t({2, 3}, 1.0f / 3);
  t[4] = std::nanf("");
  CHECK_THROWS_WITH(nn::soft_cross_entropy(z, t), Catch::Contains("target [1, 1] is not finite"));
}

TEST_CASE("soft_cross_entropy with one-hot targets equals cross_entropy with labels") {
  const auto& ce = reference()["cross_entropy"];
  const int64_t N = ce["N"], C = ce["C"];
  const auto z = tensor_from<double>(ce["logits"], N, C);
  const auto labels = ce["labels"].get<nn::Labels>();
  Tensor<double> onehot({N, C}, 0.0);
  for (int64_t i = 0; i < N; ++i) onehot[i * C + labels[static_cast<size_t>(i)]] = 1.0;
  const auto a = nn::cross_entropy(z, labels, {.label_smoothing = 0.1});
  const auto b = nn::soft_cross_entropy(z, onehot, {.label_smoothing = 0.1});
  CHECK(a.loss == Approx(b.loss).epsilon(1e-14));
  for (int64_t i = 0; i < z.numel(); ++i) CHECK(a.grad[i] == Approx(b.grad[i]).margin(1e-15));
}

}  // namespace unit_loss_weighted
