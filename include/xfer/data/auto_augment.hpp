// TrivialAugmentWide and RandAugment, pinned to torchvision 0.14: the same 14 operations, the same
// magnitude bins (float32 linspace tables), signs, defaults (31 bins; RandAugment 2 ops at
// magnitude 9), nearest-neighbour interpolation and fill. Put them right after the crop / flip:
//   Compose(RandomResizedCrop(224), RandomHorizontalFlip(), TrivialAugmentWide(), Normalize(...))
//
// The one thing to know: like torchvision (whose policies need uint8 tensors), the image is
// quantised to bytes for the policy (convert_image_dtype semantics) and divided by 255 afterwards,
// so each operation's output equals torchvision's on the uint8 image. Random choices come from
// xfer's Rng; get_params / apply_params expose them, so a choice can be replayed exactly.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/data/augment_ops.hpp"
#include "xfer/data/transforms.hpp"

namespace xfer::data {

// In torchvision's _augmentation_space order.
enum class AugmentOp {
  Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize,
  Solarize, AutoContrast, Equalize
};
inline constexpr int kNumAugmentOps = 14;

inline const char* augment_op_name(AugmentOp op) {
  static constexpr const char* names[kNumAugmentOps] = {
      "Identity", "ShearX",     "ShearY",    "TranslateX", "TranslateY", "Rotate",       "Brightness",
      "Color",    "Contrast",   "Sharpness", "Posterize",  "Solarize",   "AutoContrast", "Equalize"};
  return names[static_cast<int>(op)];
}

// One entry of an augmentation space: the magnitude of each bin (empty: the op takes none) and
// whether a random sign applies.
struct AugmentSpaceEntry {
  AugmentOp op;
  std::vector<double> magnitudes;
  bool is_signed;
};
using AugmentSpace = std::vector<AugmentSpaceEntry>;

// One drawn operation: the op and its signed magnitude.
struct AugmentChoice {
  AugmentOp op = AugmentOp::Identity;
  double magnitude = 0.0;
};

namespace detail {
inline std::vector<double> linspace_f32(double start, double end, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = augment::detail::linspace_at(static_cast<float>(start), static_cast<float>(end), n, i);
  return v;
}
// 8 - (arange(n) / ((n - 1) / div)).round().int(), in float32 like torch.
inline std::vector<double> posterize_bins(int64_t n, double div) {
  std::vector<double> v(static_cast<size_t>(n));
  const float d = static_cast<float>(static_cast<double>(n - 1) / div);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 8 - std::nearbyint(static_cast<float>(i) / d);
  return v;
}
inline AugmentSpace space(int64_t bins, double shear, double tx, double ty, double rot, double enhance, double post_div) {
  using O = AugmentOp;
  return {{O::Identity, {}, false},
          {O::ShearX, linspace_f32(0.0, shear, bins), true},
          {O::ShearY, linspace_f32(0.0, shear, bins), true},
          {O::TranslateX, linspace_f32(0.0, tx, bins), true},
          {O::TranslateY, linspace_f32(0.0, ty, bins), true},
          {O::Rotate, linspace_f32(0.0, rot, bins), true},
          {O::Brightness, linspace_f32(0.0, enhance, bins), true},
          {O::Color, linspace_f32(0.0, enhance, bins), true},
          {O::Contrast, linspace_f32(0.0, enhance, bins), true},
          {O::Sharpness, linspace_f32(0.0, enhance, bins), true},
          {O::Posterize, posterize_bins(bins, post_div), false},
          {O::Solarize, linspace_f32(255.0, 0.0, bins), false},
          {O::AutoContrast, {}, false},
          {O::Equalize, {}, false}};
}
inline std::optional<std::vector<float>> byte_fill(const std::vector<float>& fill) {
  if (fill.empty()) return std::nullopt;
  std::vector<float> b;
  for (float f : fill) b.push_back(f * 255.0f);
  return b;
}
inline void check_fill(const std::vector<float>& fill, const char* what) {
  for (float f : fill) XFER_CHECK(f >= 0.0f && f <= 1.0f, what, ": fill values must be in [0, 1], got ", f);
}
}  // namespace detail

// TrivialAugmentWide's space (torchvision 0.14).
inline AugmentSpace trivial_augment_space(int64_t bins = 31) {
  XFER_CHECK(bins >= 2, "TrivialAugmentWide: num_magnitude_bins must be >= 2, got ", bins);
  return detail::space(bins, 0.99, 32.0, 32.0, 135.0, 0.99, 6.0);
}
// RandAugment's space for an image of height x width (translations scale with the image).
inline AugmentSpace rand_augment_space(int64_t bins, int64_t height, int64_t width) {
  XFER_CHECK(bins >= 2, "RandAugment: num_magnitude_bins must be >= 2, got ", bins);
  return detail::space(bins, 0.3, 150.0 / 331.0 * static_cast<double>(width), 150.0 / 331.0 * static_cast<double>(height),
                       30.0, 0.9, 4.0);
}

// torchvision's _apply_op on a byte-valued image; fill in byte units (std::nullopt: 0).
inline void apply_augment_op(Tensor<float>& bytes, AugmentOp op, double magnitude,
                             const std::optional<std::vector<float>>& fill = std::nullopt) {
  namespace A = augment;
  switch (op) {
    case AugmentOp::Identity: return;
    case AugmentOp::ShearX: return A::shear_x(bytes, magnitude, fill);
    case AugmentOp::ShearY: return A::shear_y(bytes, magnitude, fill);
    case AugmentOp::TranslateX: return A::translate_x(bytes, magnitude, fill);
    case AugmentOp::TranslateY: return A::translate_y(bytes, magnitude, fill);
    case AugmentOp::Rotate: return A::rotate(bytes, magnitude, fill);
    case AugmentOp::Brightness: return A::adjust_brightness(bytes, 1.0 + magnitude);
    case AugmentOp::Color: return A::adjust_saturation(bytes, 1.0 + magnitude);
    case AugmentOp::Contrast: return A::adjust_contrast(bytes, 1.0 + magnitude);
    case AugmentOp::Sharpness: return A::adjust_sharpness(bytes, 1.0 + magnitude);
    case AugmentOp::Posterize: return A::posterize(bytes, static_cast<int>(magnitude));
    case AugmentOp::Solarize: return A::solarize(bytes, magnitude);
    case AugmentOp::AutoContrast: return A::autocontrast(bytes);
    case AugmentOp::Equalize: return A::equalize(bytes);
  }
}

// TrivialAugmentWide: one op drawn uniformly, a magnitude bin drawn uniformly, a random sign.
class TrivialAugmentWide final : public Transform {
 public:
  struct Options {
    int64_t num_magnitude_bins = 31;
    std::vector<float> fill = {};  // per channel (or one value) in [0, 1]; empty: 0
  };
  TrivialAugmentWide() : TrivialAugmentWide(Options{}) {}
  explicit TrivialAugmentWide(Options o) : o_(std::move(o)), space_(trivial_augment_space(o_.num_magnitude_bins)) {
    detail::check_fill(o_.fill, "TrivialAugmentWide");
  }
  AugmentChoice get_params(Rng& rng) const {
    const auto& e = space_[rng.below(space_.size())];
    AugmentChoice c{e.op, 0.0};
    if (!e.magnitudes.empty()) c.magnitude = e.magnitudes[rng.below(e.magnitudes.size())];
    if (e.is_signed && rng.below(2)) c.magnitude = -c.magnitude;
    return c;
  }
  void apply_params(Tensor<float>& img, const AugmentChoice& c) const {
    augment::to_bytes(img);
    apply_augment_op(img, c.op, c.magnitude, detail::byte_fill(o_.fill));
    augment::from_bytes(img);
  }
  void apply(Tensor<float>& img, Rng& rng) const override {
    augment::detail::check_image(img, "TrivialAugmentWide");
    apply_params(img, get_params(rng));
  }
  std::string describe() const override { return "TrivialAugmentWide"; }
  const AugmentSpace& space() const { return space_; }

 private:
  Options o_;
  AugmentSpace space_;
};

// RandAugment: num_ops ops drawn uniformly (with replacement), each at the fixed magnitude bin,
// with a random sign.
class RandAugment final : public Transform {
 public:
  struct Options {
    int64_t num_ops = 2;
    int64_t magnitude = 9;  // bin index in [0, num_magnitude_bins)
    int64_t num_magnitude_bins = 31;
    std::vector<float> fill = {};
  };
  RandAugment() : RandAugment(Options{}) {}
  explicit RandAugment(Options o) : o_(std::move(o)) {
    XFER_CHECK(o_.num_ops >= 0, "RandAugment: num_ops must be >= 0, got ", o_.num_ops);
    XFER_CHECK(o_.num_magnitude_bins >= 2, "RandAugment: num_magnitude_bins must be >= 2, got ", o_.num_magnitude_bins);
    XFER_CHECK(o_.magnitude >= 0 && o_.magnitude < o_.num_magnitude_bins, "RandAugment: magnitude must be a bin in [0, ",
               o_.num_magnitude_bins, "), got ", o_.magnitude);
    detail::check_fill(o_.fill, "RandAugment");
  }
  std::vector<AugmentChoice> get_params(int64_t height, int64_t width, Rng& rng) const {
    const auto sp = rand_augment_space(o_.num_magnitude_bins, height, width);
    std::vector<AugmentChoice> out;
    for (int64_t k = 0; k < o_.num_ops; ++k) {
      const auto& e = sp[rng.below(sp.size())];
      AugmentChoice c{e.op, e.magnitudes.empty() ? 0.0 : e.magnitudes[static_cast<size_t>(o_.magnitude)]};
      if (e.is_signed && rng.below(2)) c.magnitude = -c.magnitude;
      out.push_back(c);
    }
    return out;
  }
  void apply_params(Tensor<float>& img, const std::vector<AugmentChoice>& ops) const {
    augment::to_bytes(img);
    const auto fill = detail::byte_fill(o_.fill);
    for (const auto& c : ops) apply_augment_op(img, c.op, c.magnitude, fill);
    augment::from_bytes(img);
  }
  void apply(Tensor<float>& img, Rng& rng) const override {
    augment::detail::check_image(img, "RandAugment");
    apply_params(img, get_params(img.dim(1), img.dim(2), rng));
  }
  std::string describe() const override { return "RandAugment"; }
  const Options& options() const { return o_; }

 private:
  Options o_;
};

}  // namespace xfer::data
