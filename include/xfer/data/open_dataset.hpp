// open_dataset: one entry point for a `--data DIR` flag — a CIFAR-10 binary directory (or a single
// .bin file) or an ImageFolder root, detected from what the path holds.
// The one thing to know: a missing or empty path is an xfer::Error that says which layouts are
// accepted and how to get CIFAR-10, so programs can print it as is.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/data/cifar10.hpp"
#include "xfer/data/image_folder.hpp"

namespace xfer::data {

struct OpenOptions {
  bool train = true;              // which CIFAR-10 split a binary directory provides
  int64_t height = 0, width = 0;  // ImageFolder: resize on load (0 keeps sizes)
  bool skip_bad_images = false;   // ImageFolder: leave undecodable files out with a warning
  std::vector<std::string> classes = {};  // ImageFolder: only these class folders (empty = all)
};

inline std::string cifar10_download_hint() {
  return "get CIFAR-10 with: curl -LO https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz && "
         "tar xzf cifar-10-binary.tar.gz (then pass DIR=cifar-10-batches-bin), or use an ImageFolder DIR/<class>/<image>";
}

// True when `path` looks like CIFAR-10 binaries (a .bin file, or a directory with the batch files).
inline bool is_cifar10_path(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(path)) return path.extension() == ".bin";
  return Cifar10::is_cifar10_dir(path);
}

inline std::unique_ptr<InMemoryDataset> open_dataset(const std::filesystem::path& path, OpenOptions opt = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  XFER_CHECK(fs::exists(path, ec), "data: ", path.string(), " does not exist; ", cifar10_download_hint());
  if (is_cifar10_path(path)) {
    XFER_CHECK(opt.classes.empty(), "data: ", path.string(),
               " is CIFAR-10 binaries; selecting classes needs an ImageFolder root");
    if (fs::is_regular_file(path)) return std::make_unique<Cifar10>(path);
    return std::make_unique<Cifar10>(path, Cifar10Options{.train = opt.train});
  }
  XFER_CHECK(fs::is_directory(path), "data: ", path.string(),
             " is neither a directory nor a CIFAR-10 .bin file; ", cifar10_download_hint());
  XFER_CHECK(!fs::is_empty(path, ec), "data: ", path.string(),
             " is empty: expected CIFAR-10 binaries (data_batch_1.bin ... data_batch_5.bin, test_batch.bin) or an "
             "ImageFolder (", path.string(), "/<class>/<image>); ", cifar10_download_hint());
  return std::make_unique<ImageFolder>(
      path, ImageFolderOptions{.height = opt.height, .width = opt.width, .skip_bad_images = opt.skip_bad_images,
                               .classes = opt.classes});
}

}  // namespace xfer::data
