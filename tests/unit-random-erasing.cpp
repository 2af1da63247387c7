// RandomErasing (torchvision 0.14): the drawn rectangles respect scale, ratio and the image, the
// erase writes exactly that rectangle with the configured fill, and p / fallback behave.
#include <catch2/catch.hpp>

#include <cmath>

#include <xfer/data/random_erasing.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_random_erasing {

using namespace xfer;
using namespace xfer::data;

TEST_CASE("RandomErasing draws rectangles within scale and ratio, fully inside the image") {
  RandomErasing re({.p = 1.0, .scale = {0.05, 0.2}, .ratio = {0.5, 2.0}});
  Rng rng(1);
  int erased = 0;
  for (int i = 0; i < 3000; ++i) {
    const auto p = re.get_params(40, 30, rng);
    if (!p.erase) continue;
    ++erased;
    REQUIRE((p.height < 40 && p.width < 30 && p.top >= 0 && p.left >= 0));
    REQUIRE((p.top + p.height <= 40 && p.left + p.width <= 30));
    // rounding of h and w moves area and ratio a little off the drawn values
    const double area = static_cast<double>(p.height * p.width) / 1200.0;
    CHECK((area > 0.05 * 0.7 && area < 0.2 * 1.3));
    const double ratio = static_cast<double>(p.height) / static_cast<double>(p.width);
    CHECK((ratio > 0.5 * 0.7 && ratio < 2.0 * 1.4));
  }
  CHECK(erased == 3000);  // such rectangles always fit
}

TEST_CASE("RandomErasing writes its fill into exactly the drawn rectangle") {
  Tensor<float> img({3, 8, 10}, 0.25f);
  RandomErasing re({.p = 1.0, .value = {1.0f, 2.0f, 3.0f}});
  Rng rng(2);
  const RandomErasing::Params p{.erase = true, .top = 2, .left = 3, .height = 4, .width = 5};
  re.apply_params(img, p, rng);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 8; ++y)
      for (int64_t x = 0; x < 10; ++x) {
        const bool in = y >= 2 && y < 6 && x >= 3 && x < 8;
        CHECK(img[(c * 8 + y) * 10 + x] == (in ? static_cast<float>(c + 1) : 0.25f));
      }
  RandomErasing noise({.p = 1.0, .fill = RandomErasing::Fill::random});
  Tensor<float> z({1, 64, 64}, 0.0f);
  noise.apply_params(z, {.erase = true, .top = 0, .left = 0, .height = 64, .width = 64}, rng);
  double s = 0, s2 = 0;
  for (float v : z) s += v, s2 += static_cast<double>(v) * v;
  CHECK(std::abs(s / 4096) < 0.06);  // standard normal noise
  CHECK(std::abs(s2 / 4096 - 1.0) < 0.08);
}

TEST_CASE("RandomErasing erases with probability p and gives up when nothing fits") {
  RandomErasing half({.p = 0.3});
  Rng rng(3);
  int n = 0;
  for (int i = 0; i < 10000; ++i) n += half.get_params(32, 32, rng).erase;
  CHECK(std::abs(n / 10000.0 - 0.3) < 0.02);
  RandomErasing huge({.p = 1.0, .scale = {0.99, 1.0}, .ratio = {1.0, 1.0}});
  for (int i = 0; i < 100; ++i) CHECK_FALSE(huge.get_params(16, 16, rng).erase);  // h = w = 16 never fits (< 16)
  CHECK_THROWS_WITH(RandomErasing({.p = 1.5}), Catch::Contains("p must be in [0, 1]"));
  CHECK_THROWS_WITH(RandomErasing({.ratio = {2.0, 1.0}}), Catch::Contains("ratio"));
  Tensor<float> img({3, 8, 8}, 0.0f);
  RandomErasing two({.p = 1.0, .value = {1.0f, 2.0f}});
  CHECK_THROWS_WITH(two.apply_params(img, {.erase = true, .top = 0, .left = 0, .height = 2, .width = 2}, rng),
                    Catch::Contains("2 fill values for an image with 3 channels"));
}

}  // namespace unit_random_erasing
