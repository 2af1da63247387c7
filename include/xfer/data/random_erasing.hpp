// RandomErasing (torchvision 0.14): with probability p, erase a rectangle covering a uniform
// fraction `scale` of the image with a log-uniform aspect ratio in `ratio` (10 tries; if none fits
// the image is left alone), filling it with a constant, a per-channel value, or standard normal noise.
//
// The one thing to know: like torchvision it works on the float tensor and goes *after* Normalize
// (value 0 then means the dataset mean); as in torchvision the height takes sqrt(area * ratio).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/data/transforms.hpp"

namespace xfer::data {

class RandomErasing final : public Transform {
 public:
  enum class Fill { constant, random };
  struct Options {
    double p = 0.5;
    std::array<double, 2> scale = {0.02, 0.33};
    std::array<double, 2> ratio = {0.3, 3.3};
    Fill fill = Fill::constant;
    std::vector<float> value = {0.0f};  // one value, or one per channel (Fill::constant)
  };
  // The drawn rectangle; erase == false when the coin said no or no rectangle fitted.
  struct Params {
    bool erase = false;
    int64_t top = 0, left = 0, height = 0, width = 0;
  };

  RandomErasing() : RandomErasing(Options{}) {}
  explicit RandomErasing(Options o) : o_(std::move(o)) {
    XFER_CHECK(o_.p >= 0 && o_.p <= 1, "RandomErasing: p must be in [0, 1], got ", o_.p);
    XFER_CHECK(o_.scale[0] >= 0 && o_.scale[0] <= o_.scale[1] && o_.scale[1] <= 1,
               "RandomErasing: scale must satisfy 0 <= min <= max <= 1, got [", o_.scale[0], ", ", o_.scale[1], "]");
    XFER_CHECK(o_.ratio[0] > 0 && o_.ratio[0] <= o_.ratio[1], "RandomErasing: ratio must satisfy 0 < min <= max, got [",
               o_.ratio[0], ", ", o_.ratio[1], "]");
    XFER_CHECK(o_.fill == Fill::random || !o_.value.empty(), "RandomErasing: a constant fill needs at least one value");
  }

  // torchvision's forward + get_params: the coin, then up to 10 tries.
  Params get_params(int64_t height, int64_t width, Rng& rng) const {
    Params p;
    if (!(rng.uniform() < o_.p)) return p;
    const double area = static_cast<double>(height * width);
    const double lo = std::log(o_.ratio[0]), hi = std::log(o_.ratio[1]);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double erase_area = area * rng.uniform(o_.scale[0], o_.scale[1]);
      const double aspect = std::exp(rng.uniform(lo, hi));
      const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area * aspect)));
      const auto w = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area / aspect)));
      if (!(h < height && w < width)) continue;
      p.erase = true;
      p.height = h;
      p.width = w;
      p.top = static_cast<int64_t>(rng.below(static_cast<uint64_t>(height - h + 1)));
      p.left = static_cast<int64_t>(rng.below(static_cast<uint64_t>(width - w + 1)));
      return p;
    }
    return p;
  }
  // F.erase with the configured fill; random fill draws C * h * w standard normals from rng.
  void apply_params(Tensor<float>& img, const Params& p, Rng& rng) const {
    if (!p.erase) return;
    const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2);
    XFER_CHECK(p.top >= 0 && p.left >= 0 && p.top + p.height <= H && p.left + p.width <= W, "RandomErasing: rectangle ",
               p.height, "x", p.width, " at (", p.top, ", ", p.left, ") outside a ", H, "x", W, " image");
    XFER_CHECK(o_.fill == Fill::random || o_.value.size() == 1 || static_cast<int64_t>(o_.value.size()) == C,
               "RandomErasing: ", o_.value.size(), " fill values for an image with ", C, " channels");
    for (int64_t c = 0; c < C; ++c) {
      const float v = o_.fill == Fill::random ? 0.0f : o_.value[o_.value.size() == 1 ? 0 : static_cast<size_t>(c)];
      for (int64_t y = p.top; y < p.top + p.height; ++y) {
        float* row = img.data() + (c * H + y) * W;
        for (int64_t x = p.left; x < p.left + p.width; ++x) row[x] = o_.fill == Fill::random ? static_cast<float>(rng.normal()) : v;
      }
    }
  }
  void apply(Tensor<float>& img, Rng& rng) const override {
    XFER_CHECK(img.ndim() == 3, "RandomErasing: expected a CHW image tensor, got shape ", shape_str(img.shape()));
    apply_params(img, get_params(img.dim(1), img.dim(2), rng), rng);
  }
  std::string describe() const override { return "RandomErasing"; }
  const Options& options() const { return o_; }

 private:
  Options o_;
};

}  // namespace xfer::data
