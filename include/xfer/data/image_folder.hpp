// ImageFolder: torchvision's root/<class>/<image> layout. Classes are the sorted sub-folder names,
// images are every JPEG/PNG/BMP/TGA/GIF/PNM file below a class folder (recursively, sorted paths),
// decoded in parallel (OpenMP) with stb_image to 3-channel uint8 and, if asked, resized on load.
// The one thing to know: bad input is an xfer::Error naming the path — an empty or missing root, a
// class folder without images, an image that does not decode — unless skip_bad_images is set, in
// which case undecodable files are left out with one warning on stderr (and listed in skipped()).
// Entries whose names start with '.' are ignored.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/image.hpp"

namespace xfer::data {

struct ImageFolderOptions {
  int64_t height = 0, width = 0;   // resize every image to height x width (bilinear, antialiased); 0 keeps sizes
  bool skip_bad_images = false;    // leave undecodable files out (with a warning) instead of throwing
  bool warn = true;                // print the skip warning on stderr
  // Load only these class folders (labels follow the sorted names, like a folder holding just
  // them); empty = all. A name the root lacks is an xfer::Error listing the classes it has.
  std::vector<std::string> classes = {};
};

class ImageFolder : public InMemoryDataset {
 public:
  struct Skipped {
    std::filesystem::path path;
    std::string reason;
  };

  static bool is_image_file(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* e : {".jpg", ".jpeg", ".png", ".bmp", ".tga", ".gif", ".ppm", ".pgm", ".pnm"})
      if (ext == e) return true;
    return false;
  }

  explicit ImageFolder(const std::filesystem::path& root, ImageFolderOptions opt = {}) : root_(root) {
    try {
      load(root, opt);
    } catch (const std::filesystem::filesystem_error& e) {
      throw Error(::xfer::detail::concat("ImageFolder: cannot read ", root.string(), ": ", e.what()));
    }
  }

  const std::filesystem::path& root() const { return root_; }
  // The file each sample came from.
  const std::filesystem::path& path(int64_t i) const {
    check_index(i, "ImageFolder::path");
    return paths_[static_cast<size_t>(i)];
  }
  const std::vector<Skipped>& skipped() const { return skipped_; }

 private:
  void load(const std::filesystem::path& root, const ImageFolderOptions& opt) {
    namespace fs = std::filesystem;
    XFER_CHECK((opt.height == 0) == (opt.width == 0) && opt.height >= 0 && opt.width >= 0,
               "ImageFolder: resize needs both height and width > 0 (or both 0 to keep sizes), got ", opt.height, "x",
               opt.width);
    XFER_CHECK(fs::exists(root), "ImageFolder: ", root.string(), " does not exist");
    XFER_CHECK(fs::is_directory(root), "ImageFolder: ", root.string(), " is not a directory");
    std::vector<std::string> classes;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && !hidden(e.path())) classes.push_back(e.path().filename().string());
    std::sort(classes.begin(), classes.end());
    XFER_CHECK(!classes.empty(), "ImageFolder: no class folders in ", root.string(),
               " (expected ROOT/<class>/<image>, e.g. ROOT/cat/0001.png)");
    if (!opt.classes.empty()) {
      std::vector<std::string> wanted = opt.classes;
      std::sort(wanted.begin(), wanted.end());
      for (size_t i = 0; i < wanted.size(); ++i) {
        XFER_CHECK(i == 0 || wanted[i] != wanted[i - 1], "ImageFolder: class '", wanted[i], "' is asked for twice");
        if (!std::binary_search(classes.begin(), classes.end(), wanted[i])) {
          std::string have;
          for (const auto& c : classes) have += (have.empty() ? "" : ", ") + c;
          throw Error(::xfer::detail::concat("ImageFolder: class '", wanted[i], "' is not a folder of ", root.string(),
                                             " (it has: ", have, ")"));
        }
      }
      classes = std::move(wanted);
    }
    set_class_names(classes);

    std::vector<std::pair<fs::path, int32_t>> files;
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(root / classes[c], fs::directory_options::follow_directory_symlink);
           it != fs::recursive_directory_iterator(); ++it) {
        if (hidden(it->path())) {
          if (it->is_directory()) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file() && is_image_file(it->path())) found.push_back(it->path());
      }
      XFER_CHECK(!found.empty(), "ImageFolder: class folder ", (root / classes[c]).string(),
                 " has no images (looked for .jpg .jpeg .png .bmp .tga .gif .ppm .pgm .pnm)");
      std::sort(found.begin(), found.end());
      for (auto& f : found) files.emplace_back(std::move(f), static_cast<int32_t>(c));
    }

    // Decode in parallel; errors are collected and reported in path order after the loop.
    const int64_t n = static_cast<int64_t>(files.size());
    std::vector<Image> images(static_cast<size_t>(n));
    std::vector<std::string> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; ++i) {
      try {
        Image img = decode_image(files[static_cast<size_t>(i)].first);
        if (opt.height > 0 && (img.height != opt.height || img.width != opt.width))
          img = resize_image(img, opt.height, opt.width);
        images[static_cast<size_t>(i)] = std::move(img);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(i)] = e.what();
      }
    }

    int64_t bytes = 0;
    for (const auto& img : images) bytes += img.numel();
    reserve(n, bytes);
    std::vector<int64_t> per_class(classes.size(), 0);
    for (int64_t i = 0; i < n; ++i) {
      const auto& [path, label] = files[static_cast<size_t>(i)];
      if (!errors[static_cast<size_t>(i)].empty()) {
        XFER_CHECK(opt.skip_bad_images, "ImageFolder: ", errors[static_cast<size_t>(i)],
                   " (set skip_bad_images to leave such files out)");
        skipped_.push_back({path, errors[static_cast<size_t>(i)]});
        continue;
      }
      add(images[static_cast<size_t>(i)], label);
      paths_.push_back(path);
      ++per_class[static_cast<size_t>(label)];
      images[static_cast<size_t>(i)] = Image();  // release as we pack
    }
    for (size_t c = 0; c < classes.size(); ++c)
      XFER_CHECK(per_class[c] > 0, "ImageFolder: class folder ", (root / classes[c]).string(),
                 " has no decodable images (every file in it was skipped; first skipped: ",
                 skipped_.empty() ? std::string("-") : skipped_.front().reason, ")");
    if (!skipped_.empty() && opt.warn)
      std::cerr << "xfer: warning: ImageFolder " << root.string() << ": skipped " << skipped_.size()
                << " undecodable file(s); first: " << skipped_.front().reason << "\n";
  }

  static bool hidden(const std::filesystem::path& p) {
    const std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
  }

  std::filesystem::path root_;
  std::vector<std::filesystem::path> paths_;
  std::vector<Skipped> skipped_;
};

}  // namespace xfer::data
