// Loader's distributed sampler (LoaderOptions rank/world), without MPI: the ranks' batches are
// disjoint slices of the batch one process with the global batch would build, every sample of an
// epoch once, with uneven last batches split evenly and one smaller than the world dropped.
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <set>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_dist_sampler {

using namespace xfer;

namespace {
// n 2x2 grey images whose pixel value is the index (labels = index), so a batch names its samples.
data::InMemoryDataset indexed(int64_t n) {
  Tensor<float> x({n, 1, 2, 2});
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  return data::InMemoryDataset::from_tensor(x, labels, std::vector<std::string>(static_cast<size_t>(n), "c"));
}
}  // namespace

TEST_CASE("Distributed sampler: rank slices of each global batch, disjoint, covering the epoch") {
  for (int64_t n : {24, 25, 23, 26}) {
    auto ds = indexed(n);
    for (int world : {1, 2, 3}) {
      INFO("n " << n << " world " << world);
      const int64_t per = 4, g = per * world;
      data::Loader<float> single(ds, {.batch_size = g, .shuffle = true, .seed = 7, .prefetch = false});
      std::vector<std::unique_ptr<data::Loader<float>>> ranks;
      for (int r = 0; r < world; ++r)
        ranks.push_back(std::make_unique<data::Loader<float>>(
            ds, data::LoaderOptions{.batch_size = per, .shuffle = true, .seed = 7, .rank = r, .world = world}));
      const int64_t tail = n % g;
      const int64_t expect_batches = n / g + (tail >= world ? 1 : 0);
      for (auto& l : ranks) CHECK(l->num_batches() == expect_batches);
      for (int64_t e = 0; e < 2; ++e) {
        std::set<int32_t> seen;
        int64_t total = 0;
        for (int64_t b = 0; b < expect_batches; ++b) {
          const auto whole = single.get(e, b);
          nn::Labels joined;
          int64_t smallest = per, largest = 0;
          for (auto& l : ranks) {
            const auto part = l->get(e, b);
            joined.insert(joined.end(), part.y.begin(), part.y.end());
            smallest = std::min<int64_t>(smallest, static_cast<int64_t>(part.y.size()));
            largest = std::max<int64_t>(largest, static_cast<int64_t>(part.y.size()));
          }
          CHECK(joined == whole.y);  // same samples, same order, same augmentation seeds
          CHECK(largest - smallest <= 1);
          CHECK(smallest >= 1);
          seen.insert(joined.begin(), joined.end());
          total += static_cast<int64_t>(joined.size());
        }
        CHECK(total == static_cast<int64_t>(seen.size()));  // disjoint
        CHECK(total == n - (tail < world ? tail : 0));
      }
    }
  }
}

TEST_CASE("Distributed sampler: iteration, drop_last and bad ranks") {
  auto ds = indexed(10);
  data::Loader<float> a(ds, {.batch_size = 2, .shuffle = true, .seed = 1, .rank = 0, .world = 2});
  data::Loader<float> b(ds, {.batch_size = 2, .shuffle = true, .seed = 1, .rank = 1, .world = 2});
  std::set<int32_t> all;
  int64_t count = 0;
  for (auto& [x, y] : a) all.insert(y.begin(), y.end()), count += static_cast<int64_t>(y.size());
  for (auto& [x, y] : b) all.insert(y.begin(), y.end()), count += static_cast<int64_t>(y.size());
  CHECK(count == 10);
  CHECK(all.size() == 10);
  data::Loader<float> dropped(ds, {.batch_size = 2, .drop_last = true, .rank = 1, .world = 2});
  CHECK(dropped.num_batches() == 2);
  CHECK_THROWS_WITH(data::Loader<float>(ds, {.rank = 2, .world = 2}), Catch::Contains("rank 2 of world 2"));
  CHECK_THROWS_AS(data::Loader<float>(ds, {.rank = 0, .world = 0}), Error);
}

}  // namespace unit_dist_sampler
