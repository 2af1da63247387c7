// Subnormal floats (issue 17): xfer's forward, backward and optimizer steps run with FTZ/DAZ on
// every thread of the team, put the caller's mode back afterwards (also on an exception), can be
// switched off, give the IEEE results within tolerance, and a step on state full of subnormals
// is not much slower than on normal values (a ratio measured in this process).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <xfer/core/float_env.hpp>
#include <xfer/core/parallel.hpp>
#include <xfer/core/rng.hpp>
#include <xfer/kernels/float_env.hpp>
#include <xfer/nn/batchnorm.hpp>
#include <xfer/nn/conv2d.hpp>
#include <xfer/nn/flatten.hpp>
#include <xfer/nn/linear.hpp>
#include <xfer/nn/loss.hpp>
#include <xfer/nn/relu.hpp>
#include <xfer/nn/sequential.hpp>
#include <xfer/optim/adam.hpp>
#include <xfer/optim/sgd.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_denormals {

using namespace xfer;
using kernels::fp_control_t;
using kernels::kFlushDenormals;

namespace {

constexpr float kSub = 1e-40f;  // subnormal (FLT_MIN is 1.18e-38)

// CPU seconds of the calling thread (wall time where there is no per-thread clock).
double thread_seconds() {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
#else
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
#endif
}

bool is_subnormal(float x) { return std::fpclassify(x) == FP_SUBNORMAL; }

// The flush bits of every thread of a team of `threads` (thread 0 is the caller).
std::vector<fp_control_t> team_bits(int threads) {
  std::vector<fp_control_t> bits(static_cast<size_t>(threads), 0xffffffffu);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  bits[static_cast<size_t>(omp_get_thread_num())] = kernels::fp_control() & kFlushDenormals;
#else
  bits[0] = kernels::fp_control() & kFlushDenormals;
#endif
  return bits;
}

// Restores the thread count, the process-wide switch and this team's flush bits when a test ends.
struct Environment {
  int threads = num_threads();
  bool flush = flush_denormals_enabled();
  // Optionally also forces the process-wide switch (tests of the mechanism must not depend on the
  // XFER_FLUSH_DENORMALS of whoever runs them).
  explicit Environment(int team, std::optional<bool> force_flush = std::nullopt) {
    if (force_flush) set_flush_denormals(*force_flush);
    set_num_threads(team);
    set_team_bits(0);
  }
  ~Environment() {
    set_team_bits(0);
    set_num_threads(threads);
    set_flush_denormals(flush);
  }
  static void set_team_bits(fp_control_t b) {
#ifdef _OPENMP
#pragma omp parallel
    kernels::set_flush_bits(b);
#else
    kernels::set_flush_bits(b);
#endif
  }
};

// False, with a warning, where there are no flush bits (not x86): every guard is then a no-op.
bool have_flush_bits() {
  if (!kernels::has_flush_control()) WARN("no flush-to-zero control on this architecture");
  return kernels::has_flush_control();
}

// conv + BN + ReLU + two Linear layers: every kind of kernel a training step runs.
std::unique_ptr<nn::Sequential<float>> small_net(uint64_t seed) {
  Rng rng(seed);
  auto net = std::make_unique<nn::Sequential<float>>();
  net->emplace_back<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 32, .kernel_size = 3, .padding = 1}, rng);
  net->emplace_back<nn::BatchNorm2d<float>>(32);
  net->emplace_back<nn::ReLU<float>>();
  net->emplace_back<nn::Flatten<float>>();
  net->emplace_back<nn::Linear<float>>(nn::LinearOptions{32 * 8 * 8, 256}, rng);
  net->emplace_back<nn::ReLU<float>>();
  net->emplace_back<nn::Linear<float>>(nn::LinearOptions{256, 10}, rng);
  net->flatten_parameters();
  return net;
}

struct Batch {
  Tensor<float> x{{16, 8, 8, 8}};
  nn::Labels y;
  explicit Batch(uint64_t seed) {
    Rng rng(seed);
    rng.fill_normal(x.data(), x.numel(), 0.0, 1.0);
    for (int i = 0; i < 16; ++i) y.push_back(static_cast<int32_t>(rng.below(10)));
  }
};

float train_step(nn::Module<float>& net, optim::Optimizer<float>& opt, const Batch& b) {
  const Tensor<float>& logits = net.forward(b.x);
  auto l = nn::cross_entropy(logits, b.y);
  opt.zero_grad();
  net.backward(l.grad, false);
  opt.step();
  return l.loss;
}

// Replaces every optimizer state tensor's values by f(old value, index).
template <class F>
void map_state(optim::Optimizer<float>& opt, F f) {
  auto st = opt.state_dict();
  REQUIRE(!st.tensors.empty());
  for (auto& [name, t] : st.tensors)
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = f(t.data()[i], i);
  opt.load_state_dict(st);
}

int64_t count_subnormal_state(const optim::Optimizer<float>& opt) {
  int64_t n = 0;
  for (const auto& [name, t] : opt.state_dict().tensors)
    n += std::count_if(t.data(), t.data() + t.numel(), is_subnormal);
  return n;
}

}  // namespace

TEST_CASE("FlushDenormals sets FTZ and DAZ on every thread of the team and restores the caller's bits") {
  if (!have_flush_bits()) return;
  Environment env(2, true);
  REQUIRE(team_bits(2) == std::vector<fp_control_t>{0, 0});
  {
    FlushDenormals guard;
    CHECK(team_bits(2) == std::vector<fp_control_t>{kFlushDenormals, kFlushDenormals});
    {
      FlushDenormals nested;  // nesting changes nothing, and its end does not clear the outer's bits
      CHECK(team_bits(2) == std::vector<fp_control_t>{kFlushDenormals, kFlushDenormals});
    }
    CHECK(team_bits(2) == std::vector<fp_control_t>{kFlushDenormals, kFlushDenormals});
  }
  CHECK(team_bits(2) == std::vector<fp_control_t>{0, 0});

  // Work too small to go parallel sets only the calling thread; a nested scope with parallel work
  // then sets the team and gives the workers their bits back when it ends.
  {
    FlushDenormals small([] { return int64_t{1000}; });
    CHECK(team_bits(2) == std::vector<fp_control_t>{kFlushDenormals, 0});
    {
      FlushDenormals big([] { return int64_t{1} << 40; });
      CHECK(team_bits(2) == std::vector<fp_control_t>{kFlushDenormals, kFlushDenormals});
    }
    CHECK(team_bits(2) == std::vector<fp_control_t>{kFlushDenormals, 0});
  }
  CHECK(team_bits(2) == std::vector<fp_control_t>{0, 0});

  // A caller that chose FTZ alone (no DAZ) on every thread gets exactly that back.
  Environment::set_team_bits(kernels::kFlushToZero);
  { FlushDenormals guard; }
  CHECK(team_bits(2) == std::vector<fp_control_t>{kernels::kFlushToZero, kernels::kFlushToZero});
}

TEST_CASE("The caller's floating-point mode is restored when an xfer call throws") {
  if (!have_flush_bits()) return;
  Environment env(2, true);
  auto net = small_net(1);
  Tensor<float> wrong({2, 3, 8, 8});  // the first conv expects 8 channels
  CHECK_THROWS_AS(net->forward(wrong), Error);
  CHECK(team_bits(2) == std::vector<fp_control_t>{0, 0});
  try {
    FlushDenormals guard;
    throw std::runtime_error("user code");
  } catch (const std::runtime_error&) {
  }
  CHECK(team_bits(2) == std::vector<fp_control_t>{0, 0});
}

TEST_CASE("An optimizer step flushes subnormal state on every thread, and the opt-out keeps IEEE subnormals") {
  Environment env(2);
  // One parameter big enough for the Adam loop to run in parallel (both threads get blocks).
  const int64_t n = 1 << 18;
  nn::Parameter<float> p("p", {n});
  for (const bool flush : {true, false}) {
    set_flush_denormals(flush);
    for (int kind = 0; kind < 3; ++kind) {
      std::unique_ptr<optim::Optimizer<float>> opt;
      if (kind == 0) opt = std::make_unique<optim::Adam<float>>(std::vector{&p}, optim::AdamOptions{.lr = 1e-3});
      if (kind == 1) opt = std::make_unique<optim::AdamW<float>>(std::vector{&p}, optim::AdamWOptions{.lr = 1e-3});
      if (kind == 2) opt = std::make_unique<optim::SGD<float>>(std::vector{&p}, optim::SGDOptions{.lr = 1e-3, .momentum = 0.9});
      std::fill(p.value, p.value + n, 0.5f);
      std::fill(p.grad, p.grad + n, 0.0f);
      opt->step();  // creates the state
      map_state(*opt, [](float, int64_t) { return kSub; });
      // The momentum of a parameter whose gradient is zero: IEEE keeps 0.9 * 1e-40 subnormal
      // (and Adam's second moment stays subnormal for good, 0.999 * k * 2^-149 rounds back to it).
      opt->step();
      INFO(opt->kind() << (flush ? " with flushing" : " with IEEE subnormals"));
      const bool flushes = flush && kernels::has_flush_control();
      CHECK(count_subnormal_state(*opt) == (flushes ? 0 : (kind == 2 ? n : 2 * n)));
    }
  }
  CHECK(team_bits(2) == std::vector<fp_control_t>{0, 0});
}

TEST_CASE("Training steps with flushed subnormals match the IEEE results") {
  Environment env(2);
  // A few normal steps, then the state of a run where part of the moments went subnormal (the
  // parameters of dead units), and three more steps with and without flushing.
  auto run = [](bool flush, float* loss) {
    auto net = small_net(7);
    optim::Adam<float> opt(net->parameters(), {.lr = 1e-3, .weight_decay = 1e-4});
    Batch b(11);
    set_flush_denormals(true);
    for (int s = 0; s < 3; ++s) train_step(*net, opt, b);
    map_state(opt, [](float v, int64_t i) { return i % 3 == 0 ? std::copysign(kSub, v) : v; });
    set_flush_denormals(flush);
    for (int s = 0; s < 3; ++s) *loss = train_step(*net, opt, b);
    return std::vector<float>(net->arena().values.begin(), net->arena().values.end());
  };
  float loss_ftz = 0, loss_ieee = 0;
  const auto ftz = run(true, &loss_ftz), ieee = run(false, &loss_ieee);
  REQUIRE(ftz.size() == ieee.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < ftz.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(ftz[i]) - ieee[i]));
    max_abs = std::max(max_abs, std::abs(static_cast<double>(ieee[i])));
  }
  std::printf("FTZ vs IEEE after 3 steps: max |dw| = %.3g (max |w| = %.3g), loss %.9g vs %.9g\n", max_diff, max_abs,
              static_cast<double>(loss_ftz), static_cast<double>(loss_ieee));
  // A flushed moment moves a weight by at most lr * FLT_MIN / eps ~ 1e-33 per step; the runs agree
  // bit for bit on this machine, the bound allows 100x that.
  CHECK(max_diff <= 1e-31);
  CHECK(std::abs(loss_ftz - loss_ieee) <= 1e-6f * std::abs(loss_ieee));
}

TEST_CASE("A training step on subnormal weights, gradients and optimizer state is not much slower than on normal ones") {
  Environment env(1);  // one thread, so its CPU time is the step's
  // Flushing as the process says (run with XFER_FLUSH_DENORMALS=0 to see the unprotected ratio).
  auto net = small_net(3);
  optim::Adam<float> opt(net->parameters(), {.lr = 1e-3, .weight_decay = 1e-4});
  Batch b(5);
  train_step(*net, opt, b);  // creates the state and the buffers
  const std::vector<float> normal_w(net->arena().values.begin(), net->arena().values.end());
  std::vector<float> sub_w(normal_w);
  for (float& w : sub_w) w *= 1e-38f;  // weights ~1e-40: every product in the step is subnormal
  map_state(opt, [](float v, int64_t) { return std::abs(v) + 1e-6f; });
  const auto normal_state = opt.state_dict();
  map_state(opt, [](float, int64_t i) { return (i % 2 ? -1 : 1) * kSub; });
  const auto sub_state = opt.state_dict();
  REQUIRE(std::count_if(sub_w.begin(), sub_w.end(), is_subnormal) > static_cast<int64_t>(sub_w.size()) * 9 / 10);

  auto timed = [&](const std::vector<float>& w, const optim::OptimizerState<float>& st) {
    std::copy(w.begin(), w.end(), net->arena().values.begin());
    opt.load_state_dict(st);
    const double t0 = thread_seconds();
    train_step(*net, opt, b);
    return thread_seconds() - t0;
  };
  // CPU time of this (only) thread, interleaved repetitions, minimum of each: other processes on
  // a shared machine delay the step but do not add to its CPU time, and the minimum drops the
  // samples that cache pollution inflated.
  double t_normal = 1e30, t_sub = 1e30;
  for (int r = 0; r < 15; ++r) {
    t_normal = std::min(t_normal, timed(normal_w, normal_state));
    t_sub = std::min(t_sub, timed(sub_w, sub_state));
  }
  const double ratio = t_sub / t_normal;
  std::printf("training step (thread CPU time): normal %.3f ms, subnormal %.3f ms, ratio %.2f (flushing %s)\n", t_normal * 1e3,
              t_sub * 1e3, ratio, flush_denormals_enabled() ? "on" : "off");
  CHECK(ratio < 1.5);
}

TEST_CASE("XFER_FLUSH_DENORMALS values") {
  CHECK(xfer::detail::parse_flush_setting(nullptr));
  CHECK(xfer::detail::parse_flush_setting(""));
  CHECK(xfer::detail::parse_flush_setting("1"));
  CHECK(xfer::detail::parse_flush_setting("on"));
  CHECK_FALSE(xfer::detail::parse_flush_setting("0"));
  CHECK_FALSE(xfer::detail::parse_flush_setting("off"));
  CHECK_FALSE(xfer::detail::parse_flush_setting("false"));
  CHECK_THROWS_WITH(xfer::detail::parse_flush_setting("maybe"), Catch::Contains("XFER_FLUSH_DENORMALS='maybe'"));
}

// Run by tests/denormals.cmake with XFER_FLUSH_DENORMALS=0 in the environment.
TEST_CASE("XFER_FLUSH_DENORMALS=0 turns flushing off", "[.env-off]") {
  Environment env(2);
  CHECK_FALSE(flush_denormals_enabled());
  { FlushDenormals guard; CHECK(team_bits(2) == std::vector<fp_control_t>{0, 0}); }
  nn::Parameter<float> p("p", {1 << 18});
  optim::Adam<float> opt(std::vector{&p}, {.lr = 1e-3});
  opt.step();
  map_state(opt, [](float, int64_t) { return kSub; });
  opt.step();
  CHECK(count_subnormal_state(opt) == 2 * (1 << 18));
}

}  // namespace unit_denormals
