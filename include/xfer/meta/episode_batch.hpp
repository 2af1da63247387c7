// Episode batches from an image dataset: per-channel normalisation statistics measured on the data,
// a check that all images share one size (episodes stack them into one tensor), and the normalised
// NCHW float batch of a list of samples (an episode's support or query set, a pretraining batch).
//
// The one thing to know: images are not resized here; a dataset of mixed sizes is an error naming
// two differing samples (resize when loading: data::ImageFolderOptions{.height, .width}).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/dataset.hpp"

namespace xfer::meta {

struct Normalization {
  std::vector<float> mean, std;
};

// Throws unless every sample has the size and channel count of the first.
inline void check_uniform_size(const data::Dataset& ds, const std::string& what = "dataset") {
  XFER_CHECK(ds.size() > 0, what, " has no images");
  const auto first = ds.image(0);
  for (int64_t i = 1; i < ds.size(); ++i) {
    const auto img = ds.image(i);
    XFER_CHECK(img.height == first.height && img.width == first.width && img.channels == first.channels, what,
               ": images have different sizes (sample 0 is ", first.height, "x", first.width, "x", first.channels,
               ", sample ", i, " is ", img.height, "x", img.width, "x", img.channels,
               "); episodes need one size: resize the images when loading (--image-size in the examples)");
  }
}

// Per-channel mean and standard deviation of pixel values in [0, 1] over the given samples (all if empty).
inline Normalization channel_statistics(const data::Dataset& ds, const std::vector<int64_t>& indices = {}) {
  const int64_t n = indices.empty() ? ds.size() : static_cast<int64_t>(indices.size());
  XFER_CHECK(n > 0, "channel_statistics: no samples");
  const int64_t C = ds.image(indices.empty() ? 0 : indices[0]).channels;
  std::vector<double> s(static_cast<size_t>(C), 0.0), ss(static_cast<size_t>(C), 0.0);
  double count = 0;
  for (int64_t k = 0; k < n; ++k) {
    const auto img = ds.image(indices.empty() ? k : indices[static_cast<size_t>(k)]);
    XFER_CHECK(img.channels == C, "channel_statistics: sample ", k, " has ", img.channels, " channels, expected ", C);
    const int64_t P = img.height * img.width;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t c = 0; c < C; ++c) {
        const double v = img.pixels[p * C + c] / 255.0;
        s[static_cast<size_t>(c)] += v;
        ss[static_cast<size_t>(c)] += v * v;
      }
    count += static_cast<double>(P);
  }
  Normalization out;
  for (int64_t c = 0; c < C; ++c) {
    const double m = s[static_cast<size_t>(c)] / count;
    out.mean.push_back(static_cast<float>(m));
    out.std.push_back(static_cast<float>(std::sqrt(std::max(ss[static_cast<size_t>(c)] / count - m * m, 1e-12))));
  }
  return out;
}

// The samples as one normalised [n, C, H, W] float batch.
inline Tensor<float> make_batch(const data::Dataset& ds, const std::vector<int64_t>& indices, const Normalization& norm) {
  XFER_CHECK(!indices.empty(), "make_batch: no samples");
  const auto first = ds.image(indices[0]);
  const int64_t C = first.channels, H = first.height, W = first.width, P = H * W;
  XFER_CHECK(static_cast<int64_t>(norm.mean.size()) == C && static_cast<int64_t>(norm.std.size()) == C, "make_batch: ",
             norm.mean.size(), " means and ", norm.std.size(), " stds for images with ", C, " channels");
  Tensor<float> out({static_cast<int64_t>(indices.size()), C, H, W});
  for (size_t k = 0; k < indices.size(); ++k) {
    const auto img = ds.image(indices[k]);
    XFER_CHECK(img.height == H && img.width == W && img.channels == C, "make_batch: sample ", indices[k], " is ",
               img.height, "x", img.width, "x", img.channels, " but sample ", indices[0], " is ", H, "x", W, "x", C,
               "; resize the images when loading (--image-size in the examples)");
    float* o = out.data() + static_cast<int64_t>(k) * C * P;
    for (int64_t c = 0; c < C; ++c) {
      const float m = norm.mean[static_cast<size_t>(c)], inv = 1.0f / norm.std[static_cast<size_t>(c)];
      for (int64_t p = 0; p < P; ++p) o[c * P + p] = (static_cast<float>(img.pixels[p * C + c]) / 255.0f - m) * inv;
    }
  }
  return out;
}

}  // namespace xfer::meta
