// clip_grad_norm against torch.nn.utils.clip_grad_norm_ (1.13; fixture from
// tests/fixtures/gen_train_basics.py): returned total norm and clipped gradients for the 2-, 1-, 3-
// and inf-norms, frozen parameters, and inf / NaN gradients.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixture_json.hpp"
#include <xfer/optim/clip_grad.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_clip_grad {

using namespace xfer;
using json = nlohmann::json;

namespace {
const json& reference() { return fixture_json("train_basics.json"); }
struct Params {
  std::vector<std::unique_ptr<nn::Parameter<float>>> owned;
  std::vector<nn::Parameter<float>*> ptrs;
};
Params make_params(const json& ref, const json& c) {
  Params p;
  const auto shapes = ref["shapes"].get<std::vector<Shape>>();
  for (size_t k = 0; k < shapes.size(); ++k) {
    p.owned.push_back(std::make_unique<nn::Parameter<float>>("p" + std::to_string(k), shapes[k]));
    const auto g = ref["grads"][k].get<std::vector<double>>();
    for (size_t i = 0; i < g.size(); ++i) p.owned.back()->grad[i] = static_cast<float>(g[i]);
    p.ptrs.push_back(p.owned.back().get());
  }
  for (int k : c["frozen"].get<std::vector<int>>()) p.owned[static_cast<size_t>(k)]->trainable = false;
  if (!c["special"].is_null())
    p.owned[1]->grad[2] = c["special"] == "inf" ? std::numeric_limits<float>::infinity() : std::nanf("");
  return p;
}
double norm_type(const json& c) {
  return c["norm_type"].is_string() ? std::numeric_limits<double>::infinity() : c["norm_type"].get<double>();
}
}  // namespace

TEST_CASE("clip_grad_norm returns torch's total norm and leaves torch's gradients") {
  const auto& ref = reference()["clip_grad_norm"];
  int finite = 0, nonfinite = 0;
  for (const auto& c : ref["cases"]) {
    INFO("max_norm " << c["max_norm"] << " norm_type " << c["norm_type"] << " special " << c["special"].dump());
    Params p = make_params(ref, c);
    const double total = optim::clip_grad_norm(p.ptrs, c["max_norm"].get<double>(), {.norm_type = norm_type(c)});
    if (c["special"].is_null()) {
      CHECK(total == Approx(c["total"].get<double>()).epsilon(1e-6));
      ++finite;
    } else {
      CHECK(std::isnan(total) == (c["special"] == "nan"));
      CHECK(std::isinf(total) == (c["special"] == "inf"));
      ++nonfinite;
    }
    for (size_t k = 0; k < p.owned.size(); ++k) {
      const auto& g = c["grads"][k];
      if (g.is_null()) {  // frozen: untouched
        const auto orig = ref["grads"][k].get<std::vector<double>>();
        for (size_t i = 0; i < orig.size(); ++i) CHECK(p.owned[k]->grad[i] == static_cast<float>(orig[i]));
        continue;
      }
      for (size_t i = 0; i < g.size(); ++i) {
        const float got = p.owned[k]->grad[i];
        if (g[i].is_null() || !std::isfinite(g[i].get<double>())) {
          CHECK(!std::isfinite(got));
        } else {
          CHECK(got == Approx(g[i].get<double>()).margin(1e-6).epsilon(1e-6));
        }
      }
    }
  }
  CHECK(finite == 5);
  CHECK(nonfinite == 2);
}

TEST_CASE("clip_grad_norm with error_if_nonfinite throws on a NaN gradient and changes nothing") {
  const auto& ref = reference()["clip_grad_norm"];
  const auto& c = ref["cases"][6];
  REQUIRE(c["special"] == "nan");
  Params p = make_params(ref, c);
  const float before = p.owned[0]->grad[0];
  CHECK_THROWS_WITH(optim::clip_grad_norm(p.ptrs, 1.0, {.error_if_nonfinite = true}), Catch::Contains("non-finite"));
  CHECK(p.owned[0]->grad[0] == before);
}

TEST_CASE("clip_grad_norm and clip_grad_value reject bad arguments; value clipping clamps") {
  nn::Parameter<float> a("a", {3});
  a.grad[0] = 2.0f, a.grad[1] = -0.5f, a.grad[2] = -4.0f;
  std::vector<nn::Parameter<float>*> ps{&a};
  CHECK_THROWS_WITH(optim::clip_grad_norm(ps, -1.0), Catch::Contains("max_norm"));
  CHECK_THROWS_WITH(optim::clip_grad_norm(ps, 1.0, {.norm_type = 0.0}), Catch::Contains("norm_type"));
  optim::clip_grad_value(ps, 1.0);
  CHECK(a.grad[0] == 1.0f);
  CHECK(a.grad[1] == -0.5f);
  CHECK(a.grad[2] == -1.0f);
  a.trainable = false;
  CHECK(optim::clip_grad_norm(ps, 0.1) == 0.0);  // no trainable parameter: nothing to clip
  CHECK(a.grad[0] == 1.0f);
}

}  // namespace unit_clip_grad
