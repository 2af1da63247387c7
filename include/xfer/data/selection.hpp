// Data selection shared by pretrain, finetune and predict: a held-out split decided by each file's
// name (so every program, whatever classes it loads, holds out the same images) and a seeded,
// stratified `labels_per_class` subset.
// The one thing to know: name_split puts `class/file` in validation iff a seeded hash of that
// relative path falls below the fraction — independent of which other classes or files exist, so
// a pretraining run that excludes the split never sees an image a fine-tune validates on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/data/image_folder.hpp"
#include "xfer/data/split.hpp"

namespace xfer::data {

namespace detail {
inline uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace detail

// Whether the file at `relative` ("class/name.jpg", '/'-separated) is held out for validation.
inline bool in_holdout(const std::string& relative, double val_fraction, uint64_t seed) {
  const uint64_t h = splitmix64(detail::fnv1a(relative) ^ splitmix64(seed ^ 0x7f4a7c159e3779b9ull));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < val_fraction;
}

// Train / validation indices of an ImageFolder by file name (both sorted).
inline SplitIndices name_split(const ImageFolder& ds, double val_fraction, uint64_t seed) {
  XFER_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, "name_split: val_fraction must be in [0, 1), got ", val_fraction);
  SplitIndices s;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const std::string rel = ds.path(i).lexically_relative(ds.root()).generic_string();
    (in_holdout(rel, val_fraction, seed) ? s.val : s.train).push_back(i);
  }
  XFER_CHECK(!s.train.empty(), "name_split: val_fraction ", val_fraction, " of ", ds.size(), " images in ",
             ds.root().string(), " leaves no training images");
  return s;
}

// n indices per class out of `indices` (seeded, stratified, sorted). A class with fewer than n
// candidates is an xfer::Error naming it.
inline std::vector<int64_t> labels_per_class(const Dataset& ds, const std::vector<int64_t>& indices, int64_t n,
                                             uint64_t seed) {
  XFER_CHECK(n > 0, "labels per class must be positive, got ", n);
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(ds.num_classes()));
  for (int64_t i : indices) by_class.at(static_cast<size_t>(ds.label(i))).push_back(i);
  Rng rng(splitmix64(seed ^ 0x6c62272e07bb0142ull));
  std::vector<int64_t> out;
  for (size_t c = 0; c < by_class.size(); ++c) {
    auto& idx = by_class[c];
    XFER_CHECK(static_cast<int64_t>(idx.size()) >= n, "--labels-per-class ", n, ": class '", ds.class_names()[c],
               "' has only ", idx.size(), " training image(s)");
    detail::shuffle(idx, rng);
    out.insert(out.end(), idx.begin(), idx.begin() + n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Splits "a,b,c" into names (empty pieces are an error).
inline std::vector<std::string> parse_class_list(const std::string& csv) {
  std::vector<std::string> out;
  if (csv.empty()) return out;
  size_t start = 0;
  while (true) {
    const size_t comma = csv.find(',', start);
    std::string name = csv.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    XFER_CHECK(!name.empty(), "--classes '", csv, "': empty class name");
    out.push_back(std::move(name));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// What every program does with --data/--classes/--labels-per-class: load the chosen class folders,
// split off the held-out images by name, and keep n labelled training images per class (0 = all).
struct SelectOptions {
  std::vector<std::string> classes = {};
  int64_t labels_per_class = 0;
  double val_fraction = 0.1;
  uint64_t split_seed = 0;  // the held-out split (keep it fixed across pretrain / finetune)
  uint64_t seed = 0;        // which labelled images are kept
  int64_t load_height = 0, load_width = 0;
};

struct Selection {
  std::unique_ptr<ImageFolder> folder;
  std::vector<int64_t> train, val;  // indices into *folder
};

inline Selection select_images(const std::filesystem::path& root, const SelectOptions& o) {
  Selection s;
  s.folder = std::make_unique<ImageFolder>(
      root, ImageFolderOptions{.height = o.load_height, .width = o.load_width, .classes = o.classes});
  auto split = name_split(*s.folder, o.val_fraction, o.split_seed);
  s.train = o.labels_per_class > 0 ? labels_per_class(*s.folder, split.train, o.labels_per_class, o.seed)
                                   : std::move(split.train);
  s.val = std::move(split.val);
  return s;
}

}  // namespace xfer::data
