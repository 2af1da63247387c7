// Transforms with torchvision semantics, composable with Compose: RandomCrop, RandomHorizontalFlip,
// ColorJitter, RandomRotation, RandomResizedCrop, Normalize, Resize, CenterCrop, plus the CIFAR-10 recipes.
// The one thing to know: Compose starts with ToTensor (uint8 HWC -> float CHW in [0, 1]) and every
// transform works on that float tensor (torchvision's tensor path); random transforms draw only from
// the Rng passed in, so a sample's augmentation is fixed by that Rng's seed.
#pragma once

#include <array>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/functional.hpp"
#include "xfer/data/image.hpp"

namespace xfer::data {

class Transform {
 public:
  virtual ~Transform() = default;
  // Transforms a float CHW image in place (it may change its shape).
  virtual void apply(Tensor<float>& img, Rng& rng) const = 0;
  virtual std::string describe() const = 0;
};
using TransformPtr = std::shared_ptr<const Transform>;

// An explicit {height, width} (a single number means a square or, for Resize, the shorter side).
struct Size {
  int64_t height, width;
};

// Normalize(mean, std): (x - mean[c]) / std[c].
class Normalize final : public Transform {
 public:
  Normalize(std::vector<float> mean, std::vector<float> std) : mean_(std::move(mean)), std_(std::move(std)) {
    XFER_CHECK(!mean_.empty() && mean_.size() == std_.size(), "Normalize: ", mean_.size(), " means and ", std_.size(),
               " stds (expected the same non-zero count)");
    for (size_t c = 0; c < std_.size(); ++c)
      XFER_CHECK(std_[c] > 0.0f, "Normalize: std of channel ", c, " must be > 0, got ", std_[c]);
  }
  void apply(Tensor<float>& img, Rng&) const override { functional::normalize(img, mean_, std_); }
  std::string describe() const override { return "Normalize"; }
  const std::vector<float>& mean() const { return mean_; }
  const std::vector<float>& std() const { return std_; }

 private:
  std::vector<float> mean_, std_;
};

// Resize(n): the shorter side becomes n, the aspect ratio is kept (longer side truncated like
// torchvision); Resize(Size{h, w}): exactly h x w. Bilinear, antialiased by default (torchvision's
// Resize(antialias=True) on tensors).
class Resize final : public Transform {
 public:
  explicit Resize(int64_t shorter_side, bool antialias = true) : size_{shorter_side}, antialias_(antialias) {
    functional::resized_size(1, 1, size_);  // validates
  }
  explicit Resize(Size size, bool antialias = true) : size_{size.height, size.width}, antialias_(antialias) {
    functional::resized_size(1, 1, size_);
  }
  void apply(Tensor<float>& img, Rng&) const override {
    functional::detail::check_chw(img, "Resize");
    const auto [h, w] = functional::resized_size(img.dim(1), img.dim(2), size_);
    if (h != img.dim(1) || w != img.dim(2)) img = functional::resize(img, h, w, antialias_);
  }
  std::string describe() const override { return "Resize"; }

 private:
  std::vector<int64_t> size_;
  bool antialias_;
};

// CenterCrop(h, w): the centred window, zero-padded when the image is smaller.
class CenterCrop final : public Transform {
 public:
  explicit CenterCrop(int64_t size) : CenterCrop(size, size) {}
  explicit CenterCrop(Size size) : CenterCrop(size.height, size.width) {}
  CenterCrop(int64_t height, int64_t width) : h_(height), w_(width) {
    XFER_CHECK(h_ > 0 && w_ > 0, "CenterCrop: size must be positive, got ", h_, "x", w_);
  }
  void apply(Tensor<float>& img, Rng&) const override {
    functional::detail::check_chw(img, "CenterCrop");
    if (img.dim(1) != h_ || img.dim(2) != w_) img = functional::center_crop(img, h_, w_);
  }
  std::string describe() const override { return "CenterCrop"; }

 private:
  int64_t h_, w_;
};

// RandomCrop(size, padding): zero-pad every side by `padding`, then crop a size x size window at a
// uniformly drawn offset (top first, then left, as torchvision).
class RandomCrop final : public Transform {
 public:
  struct Params {
    int64_t top = 0, left = 0;
  };
  explicit RandomCrop(int64_t size, int64_t padding = 0) : RandomCrop(Size{size, size}, padding) {}
  RandomCrop(Size size, int64_t padding, float fill = 0.0f)
      : h_(size.height), w_(size.width), padding_(padding), fill_(fill) {
    XFER_CHECK(h_ > 0 && w_ > 0, "RandomCrop: size must be positive, got ", h_, "x", w_);
    XFER_CHECK(padding_ >= 0, "RandomCrop: padding must be >= 0, got ", padding_);
  }
  // Offsets into the padded image of height H + 2 * padding and width W + 2 * padding.
  Params get_params(int64_t height, int64_t width, Rng& rng) const {
    const int64_t H = height + 2 * padding_, W = width + 2 * padding_;
    XFER_CHECK(H >= h_ && W >= w_, "RandomCrop: crop ", h_, "x", w_, " is larger than the padded image ", H, "x", W);
    if (H == h_ && W == w_) return {};
    Params p;
    p.top = static_cast<int64_t>(rng.below(static_cast<uint64_t>(H - h_ + 1)));
    p.left = static_cast<int64_t>(rng.below(static_cast<uint64_t>(W - w_ + 1)));
    return p;
  }
  void apply(Tensor<float>& img, Rng& rng) const override {
    functional::detail::check_chw(img, "RandomCrop");
    const Params p = get_params(img.dim(1), img.dim(2), rng);
    apply_params(img, p);
  }
  void apply_params(Tensor<float>& img, const Params& p) const {
    // Cropping outside the image reads the fill value: padding and crop in one copy.
    if (fill_ == 0.0f) {
      img = functional::crop(img, p.top - padding_, p.left - padding_, h_, w_);
    } else {
      Tensor<float> padded = functional::pad(img, padding_, padding_, padding_, padding_, fill_);
      img = functional::crop(padded, p.top, p.left, h_, w_);
    }
  }
  std::string describe() const override { return "RandomCrop"; }

 private:
  int64_t h_, w_, padding_;
  float fill_;
};

// RandomHorizontalFlip(p): mirrors left-right with probability p.
class RandomHorizontalFlip final : public Transform {
 public:
  explicit RandomHorizontalFlip(double p = 0.5) : p_(p) {
    XFER_CHECK(p_ >= 0.0 && p_ <= 1.0, "RandomHorizontalFlip: p must be in [0, 1], got ", p_);
  }
  bool get_params(Rng& rng) const { return rng.uniform() < p_; }
  void apply(Tensor<float>& img, Rng& rng) const override {
    if (get_params(rng)) functional::hflip(img);
  }
  std::string describe() const override { return "RandomHorizontalFlip"; }

 private:
  double p_;
};

// ColorJitter(brightness, contrast, saturation, hue): factors drawn uniformly from
// [max(0, 1 - b), 1 + b] (likewise contrast, saturation) and hue from [-h, h], applied in a random
// order of the four operations (torchvision's get_params: the permutation first, then the factors).
// A zero argument disables that operation.
class ColorJitter final : public Transform {
 public:
  struct Params {
    std::array<int, 4> order{0, 1, 2, 3};  // 0 brightness, 1 contrast, 2 saturation, 3 hue
    std::optional<double> brightness, contrast, saturation, hue;
  };
  ColorJitter(double brightness = 0, double contrast = 0, double saturation = 0, double hue = 0)
      : b_(brightness), c_(contrast), s_(saturation), h_(hue) {
    XFER_CHECK(b_ >= 0 && c_ >= 0 && s_ >= 0, "ColorJitter: brightness, contrast and saturation must be >= 0, got ", b_,
               ", ", c_, ", ", s_);
    XFER_CHECK(h_ >= 0 && h_ <= 0.5, "ColorJitter: hue must be in [0, 0.5], got ", h_);
  }
  Params get_params(Rng& rng) const {
    Params p;
    for (int i = 3; i > 0; --i) std::swap(p.order[static_cast<size_t>(i)], p.order[rng.below(static_cast<uint64_t>(i + 1))]);
    if (b_ > 0) p.brightness = rng.uniform(std::max(0.0, 1 - b_), 1 + b_);
    if (c_ > 0) p.contrast = rng.uniform(std::max(0.0, 1 - c_), 1 + c_);
    if (s_ > 0) p.saturation = rng.uniform(std::max(0.0, 1 - s_), 1 + s_);
    if (h_ > 0) p.hue = rng.uniform(-h_, h_);
    return p;
  }
  static void apply_params(Tensor<float>& img, const Params& p) {
    for (int op : p.order) {
      if (op == 0 && p.brightness) functional::adjust_brightness(img, *p.brightness);
      if (op == 1 && p.contrast) functional::adjust_contrast(img, *p.contrast);
      if (op == 2 && p.saturation) functional::adjust_saturation(img, *p.saturation);
      if (op == 3 && p.hue) functional::adjust_hue(img, *p.hue);
    }
  }
  void apply(Tensor<float>& img, Rng& rng) const override { apply_params(img, get_params(rng)); }
  std::string describe() const override { return "ColorJitter"; }

 private:
  double b_, c_, s_, h_;
};

// RandomResizedCrop(size, scale, ratio): a window covering a uniform fraction `scale` of the area
// with a log-uniform aspect ratio in `ratio` (10 tries, then torchvision's central fallback), resized
// to size (bilinear, antialiased) — the usual ImageNet-style fine-tuning augmentation.
class RandomResizedCrop final : public Transform {
 public:
  struct Params {
    int64_t top = 0, left = 0, height = 0, width = 0;
  };
  explicit RandomResizedCrop(int64_t size, std::array<double, 2> scale = {0.08, 1.0},
                             std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0}, bool antialias = true)
      : RandomResizedCrop(Size{size, size}, scale, ratio, antialias) {}
  RandomResizedCrop(Size size, std::array<double, 2> scale, std::array<double, 2> ratio, bool antialias = true)
      : size_(size), scale_(scale), ratio_(ratio), antialias_(antialias) {
    XFER_CHECK(size_.height > 0 && size_.width > 0, "RandomResizedCrop: size must be positive, got ", size_.height, "x",
               size_.width);
    XFER_CHECK(scale_[0] > 0 && scale_[0] <= scale_[1], "RandomResizedCrop: scale must satisfy 0 < min <= max, got [",
               scale_[0], ", ", scale_[1], "]");
    XFER_CHECK(ratio_[0] > 0 && ratio_[0] <= ratio_[1], "RandomResizedCrop: ratio must satisfy 0 < min <= max, got [",
               ratio_[0], ", ", ratio_[1], "]");
  }
  Params get_params(int64_t height, int64_t width, Rng& rng) const {
    const double area = static_cast<double>(height * width);
    const double log_lo = std::log(ratio_[0]), log_hi = std::log(ratio_[1]);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = area * rng.uniform(scale_[0], scale_[1]);
      const double aspect = std::exp(rng.uniform(log_lo, log_hi));
      const int64_t w = functional::round_half_even(std::sqrt(target * aspect));
      const int64_t h = functional::round_half_even(std::sqrt(target / aspect));
      if (w > 0 && w <= width && h > 0 && h <= height) {
        Params p{.top = 0, .left = 0, .height = h, .width = w};
        p.top = static_cast<int64_t>(rng.below(static_cast<uint64_t>(height - h + 1)));
        p.left = static_cast<int64_t>(rng.below(static_cast<uint64_t>(width - w + 1)));
        return p;
      }
    }
    // Central fallback, as torchvision.
    const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
    int64_t w = width, h = height;
    if (in_ratio < ratio_[0]) {
      h = functional::round_half_even(static_cast<double>(w) / ratio_[0]);
    } else if (in_ratio > ratio_[1]) {
      w = functional::round_half_even(static_cast<double>(h) * ratio_[1]);
    }
    return {.top = (height - h) / 2, .left = (width - w) / 2, .height = h, .width = w};
  }
  void apply_params(Tensor<float>& img, const Params& p) const {
    img = functional::resized_crop(img, p.top, p.left, p.height, p.width, size_.height, size_.width, antialias_);
  }
  void apply(Tensor<float>& img, Rng& rng) const override {
    functional::detail::check_chw(img, "RandomResizedCrop");
    apply_params(img, get_params(img.dim(1), img.dim(2), rng));
  }
  std::string describe() const override { return "RandomResizedCrop"; }

 private:
  Size size_;
  std::array<double, 2> scale_, ratio_;
  bool antialias_;
};

// RandomRotation(degrees): angle uniform in [-degrees, degrees] (or [lo, hi]), counter-clockwise
// about the centre, nearest neighbour, uncovered pixels = fill (0).
class RandomRotation final : public Transform {
 public:
  explicit RandomRotation(double degrees, float fill = 0.0f) : RandomRotation(-checked(degrees), degrees, fill) {}
  RandomRotation(double lo, double hi, float fill) : lo_(lo), hi_(hi), fill_(fill) {
    XFER_CHECK(lo_ <= hi_, "RandomRotation: empty angle range [", lo_, ", ", hi_, "]");
  }
  double get_params(Rng& rng) const { return rng.uniform(lo_, hi_); }
  void apply(Tensor<float>& img, Rng& rng) const override { img = functional::rotate(img, get_params(rng), fill_); }
  std::string describe() const override { return "RandomRotation"; }

 private:
  static double checked(double degrees) {
    XFER_CHECK(degrees >= 0, "RandomRotation: degrees must be >= 0 (or give a range), got ", degrees);
    return degrees;
  }
  double lo_, hi_;
  float fill_;
};

// A pipeline: ToTensor, then each transform in order.
class Compose {
 public:
  Compose() = default;
  explicit Compose(std::vector<TransformPtr> transforms) : ts_(std::move(transforms)) {
    for (size_t i = 0; i < ts_.size(); ++i) XFER_CHECK(ts_[i] != nullptr, "Compose: transform ", i, " is null");
  }
  // Compose{RandomCrop(32, 4), RandomHorizontalFlip(), Normalize(...)}
  template <class... Ts>
    requires(sizeof...(Ts) > 0 && (std::is_base_of_v<Transform, std::decay_t<Ts>> && ...))
  explicit Compose(Ts&&... ts) {
    (ts_.push_back(std::make_shared<const std::decay_t<Ts>>(std::forward<Ts>(ts))), ...);
  }

  Compose& add(TransformPtr t) {
    XFER_CHECK(t != nullptr, "Compose::add: null transform");
    ts_.push_back(std::move(t));
    return *this;
  }
  void apply(Tensor<float>& img, Rng& rng) const {
    for (const auto& t : ts_) t->apply(img, rng);
  }
  // ToTensor then the transforms, into `out` (its allocation is reused when large enough).
  void operator()(ImageView img, Rng& rng, Tensor<float>& out) const {
    functional::to_tensor(img, out);
    apply(out, rng);
  }
  Tensor<float> operator()(ImageView img, Rng& rng) const {
    Tensor<float> out;
    (*this)(img, rng, out);
    return out;
  }
  size_t size() const { return ts_.size(); }
  const std::vector<TransformPtr>& transforms() const { return ts_; }
  std::string describe() const {
    std::string s = "ToTensor";
    for (const auto& t : ts_) s += " -> " + t->describe();
    return s;
  }

 private:
  std::vector<TransformPtr> ts_;
};

// CIFAR-10 channel statistics used by the common recipe.
inline const std::vector<float>& cifar10_mean() {
  static const std::vector<float> m{0.4914f, 0.4822f, 0.4465f};
  return m;
}
inline const std::vector<float>& cifar10_std() {
  static const std::vector<float> s{0.2023f, 0.1994f, 0.2010f};
  return s;
}

// RandomCrop(32, padding 4), RandomHorizontalFlip, ColorJitter(.2, .2, .2, .1), RandomRotation(15), Normalize.
inline Compose cifar10_train_transforms() {
  return Compose(RandomCrop(32, 4), RandomHorizontalFlip(0.5), ColorJitter(0.2, 0.2, 0.2, 0.1), RandomRotation(15.0),
                 Normalize(cifar10_mean(), cifar10_std()));
}
// Evaluation only normalises.
inline Compose cifar10_eval_transforms() { return Compose(Normalize(cifar10_mean(), cifar10_std())); }

}  // namespace xfer::data
