// OneCycleLR and CosineAnnealingWarmRestarts: lr (and momentum) sequences against torch 1.13
// (fixture from tests/fixtures/gen_train_basics.py), resume from saved state, option validation.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixture_json.hpp"
#include <xfer/io/state_json.hpp>
#include <xfer/optim/adam.hpp>
#include <xfer/optim/cosine_warm_restarts.hpp>
#include <xfer/optim/onecycle.hpp>
#include <xfer/optim/sgd.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_schedulers_cyclic {

using namespace xfer;
using json = nlohmann::json;

namespace {
const json& reference() { return fixture_json("train_basics.json"); }

// Two groups at the fixture's base lrs; SGD(momentum 0.9) or Adam, like the generator.
struct Setup {
  nn::Parameter<float> a{"a", {1}}, b{"b", {1}};
  std::unique_ptr<optim::Optimizer<float>> opt;
  explicit Setup(const std::string& kind) {
    const double l0 = reference()["base_lrs"][0], l1 = reference()["base_lrs"][1];
    if (kind == "SGD")
      opt = std::make_unique<optim::SGD<float>>(
          std::vector<optim::ParamGroupSpec<float>>{{.params = {&a}, .lr = l0}, {.params = {&b}, .lr = l1}},
          optim::SGDOptions{.lr = 1.0, .momentum = 0.9});
    else
      opt = std::make_unique<optim::Adam<float>>(
          std::vector<optim::ParamGroupSpec<float>>{{.params = {&a}, .lr = l0}, {.params = {&b}, .lr = l1}},
          optim::AdamOptions{.lr = 1.0});
  }
  double momentum() const {
    if (auto* s = dynamic_cast<optim::SGD<float>*>(opt.get())) return s->options().momentum;
    return dynamic_cast<optim::Adam<float>*>(opt.get())->options().betas[0];
  }
};

optim::OneCycleLROptions onecycle_options(const json& o) {
  optim::OneCycleLROptions r;
  r.max_lr = o["max_lr"].get<std::vector<double>>();
  r.total_steps = o.value("total_steps", int64_t{0});
  r.epochs = o.value("epochs", int64_t{0});
  r.steps_per_epoch = o.value("steps_per_epoch", int64_t{0});
  r.pct_start = o.value("pct_start", 0.3);
  r.anneal_strategy = o.value("anneal_strategy", std::string("cos")) == "cos" ? optim::AnnealStrategy::cos
                                                                              : optim::AnnealStrategy::linear;
  r.cycle_momentum = o.value("cycle_momentum", true);
  r.base_momentum = o.value("base_momentum", 0.85);
  r.max_momentum = o.value("max_momentum", 0.95);
  r.div_factor = o.value("div_factor", 25.0);
  r.final_div_factor = o.value("final_div_factor", 1e4);
  r.three_phase = o.value("three_phase", false);
  return r;
}

std::unique_ptr<optim::LRScheduler> make(Setup& s, const json& c) {
  const auto& o = c["options"];
  if (c["kind"] == "OneCycleLR") {
    if (c["optimizer"] == "SGD")
      return std::make_unique<optim::OneCycleLR>(dynamic_cast<optim::SGD<float>&>(*s.opt), onecycle_options(o));
    return std::make_unique<optim::OneCycleLR>(dynamic_cast<optim::Adam<float>&>(*s.opt), onecycle_options(o));
  }
  return std::make_unique<optim::CosineAnnealingWarmRestarts>(
      *s.opt, optim::CosineWarmRestartsOptions{.T_0 = o["T_0"], .T_mult = o["T_mult"], .eta_min = o["eta_min"]});
}

void check_point(const Setup& s, const json& expect) {
  // torch's extrapolated last OneCycle step can be negative (linear annealing); xfer stops at 0.
  for (size_t g = 0; g < 2; ++g)
    CHECK(s.opt->lr(g) == Approx(std::max(0.0, expect["lr"][g].get<double>())).epsilon(1e-12).margin(1e-15));
  CHECK(s.momentum() == Approx(expect["momentum"][0].get<double>()).epsilon(1e-12));
}

void advance(optim::LRScheduler& sched, const json& c, size_t k) {
  if (c.contains("epochs")) dynamic_cast<optim::CosineAnnealingWarmRestarts&>(sched).step(c["epochs"][k].get<double>());
  else sched.step();
}
}  // namespace

TEST_CASE("OneCycleLR and CosineAnnealingWarmRestarts follow torch's lr and momentum sequences") {
  int cases = 0, points = 0;
  for (const auto& c : reference()["schedulers"]) {
    INFO(c["name"].get<std::string>());
    Setup s(c["optimizer"]);
    auto sched = make(s, c);
    const auto& seq = c["sequence"];
    check_point(s, seq[0]);
    for (size_t k = 1; k < seq.size(); ++k) {
      INFO("step " << k);
      advance(*sched, c, k - 1);
      check_point(s, seq[k]);
      ++points;
    }
    ++cases;
  }
  CHECK(cases == 8);
  CHECK(points == 20 + 15 + 24 + 12 + 13 + 20 + 15 + 6);
}

TEST_CASE("OneCycleLR and CosineAnnealingWarmRestarts resumed from saved state continue the same sequence") {
  for (const auto& c : reference()["schedulers"]) {
    INFO(c["name"].get<std::string>());
    const auto& seq = c["sequence"];
    const size_t cut = (seq.size() - 1) / 2;
    Setup s(c["optimizer"]);
    auto sched = make(s, c);
    for (size_t k = 0; k < cut; ++k) advance(*sched, c, k);
    const json st = json::parse(json(sched->state()).dump());  // through text, as a checkpoint stores it
    auto ost = s.opt->state_dict();
    optim::from_json(json::parse(json(ost).dump()), ost);

    Setup r(c["optimizer"]);
    auto resumed = make(r, c);
    r.opt->load_state_dict(ost);
    resumed->load_state(st.get<optim::SchedulerState>());
    check_point(r, seq[cut]);
    for (size_t k = cut; k + 1 < seq.size(); ++k) {
      advance(*resumed, c, k);
      check_point(r, seq[k + 1]);
    }
  }
}

TEST_CASE("OneCycleLR throws one step past total_steps, like torch") {
  Setup s("SGD");
  optim::OneCycleLR sched(dynamic_cast<optim::SGD<float>&>(*s.opt), {.max_lr = {0.1}, .total_steps = 5});
  for (int k = 0; k < 5; ++k) sched.step();
  CHECK(sched.last_epoch() == 5);
  CHECK_THROWS_WITH(sched.step(), Catch::Contains("total steps is 5"));
}

TEST_CASE("OneCycleLR and CosineAnnealingWarmRestarts reject bad options and foreign state") {
  Setup s("SGD");
  auto& sgd = dynamic_cast<optim::SGD<float>&>(*s.opt);
  CHECK_THROWS_WITH(optim::OneCycleLR(sgd, {.max_lr = {0.1}}), Catch::Contains("total_steps"));
  CHECK_THROWS_WITH(optim::OneCycleLR(sgd, {.max_lr = {0.1, 0.2, 0.3}, .total_steps = 10}),
                    Catch::Contains("3 max_lr values for 2 parameter groups"));
  CHECK_THROWS_WITH(optim::OneCycleLR(sgd, {.max_lr = {0.1}, .total_steps = 10, .pct_start = 0.05}),
                    Catch::Contains("phase 1 of the cycle would be empty"));
  CHECK_THROWS_WITH(optim::OneCycleLR(*s.opt, {.max_lr = {0.1}, .total_steps = 10}),
                    Catch::Contains("cycle_momentum needs an optimizer with momentum"));
  CHECK(s.opt->lr(0) == 0.1);  // refused schedulers leave the optimizer alone
  CHECK(!s.opt->initial_lr(0));
  CHECK_THROWS_WITH(optim::CosineAnnealingWarmRestarts(*s.opt, {.T_0 = 0}), Catch::Contains("T_0"));
  CHECK_THROWS_WITH(optim::CosineAnnealingWarmRestarts(*s.opt, {.T_0 = 2, .T_mult = 0}), Catch::Contains("T_mult"));
  optim::CosineAnnealingWarmRestarts w(*s.opt, {.T_0 = 3});
  CHECK_THROWS_WITH(w.step(-1.0), Catch::Contains("non-negative epoch"));
  optim::OneCycleLR one(sgd, {.max_lr = {0.1}, .total_steps = 10});
  CHECK_THROWS_WITH(w.load_state(one.state()), Catch::Contains("saved by a OneCycleLR"));
  CHECK_THROWS_WITH(one.load_state(w.state()), Catch::Contains("saved by a CosineAnnealingWarmRestarts"));
}

}  // namespace unit_schedulers_cyclic
