// TrivialAugmentWide / RandAugment: every operation at given magnitudes (and fills) against
// torchvision 0.14's _apply_op on uint8 images (tests/fixtures/augment.json from
// tests/fixtures/gen_augment.py), the magnitude tables, and the policies' random draws.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fixture_json.hpp"
#include <xfer/data/auto_augment.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_augment {

using namespace xfer;
using namespace xfer::data;
using json = nlohmann::json;

namespace {
const json& fixture() { return fixture_json("augment.json"); }
std::vector<float> unhex(const std::string& s) {
  std::vector<float> out;
  for (size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<float>(std::stoi(s.substr(i, 2), nullptr, 16)));
  return out;
}
// The fixture's uint8 CHW input as a [0, 1] float image (what ToTensor gives).
Tensor<float> input(const std::string& key) {
  const auto& in = fixture()["inputs"][key];
  const auto shape = in["shape"].get<Shape>();
  Tensor<float> t(shape);
  const auto v = unhex(in["data"]);
  REQUIRE(static_cast<int64_t>(v.size()) == t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = v[static_cast<size_t>(i)] / 255.0f;
  return t;
}
AugmentOp op_from(const std::string& name) {
  for (int k = 0; k < kNumAugmentOps; ++k)
    if (name == augment_op_name(static_cast<AugmentOp>(k))) return static_cast<AugmentOp>(k);
  FAIL("unknown op " << name);
  return AugmentOp::Identity;
}
}  // namespace

TEST_CASE("Every AutoAugment-family operation equals torchvision's uint8 result exactly") {
  std::map<std::string, int> per_op;
  int total = 0;
  for (const auto& c : fixture()["cases"]) {
    const std::string op = c["op"];
    INFO(op << " magnitude " << c.value("magnitude", 0.0) << " input " << c["input"] << " fill " << c["fill"].dump());
    Tensor<float> img = input(c["input"]);
    std::vector<AugmentChoice> ops;
    if (op == "sequence") {
      for (const auto& o : c["ops"]) ops.push_back({op_from(o["op"]), o["magnitude"].get<double>()});
    } else {
      ops.push_back({op_from(op), c["magnitude"].get<double>()});
    }
    std::vector<float> fill;
    if (!c["fill"].is_null()) fill = c["fill"].get<std::vector<float>>();
    RandAugment ra({.fill = fill});
    ra.apply_params(img, ops);  // quantise to bytes, ops, back to [0, 1]
    const auto want = unhex(c["data"]);
    REQUIRE(static_cast<int64_t>(want.size()) == img.numel());
    int64_t wrong = 0;
    for (int64_t i = 0; i < img.numel(); ++i) wrong += img[i] != want[static_cast<size_t>(i)] / 255.0f;
    CHECK(wrong == 0);
    ++per_op[op];
    ++total;
  }
  CHECK(per_op.size() == 15);
  CHECK(total == 262);
}

TEST_CASE("The magnitude tables equal torchvision's (TrivialAugmentWide, RandAugment at two sizes)") {
  auto check = [](const AugmentSpace& space, const json& table) {
    REQUIRE(space.size() == table.size());
    for (const auto& e : space) {
      const auto& t = table[augment_op_name(e.op)];
      INFO(augment_op_name(e.op));
      CHECK(e.is_signed == t["signed"].get<bool>());
      CHECK(e.magnitudes == t["magnitudes"].get<std::vector<double>>());  // float32 values, bit for bit
    }
  };
  check(trivial_augment_space(31), fixture()["trivial_space"]);
  const auto& r = fixture()["rand_space"];
  check(rand_augment_space(r["bins"], r["height"], r["width"]), r["table"]);
  const auto& r2 = fixture()["rand_space_224"];
  check(rand_augment_space(r2["bins"], r2["height"], r2["width"]), r2["table"]);
}

TEST_CASE("TrivialAugmentWide draws every op, every bin and both signs; apply equals apply_params of the draw") {
  TrivialAugmentWide ta;
  Rng rng(7);
  std::set<int> ops;
  std::set<double> mags;
  int negative = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const auto c = ta.get_params(rng);
    ops.insert(static_cast<int>(c.op));
    if (c.op == AugmentOp::Rotate) mags.insert(std::abs(c.magnitude));
    negative += c.magnitude < 0;
  }
  CHECK(ops.size() == 14);
  CHECK(mags.size() == 31);
  // 9 signed ops of 14, half negative, minus the zero bin: about 0.5 * 9/14 * 30/31 = 31% of draws.
  CHECK(std::abs(negative / static_cast<double>(n) - 0.311) < 0.02);
  Tensor<float> a = input("c"), b = input("c");
  Rng r1(11), r2(11);
  ta.apply(a, r1);
  ta.apply_params(b, ta.get_params(r2));
  for (int64_t i = 0; i < a.numel(); ++i) CHECK(a[i] == b[i]);
}

TEST_CASE("RandAugment applies num_ops ops at its fixed magnitude bin") {
  RandAugment ra({.num_ops = 3, .magnitude = 5, .num_magnitude_bins = 11});
  const auto sp = rand_augment_space(11, 16, 14);
  Rng rng(3);
  for (int i = 0; i < 200; ++i) {
    const auto ops = ra.get_params(16, 14, rng);
    REQUIRE(ops.size() == 3);
    for (const auto& c : ops) {
      const auto& e = sp[static_cast<size_t>(c.op)];
      const double want = e.magnitudes.empty() ? 0.0 : e.magnitudes[5];
      CHECK(std::abs(c.magnitude) == want);
    }
  }
  CHECK_THROWS_WITH(RandAugment({.magnitude = 31}), Catch::Contains("magnitude must be a bin in [0, 31)"));
  CHECK_THROWS_WITH(TrivialAugmentWide({.fill = {2.0f}}), Catch::Contains("fill values must be in [0, 1]"));
  Tensor<float> gray({2, 4, 4}, 0.5f);
  Rng r(1);
  CHECK_THROWS_WITH(ra.apply(gray, r), Catch::Contains("1 or 3 channels"));
}

}  // namespace unit_augment
