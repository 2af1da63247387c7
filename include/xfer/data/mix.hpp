// MixUp and CutMix on a batch, as torchvision.transforms.v2 defines them: lambda ~ Beta(alpha,
// alpha), every sample is paired with the previous one in the batch (batch.roll(1, 0)), and the
// one-hot labels are mixed with the same weight. MixUp blends whole images; CutMix pastes a box of
// the partner image and corrects lambda to the area actually kept (the box is clipped at the borders).
//
// The one thing to know: the result is a soft target [N, classes]; train on it with
// nn::soft_cross_entropy(logits, targets). Apply after the batch is assembled (the loader's Batch).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/nn/loss.hpp"

namespace xfer::data {

// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 through Gamma(shape + 1) * U^(1 / shape)).
inline double sample_gamma(Rng& rng, double shape) {
  XFER_CHECK(std::isfinite(shape) && shape > 0, "sample_gamma: shape must be > 0, got ", shape);
  if (shape < 1) {
    double u;
    do u = rng.uniform(); while (u <= 0.0);
    return sample_gamma(rng, shape + 1) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = rng.normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = rng.uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (u > 0 && std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

// Beta(a, b) as Ga / (Ga + Gb).
inline double sample_beta(Rng& rng, double a, double b) {
  const double x = sample_gamma(rng, a), y = sample_gamma(rng, b);
  return x + y > 0 ? x / (x + y) : 0.5;
}

namespace detail {
inline void check_mix_batch(const Tensor<float>& batch, const nn::Labels& labels, int64_t classes, const char* what) {
  XFER_CHECK(batch.ndim() >= 2 && batch.dim(0) >= 1, what, ": expected a batch [N, ...], got shape ",
             shape_str(batch.shape()));
  XFER_CHECK(static_cast<int64_t>(labels.size()) == batch.dim(0), what, ": ", labels.size(), " labels for a batch of ",
             batch.dim(0));
  for (size_t i = 0; i < labels.size(); ++i)
    XFER_CHECK(labels[i] >= 0 && labels[i] < classes, what, ": label ", labels[i], " of sample ", i, " is outside [0, ",
               classes, ")");
}
inline void check_mix_options(double alpha, int64_t classes, const char* what) {
  XFER_CHECK(std::isfinite(alpha) && alpha > 0, what, ": alpha must be > 0, got ", alpha);
  XFER_CHECK(classes >= 1, what, ": num_classes is required (>= 1), got ", classes);
}
// lambda * onehot(y_i) + (1 - lambda) * onehot(y_{i-1}).
inline Tensor<float> mixed_targets(const nn::Labels& y, int64_t classes, double lambda) {
  const int64_t N = static_cast<int64_t>(y.size());
  Tensor<float> t({N, classes}, 0.0f);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t prev = (i + N - 1) % N;
    t[i * classes + y[static_cast<size_t>(i)]] += static_cast<float>(lambda);
    t[i * classes + y[static_cast<size_t>(prev)]] += static_cast<float>(1.0 - lambda);
  }
  return t;
}
}  // namespace detail

struct MixOptions {
  double alpha = 1.0;       // Beta(alpha, alpha)
  int64_t num_classes = 0;  // required
};

// MixUp: x_i = lambda * x_i + (1 - lambda) * x_{i-1}.
class MixUp {
 public:
  explicit MixUp(MixOptions o) : o_(o) { detail::check_mix_options(o.alpha, o.num_classes, "MixUp"); }
  double get_params(Rng& rng) const { return sample_beta(rng, o_.alpha, o_.alpha); }
  // Mixes `batch` in place and returns the soft targets.
  Tensor<float> apply_params(Tensor<float>& batch, const nn::Labels& labels, double lambda) const {
    detail::check_mix_batch(batch, labels, o_.num_classes, "MixUp");
    XFER_CHECK(lambda >= 0 && lambda <= 1, "MixUp: lambda must be in [0, 1], got ", lambda);
    const int64_t N = batch.dim(0), per = batch.numel() / N;
    const Tensor<float> orig = batch;
    const float l = static_cast<float>(lambda), q = static_cast<float>(1.0 - lambda);
    for (int64_t i = 0; i < N; ++i) {
      const float* a = orig.data() + i * per;
      const float* b = orig.data() + ((i + N - 1) % N) * per;
      float* o = batch.data() + i * per;
      for (int64_t k = 0; k < per; ++k) o[k] = q * b[k] + l * a[k];
    }
    return detail::mixed_targets(labels, o_.num_classes, lambda);
  }
  Tensor<float> operator()(Tensor<float>& batch, const nn::Labels& labels, Rng& rng) const {
    return apply_params(batch, labels, get_params(rng));
  }
  const MixOptions& options() const { return o_; }

 private:
  MixOptions o_;
};

// CutMix: a box centred at a uniform pixel with sides sqrt(1 - lambda) * (W, H) (clipped to the
// image) is copied from x_{i-1} into x_i; lambda becomes the fraction of x_i that is left.
class CutMix {
 public:
  struct Params {
    double lambda = 1.0;  // as drawn
    int64_t x1 = 0, y1 = 0, x2 = 0, y2 = 0;
    double lambda_adjusted = 1.0;  // 1 - box area / image area
  };
  explicit CutMix(MixOptions o) : o_(o) { detail::check_mix_options(o.alpha, o.num_classes, "CutMix"); }

  // torchvision v2's box: r = sqrt(1 - lambda) / 2, half sides int(r * W), int(r * H).
  static Params box_for(double lambda, int64_t cx, int64_t cy, int64_t height, int64_t width) {
    Params p;
    p.lambda = lambda;
    const double r = 0.5 * std::sqrt(1.0 - lambda);
    const auto rw = static_cast<int64_t>(r * static_cast<double>(width)), rh = static_cast<int64_t>(r * static_cast<double>(height));
    p.x1 = std::max<int64_t>(cx - rw, 0);
    p.y1 = std::max<int64_t>(cy - rh, 0);
    p.x2 = std::min<int64_t>(cx + rw, width);
    p.y2 = std::min<int64_t>(cy + rh, height);
    p.lambda_adjusted = 1.0 - static_cast<double>((p.x2 - p.x1) * (p.y2 - p.y1)) / static_cast<double>(width * height);
    return p;
  }
  Params get_params(int64_t height, int64_t width, Rng& rng) const {
    const double lambda = sample_beta(rng, o_.alpha, o_.alpha);
    const auto cx = static_cast<int64_t>(rng.below(static_cast<uint64_t>(width)));
    const auto cy = static_cast<int64_t>(rng.below(static_cast<uint64_t>(height)));
    return box_for(lambda, cx, cy, height, width);
  }
  Tensor<float> apply_params(Tensor<float>& batch, const nn::Labels& labels, const Params& p) const {
    detail::check_mix_batch(batch, labels, o_.num_classes, "CutMix");
    XFER_CHECK(batch.ndim() == 4, "CutMix: expected images [N, C, H, W], got shape ", shape_str(batch.shape()));
    const int64_t N = batch.dim(0), C = batch.dim(1), H = batch.dim(2), W = batch.dim(3);
    XFER_CHECK(0 <= p.x1 && p.x1 <= p.x2 && p.x2 <= W && 0 <= p.y1 && p.y1 <= p.y2 && p.y2 <= H, "CutMix: box [", p.x1,
               ", ", p.x2, ") x [", p.y1, ", ", p.y2, ") outside a ", H, "x", W, " image");
    const Tensor<float> orig = batch;
    for (int64_t i = 0; i < N; ++i) {
      const int64_t prev = (i + N - 1) % N;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = p.y1; y < p.y2; ++y) {
          const float* src = orig.data() + ((prev * C + c) * H + y) * W;
          std::copy(src + p.x1, src + p.x2, batch.data() + ((i * C + c) * H + y) * W + p.x1);
        }
    }
    return detail::mixed_targets(labels, o_.num_classes, p.lambda_adjusted);
  }
  Tensor<float> operator()(Tensor<float>& batch, const nn::Labels& labels, Rng& rng) const {
    XFER_CHECK(batch.ndim() == 4, "CutMix: expected images [N, C, H, W], got shape ", shape_str(batch.shape()));
    return apply_params(batch, labels, get_params(batch.dim(2), batch.dim(3), rng));
  }
  const MixOptions& options() const { return o_; }

 private:
  MixOptions o_;
};

}  // namespace xfer::data
