// ModelEma: the average follows ema = d * ema + (1 - d) * w over parameters and BatchNorm running
// statistics, timm's warmup decay, swapping in and out of the model's arena, save / load / state.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <xfer/io/state_dict.hpp>
#include <xfer/nn/batchnorm.hpp>
#include <xfer/nn/conv2d.hpp>
#include <xfer/nn/flatten.hpp>
#include <xfer/nn/linear.hpp>
#include <xfer/nn/pooling.hpp>
#include <xfer/nn/sequential.hpp>
#include <xfer/train/ema.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_ema {

using namespace xfer;

namespace {
std::shared_ptr<nn::Sequential<double>> small_net(uint64_t seed) {
  Rng rng(seed);
  auto net = std::make_shared<nn::Sequential<double>>();
  net->push_back(std::make_shared<nn::Conv2d<double>>(nn::Conv2dOptions{2, 3, 3, 1, 1, false}, rng));
  net->push_back(std::make_shared<nn::BatchNorm2d<double>>(3));
  net->push_back(std::make_shared<nn::AdaptiveAvgPool2d<double>>(1));
  net->push_back(std::make_shared<nn::Flatten<double>>());
  net->push_back(std::make_shared<nn::Linear<double>>(nn::LinearOptions{3, 2}, rng));
  net->flatten_parameters();
  return net;
}
// Moves every weight and BN statistic, as a training step would.
void perturb(nn::Sequential<double>& net, int step) {
  auto& v = net.arena().values;
  for (size_t i = 0; i < v.size(); ++i) v[i] += 0.1 * std::sin(0.7 * static_cast<double>(i) + step);
  for (auto& nb : net.named_buffers()) {
    if (nb.buffer.tensor)
      for (int64_t i = 0; i < nb.buffer.tensor->numel(); ++i) (*nb.buffer.tensor)[i] += 0.05 * (step + 1);
    else
      *nb.buffer.counter += 1;
  }
}
std::vector<double> all_values(nn::Sequential<double>& net) {
  std::vector<double> out(net.arena().values.begin(), net.arena().values.end());
  for (auto& nb : net.named_buffers())
    if (nb.buffer.tensor) out.insert(out.end(), nb.buffer.tensor->data(), nb.buffer.tensor->data() + nb.buffer.tensor->numel());
  return out;
}
}  // namespace

TEST_CASE("ModelEma averages parameters and BN statistics with the fixed decay and copies counters") {
  auto net = small_net(1);
  train::ModelEma<double> ema(*net, {.decay = 0.8});
  std::vector<double> expect = all_values(*net);
  for (int step = 0; step < 5; ++step) {
    perturb(*net, step);
    ema.update();
    const auto now = all_values(*net);
    for (size_t i = 0; i < expect.size(); ++i) expect[i] = 0.8 * expect[i] + 0.2 * now[i];
  }
  CHECK(ema.updates() == 5);
  perturb(*net, 5);  // one more step the EMA has not seen: weights and counters (now 6) differ from it
  const auto training = all_values(*net);
  {
    auto guard = ema.swap_in();
    CHECK(ema.swapped());
    const auto got = all_values(*net);
    REQUIRE(got.size() == expect.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(expect[i]).epsilon(1e-13));
    for (auto& nb : net->named_buffers())
      if (nb.buffer.counter) CHECK(*nb.buffer.counter == 5);  // the EMA's copy, not averaged
    CHECK_THROWS_WITH(ema.update(), Catch::Contains("swapped into the model"));
  }
  CHECK(!ema.swapped());
  CHECK(all_values(*net) == training);  // the training weights came back exactly
  for (auto& nb : net->named_buffers())
    if (nb.buffer.counter) CHECK(*nb.buffer.counter == 6);
}

TEST_CASE("ModelEma without buffers copies the BN statistics instead of averaging them") {
  auto net = small_net(2);
  train::ModelEma<double> ema(*net, {.decay = 0.5, .include_buffers = false});
  perturb(*net, 0);
  ema.update();
  perturb(*net, 1);
  ema.update();
  std::vector<double> bn_now;
  for (auto& nb : net->named_buffers())
    if (nb.buffer.tensor) bn_now.insert(bn_now.end(), nb.buffer.tensor->data(), nb.buffer.tensor->data() + nb.buffer.tensor->numel());
  CHECK(ema.state().buffers == bn_now);
  const auto p = ema.values();
  CHECK(p[0] != net->arena().values[0]);  // parameters are still averaged
}

TEST_CASE("ModelEma's warmup decay is timm's 1 - (1 + k / gamma)^-power, clamped") {
  auto net = small_net(3);
  train::ModelEma<double> ema(*net, {.decay = 0.95, .warmup = true, .warmup_gamma = 1.0, .warmup_power = 2.0 / 3.0,
                                     .min_decay = 0.5});
  std::vector<double> seen;
  for (int n = 1; n <= 400; ++n) {
    seen.push_back(ema.next_decay());
    ema.update();
  }
  CHECK(seen[0] == 0.0);  // the first update copies the weights (k = 0)
  CHECK(seen[1] == 0.5);  // 1 - 2^(-2/3) = 0.37, clamped up to min_decay
  CHECK(seen[9] == Approx(1 - std::pow(10.0, -2.0 / 3.0)).epsilon(1e-15));
  CHECK(seen[399] == 0.95);  // clamped to decay
  train::ModelEma<double> delayed(*net, {.decay = 0.9, .update_after_step = 3});
  std::vector<double> d;
  for (int n = 1; n <= 6; ++n) {
    d.push_back(delayed.next_decay());
    delayed.update();
  }
  CHECK(d == std::vector<double>{0.0, 0.0, 0.0, 0.0, 0.9, 0.9});
}

TEST_CASE("ModelEma's first warmup update copies the weights; forward under swap_in uses the average") {
  auto net = small_net(4);
  train::ModelEma<double> ema(*net, {.decay = 0.999, .warmup = true});
  perturb(*net, 0);
  ema.update();
  CHECK(ema.values() == std::vector<double>(net->arena().values.begin(), net->arena().values.end()));
  perturb(*net, 1);
  net->eval();
  Tensor<double> x({2, 2, 4, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = std::cos(0.3 * static_cast<double>(i));
  const Tensor<double> live = net->forward(x);
  Tensor<double> averaged;
  {
    auto guard = ema.swap_in();
    averaged = net->forward(x);
  }
  const Tensor<double> again = net->forward(x);
  double diff = 0;
  for (int64_t i = 0; i < live.numel(); ++i) {
    diff += std::abs(live[i] - averaged[i]);
    CHECK(again[i] == live[i]);
  }
  CHECK(diff > 1e-3);
}

TEST_CASE("ModelEma save / load and state round trips; the saved file loads as plain weights") {
  const std::string path = std::string(XFER_TEST_TMP) + "/ema_roundtrip.safetensors";
  auto net = small_net(5);
  train::ModelEma<double> ema(*net, {.decay = 0.7});
  for (int s = 0; s < 3; ++s) {
    perturb(*net, s);
    ema.update();
  }
  ema.save(path);
  CHECK(!ema.swapped());

  auto other = small_net(6);
  train::ModelEma<double> loaded(*other, {.decay = 0.7});
  loaded.load(path);
  CHECK(loaded.updates() == 3);
  CHECK(loaded.values() == ema.values());
  const auto st = ema.state();
  CHECK(loaded.state().buffers == st.buffers);
  CHECK(loaded.state().counters == st.counters);

  auto plain = small_net(7);
  io::load_safetensors(*plain, path);
  CHECK(std::vector<double>(plain->arena().values.begin(), plain->arena().values.end()) == ema.values());

  train::ModelEma<double> from_state(*plain, {.decay = 0.7});
  from_state.load_state(st);
  CHECK(from_state.values() == ema.values());
  CHECK(from_state.updates() == 3);
  auto bad = st;
  bad.values.pop_back();
  CHECK_THROWS_WITH(from_state.load_state(bad), Catch::Contains("parameter values"));

  io::save_safetensors(*plain, path);
  CHECK_THROWS_WITH(loaded.load(path), Catch::Contains("not written by ModelEma::save"));
}

TEST_CASE("ModelEma refuses a model re-flattened after it was created, and bad options") {
  auto net = small_net(8);
  train::ModelEma<double> ema(*net);
  net->flatten_parameters();
  CHECK_THROWS_WITH(ema.update(), Catch::Contains("re-flattened"));
  CHECK_THROWS_WITH(train::ModelEma<double>(*net, {.decay = 1.5}), Catch::Contains("decay must be in [0, 1]"));
  CHECK_THROWS_WITH(train::ModelEma<double>(*net, {.decay = 0.9, .min_decay = 0.95}), Catch::Contains("min_decay"));
}

}  // namespace unit_ema
