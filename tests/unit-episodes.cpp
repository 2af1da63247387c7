// meta::EpisodeSampler: N-way K-shot Q-query tasks, determinism per episode id, disjoint splits, errors.
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <set>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_episodes {

using namespace xfer;
using namespace xfer::meta;

namespace {
// 10 classes, class c has 20 + c samples, interleaved.
std::vector<int32_t> toy_labels() {
  std::vector<int32_t> l;
  for (int r = 0; r < 30; ++r)
    for (int32_t c = 0; c < 10; ++c)
      if (r < 20 + c) l.push_back(c);
  return l;
}
}  // namespace

TEST_CASE("An episode has N classes, K support and Q query samples per class, labels remapped to 0..N-1") {
  const auto labels = toy_labels();
  EpisodeSampler s(labels, {}, {.ways = 5, .shots = 2, .queries = 3, .seed = 7});
  for (uint64_t id = 0; id < 50; ++id) {
    const Episode e = s.episode(id);
    REQUIRE(e.classes.size() == 5);
    REQUIRE(e.support.size() == 10);
    REQUIRE(e.query.size() == 15);
    CHECK(std::set<int32_t>(e.classes.begin(), e.classes.end()).size() == 5);
    std::set<int64_t> used;
    for (size_t i = 0; i < e.support.size(); ++i) {
      CHECK(e.support_labels[i] == static_cast<int32_t>(i / 2));
      CHECK(labels[e.support[i]] == e.classes[e.support_labels[i]]);
      used.insert(e.support[i]);
    }
    for (size_t i = 0; i < e.query.size(); ++i) {
      CHECK(e.query_labels[i] == static_cast<int32_t>(i / 3));
      CHECK(labels[e.query[i]] == e.classes[e.query_labels[i]]);
      used.insert(e.query[i]);
    }
    CHECK(used.size() == 25);  // support and query never share a sample
  }
}

TEST_CASE("Episodes are deterministic per id and seed, independent of the order they are drawn in") {
  const auto labels = toy_labels();
  EpisodeSampler a(labels, {}, {.ways = 3, .shots = 1, .queries = 5, .seed = 1});
  EpisodeSampler b(labels, {}, {.ways = 3, .shots = 1, .queries = 5, .seed = 1});
  EpisodeSampler c(labels, {}, {.ways = 3, .shots = 1, .queries = 5, .seed = 2});
  const Episode e9 = a.episode(9);
  for (uint64_t id = 20; id-- > 0;) b.episode(id);
  CHECK(b.episode(9).support == e9.support);
  CHECK(b.episode(9).query == e9.query);
  CHECK(a.episode(10).support != e9.support);
  CHECK(c.episode(9).support != e9.support);
}

TEST_CASE("Episodes cover all classes of the pool and every sample of a class eventually") {
  const auto labels = toy_labels();
  EpisodeSampler s(labels, {2, 5, 7}, {.ways = 2, .shots = 1, .queries = 1});
  std::set<int32_t> classes;
  std::set<int64_t> samples;
  for (uint64_t id = 0; id < 2000; ++id) {
    const Episode e = s.episode(id);
    classes.insert(e.classes.begin(), e.classes.end());
    samples.insert(e.support.begin(), e.support.end());
  }
  CHECK(classes == std::set<int32_t>{2, 5, 7});
  CHECK(samples.size() == 22u + 25u + 27u);
}

TEST_CASE("Meta-train and meta-test splits are disjoint, so their episodes never share a class or a sample") {
  const auto labels = toy_labels();
  const ClassSplit split = split_classes(10, 6, 3);
  CHECK(split.train.size() == 6);
  CHECK(split.test.size() == 4);
  EpisodeSampler tr(labels, split.train, {.ways = 5, .shots = 1, .queries = 2});
  EpisodeSampler te(labels, split.test, {.ways = 4, .shots = 1, .queries = 2});
  std::set<int32_t> test_classes(split.test.begin(), split.test.end());
  for (uint64_t id = 0; id < 100; ++id)
    for (int32_t c : tr.episode(id).classes) CHECK(test_classes.count(c) == 0);
  CHECK(split_classes(10, 6, 3).train == split.train);  // seeded
  CHECK_THROWS_WITH(make_split({0, 1, 2}, {2, 3}), Catch::Contains("class 2 is in both"));
}

TEST_CASE("Bad episode requests are clear xfer::Errors") {
  const auto labels = toy_labels();
  // K + Q larger than a class has samples (class 0 has 20).
  CHECK_THROWS_WITH(EpisodeSampler(labels, {}, {.ways = 5, .shots = 5, .queries = 16}),
                    Catch::Contains("class 0 has 20 samples but shots + queries = 5 + 16 = 21"));
  // N larger than the number of classes.
  CHECK_THROWS_WITH(EpisodeSampler(labels, {1, 2, 3}, {.ways = 5, .shots = 1, .queries = 1}),
                    Catch::Contains("5-way episodes need at least 5 classes, but only 3"));
  CHECK_THROWS_WITH(EpisodeSampler(labels, {1, 42}, {.ways = 2}), Catch::Contains("class 42 has no samples"));
  CHECK_THROWS_WITH(EpisodeSampler(labels, {1, 1}, {.ways = 1}), Catch::Contains("listed twice"));
  CHECK_THROWS_AS(EpisodeSampler(labels, {}, {.ways = 0}), Error);
  CHECK_THROWS_AS(split_classes(5, 5, 0), Error);
}

TEST_CASE("gather stacks dataset samples into one batch") {
  struct Toy {
    int64_t size() const { return 4; }
    int32_t label(int64_t i) const { return static_cast<int32_t>(i % 2); }
    Tensor<float> image(int64_t i) const { return Tensor<float>({1, 2, 2}, static_cast<float>(i)); }
  } ds;
  CHECK(labels_of(ds) == std::vector<int32_t>{0, 1, 0, 1});
  const auto x = gather<double>(ds, {3, 1});
  CHECK(x.shape() == Shape{2, 1, 2, 2});
  CHECK(x[0] == 3.0);
  CHECK(x[7] == 1.0);
}

TEST_CASE("MeanCI reports the mean and the 95% interval 1.96 * s / sqrt(n)") {
  xfer::meta::MeanCI s;
  CHECK(std::isnan(s.mean()));
  CHECK(s.ci95() == 0);
  s.add(0.4);
  CHECK(s.ci95() == 0);  // one value: no spread to estimate
  for (double v : {0.5, 0.6, 0.7}) s.add(v);
  CHECK(s.count() == 4);
  CHECK(s.mean() == Approx(0.55));
  // sample std of {0.4, 0.5, 0.6, 0.7} = sqrt(0.05 / 3)
  CHECK(s.ci95() == Approx(1.96 * std::sqrt(0.05 / 3) / 2));
}

}  // namespace unit_episodes
