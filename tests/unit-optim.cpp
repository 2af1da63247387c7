// Optimizers: parity with torch.optim (fixture from tests/fixtures/gen_optim.py), checkpoint round
// trips, option validation and a small end-to-end regression.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xfer/io/state_json.hpp>
#include <xfer/core/parallel.hpp>
#include <xfer/core/rng.hpp>
#include <xfer/nn/linear.hpp>
#include <xfer/nn/loss.hpp>
#include <xfer/optim/adam.hpp>
#include <xfer/optim/optimizer.hpp>
#include <xfer/optim/sgd.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_optim {

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

// The three parameters of the fixture, with its initial values.
template <class T>
struct Params {
  std::vector<std::unique_ptr<nn::Parameter<T>>> p;
  Params() {
    const auto& ref = reference();
    for (size_t k = 0; k < ref["shapes"].size(); ++k) {
      p.push_back(std::make_unique<nn::Parameter<T>>(xfer::detail::concat("p", k), ref["shapes"][k].get<Shape>()));
      const auto init = ref["initial"][k].get<std::vector<double>>();
      for (size_t i = 0; i < init.size(); ++i) p[k]->value[i] = static_cast<T>(init[i]);
    }
  }
  std::vector<nn::Parameter<T>*> all() const {
    std::vector<nn::Parameter<T>*> out;
    for (auto& q : p) out.push_back(q.get());
    return out;
  }
  // Fixture gradients of one step (frozen parameters get them too: they must be ignored).
  void set_grads(size_t step) {
    const auto& g = reference()["grads"][step];
    for (size_t k = 0; k < p.size(); ++k) {
      const auto v = g[k].get<std::vector<double>>();
      for (size_t i = 0; i < v.size(); ++i) p[k]->grad[i] = static_cast<T>(v[i]);
    }
  }
  std::vector<std::vector<T>> values() const {
    std::vector<std::vector<T>> out;
    for (auto& q : p) out.emplace_back(q->value, q->value + q->numel);
    return out;
  }
};

template <class T>
std::unique_ptr<optim::Optimizer<T>> make_optimizer(const json& c, Params<T>& ps) {
  std::vector<optim::ParamGroupSpec<T>> groups;
  for (const auto& g : c["groups"]) {
    optim::ParamGroupSpec<T> spec;
    for (int k : g["params"]) spec.params.push_back(ps.p[static_cast<size_t>(k)].get());
    if (g.contains("lr")) spec.lr = g["lr"].get<double>();
    if (g.contains("weight_decay")) spec.weight_decay = g["weight_decay"].get<double>();
    groups.push_back(spec);
  }
  for (int k : c["frozen"]) ps.p[static_cast<size_t>(k)]->trainable = false;
  const auto& o = c["options"];
  const std::string kind = c["kind"];
  if (kind == "SGD")
    return std::make_unique<optim::SGD<T>>(groups, optim::SGDOptions{.lr = o["lr"],
                                                                     .momentum = o.value("momentum", 0.0),
                                                                     .dampening = o.value("dampening", 0.0),
                                                                     .weight_decay = o.value("weight_decay", 0.0),
                                                                     .nesterov = o.value("nesterov", false),
                                                                     .maximize = o.value("maximize", false)});
  const std::array<double, 2> betas = o.value("betas", std::array<double, 2>{0.9, 0.999});
  if (kind == "Adam")
    return std::make_unique<optim::Adam<T>>(groups, optim::AdamOptions{.lr = o["lr"],
                                                                       .betas = betas,
                                                                       .eps = o.value("eps", 1e-8),
                                                                       .weight_decay = o.value("weight_decay", 0.0),
                                                                       .amsgrad = o.value("amsgrad", false),
                                                                       .maximize = o.value("maximize", false)});
  REQUIRE(kind == "AdamW");
  return std::make_unique<optim::AdamW<T>>(groups, optim::AdamWOptions{.lr = o["lr"],
                                                                       .betas = betas,
                                                                       .eps = o.value("eps", 1e-8),
                                                                       .weight_decay = o.value("weight_decay", 1e-2),
                                                                       .amsgrad = o.value("amsgrad", false),
                                                                       .maximize = o.value("maximize", false)});
}

template <class T>
void apply_lr_changes(const json& c, size_t step, optim::Optimizer<T>& opt) {
  for (const auto& ch : c["lr_changes"])
    if (ch["step"].get<size_t>() == step) opt.set_lr(ch["group"].get<size_t>(), ch["lr"].get<double>());
}

// Replays every fixture case and checks |got - torch| <= rtol * |torch| + atol for every element
// after every step (torch.testing.assert_close's rule; atol ~ one ulp at 1 covers values that
// cancel towards zero, where FMA contraction differences show up as large relative errors).
template <class T>
void check_against_torch(const char* dtype, double rtol, double atol) {
  for (const auto& c : reference()["optimizers"]) {
    const std::string name = c["name"];
    SECTION(name) {
      Params<T> ps;
      auto opt = make_optimizer<T>(c, ps);
      CHECK(opt->kind() == c["kind"].get<std::string>());
      const auto initial = ps.values();
      const auto& traj = c[dtype];
      double worst = 0;
      for (size_t s = 0; s < traj.size(); ++s) {
        apply_lr_changes(c, s, *opt);
        ps.set_grads(s);
        opt->step();
        for (size_t k = 0; k < ps.p.size(); ++k) {
          const auto want = traj[s][k].get<std::vector<double>>();
          for (size_t i = 0; i < want.size(); ++i) {
            const double got = ps.p[k]->value[i];
            // Error in units of the allowed error: <= 1 passes.
            worst = std::max(worst, std::abs(got - want[i]) / (rtol * std::abs(want[i]) + atol));
          }
        }
      }
      INFO(name << " (" << dtype << "): worst error / allowed error " << worst);
      CHECK(worst <= 1.0);
      // Frozen parameters are untouched: no update, no weight decay, no state.
      for (int k : c["frozen"]) {
        const auto& p = *ps.p[static_cast<size_t>(k)];
        CHECK(std::vector<T>(p.value, p.value + p.numel) == initial[static_cast<size_t>(k)]);
      }
    }
  }
}

}  // namespace

TEST_CASE("SGD, Adam and AdamW match torch.optim step by step in float32 (1e-6 relative)") {
  check_against_torch<float>("float32", 1e-6, 1e-7);
}

TEST_CASE("SGD, Adam and AdamW match torch.optim step by step in float64 (1e-12 relative)") {
  check_against_torch<double>("float64", 1e-12, 1e-15);
}

TEST_CASE("The fixture trajectories differ between cases, so the parity test can fail") {
  // Guards against a fixture where every optimizer leaves the parameters alike.
  const auto& opts = reference()["optimizers"];
  for (size_t a = 0; a < opts.size(); ++a)
    for (size_t b = a + 1; b < opts.size(); ++b) CHECK(opts[a]["float64"].back() != opts[b]["float64"].back());
  CHECK(opts[0]["float64"].back()[0] != json(reference()["initial"][0]));
}

TEST_CASE("A frozen parameter gets no state and is left out of the checkpoint") {
  Params<float> ps;
  ps.p[1]->trainable = false;
  optim::Adam<float> opt(ps.all(), {.lr = 0.1, .weight_decay = 0.5});
  ps.set_grads(0);
  opt.step();
  CHECK(opt.step_count(0, 0) == 1);
  CHECK(opt.step_count(0, 1) == 0);
  const auto st = opt.state_dict();
  std::vector<std::string> names;
  for (auto& [n, t] : st.tensors) names.push_back(n);
  CHECK(names == std::vector<std::string>{"group0.param0.exp_avg", "group0.param0.exp_avg_sq", "group0.param2.exp_avg",
                                          "group0.param2.exp_avg_sq"});
  // Unfreezing later starts its own bias correction at step 1 (PyTorch's per-parameter step).
  ps.p[1]->trainable = true;
  opt.step();
  CHECK(opt.step_count(0, 0) == 2);
  CHECK(opt.step_count(0, 1) == 1);
}

TEST_CASE("zero_grad zeroes the gradients of every parameter of the optimizer") {
  Params<double> ps;
  ps.set_grads(0);
  ps.p[2]->trainable = false;
  optim::SGD<double> opt(ps.all(), {.lr = 0.1});
  opt.zero_grad();
  for (auto& p : ps.p)
    for (int64_t i = 0; i < p->numel; ++i) CHECK(p->grad[i] == 0.0);
}

TEST_CASE("zero_grad clears a frozen parameter once, then skips it until it trains again") {
  Params<double> ps;
  ps.set_grads(0);
  ps.p[2]->trainable = false;
  optim::SGD<double> opt(ps.all(), {.lr = 0.1});
  opt.zero_grad();
  // Nothing writes a frozen gradient; this marker shows that zero_grad no longer touches it.
  ps.p[2]->grad[0] = 7.0;
  ps.p[0]->grad[0] = 7.0;
  opt.zero_grad();
  CHECK(ps.p[2]->grad[0] == 7.0);
  CHECK(ps.p[0]->grad[0] == 0.0);
  ps.p[2]->trainable = true;  // unfrozen: cleared every step again
  opt.zero_grad();
  CHECK(ps.p[2]->grad[0] == 0.0);
  ps.p[2]->trainable = false;  // frozen again: cleared once more
  ps.p[2]->grad[0] = 5.0;
  opt.zero_grad();
  CHECK(ps.p[2]->grad[0] == 0.0);
}

TEST_CASE("Group specs fall back to the optimizer defaults; set_lr changes one or all groups") {
  Params<float> ps;
  optim::SGD<float> opt({{.params = {ps.p[0].get()}, .lr = 0.5}, {.params = {ps.p[1].get()}, .weight_decay = 0.25}},
                        {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
  REQUIRE(opt.num_groups() == 2);
  CHECK(opt.lr(0) == 0.5);
  CHECK(opt.weight_decay(0) == 1e-4);
  CHECK(opt.lr(1) == 0.1);
  CHECK(opt.weight_decay(1) == 0.25);
  opt.add_param_group({.params = {ps.p[2].get()}});
  CHECK(opt.num_groups() == 3);
  CHECK(opt.lr(2) == 0.1);
  CHECK(opt.groups()[2].params.front() == ps.p[2].get());
  opt.set_lr(1, 0.02);
  CHECK(opt.lr(0) == 0.5);
  CHECK(opt.lr(1) == 0.02);
  opt.set_lr(0.3);
  for (size_t g = 0; g < 3; ++g) CHECK(opt.lr(g) == 0.3);
}

TEST_CASE("Large parameters give the same bits with one thread and with two") {
  // 70001 elements run in several blocks and, with two threads, in parallel.
  const int64_t n = 70001;
  auto run = [&](std::vector<int64_t> sizes, int threads, bool variant, bool sgd) {
    std::vector<std::unique_ptr<nn::Parameter<float>>> ps;
    int64_t at = 0;
    for (int64_t sz : sizes) {
      ps.push_back(std::make_unique<nn::Parameter<float>>("p", Shape{sz}));
      for (int64_t i = 0; i < sz; ++i) ps.back()->value[i] = std::sin(0.01f * static_cast<float>(at + i));
      at += sz;
    }
    std::vector<nn::Parameter<float>*> raw;
    for (auto& p : ps) raw.push_back(p.get());
    std::unique_ptr<optim::Optimizer<float>> opt;
    if (sgd)
      opt = std::make_unique<optim::SGD<float>>(
          raw, optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = variant});
    else
      opt = std::make_unique<optim::Adam<float>>(raw, optim::AdamOptions{.lr = 1e-2, .weight_decay = 1e-3, .amsgrad = variant});
    const int before = num_threads();
    set_num_threads(threads);
    for (int s = 0; s < 4; ++s) {
      int64_t off = 0;
      for (auto& p : ps) {
        for (int64_t i = 0; i < p->numel; ++i)
          p->grad[i] = std::cos(0.37f * static_cast<float>(off + i) + static_cast<float>(s)) * (s < 2 ? 1.0f : 0.1f);
        off += p->numel;
      }
      opt->step();
    }
    set_num_threads(before);
    std::vector<float> out;
    for (auto& p : ps) out.insert(out.end(), p->value, p->value + p->numel);
    return out;
  };
  for (bool sgd : {false, true})
    for (bool variant : {false, true}) {
      INFO((sgd ? "SGD" : "Adam") << (variant ? (sgd ? " nesterov" : " amsgrad") : ""));
      const auto two = run({n}, 2, variant, sgd);
      CHECK(two == run({n}, 1, variant, sgd));
      CHECK(two != run({n}, 1, !variant, sgd));  // the comparison can see a difference
      // A parameter that is cut in three runs the same update up to rounding.
      const auto cut = run({1000, 30000, n - 31000}, 1, variant, sgd);
      float worst = 0;
      for (size_t i = 0; i < two.size(); ++i) worst = std::max(worst, std::abs(cut[i] - two[i]) / std::max(1.0f, std::abs(two[i])));
      CHECK(worst <= 1e-6f);
    }
}

// ---- checkpoints ------------------------------------------------------------------------------

namespace {
template <class T, class Make>
void check_resume_is_bit_identical(Make make, bool through_text) {
  Params<T> a, b;
  auto full = make(a);
  for (size_t s = 0; s < 6; ++s) {
    a.set_grads(s);
    full->step();
  }
  // Same run, interrupted after 3 steps; the second half runs on a fresh optimizer.
  auto first = make(b);
  for (size_t s = 0; s < 3; ++s) {
    b.set_grads(s);
    first->step();
  }
  auto st = first->state_dict();
  first.reset();
  if (through_text) optim::from_json(json::parse(json(st).dump()), st);  // as a checkpoint file would store it
  auto second = make(b);
  second->set_lr(123.0);  // overwritten by the loaded state
  second->load_state_dict(st);
  for (size_t s = 3; s < 6; ++s) {
    b.set_grads(s);
    second->step();
  }
  CHECK(a.values() == b.values());
  CHECK(full->state_dict().same_meta(second->state_dict()));
}
}  // namespace

TEST_CASE("An optimizer resumed from its state continues bit-identically") {
  SECTION("SGD with Nesterov momentum, two groups") {
    check_resume_is_bit_identical<float>(
        [](Params<float>& ps) {
          return std::make_unique<optim::SGD<float>>(
              std::vector<optim::ParamGroupSpec<float>>{{.params = {ps.p[0].get(), ps.p[1].get()}},
                                                        {.params = {ps.p[2].get()}, .lr = 0.01, .weight_decay = 0.1}},
              optim::SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
        },
        false);
  }
  SECTION("Adam with amsgrad and weight decay, through the JSON text") {
    check_resume_is_bit_identical<float>(
        [](Params<float>& ps) {
          return std::make_unique<optim::Adam<float>>(ps.all(),
                                                      optim::AdamOptions{.lr = 0.02, .weight_decay = 0.01, .amsgrad = true});
        },
        true);
  }
  SECTION("AdamW in double with a frozen parameter") {
    check_resume_is_bit_identical<double>(
        [](Params<double>& ps) {
          ps.p[1]->trainable = false;
          return std::make_unique<optim::AdamW<double>>(ps.all(), optim::AdamWOptions{.lr = 0.01, .betas = {0.8, 0.9}});
        },
        true);
  }
}

TEST_CASE("Optimizer state names its tensors and records hyperparameters and steps") {
  Params<float> ps;
  optim::Adam<float> opt(ps.all(), {.lr = 0.01, .amsgrad = true});
  ps.set_grads(0);
  opt.step();
  opt.step();
  const auto st = opt.state_dict();
  CHECK(st.kind == "Adam");
  CHECK(st.dtype == "float32");
  CHECK(st.groups[0].lr == 0.01);
  CHECK(st.groups[0].steps == std::vector<int64_t>{2, 2, 2});
  CHECK(std::get<bool>(st.options.at("amsgrad")) == true);
  // The JSON form a checkpoint stores (io/state_json.hpp).
  const json j = st;
  CHECK(j["kind"] == "Adam");
  CHECK(j["groups"][0]["steps"] == json::array({2, 2, 2}));
  CHECK(j["options"]["betas"] == json::array({0.9, 0.999}));
  CHECK(j["options"]["amsgrad"] == true);
  REQUIRE(st.tensors.size() == 9);
  CHECK(st.tensors[5].first == "group0.param1.max_exp_avg_sq");
  CHECK(st.tensors[5].second.shape() == Shape{4});
}

TEST_CASE("Loading a mismatched optimizer state throws a clear error and changes nothing") {
  Params<float> ps;
  optim::Adam<float> opt(ps.all(), {.lr = 0.01});
  ps.set_grads(0);
  opt.step();
  const auto good = opt.state_dict();
  const auto before = opt.state_dict();
  auto expect_error = [&](const optim::OptimizerState<float>& st, const std::string& what) {
    CHECK_THROWS_WITH(opt.load_state_dict(st), Catch::Contains(what));
    CHECK(opt.state_dict().same_meta(before));
  };

  SECTION("another kind") {
    optim::SGD<float> sgd(ps.all(), {.lr = 0.1, .momentum = 0.9});
    sgd.step();
    expect_error(sgd.state_dict(), "saved by a SGD optimizer, this is Adam");
    auto st = good;
    CHECK_THROWS_WITH(sgd.load_state_dict(st), Catch::Contains("saved by a Adam optimizer, this is SGD"));
  }
  SECTION("another group count") {
    Params<float> other;
    optim::Adam<float> two({{.params = {other.p[0].get()}}, {.params = {other.p[1].get(), other.p[2].get()}}});
    expect_error(two.state_dict(), "2 parameter groups, this optimizer has 1");
  }
  SECTION("another parameter count") {
    auto st = good;
    st.groups[0].shapes.pop_back();
    expect_error(st, "the state has 2 parameters");
  }
  SECTION("another parameter shape") {
    auto st = good;
    st.groups[0].shapes[1] = {2, 2};
    expect_error(st, "saved shape [2, 2], this parameter has [4]");
  }
  SECTION("a state tensor of the wrong shape") {
    auto st = good;
    st.tensors[3].second = Tensor<float>({5});
    expect_error(st, "'group0.param1.exp_avg_sq' has shape [5], expected [4]");
  }
  SECTION("a missing state tensor") {
    auto st = good;
    st.tensors.erase(st.tensors.begin());
    expect_error(st, "missing state tensor 'group0.param0.exp_avg'");
  }
  SECTION("an unexpected state tensor") {
    auto st = good;
    st.tensors.emplace_back("group0.param0.max_exp_avg_sq", Tensor<float>({2, 3}));
    expect_error(st, "unexpected state tensor 'group0.param0.max_exp_avg_sq'");
  }
  SECTION("another scalar type") {
    auto st = good;
    st.dtype = "float64";
    expect_error(st, "holds float64 tensors, this optimizer uses float32");
  }
  SECTION("invalid saved options") {
    auto st = good;
    st.options["betas"] = std::vector<double>{0.9, 1.5};
    expect_error(st, "betas[1] must be in [0, 1), got 1.5");
    st = good;
    st.options.erase("eps");
    expect_error(st, "missing key 'eps'");
    st = good;
    st.options["amsgrad"] = 1.0;
    expect_error(st, "key 'amsgrad' has the wrong type (a real number)");
  }
}

// ---- validation -------------------------------------------------------------------------------

TEST_CASE("Bad optimizer options throw xfer::Error saying what and why") {
  Params<float> ps;
  auto all = ps.all();
  CHECK_THROWS_WITH(optim::SGD<float>(all, {}), Catch::Contains("lr is required"));
  CHECK_THROWS_WITH(optim::SGD<float>(all, {.lr = -0.1}), Catch::Contains("learning rate must be a finite value >= 0, got -0.1"));
  CHECK_THROWS_WITH(optim::SGD<float>(all, {.lr = 0.1, .momentum = -1}), Catch::Contains("momentum must be"));
  CHECK_THROWS_WITH(optim::SGD<float>(all, {.lr = 0.1, .nesterov = true}),
                    Catch::Contains("Nesterov momentum requires momentum > 0 and dampening = 0"));
  CHECK_THROWS_WITH(optim::SGD<float>(all, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                    Catch::Contains("dampening 0.1"));
  CHECK_THROWS_WITH(optim::SGD<float>(all, {.lr = 0.1, .weight_decay = -1e-4}), Catch::Contains("weight_decay must be"));
  CHECK_THROWS_WITH(optim::Adam<float>(all, {.lr = -1}), Catch::Contains("Adam: learning rate"));
  CHECK_THROWS_WITH(optim::Adam<float>(all, {.betas = {1.0, 0.999}}), Catch::Contains("betas[0] must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(optim::Adam<float>(all, {.betas = {0.9, -0.1}}), Catch::Contains("betas[1] must be in [0, 1)"));
  CHECK_THROWS_WITH(optim::AdamW<float>(all, {.eps = -1e-8}), Catch::Contains("AdamW: eps must be"));
  CHECK_THROWS_WITH(optim::AdamW<float>(all, {.lr = std::nan("")}), Catch::Contains("learning rate"));
}

TEST_CASE("Bad parameter groups throw xfer::Error") {
  Params<float> ps;
  CHECK_THROWS_WITH(optim::Adam<float>(std::vector<nn::Parameter<float>*>{}), Catch::Contains("empty parameter list"));
  CHECK_THROWS_WITH(optim::Adam<float>({ps.p[0].get(), ps.p[1].get(), ps.p[0].get()}),
                    Catch::Contains("parameter 2 ('p0' [2, 3]) is already in this optimizer as group 0 parameter 0"));
  CHECK_THROWS_WITH(optim::SGD<float>({{.params = {ps.p[0].get()}}, {.params = {ps.p[1].get(), ps.p[0].get()}}}, {.lr = 0.1}),
                    Catch::Contains("group 1: parameter 1 ('p0' [2, 3]) is already in this optimizer as group 0"));
  CHECK_THROWS_WITH(optim::SGD<float>({{.params = {ps.p[0].get()}, .lr = -2.0}}, {.lr = 0.1}),
                    Catch::Contains("parameter group 0: learning rate must be a finite value >= 0, got -2"));
  CHECK_THROWS_WITH(optim::SGD<float>({{.params = {ps.p[0].get()}}, {.params = {}}}, {.lr = 0.1}),
                    Catch::Contains("parameter group 1 has no parameters"));
  CHECK_THROWS_WITH(optim::SGD<float>({ps.p[0].get(), nullptr}, {.lr = 0.1}), Catch::Contains("parameter 1 is a null pointer"));

  optim::SGD<float> opt({ps.p[0].get()}, {.lr = 0.1});
  CHECK_THROWS_WITH(opt.add_param_group({.params = {ps.p[0].get()}}), Catch::Contains("already in this optimizer"));
  CHECK(opt.num_groups() == 1);
  CHECK_THROWS_WITH(opt.set_lr(-1.0), Catch::Contains("got -1"));
  CHECK_THROWS_WITH(opt.set_lr(3, 0.1), Catch::Contains("group 3 does not exist (1 groups)"));
  CHECK_THROWS_WITH(opt.lr(1), Catch::Contains("group 1 does not exist"));
  CHECK(opt.lr() == 0.1);
}

// ---- end to end -------------------------------------------------------------------------------

namespace {
// Fits y = X w* + b* with a Linear(4, 1); returns (first loss, last loss).
template <class MakeOpt>
std::pair<float, float> fit_linear_regression(MakeOpt make_opt, int steps) {
  Rng rng(7);
  nn::Linear<float> lin({.in_features = 4, .out_features = 1}, rng);
  Tensor<float> x({64, 4}), y({64, 1});
  const float w[4] = {0.5f, -1.25f, 2.0f, 0.75f};
  for (int64_t i = 0; i < 64; ++i) {
    float t = 0.3f;
    for (int64_t j = 0; j < 4; ++j) {
      x[i * 4 + j] = std::sin(0.37f * static_cast<float>(i * 4 + j)) * 2.0f;
      t += w[j] * x[i * 4 + j];
    }
    y[i] = t;
  }
  auto opt = make_opt(lin.parameters());
  float first = 0, last = 0;
  for (int s = 0; s < steps; ++s) {
    auto r = nn::mse_loss(lin.forward(x), y);
    if (s == 0) first = r.loss;
    last = r.loss;
    opt->zero_grad();
    lin.backward(r.grad, false);
    opt->step();
  }
  return {first, last};
}
}  // namespace

TEST_CASE("SGD and Adam each fit a tiny linear regression") {
  auto [sgd_first, sgd_last] = fit_linear_regression(
      [](auto params) { return std::make_unique<optim::SGD<float>>(params, optim::SGDOptions{.lr = 0.05, .momentum = 0.9}); },
      150);
  INFO("SGD loss " << sgd_first << " -> " << sgd_last);
  CHECK(sgd_first > 1.0f);
  CHECK(sgd_last < 1e-4f * sgd_first);

  auto [adam_first, adam_last] = fit_linear_regression(
      [](auto params) { return std::make_unique<optim::Adam<float>>(params, optim::AdamOptions{.lr = 0.05}); }, 300);
  INFO("Adam loss " << adam_first << " -> " << adam_last);
  CHECK(adam_first > 1.0f);
  CHECK(adam_last < 1e-3f * adam_first);
}

}  // namespace unit_optim
