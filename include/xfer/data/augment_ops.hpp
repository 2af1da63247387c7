// data::augment: the image operations of torchvision 0.14's AutoAugment family (TrivialAugmentWide,
// RandAugment) on *byte-valued* float CHW tensors (values 0..255) — torchvision's uint8 tensor path
// operation by operation: affine / rotate by nearest-neighbour grid sampling, the blend-based colour
// operations with uint8 truncation, sharpness, posterize, solarize, autocontrast, equalize.
//
// The one thing to know: torchvision runs these policies on uint8 images (posterize and equalize
// refuse float tensors), so the policies quantise the [0, 1] image to bytes first, as
// convert_image_dtype(img, uint8) does (floor(x * 255.999)), and divide by 255 afterwards. Each
// operation matches torchvision's uint8 result exactly (tests/unit-augment.cpp, fixture from
// tests/fixtures/gen_augment.py). Products and sums are kept apart (no FMA contraction) because
// torch computes them as separate tensor operations and truncation to uint8 would expose the difference.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"

namespace xfer::data::augment {

namespace detail {
inline void check_image(const Tensor<float>& img, const char* what) {
  XFER_CHECK(img.ndim() == 3 && (img.dim(0) == 1 || img.dim(0) == 3), what,
             ": expected a CHW image with 1 or 3 channels, got shape ", shape_str(img.shape()));
}
// a * b rounded to float, kept out of any FMA the compiler might form with a neighbouring add.
inline float mul(float a, float b) {
  volatile float p = a * b;
  return p;
}
// torch.linspace(start, end, n) in float32, element for element as torch 1.13's CPU kernel computes
// it with 8-wide vectors (checked against torch.linspace): blocks of 16 are written as two vectors
// base + lane * step (base from the scalar rule), the rest by the scalar rule, which counts up from
// start below n / 2 and down from end above, each with a fused multiply-add.
inline float linspace_at(float start, float end, int64_t n, int64_t i) {
  if (n == 1) return start;
  const float step = (end - start) / static_cast<float>(n - 1);
  const auto scalar = [&](int64_t k) {
    return k < n / 2 ? std::fma(step, static_cast<float>(k), start) : std::fma(-step, static_cast<float>(n - k - 1), end);
  };
  constexpr int64_t V = 8;
  if (i < (n / (2 * V)) * (2 * V)) {
    const int64_t base = (i / V) * V;
    return scalar(base) + mul(static_cast<float>(i - base), step);
  }
  return scalar(i);
}
// torchvision's _blend on uint8: (ratio * a + (1 - ratio) * b).clamp(0, 255).to(uint8).
inline float blend_u8(float a, float b, float r, float q) {
  const float s = mul(r, a) + mul(q, b);
  return std::trunc(std::clamp(s, 0.0f, 255.0f));
}
}  // namespace detail

// [0, 1] floats -> byte values, as torchvision's convert_image_dtype(img, torch.uint8).
inline void to_bytes(Tensor<float>& img) {
  for (float& v : img) v = std::clamp(std::floor(v * 255.999f), 0.0f, 255.0f);
}
// Byte values -> [0, 1] floats, as ToTensor (x / 255).
inline void from_bytes(Tensor<float>& img) {
  for (float& v : img) v = v / 255.0f;
}

// torchvision's _get_inverse_affine_matrix (double precision, as in Python): maps output pixel
// coordinates (relative to the image centre) to input coordinates.
inline std::array<double, 6> inverse_affine_matrix(std::array<double, 2> center, double angle_deg,
                                                   std::array<double, 2> translate, double scale,
                                                   std::array<double, 2> shear_deg) {
  const double rot = angle_deg * (M_PI / 180.0), sx = shear_deg[0] * (M_PI / 180.0), sy = shear_deg[1] * (M_PI / 180.0);
  const double cx = center[0], cy = center[1], tx = translate[0], ty = translate[1];
  const double a = std::cos(rot - sy) / std::cos(sy);
  const double b = -std::cos(rot - sy) * std::tan(sx) / std::cos(sy) - std::sin(rot);
  const double c = std::sin(rot - sy) / std::cos(sy);
  const double d = -std::sin(rot - sy) * std::tan(sx) / std::cos(sy) + std::cos(rot);
  std::array<double, 6> m = {d / scale, -b / scale, 0.0 / scale, -c / scale, a / scale, 0.0 / scale};
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return m;
}

// F_t.affine with NEAREST interpolation: each output pixel reads the input pixel the inverse matrix
// points at (torchvision's affine grid + grid_sample(align_corners=False)); pixels from outside the
// image take `fill` (byte values per channel, rounded like torchvision's cast back to uint8) or 0.
inline void affine_nearest(Tensor<float>& img, const std::array<double, 6>& matrix,
                           const std::optional<std::vector<float>>& fill = std::nullopt) {
  detail::check_image(img, "affine");
  const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2);
  std::vector<float> fv(static_cast<size_t>(C), 0.0f);
  if (fill) {
    XFER_CHECK(fill->size() == 1 || static_cast<int64_t>(fill->size()) == C, "affine: ", fill->size(),
               " fill values for an image with ", C, " channels");
    for (int64_t c = 0; c < C; ++c) fv[static_cast<size_t>(c)] = std::nearbyint((*fill)[fill->size() == 1 ? 0 : static_cast<size_t>(c)]);
  }
  // theta in float32, rescaled by (w/2, h/2) as in _gen_affine_grid
  const float hw = 0.5f * static_cast<float>(W), hh = 0.5f * static_cast<float>(H);
  const float r00 = static_cast<float>(matrix[0]) / hw, r10 = static_cast<float>(matrix[1]) / hw,
              r20 = static_cast<float>(matrix[2]) / hw;
  const float r01 = static_cast<float>(matrix[3]) / hh, r11 = static_cast<float>(matrix[4]) / hh,
              r21 = static_cast<float>(matrix[5]) / hh;
  const float sw = static_cast<float>(W) / 2, sh = static_cast<float>(H) / 2;
  Tensor<float> out({C, H, W});
  for (int64_t y = 0; y < H; ++y) {
    const float by = detail::linspace_at(-static_cast<float>(H) * 0.5f + 0.5f, static_cast<float>(H) * 0.5f + 0.5f - 1, H, y);
    for (int64_t x = 0; x < W; ++x) {
      const float bx = detail::linspace_at(-static_cast<float>(W) * 0.5f + 0.5f, static_cast<float>(W) * 0.5f + 0.5f - 1, W, x);
      // [bx, by, 1] @ rescaled theta, as torch's bmm computes it here: products rounded, summed in order
      const float sx0 = detail::mul(bx, r00) + detail::mul(by, r10), sy0 = detail::mul(bx, r01) + detail::mul(by, r11);
      const float gx = sx0 + r20, gy = sy0 + r21;
      // grid_sample's unnormalize for align_corners=False: (g + 1) * size / 2 - 0.5, then round half to even
      const float ix = detail::mul(gx + 1.0f, sw) - 0.5f, iy = detail::mul(gy + 1.0f, sh) - 0.5f;
      const int64_t sx = static_cast<int64_t>(std::nearbyint(ix)), sy = static_cast<int64_t>(std::nearbyint(iy));
      const bool inside = sx >= 0 && sx < W && sy >= 0 && sy < H;
      for (int64_t c = 0; c < C; ++c)
        out.data()[(c * H + y) * W + x] = inside ? img.data()[(c * H + sy) * W + sx] : fv[static_cast<size_t>(c)];
    }
  }
  img = std::move(out);
}

// The AutoAugment geometric operations, as torchvision's _apply_op calls F.affine / F.rotate.
inline void shear_x(Tensor<float>& img, double magnitude, const std::optional<std::vector<float>>& fill = std::nullopt) {
  detail::check_image(img, "shear_x");
  const double cx = -0.5 * static_cast<double>(img.dim(2)), cy = -0.5 * static_cast<double>(img.dim(1));  // center=[0, 0]
  affine_nearest(img, inverse_affine_matrix({cx, cy}, 0.0, {0, 0}, 1.0, {std::atan(magnitude) * (180.0 / M_PI), 0.0}), fill);
}
inline void shear_y(Tensor<float>& img, double magnitude, const std::optional<std::vector<float>>& fill = std::nullopt) {
  detail::check_image(img, "shear_y");
  const double cx = -0.5 * static_cast<double>(img.dim(2)), cy = -0.5 * static_cast<double>(img.dim(1));
  affine_nearest(img, inverse_affine_matrix({cx, cy}, 0.0, {0, 0}, 1.0, {0.0, std::atan(magnitude) * (180.0 / M_PI)}), fill);
}
// Translations by whole pixels (torchvision truncates the magnitude with int()).
inline void translate_x(Tensor<float>& img, double pixels, const std::optional<std::vector<float>>& fill = std::nullopt) {
  affine_nearest(img, inverse_affine_matrix({0, 0}, 0.0, {std::trunc(pixels), 0}, 1.0, {0, 0}), fill);
}
inline void translate_y(Tensor<float>& img, double pixels, const std::optional<std::vector<float>>& fill = std::nullopt) {
  affine_nearest(img, inverse_affine_matrix({0, 0}, 0.0, {0, std::trunc(pixels)}, 1.0, {0, 0}), fill);
}
// Counter-clockwise by `degrees` about the centre (F.rotate, expand=False).
inline void rotate(Tensor<float>& img, double degrees, const std::optional<std::vector<float>>& fill = std::nullopt) {
  affine_nearest(img, inverse_affine_matrix({0, 0}, -degrees, {0, 0}, 1.0, {0, 0}), fill);
}

// rgb_to_grayscale on uint8: (0.2989 r + 0.587 g + 0.114 b) truncated to a byte.
inline std::vector<float> grayscale_u8(const Tensor<float>& img) {
  const int64_t HW = img.dim(1) * img.dim(2);
  std::vector<float> l(static_cast<size_t>(HW));
  const float *r = img.data(), *g = r + HW, *b = g + HW;
  for (int64_t i = 0; i < HW; ++i)
    l[static_cast<size_t>(i)] = std::trunc(detail::mul(0.2989f, r[i]) + detail::mul(0.587f, g[i]) + detail::mul(0.114f, b[i]));
  return l;
}

inline void adjust_brightness(Tensor<float>& img, double factor) {
  detail::check_image(img, "adjust_brightness");
  XFER_CHECK(factor >= 0, "adjust_brightness: factor must be >= 0, got ", factor);
  const float r = static_cast<float>(factor), q = static_cast<float>(1.0 - factor);
  for (float& v : img) v = detail::blend_u8(v, 0.0f, r, q);
}

inline void adjust_saturation(Tensor<float>& img, double factor) {
  detail::check_image(img, "adjust_saturation");
  XFER_CHECK(factor >= 0, "adjust_saturation: factor must be >= 0, got ", factor);
  if (img.dim(0) == 1) return;
  const auto l = grayscale_u8(img);
  const float r = static_cast<float>(factor), q = static_cast<float>(1.0 - factor);
  const int64_t HW = static_cast<int64_t>(l.size());
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < HW; ++i) {
      float& v = img.data()[c * HW + i];
      v = detail::blend_u8(v, l[static_cast<size_t>(i)], r, q);
    }
}

inline void adjust_contrast(Tensor<float>& img, double factor) {
  detail::check_image(img, "adjust_contrast");
  XFER_CHECK(factor >= 0, "adjust_contrast: factor must be >= 0, got ", factor);
  double sum = 0;  // sums of byte values are exact (torch's float32 sum is exact below 2^24 too)
  int64_t n = 0;
  if (img.dim(0) == 3) {
    for (float v : grayscale_u8(img)) sum += v, ++n;
  } else {
    for (float v : img) sum += v, ++n;
  }
  const float mean = static_cast<float>(sum) / static_cast<float>(n);
  const float r = static_cast<float>(factor), q = static_cast<float>(1.0 - factor);
  for (float& v : img) v = detail::blend_u8(v, mean, r, q);
}

// Blend with the image smoothed by [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (border pixels keep their value).
inline void adjust_sharpness(Tensor<float>& img, double factor) {
  detail::check_image(img, "adjust_sharpness");
  XFER_CHECK(factor >= 0, "adjust_sharpness: factor must be >= 0, got ", factor);
  const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2);
  if (H <= 2 || W <= 2) return;
  const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
  Tensor<float> degenerate = img;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 1; y + 1 < H; ++y)
      for (int64_t x = 1; x + 1 < W; ++x) {
        const float* p = img.data() + (c * H + y) * W + x;
        float s = 0;
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) s += p[dy * W + dx] * (dy == 0 && dx == 0 ? k5 : k1);
        // The exact value is a multiple of 1/13, never within 1/26 of a .5: rounding is order-proof.
        degenerate.data()[(c * H + y) * W + x] = std::nearbyint(s);
      }
  const float r = static_cast<float>(factor), q = static_cast<float>(1.0 - factor);
  for (int64_t i = 0; i < img.numel(); ++i) img[i] = detail::blend_u8(img[i], degenerate[i], r, q);
}

// Keeps the top `bits` bits of every byte.
inline void posterize(Tensor<float>& img, int bits) {
  detail::check_image(img, "posterize");
  XFER_CHECK(bits >= 0 && bits <= 8, "posterize: bits must be in [0, 8], got ", bits);
  const int mask = bits == 0 ? 0 : (0xFF << (8 - bits)) & 0xFF;
  for (float& v : img) v = static_cast<float>(static_cast<int>(v) & mask);
}

// Inverts every byte >= threshold.
inline void solarize(Tensor<float>& img, double threshold) {
  detail::check_image(img, "solarize");
  XFER_CHECK(threshold <= 255, "solarize: threshold must be <= 255 for a byte image, got ", threshold);
  const float t = static_cast<float>(threshold);
  for (float& v : img) v = v >= t ? 255.0f - v : v;
}

// Stretches every channel to the full 0..255 range (a constant channel is left as it is).
inline void autocontrast(Tensor<float>& img) {
  detail::check_image(img, "autocontrast");
  const int64_t C = img.dim(0), HW = img.dim(1) * img.dim(2);
  for (int64_t c = 0; c < C; ++c) {
    float* p = img.data() + c * HW;
    float lo = *std::min_element(p, p + HW), hi = *std::max_element(p, p + HW);
    float scale = detail::mul(1.0f / (hi - lo), 255.0f);  // torch: bound / t is t.reciprocal() * bound
    if (!std::isfinite(scale)) lo = 0, scale = 1;
    for (int64_t i = 0; i < HW; ++i) p[i] = std::trunc(std::clamp((p[i] - lo) * scale, 0.0f, 255.0f));
  }
}

// Histogram equalisation per channel (torchvision's _scale_channel, integer arithmetic).
inline void equalize(Tensor<float>& img) {
  detail::check_image(img, "equalize");
  const int64_t C = img.dim(0), HW = img.dim(1) * img.dim(2);
  for (int64_t c = 0; c < C; ++c) {
    float* p = img.data() + c * HW;
    std::array<int64_t, 256> hist{};
    for (int64_t i = 0; i < HW; ++i) ++hist[static_cast<size_t>(p[i])];
    int64_t last_nonzero = 0, nonzero_sum = 0;
    for (size_t b = 0; b < 256; ++b)
      if (hist[b] != 0) nonzero_sum += hist[b], last_nonzero = hist[b];
    const int64_t step = (nonzero_sum - last_nonzero) / 255;  // sum of all non-zero bins but the last
    if (step == 0) continue;
    std::array<float, 256> lut{};
    int64_t cum = 0;
    for (size_t b = 0; b < 256; ++b) {
      // lut[b] = (cumsum[b - 1] + step / 2) / step, clamped to 255; lut[0] = 0
      lut[b] = static_cast<float>(std::min<int64_t>(255, (cum + step / 2) / step));
      cum += hist[b];
    }
    for (int64_t i = 0; i < HW; ++i) p[i] = lut[static_cast<size_t>(p[i])];
  }
}

}  // namespace xfer::data::augment
