// Few-shot learners beside MAML: ProtoNet's gradients (both metrics) against finite differences of
// its episode loss in double, the cosine classifier of Baseline++ against finite differences, the
// per-episode head fit of the transfer baselines, the Conv-4 backbone, and the clear errors for bad
// episode setups (too few images per class, too few classes, images of mixed sizes).
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <cmath>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_meta_fewshot {

using namespace xfer;
using namespace xfer::nn;

namespace {

// A small encoder with BatchNorm in training mode (so support and query interact through the batch).
std::shared_ptr<Sequential<double>> encoder() {
  Rng rng(5);
  auto s = std::make_shared<Sequential<double>>();
  s->emplace_back<Conv2d<double>>(Conv2dOptions{.in_channels = 2, .out_channels = 3, .kernel_size = 3, .padding = 1}, rng);
  s->emplace_back<BatchNorm2d<double>>(3);
  s->emplace_back<ReLU<double>>();
  s->emplace_back<MaxPool2d<double>>(MaxPool2dOptions{.kernel_size = 2});
  s->emplace_back<Flatten<double>>();
  s->emplace_back<Linear<double>>(LinearOptions{.in_features = 12, .out_features = 6}, rng);
  s->flatten_parameters();
  Rng r(11);
  for (auto& v : s->arena().values) v += 0.1 * r.normal();  // BN affine away from (1, 0)
  return s;
}

struct Episode {
  Tensor<double> sx, qx;
  Labels sy, qy;
};
// 3-way, 2-shot, 2 queries per class, 2x4x4 inputs.
Episode episode() {
  Rng r(3);
  Episode e{Tensor<double>({6, 2, 4, 4}), Tensor<double>({6, 2, 4, 4}), {0, 0, 1, 1, 2, 2}, {0, 1, 2, 0, 1, 2}};
  for (auto& v : e.sx) v = r.normal();
  for (auto& v : e.qx) v = r.normal();
  return e;
}

double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("ProtoNet gradients equal finite differences of the query loss (squared Euclidean and cosine)") {
  for (auto metric : {meta::Metric::SquaredEuclidean, meta::Metric::Cosine}) {
    INFO((metric == meta::Metric::Cosine ? "cosine" : "euclidean"));
    auto net = encoder();
    auto& arena = net->arena();
    meta::ProtoNet<double> proto(*net, {.metric = metric, .cosine_scale = 5.0});
    const Episode e = episode();
    proto.zero_grad();
    const auto r = proto.accumulate(e.sx, e.sy, e.qx, e.qy, 0.5);
    CHECK(r.count == 6);
    std::vector<double> analytic(arena.grads.begin(), arena.grads.end()), numeric(analytic.size());
    const double h = 1e-6;
    for (size_t i = 0; i < numeric.size(); ++i) {
      const double v = arena.values[i];
      arena.values[i] = v + h;
      const double fp = proto.evaluate(e.sx, e.sy, e.qx, e.qy).loss;
      arena.values[i] = v - h;
      const double fm = proto.evaluate(e.sx, e.sy, e.qx, e.qy).loss;
      arena.values[i] = v;
      numeric[i] = 0.5 * (fp - fm) / (2 * h);  // accumulate() was given weight 0.5
    }
    const double err = rel_error(analytic, numeric);
    INFO("relative error " << err);
    CHECK(err < 1e-7);  // measured 2.4e-10 and 1.4e-9 (the two metrics)
  }
}

TEST_CASE("ProtoNet logits are minus squared distances to the class means of the support features") {
  auto id = std::make_shared<Sequential<double>>();
  id->emplace_back<Flatten<double>>();
  meta::ProtoNet<double> proto(*id);
  // Features = inputs: support (0,0),(2,0) for class 0 and (0,4) for class 1; query (1,1).
  const auto sx = Tensor<double>::from({3, 2}, std::vector<double>{0, 0, 2, 0, 0, 4});
  const auto qx = Tensor<double>::from({1, 2}, std::vector<double>{1, 1});
  const auto& logits = proto.logits_of(sx, {0, 0, 1}, qx, {0});
  REQUIRE(logits.shape() == Shape{1, 2});
  CHECK(logits[0] == Approx(-1.0));   // prototype (1, 0)
  CHECK(logits[1] == Approx(-10.0));  // prototype (0, 4): 1 + 9
  CHECK_THROWS_WITH(proto.logits_of(sx, {0, 0, 2}, qx, {0}), Catch::Contains("class 1 has no support sample"));
  CHECK_THROWS_WITH(proto.logits_of(sx, {0, 0, 1}, qx, {2}), Catch::Contains("query label 2 is outside [0, 2)"));
}

TEST_CASE("CosineClassifier (Baseline++) backward matches finite differences; logits are scaled cosines") {
  Rng rng(2);
  meta::CosineClassifier<double> head({.in_features = 5, .out_features = 3, .scale = 4.0}, rng);
  Tensor<double> x({4, 5});
  for (auto& v : x) v = rng.normal();
  for (const auto& r : gradcheck(head, x)) {
    INFO(r.name << " relative error " << r.relative_error);
    CHECK(r.analytic_norm > 0);
    CHECK(r.relative_error < 1e-8);  // measured 2.7e-10 (input), 4.3e-11 (weight)
  }
  const auto& y = head.forward(x);
  for (auto v : y) CHECK(std::abs(v) <= 4.0 + 1e-12);
}

TEST_CASE("The baselines' per-episode head separates separable support features; features_of drops the head") {
  Rng rng(4);
  Tensor<float> s({6, 4}), q({6, 4});
  const Labels y{0, 0, 1, 1, 2, 2};
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t d = 0; d < 4; ++d) {
      s.data()[i * 4 + d] = (d == y[static_cast<size_t>(i)] ? 3.0f : 0.0f) + 0.1f * static_cast<float>(rng.normal());
      q.data()[i * 4 + d] = (d == y[static_cast<size_t>(i)] ? 3.0f : 0.0f) + 0.1f * static_cast<float>(rng.normal());
    }
  for (bool cosine : {false, true}) {
    const auto r = meta::fit_head_and_evaluate(s, y, q, y, 3, {.cosine = cosine, .steps = 100, .lr = 0.05});
    CHECK(r.count == 6);
    CHECK(r.correct == 6);
    const auto untrained = meta::fit_head_and_evaluate(s, y, q, y, 3, {.cosine = cosine, .steps = 0});
    CHECK(untrained.loss > r.loss);
  }
  auto net = models::conv4<float>({.width = 8, .image_size = 32, .num_classes = 5});
  auto f = meta::features_of<float>(*net, "fc");
  Tensor<float> x({2, 3, 32, 32}, 0.5f);
  CHECK(f->forward(x).shape() == Shape{2, 8 * 2 * 2});
  CHECK_THROWS_WITH(meta::features_of<float>(*net, "head"), Catch::Contains("no child named 'head'"));
}

TEST_CASE("Conv-4: four conv-BN-ReLU-pool blocks with dotted names; without a head it outputs features") {
  auto net = models::conv4<float>({.width = 16, .image_size = 48, .num_classes = 7});
  const auto ps = net->named_parameters();
  REQUIRE(ps.size() == 4 * 4 + 2);
  CHECK(ps[0].name == "block1.conv.weight");
  CHECK(ps[3].name == "block1.bn.bias");
  CHECK(ps.back().name == "fc.bias");
  Tensor<float> x({3, 3, 48, 48}, 0.1f);
  CHECK(net->forward(x).shape() == Shape{3, 7});
  CHECK(models::conv4_feature_dim({.width = 16, .image_size = 48}) == 16 * 3 * 3);
  auto features = models::conv4<float>({.width = 16, .image_size = 48});
  CHECK(features->forward(x).shape() == Shape{3, 144});
  CHECK_THROWS_WITH(models::conv4<float>({.image_size = 8}), Catch::Contains("image_size must be >= 16"));
}

TEST_CASE("Bad episode setups are clear errors: too few images per class, too few classes, mixed image sizes") {
  // 3 classes with 4, 4 and 2 images of 8x8, one 6x6 image in class 0.
  data::InMemoryDataset ds({"a", "b", "c"});
  std::vector<uint8_t> px(8 * 8 * 3, 100);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < (c == 2 ? 2 : 4); ++i) ds.add(data::ImageView{8, 8, 3, px.data()}, c);
  const auto labels = meta::labels_of(ds);
  CHECK_THROWS_WITH(meta::EpisodeSampler(labels, {}, {.ways = 2, .shots = 1, .queries = 2}),
                    Catch::Contains("class 2 has 2 samples but shots + queries = 1 + 2 = 3 are needed"));
  CHECK_THROWS_WITH(meta::EpisodeSampler(labels, {0, 1}, {.ways = 3, .shots = 1, .queries = 1}),
                    Catch::Contains("3-way episodes need at least 3 classes, but only 2 are available"));
  CHECK_NOTHROW(meta::check_uniform_size(ds));
  const auto norm = meta::channel_statistics(ds);
  REQUIRE(norm.mean.size() == 3);
  CHECK(norm.mean[0] == Approx(100.0 / 255));
  CHECK(meta::make_batch(ds, {0, 5}, {{0, 0, 0}, {1, 1, 1}}).shape() == Shape{2, 3, 8, 8});
  std::vector<uint8_t> small(6 * 6 * 3, 0);
  ds.add(data::ImageView{6, 6, 3, small.data()}, 0);
  CHECK_THROWS_WITH(meta::check_uniform_size(ds, "train"),
                    Catch::Contains("train: images have different sizes (sample 0 is 8x8x3, sample 10 is 6x6x3)"));
  CHECK_THROWS_WITH(meta::make_batch(ds, {0, 10}, norm), Catch::Contains("--image-size"));
}

}  // namespace unit_meta_fewshot
