// Learning-rate schedulers: lr sequences against torch.optim.lr_scheduler (fixture from
// tests/fixtures/gen_optim.py), checkpoint round trips and option validation.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xfer/io/state_json.hpp>
#include <xfer/optim/plateau.hpp>
#include <xfer/optim/scheduler.hpp>
#include <xfer/optim/sgd.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_schedulers {

using namespace xfer;
using json = nlohmann::json;

namespace {

const json& reference() {
  static const json ref = [] {
    std::ifstream f(std::string(XFER_FIXTURE_DIR) + "/optim_reference.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return ref;
}

// An SGD optimizer with two groups at the fixture's base lrs (0.1 and 0.02).
struct TwoGroups {
  nn::Parameter<float> a{"a", {1}}, b{"b", {1}};
  optim::SGD<float> opt;
  TwoGroups()
      : opt({{.params = {&a}, .lr = reference()["base_lrs"][0].get<double>()},
             {.params = {&b}, .lr = reference()["base_lrs"][1].get<double>()}},
            {.lr = 1.0}) {}
  std::vector<double> lrs() const { return {opt.lr(0), opt.lr(1)}; }
};

std::unique_ptr<optim::ChainableScheduler> make_chainable(optim::LrGroups& opt, const json& s) {
  const std::string kind = s["kind"];
  const auto& o = s["options"];
  if (kind == "StepLR")
    return std::make_unique<optim::StepLR>(opt, optim::StepLROptions{.step_size = o["step_size"], .gamma = o["gamma"]});
  REQUIRE(kind == "CosineAnnealingLR");
  return std::make_unique<optim::CosineAnnealingLR>(
      opt, optim::CosineAnnealingOptions{.T_max = o["T_max"], .eta_min = o["eta_min"]});
}

std::unique_ptr<optim::LRScheduler> make_epoch_scheduler(optim::LrGroups& opt, const json& s) {
  if (s["kind"] != "LinearWarmup") return make_chainable(opt, s);
  const optim::LinearWarmupOptions w{.start_factor = s["options"]["start_factor"],
                                     .warmup_steps = s["options"]["warmup_steps"]};
  if (!s.contains("after")) return std::make_unique<optim::LinearWarmup>(opt, w);
  auto after = make_chainable(opt, s["after"]);
  return std::make_unique<optim::LinearWarmup>(opt, w, *after);
}

optim::ReduceLROnPlateauOptions plateau_options(const json& o) {
  optim::ReduceLROnPlateauOptions p;
  p.mode = o["mode"] == "min" ? optim::PlateauMode::min : optim::PlateauMode::max;
  p.factor = o["factor"];
  p.patience = o["patience"];
  p.threshold = o["threshold"];
  p.threshold_mode = o["threshold_mode"] == "rel" ? optim::ThresholdMode::rel : optim::ThresholdMode::abs;
  p.cooldown = o["cooldown"];
  p.min_lr = o.value("min_lr", 0.0);
  if (o.contains("min_lrs")) p.min_lrs = o["min_lrs"].get<std::vector<double>>();
  if (o.contains("eps")) p.eps = o["eps"];
  return p;
}

double rel_err(double got, double want) { return std::abs(got - want) / std::max(std::abs(want), 1e-300); }

}  // namespace

TEST_CASE("StepLR, CosineAnnealingLR and LinearWarmup (alone and before another) follow torch's lr sequences") {
  for (const auto& s : reference()["schedulers"]) {
    if (s["kind"] == "ReduceLROnPlateau") continue;
    const std::string name = s["name"];
    SECTION(name) {
      TwoGroups t;
      auto sched = make_epoch_scheduler(t.opt, s);
      const auto& want = s["lrs"];
      double worst = 0;
      for (size_t k = 0; k < want.size(); ++k) {
        if (k > 0) {
          t.opt.step();
          sched->step();
        }
        CHECK(sched->last_epoch() == static_cast<int64_t>(k));
        CHECK(sched->get_last_lr() == t.lrs());
        for (size_t g = 0; g < 2; ++g) worst = std::max(worst, rel_err(t.opt.lr(g), want[k][g].get<double>()));
      }
      INFO(name << ": worst relative error " << worst);
      CHECK(worst <= 1e-12);
      CHECK(sched->base_lrs() == reference()["base_lrs"].get<std::vector<double>>());
    }
  }
}

TEST_CASE("ReduceLROnPlateau follows torch's lr sequence on a scripted metric (patience, cooldown, threshold, min_lr, eps)") {
  for (const auto& s : reference()["schedulers"]) {
    if (s["kind"] != "ReduceLROnPlateau") continue;
    const std::string name = s["name"];
    SECTION(name) {
      TwoGroups t;
      optim::ReduceLROnPlateau plateau(t.opt, plateau_options(s["options"]));
      const auto& want = s["lrs"];
      const auto metrics = s["metrics"].get<std::vector<double>>();
      CHECK(t.lrs() == want[0].get<std::vector<double>>());
      int reductions = 0;
      for (size_t k = 0; k < metrics.size(); ++k) {
        const auto before = t.lrs();
        t.opt.step();
        plateau.step(metrics[k]);
        if (t.lrs() != before) ++reductions;
        INFO(name << " step " << k + 1 << " metric " << metrics[k]);
        // Exact: the reductions are single multiplications or min_lr, as in PyTorch.
        CHECK(t.lrs() == want[k + 1].get<std::vector<double>>());
        CHECK(plateau.get_last_lr() == t.lrs());
        CHECK(plateau.last_epoch() == static_cast<int64_t>(k + 1));
      }
      CHECK(reductions >= 2);  // the script exercises more than one reduction
    }
  }
}

TEST_CASE("A step-based scheduler carries a hand-set lr on, like PyTorch's chainable form") {
  TwoGroups t;
  optim::StepLR sched(t.opt, {.step_size = 2, .gamma = 0.5});
  sched.step();  // epoch 1: unchanged
  t.opt.set_lr(1.0);
  sched.step();  // epoch 2: halves the current lr
  CHECK(t.opt.lr(0) == 0.5);
  CHECK(t.opt.lr(1) == 0.5);
  CHECK(sched.base_lrs() == std::vector<double>{0.1, 0.02});
}

TEST_CASE("The first scheduler records each group's initial lr; later ones reuse it") {
  TwoGroups t;
  CHECK_FALSE(t.opt.initial_lr(0).has_value());
  optim::LinearWarmup warm(t.opt, {.start_factor = 0.5, .warmup_steps = 2});
  CHECK(t.opt.initial_lr(0) == 0.1);
  CHECK(t.opt.lr(0) == 0.05);  // construction is the first step, as in PyTorch
  optim::StepLR step(t.opt, {.step_size = 1});
  CHECK(step.base_lrs() == std::vector<double>{0.1, 0.02});
}

// ---- checkpoints ------------------------------------------------------------------------------

namespace {
// Runs a scheduler for 10 steps straight, and for 4 + 6 steps with a save / load in between into a
// fresh optimizer and scheduler: the lr sequences and the final states must be identical.
template <class Make, class Step>
void check_scheduler_resume(Make make, Step step_fn) {
  std::vector<std::vector<double>> straight, resumed;
  json straight_state;
  {
    TwoGroups t;
    auto s = make(t.opt);
    for (int k = 0; k < 10; ++k) {
      t.opt.step();
      step_fn(*s, k);
      straight.push_back(t.lrs());
    }
    straight_state = s->state();
  }
  json sched_state;
  optim::OptimizerState<float> opt_state;
  {
    TwoGroups t;
    auto s = make(t.opt);
    for (int k = 0; k < 4; ++k) {
      t.opt.step();
      step_fn(*s, k);
      resumed.push_back(t.lrs());
    }
    // Through text, as a checkpoint stores them.
    sched_state = json::parse(json(s->state()).dump());
    opt_state = t.opt.state_dict();
    optim::from_json(json::parse(json(opt_state).dump()), opt_state);
  }
  TwoGroups t;
  auto s = make(t.opt);  // construction steps once; the loads below overwrite that
  t.opt.load_state_dict(opt_state);
  s->load_state(sched_state.get<std::decay_t<decltype(s->state())>>());
  for (int k = 4; k < 10; ++k) {
    t.opt.step();
    step_fn(*s, k);
    resumed.push_back(t.lrs());
  }
  CHECK(straight == resumed);
  CHECK(json(s->state()) == straight_state);
}
const auto plain_step = [](auto& s, int) { s.step(); };
}  // namespace

TEST_CASE("Schedulers resumed from their state continue with the same lr sequence") {
  SECTION("StepLR") {
    check_scheduler_resume([](optim::LrGroups& o) { return std::make_unique<optim::StepLR>(o, optim::StepLROptions{.step_size = 3}); },
                           plain_step);
  }
  SECTION("LinearWarmup then CosineAnnealingLR, saved during the warmup") {
    check_scheduler_resume(
        [](optim::LrGroups& o) {
          return std::make_unique<optim::LinearWarmup>(o, optim::LinearWarmupOptions{.start_factor = 0.1, .warmup_steps = 6},
                                                       optim::CosineAnnealingLR(o, {.T_max = 7, .eta_min = 1e-3}));
        },
        plain_step);
  }
  SECTION("LinearWarmup then StepLR, saved after the hand-over") {
    check_scheduler_resume(
        [](optim::LrGroups& o) {
          return std::make_unique<optim::LinearWarmup>(o, optim::LinearWarmupOptions{.start_factor = 0.5, .warmup_steps = 2},
                                                       optim::StepLR(o, {.step_size = 2, .gamma = 0.5}));
        },
        plain_step);
  }
  SECTION("ReduceLROnPlateau in cooldown, with an infinite best in max mode") {
    const std::vector<double> metrics = {0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7};
    check_scheduler_resume(
        [](optim::LrGroups& o) {
          return std::make_unique<optim::ReduceLROnPlateau>(
              o, optim::ReduceLROnPlateauOptions{.mode = optim::PlateauMode::max, .factor = 0.5, .patience = 1, .cooldown = 2});
        },
        [&](optim::ReduceLROnPlateau& s, int k) { s.step(metrics[static_cast<size_t>(k)]); });
  }
  SECTION("A fresh ReduceLROnPlateau saves its infinite best as text") {
    TwoGroups t;
    optim::ReduceLROnPlateau p(t.opt);
    const auto st = json::parse(json(p.state()).dump());
    CHECK(st["best"] == "inf");
    optim::ReduceLROnPlateau q(t.opt, {.mode = optim::PlateauMode::max});
    q.load_state(st.get<optim::PlateauState>());
    CHECK(q.best() == std::numeric_limits<double>::infinity());
    CHECK(q.options().mode == optim::PlateauMode::min);
  }
}

TEST_CASE("Loading a scheduler state of another kind or group count throws") {
  TwoGroups t;
  optim::StepLR step(t.opt, {.step_size = 3});
  optim::CosineAnnealingLR cosine(t.opt, {.T_max = 3});
  CHECK_THROWS_WITH(cosine.load_state(step.state()), Catch::Contains("saved by a StepLR scheduler, this is CosineAnnealingLR"));
  nn::Parameter<float> c{"c", {1}};
  optim::SGD<float> one({&c}, {.lr = 0.1});
  optim::StepLR single(one, {.step_size = 3});
  CHECK_THROWS_WITH(single.load_state(step.state()), Catch::Contains("covers 2 parameter groups, the optimizer has 1"));
  optim::ReduceLROnPlateau p1(one), p2(t.opt);
  CHECK_THROWS_WITH(p1.load_state(p2.state()), Catch::Contains("covers 2 parameter groups, the optimizer has 1"));
  CHECK_THROWS_WITH(p1.load_state(json(step.state()).get<optim::PlateauState>()),
                    Catch::Contains("saved by a StepLR scheduler"));
  json bad = p2.state();
  bad["threshold_mode"] = "relative";
  CHECK_THROWS_WITH(p2.load_state(bad.get<optim::PlateauState>()), Catch::Contains("threshold_mode must be \"rel\" or \"abs\", got \"relative\""));
  optim::LinearWarmup alone(t.opt, {.warmup_steps = 2});
  optim::LinearWarmup chained(t.opt, {.warmup_steps = 2}, optim::StepLR(t.opt, {.step_size = 2}));
  CHECK_THROWS_WITH(alone.load_state(chained.state()), Catch::Contains("has a follow-up scheduler"));
}

TEST_CASE("Bad scheduler options throw xfer::Error") {
  TwoGroups t;
  CHECK_THROWS_WITH(optim::StepLR(t.opt, {}), Catch::Contains("StepLR: step_size must be >= 1, got 0"));
  CHECK_THROWS_WITH(optim::StepLR(t.opt, {.step_size = 2, .gamma = -0.5}), Catch::Contains("gamma must be"));
  CHECK_THROWS_WITH(optim::CosineAnnealingLR(t.opt, {.T_max = 0}), Catch::Contains("T_max must be >= 1, got 0"));
  CHECK_THROWS_WITH(optim::CosineAnnealingLR(t.opt, {.T_max = 5, .eta_min = -1}), Catch::Contains("eta_min must be"));
  CHECK_THROWS_WITH(optim::LinearWarmup(t.opt, {.start_factor = 0}), Catch::Contains("start_factor must be in (0, 1], got 0"));
  CHECK_THROWS_WITH(optim::LinearWarmup(t.opt, {.start_factor = 1.5}), Catch::Contains("start_factor must be in (0, 1]"));
  CHECK_THROWS_WITH(optim::LinearWarmup(t.opt, {.warmup_steps = 0}), Catch::Contains("warmup_steps must be >= 1, got 0"));
  CHECK_THROWS_WITH(optim::ReduceLROnPlateau(t.opt, {.factor = 1.0}), Catch::Contains("factor must be in (0, 1), got 1"));
  CHECK_THROWS_WITH(optim::ReduceLROnPlateau(t.opt, {.patience = -1}), Catch::Contains("patience must be >= 0"));
  CHECK_THROWS_WITH(optim::ReduceLROnPlateau(t.opt, {.cooldown = -2}), Catch::Contains("cooldown must be >= 0"));
  CHECK_THROWS_WITH(optim::ReduceLROnPlateau(t.opt, {.threshold = -1}), Catch::Contains("threshold must be"));
  CHECK_THROWS_WITH(optim::ReduceLROnPlateau(t.opt, {.min_lrs = {0.1, 0.2, 0.3}}),
                    Catch::Contains("min_lrs has 3 entries, the optimizer has 2 parameter groups"));

  nn::Parameter<float> c{"c", {1}};
  optim::SGD<float> other({&c}, {.lr = 0.1});
  CHECK_THROWS_WITH(optim::LinearWarmup(t.opt, {}, optim::StepLR(other, {.step_size = 1})),
                    Catch::Contains("was built on a different optimizer"));
  // Rejected schedulers leave the optimizer as it was.
  CHECK(t.lrs() == std::vector<double>{0.1, 0.02});
  CHECK_FALSE(t.opt.initial_lr(0).has_value());
}

TEST_CASE("A scheduler refuses to step an optimizer whose group count changed") {
  TwoGroups t;
  optim::StepLR sched(t.opt, {.step_size = 1});
  nn::Parameter<float> c{"c", {1}};
  t.opt.add_param_group({.params = {&c}});
  CHECK_THROWS_WITH(sched.step(), Catch::Contains("the optimizer now has 3 parameter groups, the scheduler was built for 2"));
}

}  // namespace unit_schedulers
