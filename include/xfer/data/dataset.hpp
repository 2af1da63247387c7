// Dataset: the interface every image dataset implements (size, image(i), label(i), class names),
// InMemoryDataset (all images packed in one uint8 buffer; CIFAR-10 and ImageFolder are ones) and
// Subset (a view through an index list, for train/validation splits).
// The one thing to know: image(i) returns a view into memory the dataset owns; const calls must be
// safe from several threads at once (the Loader prepares samples in parallel), and a Subset only
// refers to its parent, which must outlive it.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/image.hpp"

namespace xfer::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual ImageView image(int64_t i) const = 0;
  virtual int32_t label(int64_t i) const = 0;
  virtual const std::vector<std::string>& class_names() const = 0;
  int64_t num_classes() const { return static_cast<int64_t>(class_names().size()); }

 protected:
  void check_index(int64_t i, const char* who) const {
    XFER_CHECK(i >= 0 && i < size(), who, ": sample index ", i, " out of range [0, ", size(), ")");
  }
};

// Images of any sizes packed into one buffer, with labels in [0, class_names.size()).
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset() = default;
  explicit InMemoryDataset(std::vector<std::string> class_names) : names_(std::move(class_names)) {}

  // Builds a dataset from N images of h x w x c uint8 pixels in HWC order, back to back.
  static InMemoryDataset from_hwc(const uint8_t* pixels, int64_t n, int64_t h, int64_t w, int64_t c,
                                  const std::vector<int32_t>& labels, std::vector<std::string> class_names) {
    XFER_CHECK(static_cast<int64_t>(labels.size()) == n, "InMemoryDataset::from_hwc: ", labels.size(), " labels for ", n,
               " images");
    InMemoryDataset ds(std::move(class_names));
    ds.reserve(n, n * h * w * c);
    for (int64_t i = 0; i < n; ++i) ds.add(ImageView{h, w, c, pixels + i * h * w * c}, labels[static_cast<size_t>(i)]);
    return ds;
  }
  // Builds a dataset from an NCHW float tensor with values in [0, 1] (rounded to uint8, as stored).
  static InMemoryDataset from_tensor(const Tensor<float>& x, const std::vector<int32_t>& labels,
                                     std::vector<std::string> class_names) {
    check_rank(x, 4, "InMemoryDataset::from_tensor");
    const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    XFER_CHECK(static_cast<int64_t>(labels.size()) == N, "InMemoryDataset::from_tensor: ", labels.size(),
               " labels for ", N, " images");
    std::vector<uint8_t> hwc(static_cast<size_t>(x.numel()));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t xx = 0; xx < W; ++xx) {
            const float v = x.at(n, c, y, xx);
            XFER_CHECK(v >= 0.0f && v <= 1.0f, "InMemoryDataset::from_tensor: value ", v, " at [", n, ", ", c, ", ", y,
                       ", ", xx, "] is outside [0, 1]");
            hwc[static_cast<size_t>(((n * H + y) * W + xx) * C + c)] = static_cast<uint8_t>(std::nearbyint(v * 255.0f));
          }
    return from_hwc(hwc.data(), N, H, W, C, labels, std::move(class_names));
  }

  void reserve(int64_t images, int64_t bytes) {
    entries_.reserve(static_cast<size_t>(images));
    labels_.reserve(static_cast<size_t>(images));
    pixels_.reserve(static_cast<size_t>(bytes));
  }
  void add(ImageView img, int32_t label) {
    XFER_CHECK(img.height > 0 && img.width > 0 && img.channels > 0 && img.pixels, "InMemoryDataset::add: empty image ",
               img.height, "x", img.width, "x", img.channels);
    XFER_CHECK(label >= 0 && label < num_classes(), "InMemoryDataset::add: label ", label, " of image ", size(),
               " is outside [0, ", num_classes(), ")");
    entries_.push_back({static_cast<int64_t>(pixels_.size()), img.height, img.width, img.channels});
    pixels_.insert(pixels_.end(), img.pixels, img.pixels + img.numel());
    labels_.push_back(label);
  }

  int64_t size() const override { return static_cast<int64_t>(entries_.size()); }
  ImageView image(int64_t i) const override {
    check_index(i, "InMemoryDataset::image");
    const Entry& e = entries_[static_cast<size_t>(i)];
    return {e.h, e.w, e.c, pixels_.data() + e.offset};
  }
  int32_t label(int64_t i) const override {
    check_index(i, "InMemoryDataset::label");
    return labels_[static_cast<size_t>(i)];
  }
  const std::vector<std::string>& class_names() const override { return names_; }
  const std::vector<int32_t>& labels() const { return labels_; }
  int64_t bytes() const { return static_cast<int64_t>(pixels_.size()); }

 protected:
  void set_class_names(std::vector<std::string> names) { names_ = std::move(names); }

 private:
  struct Entry {
    int64_t offset, h, w, c;
  };
  std::vector<std::string> names_;
  std::vector<Entry> entries_;
  std::vector<int32_t> labels_;
  std::vector<uint8_t> pixels_;
};

// The samples base[indices[0]], base[indices[1]], ... (indices may repeat).
class Subset : public Dataset {
 public:
  Subset(const Dataset& base, std::vector<int64_t> indices) : base_(&base), indices_(std::move(indices)) {
    for (size_t k = 0; k < indices_.size(); ++k)
      XFER_CHECK(indices_[k] >= 0 && indices_[k] < base.size(), "Subset: index ", indices_[k], " (entry ", k,
                 ") is outside the dataset of ", base.size(), " samples");
  }
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  ImageView image(int64_t i) const override {
    check_index(i, "Subset::image");
    return base_->image(indices_[static_cast<size_t>(i)]);
  }
  int32_t label(int64_t i) const override {
    check_index(i, "Subset::label");
    return base_->label(indices_[static_cast<size_t>(i)]);
  }
  const std::vector<std::string>& class_names() const override { return base_->class_names(); }
  const std::vector<int64_t>& indices() const { return indices_; }
  const Dataset& base() const { return *base_; }
  // A Subset refers to its parent: a temporary one would dangle.
  template <class D>
    requires std::is_base_of_v<Dataset, D>
  Subset(D&&, std::vector<int64_t>) = delete;

 private:
  const Dataset* base_;
  std::vector<int64_t> indices_;
};

}  // namespace xfer::data
