// data::functional: the deterministic image operations behind the transforms, on float CHW tensors
// with values in [0, 1] — torchvision.transforms.functional's *tensor* path, operation by operation.
// The one thing to know: images are augmented as float tensors (to_tensor comes first), so there is
// no uint8 quantisation between steps; results match torchvision on float tensors to float rounding:
// exact for to_tensor, pad, crop, center_crop, hflip, normalize and rotate; within 1e-6 for the colour
// operations and resize (tests/unit-data-transforms.cpp against tests/fixtures/gen_transforms.py).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/image.hpp"

namespace xfer::data::functional {

namespace detail {
inline void check_chw(const Tensor<float>& img, const char* what) {
  XFER_CHECK(img.ndim() == 3, what, ": expected a CHW image tensor, got shape ", shape_str(img.shape()));
}
inline void check_rgb(const Tensor<float>& img, const char* what) {
  check_chw(img, what);
  XFER_CHECK(img.dim(0) == 3, what, ": expected 3 (RGB) channels, got shape ", shape_str(img.shape()));
}
}  // namespace detail

// uint8 HWC -> float CHW in [0, 1] (torchvision's ToTensor: x / 255 in float).
inline void to_tensor(ImageView img, Tensor<float>& out) {
  XFER_CHECK(img.numel() > 0 && img.pixels, "to_tensor: empty image ", img.height, "x", img.width, "x", img.channels);
  const int64_t C = img.channels, H = img.height, W = img.width;
  out.resize({C, H, W});
  float* o = out.data();
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c) o[(c * H + y) * W + x] = static_cast<float>(img.pixels[(y * W + x) * C + c]) / 255.0f;
}
inline Tensor<float> to_tensor(ImageView img) {
  Tensor<float> t;
  to_tensor(img, t);
  return t;
}

// (x - mean[c]) / std[c] per channel, in float like torchvision's sub_().div_().
inline void normalize(Tensor<float>& img, const std::vector<float>& mean, const std::vector<float>& std) {
  detail::check_chw(img, "normalize");
  const int64_t C = img.dim(0), HW = img.dim(1) * img.dim(2);
  XFER_CHECK(static_cast<int64_t>(mean.size()) == C && static_cast<int64_t>(std.size()) == C, "normalize: ",
             mean.size(), " means and ", std.size(), " stds for an image with ", C, " channels");
  for (int64_t c = 0; c < C; ++c) {
    XFER_CHECK(std[static_cast<size_t>(c)] != 0.0f, "normalize: std of channel ", c, " is 0");
    float* p = img.data() + c * HW;
    const float m = mean[static_cast<size_t>(c)], s = std[static_cast<size_t>(c)];
    for (int64_t i = 0; i < HW; ++i) p[i] = (p[i] - m) / s;
  }
}

// Constant padding (left, top, right, bottom), like F.pad(img, [l, t, r, b], fill).
inline Tensor<float> pad(const Tensor<float>& img, int64_t left, int64_t top, int64_t right, int64_t bottom,
                         float fill = 0.0f) {
  detail::check_chw(img, "pad");
  XFER_CHECK(left >= 0 && top >= 0 && right >= 0 && bottom >= 0, "pad: negative padding ", left, ",", top, ",", right,
             ",", bottom);
  const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2), OH = H + top + bottom, OW = W + left + right;
  Tensor<float> out({C, OH, OW}, fill);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H; ++y)
      std::copy_n(img.data() + (c * H + y) * W, W, out.data() + (c * OH + y + top) * OW + left);
  return out;
}

// The window [top, top + height) x [left, left + width); parts outside the image read as 0 (torchvision's crop).
inline Tensor<float> crop(const Tensor<float>& img, int64_t top, int64_t left, int64_t height, int64_t width) {
  detail::check_chw(img, "crop");
  XFER_CHECK(height > 0 && width > 0, "crop: size must be positive, got ", height, "x", width);
  const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2);
  Tensor<float> out({C, height, width}, 0.0f);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < height; ++y) {
      const int64_t sy = top + y;
      if (sy < 0 || sy >= H) continue;
      for (int64_t x = 0; x < width; ++x) {
        const int64_t sx = left + x;
        if (sx >= 0 && sx < W) out.data()[(c * height + y) * width + x] = img.data()[(c * H + sy) * W + sx];
      }
    }
  return out;
}

// Python's round(): half to even (torchvision's center_crop uses it for the offsets).
inline int64_t round_half_even(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

// F.center_crop: pads with zeros when the crop is larger than the image, then takes the centred window.
inline Tensor<float> center_crop(const Tensor<float>& img, int64_t height, int64_t width) {
  detail::check_chw(img, "center_crop");
  XFER_CHECK(height > 0 && width > 0, "center_crop: size must be positive, got ", height, "x", width);
  int64_t H = img.dim(1), W = img.dim(2);
  if (height > H || width > W) {
    const int64_t l = width > W ? (width - W) / 2 : 0, t = height > H ? (height - H) / 2 : 0;
    const int64_t r = width > W ? (width - W + 1) / 2 : 0, b = height > H ? (height - H + 1) / 2 : 0;
    Tensor<float> padded = pad(img, l, t, r, b, 0.0f);
    if (padded.dim(1) == height && padded.dim(2) == width) return padded;
    return center_crop(padded, height, width);
  }
  const int64_t top = round_half_even((H - height) / 2.0), left = round_half_even((W - width) / 2.0);
  return crop(img, top, left, height, width);
}

inline void hflip(Tensor<float>& img) {
  detail::check_chw(img, "hflip");
  const int64_t rows = img.dim(0) * img.dim(1), W = img.dim(2);
  for (int64_t r = 0; r < rows; ++r) std::reverse(img.data() + r * W, img.data() + (r + 1) * W);
}

inline void vflip(Tensor<float>& img) {
  detail::check_chw(img, "vflip");
  const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < H / 2; ++y)
      std::swap_ranges(img.data() + (c * H + y) * W, img.data() + (c * H + y + 1) * W, img.data() + (c * H + H - 1 - y) * W);
}

// torchvision's output size for Resize(size): one number matches the shorter side (keeping the
// aspect ratio, longer side truncated like int()); two numbers are (height, width).
inline std::array<int64_t, 2> resized_size(int64_t h, int64_t w, const std::vector<int64_t>& size) {
  XFER_CHECK(size.size() == 1 || size.size() == 2, "resize: size must have 1 or 2 elements, got ", size.size());
  for (int64_t s : size) XFER_CHECK(s > 0, "resize: size must be positive, got ", s);
  if (size.size() == 2) return {size[0], size[1]};
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const int64_t new_short = size[0], new_long = static_cast<int64_t>(static_cast<double>(new_short) * longer / shorter);
  return w <= h ? std::array<int64_t, 2>{new_long, new_short} : std::array<int64_t, 2>{new_short, new_long};
}

// Bilinear F.resize on a float tensor (antialias as torch's _upsample_bilinear2d_aa).
inline Tensor<float> resize(const Tensor<float>& img, int64_t height, int64_t width, bool antialias = true) {
  detail::check_chw(img, "resize");
  XFER_CHECK(height > 0 && width > 0, "resize: target size must be positive, got ", height, "x", width);
  if (img.dim(1) == height && img.dim(2) == width) return img;
  Tensor<float> out({img.dim(0), height, width});
  xfer::data::detail::resample_planes(img.data(), img.dim(0), img.dim(1), img.dim(2), out.data(), height, width,
                                      antialias);
  return out;
}

// F.resized_crop: crop the window, then resize it to out_height x out_width.
inline Tensor<float> resized_crop(const Tensor<float>& img, int64_t top, int64_t left, int64_t height, int64_t width,
                                  int64_t out_height, int64_t out_width, bool antialias = true) {
  return resize(crop(img, top, left, height, width), out_height, out_width, antialias);
}

// Luma as torchvision: 0.2989 R + 0.587 G + 0.114 B (one plane H x W).
inline std::vector<float> rgb_to_grayscale(const Tensor<float>& img) {
  detail::check_rgb(img, "rgb_to_grayscale");
  const int64_t HW = img.dim(1) * img.dim(2);
  const float *r = img.data(), *g = r + HW, *b = g + HW;
  std::vector<float> l(static_cast<size_t>(HW));
  for (int64_t i = 0; i < HW; ++i) l[static_cast<size_t>(i)] = 0.2989f * r[i] + 0.587f * g[i] + 0.114f * b[i];
  return l;
}

namespace detail {
// torchvision's _blend: ratio * a + (1 - ratio) * b, clamped to [0, 1].
inline float blend(float a, float b, double ratio) {
  const float r = static_cast<float>(ratio), q = static_cast<float>(1.0 - ratio);
  return std::clamp(r * a + q * b, 0.0f, 1.0f);
}
}  // namespace detail

inline void adjust_brightness(Tensor<float>& img, double factor) {
  detail::check_chw(img, "adjust_brightness");
  XFER_CHECK(factor >= 0, "adjust_brightness: factor must be >= 0, got ", factor);
  for (float& v : img) v = detail::blend(v, 0.0f, factor);
}

inline void adjust_contrast(Tensor<float>& img, double factor) {
  detail::check_rgb(img, "adjust_contrast");
  XFER_CHECK(factor >= 0, "adjust_contrast: factor must be >= 0, got ", factor);
  const auto l = rgb_to_grayscale(img);
  double sum = 0;
  for (float v : l) sum += v;
  const float mean = static_cast<float>(sum / static_cast<double>(l.size()));
  for (float& v : img) v = detail::blend(v, mean, factor);
}

inline void adjust_saturation(Tensor<float>& img, double factor) {
  detail::check_rgb(img, "adjust_saturation");
  XFER_CHECK(factor >= 0, "adjust_saturation: factor must be >= 0, got ", factor);
  const auto l = rgb_to_grayscale(img);
  const int64_t HW = static_cast<int64_t>(l.size());
  for (int64_t c = 0; c < 3; ++c) {
    float* p = img.data() + c * HW;
    for (int64_t i = 0; i < HW; ++i) p[i] = detail::blend(p[i], l[static_cast<size_t>(i)], factor);
  }
}

// Rotates the hue by `factor` turns (in [-0.5, 0.5]) through HSV, with torchvision's _rgb2hsv/_hsv2rgb.
inline void adjust_hue(Tensor<float>& img, double factor) {
  detail::check_rgb(img, "adjust_hue");
  XFER_CHECK(factor >= -0.5 && factor <= 0.5, "adjust_hue: factor must be in [-0.5, 0.5], got ", factor);
  const int64_t HW = img.dim(1) * img.dim(2);
  float *R = img.data(), *G = R + HW, *B = G + HW;
  const float hf = static_cast<float>(factor);
  for (int64_t i = 0; i < HW; ++i) {
    const float r = R[i], g = G[i], b = B[i];
    const float maxc = std::max({r, g, b}), minc = std::min({r, g, b});
    const bool eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.0f : maxc);
    const float div = eqc ? 1.0f : cr;
    const float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    float h;
    if (maxc == r) h = bc - gc;
    else if (maxc == g) h = 2.0f + rc - bc;
    else h = 4.0f + gc - rc;
    h = std::fmod(h / 6.0f + 1.0f, 1.0f);
    // (h + factor) % 1.0 with Python's sign convention
    h = h + hf;
    h = h - std::floor(h / 1.0f) * 1.0f;
    const float v = maxc;
    const float fi = std::floor(h * 6.0f);
    const float f = h * 6.0f - fi;
    int i6 = static_cast<int>(fi) % 6;
    if (i6 < 0) i6 += 6;
    const float p = std::clamp(v * (1.0f - s), 0.0f, 1.0f);
    const float q = std::clamp(v * (1.0f - s * f), 0.0f, 1.0f);
    const float t = std::clamp(v * (1.0f - s * (1.0f - f)), 0.0f, 1.0f);
    static constexpr int kSel[3][6] = {{0, 1, 2, 2, 3, 0}, {3, 0, 0, 1, 2, 2}, {2, 2, 3, 0, 0, 1}};  // 0=v 1=q 2=p 3=t
    const float vals[4] = {v, q, p, t};
    R[i] = vals[kSel[0][i6]];
    G[i] = vals[kSel[1][i6]];
    B[i] = vals[kSel[2][i6]];
  }
}

// F.rotate(img, angle, NEAREST, expand=False, center=None, fill): counter-clockwise by `degrees`
// around the image centre, nearest neighbour, pixels from outside the image take `fill`.
inline Tensor<float> rotate(const Tensor<float>& img, double degrees, float fill = 0.0f) {
  detail::check_chw(img, "rotate");
  const int64_t C = img.dim(0), H = img.dim(1), W = img.dim(2);
  // torchvision's inverse affine matrix for rotate(-angle) about the centre, rescaled to grid units.
  const double rot = -degrees * (M_PI / 180.0);  // math.radians(-angle)
  const float m0 = static_cast<float>(std::cos(rot)), m1 = static_cast<float>(std::sin(rot));
  const float m3 = static_cast<float>(-std::sin(rot)), m4 = static_cast<float>(std::cos(rot));
  const float hw = 0.5f * static_cast<float>(W), hh = 0.5f * static_cast<float>(H);
  const float t00 = m0 / hw, t10 = m1 / hw, t01 = m3 / hh, t11 = m4 / hh;  // rescaled_theta (bias is 0)
  Tensor<float> out({C, H, W}, fill);
  // base grid: torch.linspace(-w/2 + 0.5, w/2 - 0.5, w), computed like linspace (start + i * step, mirrored half)
  auto lin = [](int64_t n, int64_t i) {
    const float start = -static_cast<float>(n) * 0.5f + 0.5f, end = static_cast<float>(n) * 0.5f + 0.5f - 1.0f;
    if (n == 1) return start;
    const float step = (end - start) / static_cast<float>(n - 1);
    const int64_t halfway = n / 2;
    return i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(n - 1 - i);
  };
  for (int64_t y = 0; y < H; ++y) {
    const float by = lin(H, y);
    for (int64_t x = 0; x < W; ++x) {
      const float bx = lin(W, x);
      const float gx = bx * t00 + by * t10, gy = bx * t01 + by * t11;
      // grid_sample, align_corners=False, nearest (round half to even)
      const float ix = ((gx + 1.0f) * static_cast<float>(W) - 1.0f) / 2.0f;
      const float iy = ((gy + 1.0f) * static_cast<float>(H) - 1.0f) / 2.0f;
      const int64_t sx = static_cast<int64_t>(std::nearbyint(ix)), sy = static_cast<int64_t>(std::nearbyint(iy));
      if (sx < 0 || sx >= W || sy < 0 || sy >= H) continue;
      for (int64_t c = 0; c < C; ++c) out.data()[(c * H + y) * W + x] = img.data()[(c * H + sy) * W + sx];
    }
  }
  return out;
}

}  // namespace xfer::data::functional
