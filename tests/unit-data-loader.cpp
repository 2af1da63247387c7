// Loader: batching, seeded per-epoch shuffling, augmentation that depends only on (seed, epoch,
// sample), independence from threads and prefetching, resumable state, double batches, bad input.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "xfer/core/parallel.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/io/state_json.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_data_loader {

using namespace xfer;
using namespace xfer::data;

namespace {

// 37 distinct 32x32 images, labels i % 10.
InMemoryDataset make_dataset(int64_t n = 37, int64_t side = 32) {
  std::vector<uint8_t> px(static_cast<size_t>(n * side * side * 3));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % 10);
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) names.push_back(std::to_string(i));
  return InMemoryDataset::from_hwc(px.data(), n, side, side, 3, labels, names);
}

template <class T>
std::vector<Batch<T>> one_epoch(Loader<T>& l) {
  std::vector<Batch<T>> out;
  for (auto& b : l) out.push_back(b);
  return out;
}

template <class T>
bool same(const Batch<T>& a, const Batch<T>& b) {
  return a.x.shape() == b.x.shape() && std::equal(a.x.begin(), a.x.end(), b.x.begin()) && a.y == b.y;
}

}  // namespace

TEST_CASE("an epoch visits every sample once in batches of batch_size, the last one smaller unless drop_last") {
  const auto ds = make_dataset();
  Loader<float> l(ds, LoaderOptions{.batch_size = 8, .shuffle = true, .seed = 3});
  CHECK(l.num_batches() == 5);
  const auto batches = one_epoch(l);
  REQUIRE(batches.size() == 5);
  std::map<int32_t, int> labels;
  for (size_t b = 0; b < batches.size(); ++b) {
    CHECK(batches[b].x.shape() == Shape{b < 4 ? 8 : 5, 3, 32, 32});
    for (int32_t y : batches[b].y) ++labels[y];
  }
  for (int c = 0; c < 10; ++c) CHECK(labels[c] == (c < 7 ? 4 : 3));
  const auto order = l.epoch_order(0);
  CHECK(std::set<int64_t>(order.begin(), order.end()).size() == 37);
  CHECK(l.state().epoch == 1);
  CHECK(l.state().position == 0);

  Loader<float> dl(ds, LoaderOptions{.batch_size = 8, .drop_last = true});
  CHECK(dl.num_batches() == 4);
  CHECK(one_epoch(dl).size() == 4);
  // without shuffle: dataset order, pixels = ToTensor of the image
  Loader<float> plain(ds, LoaderOptions{.batch_size = 10});
  CHECK(plain.epoch_order(5) == plain.epoch_order(0));
  const auto pb = one_epoch(plain);
  CHECK(pb[1].y[0] == ds.label(10));
  const Tensor<float> want = functional::to_tensor(ds.image(12));
  CHECK(std::equal(want.begin(), want.end(), pb[1].x.data() + 2 * want.numel()));
}

TEST_CASE("shuffling is seeded per epoch: same seed same order, new epoch new order") {
  const auto ds = make_dataset();
  Loader<float> a(ds, LoaderOptions{.batch_size = 8, .shuffle = true, .seed = 1});
  Loader<float> b(ds, LoaderOptions{.batch_size = 8, .shuffle = true, .seed = 1});
  Loader<float> c(ds, LoaderOptions{.batch_size = 8, .shuffle = true, .seed = 2});
  CHECK(a.epoch_order(0) == b.epoch_order(0));
  CHECK(a.epoch_order(0) != a.epoch_order(1));
  CHECK(a.epoch_order(0) != c.epoch_order(0));
  const auto e0 = one_epoch(a), e1 = one_epoch(a);
  CHECK(a.epoch() == 2);
  b.set_epoch(1);
  const auto b1 = one_epoch(b);
  REQUIRE(b1.size() == e1.size());
  for (size_t i = 0; i < e1.size(); ++i) CHECK(same(b1[i], e1[i]));
  CHECK_FALSE(same(e0[0], e1[0]));
}

TEST_CASE("each sample's augmentation comes from Rng(sample_seed(seed, epoch, index))") {
  const auto ds = make_dataset();
  const Compose tf = cifar10_train_transforms();
  Loader<float> l(ds, tf, LoaderOptions{.batch_size = 6, .shuffle = true, .seed = 9});
  l.set_epoch(4);
  const auto batches = one_epoch(l);
  const auto order = l.epoch_order(4);
  for (int64_t k : {0, 7, 36}) {
    Rng rng(sample_seed(9, 4, order[static_cast<size_t>(k)]));
    const Tensor<float> want = tf(ds.image(order[static_cast<size_t>(k)]), rng);
    const auto& b = batches[static_cast<size_t>(k / 6)];
    CHECK(std::equal(want.begin(), want.end(), b.x.data() + (k % 6) * want.numel()));
  }
  CHECK(sample_seed(9, 4, 1) != sample_seed(9, 5, 1));
  CHECK(sample_seed(9, 4, 1) != sample_seed(9, 4, 2));
  CHECK(sample_seed(9, 4, 1) != sample_seed(10, 4, 1));
}

TEST_CASE("batches do not depend on the thread count or on prefetching") {
  const auto ds = make_dataset();
  const Compose tf = cifar10_train_transforms();
  const LoaderOptions base{.batch_size = 8, .shuffle = true, .seed = 5};
  LoaderOptions o1 = base, o2 = base, o3 = base;
  o1.prefetch = false;
  o1.threads = 1;
  o2.prefetch = false;
  o2.threads = 2;
  o3.prefetch = true;
  o3.threads = 2;
  Loader<float> l1(ds, tf, o1), l2(ds, tf, o2), l3(ds, tf, o3);
  for (int epoch = 0; epoch < 2; ++epoch) {
    const auto a = one_epoch(l1), b = one_epoch(l2), c = one_epoch(l3);
    REQUIRE(a.size() == b.size());
    REQUIRE(a.size() == c.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(same(a[i], b[i]));
      CHECK(same(a[i], c[i]));
    }
  }
  // random access builds the same batch
  CHECK(same(l1.get(1, 2), [&] {
    Loader<float> l(ds, tf, base);
    l.set_state({1, 2});
    return *l.next();
  }()));
}

TEST_CASE("a loader resumed from state() continues with identical batches") {
  const auto ds = make_dataset();
  const Compose tf = cifar10_train_transforms();
  const LoaderOptions opt{.batch_size = 8, .shuffle = true, .seed = 11};
  Loader<float> full(ds, tf, opt);
  std::vector<Batch<float>> ref = one_epoch(full);
  for (auto& b : one_epoch(full)) ref.push_back(b);  // epochs 0 and 1: 10 batches

  // "killed" after 7 batches (2 into epoch 1), state saved through JSON
  Loader<float> first(ds, tf, opt);
  nlohmann::json saved;
  int taken = 0;
  for (int e = 0; e < 2 && taken < 7; ++e)
    for (auto& b : first) {
      CHECK(same(b, ref[static_cast<size_t>(taken)]));
      if (++taken == 7) break;
    }
  saved = first.state();
  CHECK(saved["epoch"] == 1);
  CHECK(saved["position"] == 2);

  Loader<float> resumed(ds, tf, opt);
  resumed.set_state(saved.get<LoaderState>());
  for (auto& b : resumed) {
    CHECK(same(b, ref[static_cast<size_t>(taken)]));
    ++taken;
  }
  CHECK(taken == 10);
  CHECK(resumed.state().epoch == 2);
}

TEST_CASE("Loader<double> yields the same values as Loader<float>, widened") {
  const auto ds = make_dataset(9, 4);
  Loader<float> lf(ds, LoaderOptions{.batch_size = 4, .shuffle = true});
  Loader<double> ld(ds, LoaderOptions{.batch_size = 4, .shuffle = true});
  const auto f = one_epoch(lf);
  const auto d = one_epoch(ld);
  REQUIRE(f.size() == d.size());
  for (size_t i = 0; i < f.size(); ++i) {
    CHECK(f[i].y == d[i].y);
    for (int64_t k = 0; k < f[i].x.numel(); ++k) REQUIRE(d[i].x[k] == static_cast<double>(f[i].x[k]));
  }
}

TEST_CASE("Loader bad input: empty dataset, zero batch, mixed image sizes, invalid state") {
  InMemoryDataset empty(std::vector<std::string>{"a"});
  CHECK_THROWS_WITH(Loader<float>(empty, LoaderOptions{}), Catch::Contains("dataset is empty"));
  const auto ds = make_dataset(5, 4);
  CHECK_THROWS_WITH(Loader<float>(ds, LoaderOptions{.batch_size = 0}), Catch::Contains("batch_size must be > 0"));
  CHECK_THROWS_WITH(Loader<float>(ds, LoaderOptions{.batch_size = 8, .drop_last = true}), Catch::Contains("no full batch"));
  Loader<float> l(ds, LoaderOptions{.batch_size = 2});
  CHECK_THROWS_WITH(l.set_state({0, 4}), Catch::Contains("positions go from 0 to 3"));

  InMemoryDataset mixed(std::vector<std::string>{"a"});
  mixed.add(Image(4, 4, 3, 1), 0);
  mixed.add(Image(5, 4, 3, 2), 0);
  for (bool prefetch : {false, true}) {
    Loader<float> ml(mixed, LoaderOptions{.batch_size = 2, .prefetch = prefetch});
    CHECK_THROWS_WITH(ml.next(), Catch::Contains("sample 1 has shape [3, 5, 4]") && Catch::Contains("resize"));
  }
  // ... which Resize + CenterCrop fix
  Loader<float> fixed(mixed, Compose(Resize(4), CenterCrop(4)), LoaderOptions{.batch_size = 2});
  CHECK(fixed.next()->x.shape() == Shape{2, 3, 4, 4});
}

}  // namespace unit_data_loader
