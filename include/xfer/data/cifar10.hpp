// Cifar10: the official CIFAR-10 binary format (https://www.cs.toronto.edu/~kriz/cifar.html,
// "CIFAR-10 binary version"): records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
// row-major 32x32), data_batch_1..5.bin for training and test_batch.bin for testing.
// The one thing to know: every file is validated before use (size a multiple of 3073, labels 0..9)
// and the error names the file and the record; pixels are stored HWC uint8 like every Image.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/image.hpp"

namespace xfer::data {

struct Cifar10Options {
  bool train = true;  // data_batch_1..5.bin (true) or test_batch.bin (false) when given a directory
};

class Cifar10 : public InMemoryDataset {
 public:
  static constexpr int64_t kSide = 32, kPixels = 3 * 32 * 32, kRecord = 1 + kPixels;

  static const std::vector<std::string>& names() {
    static const std::vector<std::string> n{"airplane", "automobile", "bird", "cat",  "deer",
                                            "dog",      "frog",       "horse", "ship", "truck"};
    return n;
  }
  // The files a directory provides for a split (also accepts the tarball's cifar-10-batches-bin/ inside it).
  static std::vector<std::filesystem::path> split_files(const std::filesystem::path& dir, bool train) {
    namespace fs = std::filesystem;
    fs::path d = dir;
    if (!fs::exists(d / "test_batch.bin") && !fs::exists(d / "data_batch_1.bin") &&
        fs::exists(d / "cifar-10-batches-bin"))
      d /= "cifar-10-batches-bin";
    std::vector<fs::path> files;
    if (train)
      for (int i = 1; i <= 5; ++i) files.push_back(d / ("data_batch_" + std::to_string(i) + ".bin"));
    else
      files.push_back(d / "test_batch.bin");
    for (const auto& f : files)
      XFER_CHECK(fs::is_regular_file(f), "Cifar10: ", f.string(), " not found (a CIFAR-10 binary directory holds ",
                 train ? "data_batch_1.bin ... data_batch_5.bin" : "test_batch.bin",
                 "; get it from https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz)");
    return files;
  }
  static bool is_cifar10_dir(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    return fs::is_directory(dir) && (fs::exists(dir / "data_batch_1.bin") || fs::exists(dir / "test_batch.bin") ||
                                     fs::exists(dir / "cifar-10-batches-bin"));
  }

  // A directory (the split's files) or a single .bin file.
  explicit Cifar10(const std::filesystem::path& dir_or_file, Cifar10Options opt = {})
      : Cifar10(std::filesystem::is_directory(dir_or_file) ? split_files(dir_or_file, opt.train)
                                                           : std::vector<std::filesystem::path>{dir_or_file}) {}
  // Explicit files, read in the order given.
  explicit Cifar10(const std::vector<std::filesystem::path>& files) : InMemoryDataset(names()) {
    XFER_CHECK(!files.empty(), "Cifar10: no files given");
    for (const auto& f : files) read_file(f);
  }

 private:
  void read_file(const std::filesystem::path& path) {
    XFER_CHECK(std::filesystem::is_regular_file(path), "Cifar10: ", path.string(), " is not a file");
    const std::vector<uint8_t> raw = read_file_bytes(path);
    const int64_t n = static_cast<int64_t>(raw.size());
    XFER_CHECK(n > 0 && n % kRecord == 0, "Cifar10: ", path.string(), " has ", n,
               " bytes, expected a non-zero multiple of 3073 (1 label byte + 3072 pixel bytes per record); ",
               n / kRecord, " whole records and ", n % kRecord, " bytes left over");
    const int64_t records = n / kRecord;
    reserve(size() + records, bytes() + records * kPixels);
    Image img(kSide, kSide, 3);
    for (int64_t r = 0; r < records; ++r) {
      const uint8_t* rec = raw.data() + r * kRecord;
      XFER_CHECK(rec[0] <= 9, "Cifar10: ", path.string(), " record ", r, " (byte offset ", r * kRecord,
                 ") has label byte ", int(rec[0]), ", expected 0..9");
      const uint8_t* chw = rec + 1;
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t p = 0; p < kSide * kSide; ++p) img.pixels[static_cast<size_t>(p * 3 + c)] = chw[c * kSide * kSide + p];
      add(img, rec[0]);
    }
  }
};

}  // namespace xfer::data
