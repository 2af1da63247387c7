// MAML meta-gradients against PyTorch (tests/fixtures/gen_maml.py -> maml.json, double precision,
// torch.autograd.grad with create_graph=True), against finite differences of the whole MAML
// objective, and the adapter's contracts: memory, frozen parameters, ANIL, bad labels.
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_maml {

using namespace xfer;
using namespace xfer::nn;
using json = nlohmann::json;

namespace {

const json& fixture() {
  static const json j = [] {
    std::ifstream f(std::string(XFER_FIXTURE_DIR) + "/maml.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return j;
}

// conv-BN-ReLU-pool twice, then linear: the layout gen_maml.py builds in torch.
// fused: the conv-BN-ReLU triples run as nn::ConvBnAct units (Sequential::fuse), same names.
template <class T>
std::shared_ptr<Sequential<T>> small_net(bool fused = false) {
  auto s = std::make_shared<Sequential<T>>();
  s->template emplace_back<Conv2d<T>>(Conv2dOptions{.in_channels = 1, .out_channels = 4, .kernel_size = 3, .padding = 1});
  s->template emplace_back<BatchNorm2d<T>>(4);
  s->template emplace_back<ReLU<T>>();
  s->template emplace_back<MaxPool2d<T>>(MaxPool2dOptions{.kernel_size = 2});
  s->template emplace_back<Conv2d<T>>(Conv2dOptions{.in_channels = 4, .out_channels = 4, .kernel_size = 3, .padding = 1});
  s->template emplace_back<BatchNorm2d<T>>(4);
  s->template emplace_back<ReLU<T>>();
  s->template emplace_back<MaxPool2d<T>>(MaxPool2dOptions{.kernel_size = 2});
  s->template emplace_back<Flatten<T>>();
  s->template emplace_back<Linear<T>>(LinearOptions{.in_features = 16, .out_features = 3});
  if (fused) {
    s->fuse(0);
    s->fuse(4);
  }
  s->flatten_parameters();
  for (auto& np : s->arena().params) {
    const auto& v = fixture()["params"][np.name];
    REQUIRE(static_cast<int64_t>(v.size()) == np.param->numel);
    for (int64_t i = 0; i < np.param->numel; ++i) np.param->value[i] = static_cast<T>(v[static_cast<size_t>(i)].template get<double>());
  }
  return s;
}

struct Task {
  Tensor<double> sx, qx;
  Labels sy, qy;
};
Task task() {
  const auto& j = fixture();
  Task t;
  t.sx = Tensor<double>::from({6, 1, 8, 8}, j["support_x"].get<std::vector<double>>());
  t.qx = Tensor<double>::from({9, 1, 8, 8}, j["query_x"].get<std::vector<double>>());
  t.sy = j["support_y"].get<Labels>();
  t.qy = j["query_y"].get<Labels>();
  return t;
}

// Arena-layout vector of a {name: values} fixture object.
std::vector<double> arena_vector(ParameterArena<double>& arena, const json& by_name) {
  std::vector<double> out(static_cast<size_t>(arena.size()));
  for (auto& np : arena.params) {
    const auto& v = by_name[np.name];
    for (int64_t i = 0; i < np.param->numel; ++i)
      out[static_cast<size_t>(np.param->offset + i)] = v[static_cast<size_t>(i)].get<double>();
  }
  return out;
}

template <class A, class B>
double rel_error(const A& a, const B& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num / den);
}

const json& find_case(const std::string& name) {
  for (const auto& c : fixture()["cases"])
    if (c["name"] == name) return c;
  FAIL("no fixture case " << name);
  throw 0;
}

// Runs one fixture case through meta::MAML and returns the accumulated meta-gradient.
std::vector<double> run_case(const json& c, double* query_loss = nullptr, std::vector<double>* lr_grad = nullptr,
                             bool fused = false) {
  auto net = small_net<double>(fused);
  auto& arena = net->arena();
  meta::MAMLOptions<double> opt{.inner_steps = c["steps"].get<int>(), .first_order = c["first_order"].get<bool>()};
  if (c.contains("inner_lr")) opt.inner_lr = c["inner_lr"].get<double>();
  if (c["adapt"] != "all") opt.adapt = Selector(c["adapt"].get<std::string>());
  opt.learn_inner_lr = c.contains("inner_lrs");
  meta::MAML<double> maml(*net, opt);
  if (c.contains("inner_lrs")) {
    auto lrs = arena_vector(arena, c["inner_lrs"]);
    std::copy(lrs.begin(), lrs.end(), maml.inner_lrs().value);
  }
  const Task t = task();
  maml.zero_grad();
  auto r = maml.accumulate(t.sx, t.sy, t.qx, t.qy);
  if (query_loss) *query_loss = r.query.loss;
  if (lr_grad) lr_grad->assign(maml.inner_lrs().grad, maml.inner_lrs().grad + arena.size());
  return {arena.grads.begin(), arena.grads.end()};
}

}  // namespace

// Tolerances here are ~100x the errors measured on 2026-12-03 (5.1e-11 second order, 9.4e-16 first
// order, 1.4e-10 Meta-SGD, 8.6e-10 against central differences, 1.5e-11 ANIL).
TEST_CASE("Second-order MAML meta-gradient matches PyTorch create_graph=True within 6e-9 (1 and 3 steps)") {
  for (const char* name : {"maml_1step_second_order", "maml_3step_second_order", "anil_3step_second_order"}) {
    INFO(name);
    const auto& c = find_case(name);
    double loss = 0;
    auto g = run_case(c, &loss);
    auto net = small_net<double>();
    auto expected = arena_vector(net->arena(), c["meta_grad"]);
    CHECK(loss == Approx(c["query_loss"].get<double>()).epsilon(1e-12));
    const double err = rel_error(g, expected);
    INFO("relative error " << err);
    CHECK(err < 6e-9);
  }
}

TEST_CASE("First-order MAML meta-gradient matches PyTorch within 1e-13 (1 and 3 steps)") {
  for (const char* name : {"maml_1step_first_order", "maml_3step_first_order"}) {
    INFO(name);
    const auto& c = find_case(name);
    auto g = run_case(c);
    auto net = small_net<double>();
    const double err = rel_error(g, arena_vector(net->arena(), c["meta_grad"]));
    INFO("relative error " << err);
    CHECK(err < 1e-13);
  }
}

TEST_CASE("The Hessian term matters on the fixture: second and first order differ by more than 1%") {
  for (int k : {1, 3}) {
    auto so = run_case(find_case("maml_" + std::to_string(k) + "step_second_order"));
    auto fo = run_case(find_case("maml_" + std::to_string(k) + "step_first_order"));
    CHECK(rel_error(so, fo) > 1e-2);
  }
}

TEST_CASE("Meta-SGD: gradients of the weights and of the per-element inner learning rates match PyTorch") {
  const auto& c = find_case("metasgd_2step_second_order");
  std::vector<double> lr_grad;
  auto g = run_case(c, nullptr, &lr_grad);
  auto net = small_net<double>();
  CHECK(rel_error(g, arena_vector(net->arena(), c["meta_grad"])) < 1e-8);
  CHECK(rel_error(lr_grad, arena_vector(net->arena(), c["inner_lr_grad"])) < 1e-8);
}

TEST_CASE("Second-order meta-gradient equals central differences of the whole MAML objective") {
  const Task t = task();
  for (int k : {1, 3}) {
    INFO(k << " inner steps");
    auto net = small_net<double>();
    auto& arena = net->arena();
    meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = k});
    maml.zero_grad();
    maml.accumulate(t.sx, t.sy, t.qx, t.qy);
    std::vector<double> analytic(arena.grads.begin(), arena.grads.end()), numeric(analytic.size());
    const double h = 1e-6;
    for (size_t i = 0; i < numeric.size(); ++i) {
      const double v = arena.values[i];
      arena.values[i] = v + h;
      const double fp = maml.objective(t.sx, t.sy, t.qx, t.qy);
      arena.values[i] = v - h;
      const double fm = maml.objective(t.sx, t.sy, t.qx, t.qy);
      arena.values[i] = v;
      numeric[i] = (fp - fm) / (2 * h);
    }
    const double err = rel_error(analytic, numeric);
    INFO("relative error " << err);
    CHECK(err < 1e-7);
  }
}

TEST_CASE("Memory does not grow with the number of tasks in a meta-batch") {
  auto net = small_net<double>();
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3, .learn_inner_lr = true});
  const Task t = task();
  maml.zero_grad();
  maml.accumulate(t.sx, t.sy, t.qx, t.qy, 0.25);
  const size_t after_first = maml.workspace_bytes();
  const double* theta_data = net->arena().values.data();
  CHECK(after_first > 0);
  for (int task = 1; task < 8; ++task) {
    maml.accumulate(t.sx, t.sy, t.qx, t.qy, 0.25);
    CHECK(maml.workspace_bytes() == after_first);
  }
  CHECK(net->arena().values.data() == theta_data);
  // Accumulation is additive: 8 tasks of weight 1/4 give twice the single-task gradient.
  std::vector<double> g8(net->arena().grads.begin(), net->arena().grads.end());
  maml.zero_grad();
  maml.accumulate(t.sx, t.sy, t.qx, t.qy, 1.0);
  for (size_t i = 0; i < g8.size(); ++i) CHECK(g8[i] == Approx(2 * net->arena().grads[i]).margin(1e-12));
}

TEST_CASE("adapt leaves the model's weights untouched and rebinds them afterwards") {
  auto net = small_net<double>();
  auto& arena = net->arena();
  std::vector<double> before(arena.values.begin(), arena.values.end());
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 2});
  const Task t = task();
  auto losses = maml.adapt(t.sx, t.sy);
  REQUIRE(losses.size() == 2);
  CHECK(losses[1] < losses[0]);
  CHECK(std::equal(before.begin(), before.end(), arena.values.begin()));
  for (auto& np : arena.params) CHECK(np.param->value == arena.values.data() + np.param->offset);
  // The fast weights fit the support set better than the initial ones.
  CHECK(maml.evaluate(t.sx, t.sy).loss < losses[0]);
}

TEST_CASE("ANIL: the inner loop moves only the head and runs no backward below it") {
  auto net = small_net<double>();
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3, .adapt = Selector("9")});
  const Task t = task();
  const int64_t conv_calls = (*net)[0].backward_calls();
  maml.adapt(t.sx, t.sy);
  CHECK((*net)[0].backward_calls() == conv_calls);
  const auto& fast = maml.fast_weights();
  auto& arena = net->arena();
  for (auto& np : arena.params) {
    bool moved = false;
    for (int64_t i = 0; i < np.param->numel; ++i) moved = moved || fast[np.param->offset + i] != arena.values[np.param->offset + i];
    CHECK(moved == (np.name.rfind("9.", 0) == 0));
  }
}

TEST_CASE("Frozen parameters are neither adapted nor given a meta-gradient; the rest still are") {
  auto net = small_net<double>();
  net->freeze("0");
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 2});
  const Task t = task();
  maml.zero_grad();
  maml.accumulate(t.sx, t.sy, t.qx, t.qy);
  auto& arena = net->arena();
  for (auto& np : arena.params) {
    double norm = 0, moved = 0;
    for (int64_t i = 0; i < np.param->numel; ++i) {
      norm += std::abs(arena.grads[np.param->offset + i]);
      moved += std::abs(maml.fast_weights()[np.param->offset + i] - arena.values[np.param->offset + i]);
    }
    INFO(np.name);
    if (np.name.rfind("0.", 0) == 0) {
      CHECK(norm == 0);
      CHECK(moved == 0);
    } else if (np.name != "4.bias") {  // a conv bias before BatchNorm has an exactly zero gradient
      CHECK(norm > 0);
    }
  }
}

TEST_CASE("MAML through fused conv-BN-ReLU units gives the meta-gradients of the plain layers") {
  int compared = 0;
  for (const char* name : {"maml_1step_second_order", "maml_3step_second_order", "maml_3step_first_order"}) {
    INFO(name);
    const auto& c = find_case(name);
    auto plain = run_case(c);
    auto fused = run_case(c, nullptr, nullptr, /*fused=*/true);
    auto net = small_net<double>(true);
    REQUIRE(nn::fusion_units(*net).size() == 2);
    CHECK(rel_error(fused, plain) < 1e-13);  // the same arithmetic (measured 0)
    CHECK(rel_error(fused, arena_vector(net->arena(), c["meta_grad"])) < 6e-9);
    ++compared;
  }
  CHECK(compared == 3);
}

namespace {
// An identity layer that records, at every forward and backward, the trainable and masked flags of
// every parameter of the model it watches (what a user's layer could observe mid-adapt).
struct FlagProbe : Module<double> {
  Module<double>* watched = nullptr;
  std::vector<std::vector<char>> trainable, masked;
  std::string type_name() const override { return "FlagProbe"; }
  void record() {
    std::vector<char> t, m;
    for (auto& np : watched->named_parameters()) {
      t.push_back(np.param->trainable);
      m.push_back(np.param->masked);
    }
    trainable.push_back(std::move(t));
    masked.push_back(std::move(m));
  }
  const Tensor<double>& forward_impl(const Tensor<double>& x) override {
    record();
    return x;
  }
  const Tensor<double>& backward_impl(const Tensor<double>& dy, bool) override {
    record();
    return dy;
  }
};
}  // namespace

TEST_CASE("MAML masks gradients with its own mask: user trainable flags hold during and after adapt") {
  for (bool anil : {true, false}) {
    INFO((anil ? "ANIL (adapt the head only)" : "adapt everything"));
    auto net = small_net<double>(true);
    auto probe = net->push_back(std::make_shared<FlagProbe>());
    probe->watched = net.get();
    net->freeze("4");  // the user's choice: the second conv stays frozen
    std::vector<char> user;
    for (auto& np : net->named_parameters()) user.push_back(np.param->trainable);
    REQUIRE(std::count(user.begin(), user.end(), char(0)) == 2);
    meta::MAMLOptions<double> opt{.inner_lr = 0.1, .inner_steps = 2};
    if (anil) opt.adapt = Selector("9");
    meta::MAML<double> maml(*net, opt);
    const Task t = task();
    maml.adapt(t.sx, t.sy);
    const size_t during_adapt = probe->trainable.size();
    CHECK(during_adapt == 4);  // 2 inner steps x (forward + backward)
    maml.zero_grad();
    maml.accumulate(t.sx, t.sy, t.qx, t.qy);
    CHECK(probe->trainable.size() > during_adapt + 4);
    int masked_seen = 0;
    for (size_t k = 0; k < probe->trainable.size(); ++k) {
      INFO("record " << k);
      CHECK(probe->trainable[k] == user);
      masked_seen += static_cast<int>(std::count(probe->masked[k].begin(), probe->masked[k].end(), char(1)));
    }
    // ANIL masks the 8 backbone tensors in every inner step (adapt: 2 steps; accumulate: 2 steps).
    CHECK(masked_seen == (anil ? 8 * 4 * 2 : 0));
    for (auto& np : net->named_parameters()) CHECK_FALSE(np.param->masked);
    std::vector<char> after;
    for (auto& np : net->named_parameters()) after.push_back(np.param->trainable);
    CHECK(after == user);
  }
}

TEST_CASE("Support labels outside [0, N) are an xfer::Error naming the label and the model's outputs") {
  auto net = small_net<double>();
  meta::MAML<double> maml(*net, {.inner_lr = 0.1});
  Task t = task();
  t.sy[3] = 3;
  CHECK_THROWS_WITH(maml.adapt(t.sx, t.sy), Catch::Contains("support label 3 of sample 3 is outside [0, 3)"));
  t.sy[3] = -1;
  CHECK_THROWS_AS(maml.accumulate(t.sx, t.sy, t.qx, t.qy), Error);
  // The failed call left the model bound to its own weights.
  for (auto& np : net->arena().params) CHECK(np.param->value == net->arena().values.data() + np.param->offset);
}

TEST_CASE("Options are validated: a selector that adapts nothing, negative steps, a changed layout") {
  auto net = small_net<double>();
  CHECK_THROWS_WITH(meta::MAML<double>(*net, {.adapt = Selector("classifier")}), Catch::Contains("matches no parameter"));
  CHECK_THROWS_AS(meta::MAML<double>(*net, {.inner_steps = -1}), Error);
}

TEST_CASE("Regression with a tensor target uses MSE, and a custom loss callable is honoured") {
  Rng rng(3);
  auto mlp = [&] {
    auto s = std::make_shared<Sequential<double>>();
    Rng init(7);
    s->emplace_back<Linear<double>>(LinearOptions{1, 8}, init);
    s->emplace_back<ReLU<double>>();
    s->emplace_back<Linear<double>>(LinearOptions{8, 1}, init);
    s->flatten_parameters();
    return s;
  };
  Tensor<double> sx({10, 1}), sy({10, 1}), qx({10, 1}), qy({10, 1});
  for (int i = 0; i < 10; ++i) {
    sx[i] = rng.uniform(-5, 5), sy[i] = std::sin(sx[i]);
    qx[i] = rng.uniform(-5, 5), qy[i] = std::sin(qx[i]);
  }
  auto a = mlp();
  meta::MAML<double> m1(*a, {.inner_lr = 0.05, .inner_steps = 2});
  m1.zero_grad();
  auto r1 = m1.accumulate(sx, sy, qx, qy);
  // Finite differences of the MSE objective.
  auto& arena = a->arena();
  std::vector<double> numeric(arena.values.size());
  for (size_t i = 0; i < numeric.size(); ++i) {
    const double v = arena.values[i], h = 1e-6;
    arena.values[i] = v + h;
    const double fp = m1.objective(sx, sy, qx, qy);
    arena.values[i] = v - h;
    const double fm = m1.objective(sx, sy, qx, qy);
    arena.values[i] = v;
    numeric[i] = (fp - fm) / (2 * h);
  }
  CHECK(rel_error(arena.grads, numeric) < 1e-7);
  // Half the MSE as a custom loss: same adaptation with twice the inner lr, half the meta-gradient.
  auto b = mlp();
  meta::MAML<double> m2(*b, {.inner_lr = 0.1, .inner_steps = 2, .loss = [](const Tensor<double>& p, const meta::Target<double>& y) {
                               auto r = mse_loss(p, std::get<Tensor<double>>(y));
                               r.loss *= 0.5;
                               r.grad.array() *= 0.5;
                               return r;
                             }});
  m2.zero_grad();
  auto r2 = m2.accumulate(sx, sy, qx, qy);
  CHECK(r2.query.loss == Approx(0.5 * r1.query.loss).epsilon(1e-10));
  for (size_t i = 0; i < numeric.size(); ++i) CHECK(b->arena().grads[i] == Approx(0.5 * arena.grads[i]).margin(1e-9));
}

TEST_CASE("Float second order: the finite-difference Hessian term is accurate to 1e-3 of the double result") {
  const auto& c = find_case("maml_3step_second_order");
  auto expected_net = small_net<double>();
  auto expected = arena_vector(expected_net->arena(), c["meta_grad"]);
  auto net = small_net<float>();
  meta::MAML<float> maml(*net, {.inner_lr = 0.1, .inner_steps = 3});
  const Task t = task();
  maml.zero_grad();
  maml.accumulate(t.sx.cast<float>(), t.sy, t.qx.cast<float>(), t.qy);
  const double err = rel_error(net->arena().grads, expected);
  INFO("float relative error " << err);
  CHECK(err < 1e-3);
}

TEST_CASE("Per-group inner learning rates: alpha = 0 outside the head reproduces ANIL's PyTorch meta-gradient") {
  const auto& c = find_case("anil_3step_second_order");
  auto net = small_net<double>();
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3,
                                 .inner_lr_groups = {{.select = all_except("9"), .lr = 0.0}}});
  const Task t = task();
  maml.zero_grad();
  maml.accumulate(t.sx, t.sy, t.qx, t.qy);
  const double err = rel_error(net->arena().grads, arena_vector(net->arena(), c["meta_grad"]));
  INFO("relative error " << err);
  CHECK(err < 2e-9);
  CHECK(maml.kink_fallbacks() == 0);
  for (auto& np : net->arena().params)
    if (np.name.rfind("9.", 0) != 0) CHECK(maml.inner_lrs().value[np.param->offset] == 0.0);
}

// ---- MAML++ ------------------------------------------------------------------------------------

namespace {

// A MAML++ fixture case (LSLR rates and multi-step loss weights from the fixture) run through meta::MAML.
struct PPResult {
  std::vector<double> grad, lr_grad;
  double objective = 0;
};
PPResult run_pp_case(const json& c) {
  auto net = small_net<double>();
  const int k = c["steps"].get<int>();
  meta::MAML<double> maml(*net, {.inner_steps = k, .first_order = c["first_order"].get<bool>(),
                                 .multi_step_loss = true, .learn_step_lrs = true, .per_step_bn_stats = true});
  const auto lrs = c["step_lrs"].get<std::vector<std::vector<double>>>();
  auto& p = maml.step_lrs();
  REQUIRE(p.numel == k * static_cast<int64_t>(net->arena().params.size()));
  for (int j = 0; j < k; ++j)
    for (size_t q = 0; q < lrs[static_cast<size_t>(j)].size(); ++q) p.value[j * 10 + static_cast<int64_t>(q)] = lrs[static_cast<size_t>(j)][q];
  maml.set_step_loss_weights(c["step_loss_weights"].get<std::vector<double>>());
  const Task t = task();
  maml.zero_grad();
  auto r = maml.accumulate(t.sx, t.sy, t.qx, t.qy);
  return {{net->arena().grads.begin(), net->arena().grads.end()}, {p.grad, p.grad + p.numel}, r.objective};
}

}  // namespace

TEST_CASE("MAML++ (multi-step loss, per-layer per-step learned inner rates) matches PyTorch create_graph=True to 1e-8") {
  for (const char* name : {"mamlpp_3step_second_order", "mamlpp_3step_first_order"}) {
    INFO(name);
    const auto& c = find_case(name);
    const PPResult r = run_pp_case(c);
    auto net = small_net<double>();
    const double err = rel_error(r.grad, arena_vector(net->arena(), c["meta_grad"]));
    const double lr_err = rel_error(r.lr_grad, c["step_lrs_grad"].get<std::vector<double>>());
    INFO("weights " << err << "  step lrs " << lr_err);
    CHECK(r.objective == Approx(c["objective"].get<double>()).epsilon(1e-12));
    CHECK(err < 1e-8);  // measured 5.5e-11 / 1.3e-10 (second order), 5e-16 (first order)
    CHECK(lr_err < 1e-8);
  }
  // Neither term is negligible: the multi-step loss and the Hessian both change the gradient.
  const PPResult so = run_pp_case(find_case("mamlpp_3step_second_order"));
  const PPResult fo = run_pp_case(find_case("mamlpp_3step_first_order"));
  CHECK(rel_error(so.grad, fo.grad) > 1e-2);
  CHECK(rel_error(so.grad, run_case(find_case("maml_3step_second_order"))) > 1e-2);
}

TEST_CASE("MAML++ meta-gradient of weights and step learning rates equals finite differences of its objective") {
  auto net = small_net<double>();
  auto& arena = net->arena();
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3, .multi_step_loss = true,
                                 .msl_anneal_iterations = 100, .learn_step_lrs = true});
  maml.set_iteration(30);
  REQUIRE(maml.step_loss_weights().size() == 3);
  CHECK(maml.step_loss_weights()[0] > 0);
  const Task t = task();
  maml.zero_grad();
  maml.accumulate(t.sx, t.sy, t.qx, t.qy);
  const double h = 1e-6;
  auto numeric = [&](double* values, size_t n) {
    std::vector<double> g(n);
    for (size_t i = 0; i < n; ++i) {
      const double v = values[i];
      values[i] = v + h;
      const double fp = maml.objective(t.sx, t.sy, t.qx, t.qy);
      values[i] = v - h;
      const double fm = maml.objective(t.sx, t.sy, t.qx, t.qy);
      values[i] = v;
      g[i] = (fp - fm) / (2 * h);
    }
    return g;
  };
  std::vector<double> analytic(arena.grads.begin(), arena.grads.end());
  const double err = rel_error(analytic, numeric(arena.values.data(), analytic.size()));
  auto& lrs = maml.step_lrs();
  std::vector<double> lr_analytic(lrs.grad, lrs.grad + lrs.numel);
  const double lr_err = rel_error(lr_analytic, numeric(lrs.value, lr_analytic.size()));
  INFO("weights " << err << "  step lrs " << lr_err);
  CHECK(err < 5e-8);  // measured 6e-10 / 5e-10
  CHECK(lr_err < 5e-8);
}

TEST_CASE("Multi-step loss weights start equal and anneal to the final step; order annealing switches the Hessian on") {
  auto w0 = meta::msl_weights(5, 0, 100);
  for (double w : w0) CHECK(w == Approx(0.2));
  auto w1 = meta::msl_weights(5, 1000, 100);
  CHECK(w1[0] == Approx(0.006));
  CHECK(w1[4] == Approx(1 - 4 * 0.006));
  double s = 0;
  for (double w : meta::msl_weights(5, 40, 100)) s += w;
  CHECK(s == Approx(1.0));
  CHECK(meta::msl_weights(3, 7, 0) == std::vector<double>{0, 0, 1});

  const Task t = task();
  auto so = run_case(find_case("maml_3step_second_order"));
  auto fo = run_case(find_case("maml_3step_first_order"));
  auto net = small_net<double>();
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3, .first_order_iterations = 10});
  for (int64_t it : {0, 9, 10}) {
    maml.set_iteration(it);
    maml.zero_grad();
    maml.accumulate(t.sx, t.sy, t.qx, t.qy);
    INFO("iteration " << it);
    CHECK(maml.first_order_now() == (it < 10));
    CHECK(rel_error(net->arena().grads, it < 10 ? fo : so) < 1e-8);
  }
}

TEST_CASE("adapt() and accumulate() leave every parameter and the BatchNorm running statistics unchanged") {
  auto snapshot = [](Sequential<double>& net) {
    std::vector<double> v(net.arena().values.begin(), net.arena().values.end());
    for (auto& nb : net.named_buffers()) {
      if (nb.buffer.tensor) v.insert(v.end(), nb.buffer.tensor->begin(), nb.buffer.tensor->end());
      if (nb.buffer.counter) v.push_back(static_cast<double>(*nb.buffer.counter));
    }
    return v;
  };
  const Task t = task();
  for (bool per_step : {false, true}) {
    INFO("per_step_bn_stats " << per_step);
    auto net = small_net<double>();
    const auto before = snapshot(*net);
    REQUIRE(before.size() == static_cast<size_t>(net->arena().size()) + 4 * 4 + 2);
    meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3, .per_step_bn_stats = per_step});
    maml.adapt(t.sx, t.sy);
    maml.evaluate(t.qx, t.qy);
    CHECK(snapshot(*net) == before);
    maml.zero_grad();
    maml.accumulate(t.sx, t.sy, t.qx, t.qy);
    CHECK(snapshot(*net) == before);
    if (per_step) {
      // Each step keeps its own statistics, and they moved away from the model's.
      const auto& s0 = maml.step_bn_statistics(0);
      const auto& s2 = maml.step_bn_statistics(2);
      REQUIRE(s0.values.size() == 16);
      CHECK(s0.values != s2.values);
      CHECK(s0.counters[0] == 2);  // one support forward in adapt() and one in accumulate()
    }
  }
  // Asked to, the inner loop updates the model's statistics (the check above can fail).
  auto net = small_net<double>();
  const auto before = snapshot(*net);
  meta::MAML<double> maml(*net, {.inner_lr = 0.1, .inner_steps = 3, .update_bn_stats = true});
  maml.adapt(t.sx, t.sy);
  CHECK(snapshot(*net) != before);
  CHECK(std::equal(net->arena().values.begin(), net->arena().values.end(), before.begin()));
}

TEST_CASE("MAML++ options are validated") {
  auto net = small_net<double>();
  CHECK_THROWS_WITH(meta::MAML<double>(*net, {.learn_inner_lr = true, .learn_step_lrs = true}), Catch::Contains("exclude each other"));
  CHECK_THROWS_WITH(meta::MAML<double>(*net, {.inner_steps = 0, .learn_step_lrs = true}), Catch::Contains("inner_steps > 0"));
  meta::MAML<double> maml(*net, {.inner_steps = 2});
  CHECK_THROWS_WITH(maml.set_step_loss_weights({1.0}), Catch::Contains("1 step loss weights for 2 inner steps"));
  CHECK_THROWS_WITH(maml.step_lrs(), Catch::Contains("learn_step_lrs"));
}

}  // namespace unit_maml
