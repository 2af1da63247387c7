// Datasets: image decoding, the CIFAR-10 binary reader, ImageFolder, in-memory datasets, subsets and
// the seeded split — each built on disk in the test (PNG/JPEG via stb_image_write, tiny CIFAR files),
// including every bad input of issue 4.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <set>

#ifdef XFER_STB_HEADER_ONLY
#define STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#include <stb_image_write.h>

#include "xfer/core/parallel.hpp"
#include "xfer/data/cifar10.hpp"
#include "xfer/data/image_folder.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/open_dataset.hpp"
#include "xfer/data/split.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_data_datasets {

using namespace xfer;
using namespace xfer::data;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(XFER_TEST_TMP) / ("data-datasets-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

Image pattern(int64_t h, int64_t w, int seed) {
  Image img(h, w, 3);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < 3; ++c) img.at(y, x, c) = static_cast<uint8_t>((seed * 40 + y * 17 + x * 5 + c * 80) % 256);
  return img;
}

void write_png(const fs::path& p, const Image& img) {
  REQUIRE(stbi_write_png(p.string().c_str(), static_cast<int>(img.width), static_cast<int>(img.height),
                         static_cast<int>(img.channels), img.pixels.data(), static_cast<int>(img.width * img.channels)));
}
void write_jpg(const fs::path& p, const Image& img) {
  REQUIRE(stbi_write_jpg(p.string().c_str(), static_cast<int>(img.width), static_cast<int>(img.height),
                         static_cast<int>(img.channels), img.pixels.data(), 95));
}
void write_bytes(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// CIFAR records: label then the image in CHW planes.
std::vector<uint8_t> cifar_records(const std::vector<int>& labels, int seed) {
  std::vector<uint8_t> out;
  for (size_t r = 0; r < labels.size(); ++r) {
    out.push_back(static_cast<uint8_t>(labels[r]));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) out.push_back(static_cast<uint8_t>((seed + r * 7 + c * 50 + p) % 256));
  }
  return out;
}

}  // namespace

TEST_CASE("decode_image reads PNG exactly and JPEG closely, always as 3 channels") {
  const fs::path d = fresh_dir("decode");
  const Image src = pattern(7, 9, 1);
  write_png(d / "a.png", src);
  const Image png = decode_image(d / "a.png");
  CHECK(png.height == 7);
  CHECK(png.width == 9);
  CHECK(png.channels == 3);
  CHECK(png.pixels == src.pixels);
  write_jpg(d / "a.jpg", src);
  const Image jpg = decode_image(d / "a.jpg");
  REQUIRE(jpg.pixels.size() == src.pixels.size());
  double err = 0;
  for (size_t i = 0; i < src.pixels.size(); ++i) err += std::abs(int(jpg.pixels[i]) - int(src.pixels[i]));
  CHECK(err / static_cast<double>(src.pixels.size()) < 12.0);  // quality 95 on a smooth pattern
  // grey and RGBA inputs come out RGB
  std::vector<uint8_t> grey(6 * 5);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 8);
  REQUIRE(stbi_write_png((d / "g.png").string().c_str(), 5, 6, 1, grey.data(), 5));
  const Image g = decode_image(d / "g.png");
  CHECK(g.channels == 3);
  CHECK(g.at(2, 3, 0) == grey[13]);
  CHECK(g.at(2, 3, 2) == grey[13]);
  // from memory, the same as from the file
  const auto bytes = read_file_bytes(d / "a.png");
  CHECK(decode_image_memory(bytes).pixels == src.pixels);
}

TEST_CASE("decode_image errors name the file and stb_image's reason") {
  const fs::path d = fresh_dir("decode-bad");
  write_bytes(d / "bad.png", {0x89, 'P', 'N', 'G', 1, 2, 3, 4, 5, 6});
  CHECK_THROWS_WITH(decode_image(d / "bad.png"), Catch::Contains("bad.png") && Catch::Contains("cannot decode"));
  CHECK_THROWS_WITH(decode_image(d / "missing.png"), Catch::Contains("missing.png") && Catch::Contains("no such file"));
  fs::create_directories(d / "dir.png");
  CHECK_THROWS_WITH(decode_image(d / "dir.png"), Catch::Contains("dir.png") && Catch::Contains("directory"));
  write_bytes(d / "empty.jpg", {});
  CHECK_THROWS_WITH(decode_image(d / "empty.jpg"), Catch::Contains("empty.jpg") && Catch::Contains("empty"));
  // truncated JPEG: stb either rejects it or returns a full-size image, never crashes
  write_jpg(d / "t.jpg", pattern(16, 16, 2));
  auto bytes = read_file_bytes(d / "t.jpg");
  bytes.resize(bytes.size() / 3);
  try {
    const Image img = decode_image_memory(bytes, "t.jpg");
    CHECK(img.pixels.size() == 16u * 16u * 3u);
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("t.jpg"));
  }
}

TEST_CASE("decode_image_memory on corrupted PNG and JPEG bytes either decodes or throws xfer::Error") {
  const fs::path d = fresh_dir("decode-fuzz");
  write_png(d / "s.png", pattern(12, 11, 3));
  write_jpg(d / "s.jpg", pattern(12, 11, 3));
  xfer::Rng rng(2024);
  int errors = 0, decoded = 0;
  for (const char* name : {"s.png", "s.jpg"}) {
    const auto clean = read_file_bytes(d / name);
    for (int trial = 0; trial < 300; ++trial) {
      auto bytes = clean;
      const int flips = 1 + static_cast<int>(rng.below(8));
      for (int f = 0; f < flips; ++f) bytes[rng.below(bytes.size())] = static_cast<uint8_t>(rng.below(256));
      if (trial % 3 == 0) bytes.resize(1 + rng.below(bytes.size()));
      try {
        const Image img = decode_image_memory(bytes, name);
        REQUIRE(img.channels == 3);
        REQUIRE(img.pixels.size() == static_cast<size_t>(img.height * img.width * 3));
        ++decoded;
      } catch (const Error& e) {
        REQUIRE_THAT(e.what(), Catch::Contains(name));
        ++errors;
      }
    }
  }
  CHECK(errors > 0);
  CHECK(decoded > 0);
}

TEST_CASE("Cifar10 reads the binary format: labels, HWC pixels, directory splits") {
  const fs::path d = fresh_dir("cifar");
  for (int b = 1; b <= 5; ++b) write_bytes(d / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records({b, 9, 0}, b));
  write_bytes(d / "test_batch.bin", cifar_records({3, 4}, 100));
  const Cifar10 train(d);
  CHECK(train.size() == 15);
  CHECK(train.num_classes() == 10);
  CHECK(train.class_names()[3] == "cat");
  CHECK(train.label(0) == 1);
  CHECK(train.label(1) == 9);
  CHECK(train.label(3) == 2);
  // record 1 of batch 2: pixel (y, x) channel c is byte c * 1024 + y * 32 + x of its CHW planes
  const ImageView v = train.image(4);
  CHECK(v.height == 32);
  CHECK(v.width == 32);
  CHECK(v.channels == 3);
  for (int c = 0; c < 3; ++c) CHECK(int(v.at(5, 7, c)) == (2 + 1 * 7 + c * 50 + 5 * 32 + 7) % 256);
  const Cifar10 test(d, {.train = false});
  CHECK(test.size() == 2);
  CHECK(test.label(1) == 4);
  const Cifar10 one(d / "test_batch.bin");
  CHECK(one.size() == 2);
  const Cifar10 files(std::vector<fs::path>{d / "test_batch.bin", d / "data_batch_1.bin"});
  CHECK(files.size() == 5);
  CHECK(files.label(2) == 1);
  CHECK(Cifar10::is_cifar10_dir(d));
  // the tarball's own folder name is accepted
  const fs::path outer = fresh_dir("cifar-outer");
  fs::create_directories(outer / "cifar-10-batches-bin");
  fs::copy_file(d / "test_batch.bin", outer / "cifar-10-batches-bin" / "test_batch.bin");
  CHECK(Cifar10(outer, {.train = false}).size() == 2);
}

TEST_CASE("Cifar10 rejects a wrong file size, a label byte > 9 and missing files, naming file and record") {
  const fs::path d = fresh_dir("cifar-bad");
  auto recs = cifar_records({1, 2}, 0);
  recs.push_back(7);
  write_bytes(d / "short.bin", recs);
  CHECK_THROWS_WITH(Cifar10(d / "short.bin"), Catch::Contains("short.bin") && Catch::Contains("6147 bytes") &&
                                                  Catch::Contains("multiple of 3073"));
  write_bytes(d / "label.bin", cifar_records({1, 2, 3, 10, 4}, 0));
  CHECK_THROWS_WITH(Cifar10(d / "label.bin"), Catch::Contains("label.bin") && Catch::Contains("record 3") &&
                                                  Catch::Contains("label byte 10"));
  write_bytes(d / "empty.bin", {});
  CHECK_THROWS_WITH(Cifar10(d / "empty.bin"), Catch::Contains("empty.bin") && Catch::Contains("0 bytes"));
  CHECK_THROWS_WITH(Cifar10(d), Catch::Contains("data_batch_1.bin") && Catch::Contains("not found") &&
                                    Catch::Contains("cifar-10-binary.tar.gz"));
  CHECK_THROWS_WITH(Cifar10(d / "nope.bin"), Catch::Contains("nope.bin"));
}

TEST_CASE("ImageFolder: sorted classes, sorted files, PNG and JPEG, resize on load") {
  const fs::path root = fresh_dir("folder");
  fs::create_directories(root / "dog");
  fs::create_directories(root / "cat" / "sub");
  fs::create_directories(root / ".hidden");
  write_png(root / "dog" / "b.png", pattern(12, 10, 1));
  write_png(root / "dog" / "a.PNG", pattern(8, 8, 2));
  write_jpg(root / "cat" / "z.jpg", pattern(16, 16, 3));
  write_png(root / "cat" / "sub" / "m.png", pattern(6, 6, 4));
  write_bytes(root / "cat" / "notes.txt", {'h', 'i'});
  write_png(root / ".hidden" / "x.png", pattern(4, 4, 5));

  const ImageFolder raw(root);
  REQUIRE(raw.class_names() == std::vector<std::string>{"cat", "dog"});
  REQUIRE(raw.size() == 4);
  CHECK(raw.path(0).filename() == "m.png");  // cat/sub/m.png < cat/z.jpg
  CHECK(raw.path(1).filename() == "z.jpg");
  CHECK(raw.path(2).filename() == "a.PNG");
  CHECK(raw.path(3).filename() == "b.png");
  CHECK(raw.labels() == std::vector<int32_t>{0, 0, 1, 1});
  CHECK(raw.image(3).height == 12);
  CHECK(raw.image(3).width == 10);
  CHECK(to_image(raw.image(3)).pixels == pattern(12, 10, 1).pixels);

  const ImageFolder sized(root, {.height = 8, .width = 8});
  REQUIRE(sized.size() == 4);
  for (int64_t i = 0; i < 4; ++i) {
    CHECK(sized.image(i).height == 8);
    CHECK(sized.image(i).width == 8);
  }
  CHECK(to_image(sized.image(3)).pixels == resize_image(pattern(12, 10, 1), 8, 8).pixels);
  CHECK(to_image(sized.image(2)).pixels == pattern(8, 8, 2).pixels);  // already the size: untouched
}

TEST_CASE("ImageFolder decodes in parallel with the same result as one thread") {
  const fs::path root = fresh_dir("folder-par");
  for (int c = 0; c < 3; ++c) {
    const fs::path cls = root / std::string("c").append(std::to_string(c));  // (GCC 12 warns on "c" + string)
    fs::create_directories(cls);
    for (int i = 0; i < 20; ++i) write_png(cls / (std::to_string(i) + ".png"), pattern(9, 7, c * 20 + i));
  }
  const int saved = num_threads();
  set_num_threads(1);
  const ImageFolder a(root, {.height = 5, .width = 6});
  set_num_threads(2);
  const ImageFolder b(root, {.height = 5, .width = 6});
  set_num_threads(saved);
  REQUIRE(a.size() == 60);
  REQUIRE(b.size() == 60);
  for (int64_t i = 0; i < 60; ++i) {
    CHECK(a.label(i) == b.label(i));
    CHECK(to_image(a.image(i)).pixels == to_image(b.image(i)).pixels);
  }
}

TEST_CASE("ImageFolder bad input: empty or missing root, a class without images, an undecodable image") {
  const fs::path root = fresh_dir("folder-bad");
  CHECK_THROWS_WITH(ImageFolder(root), Catch::Contains("no class folders") && Catch::Contains("folder-bad"));
  CHECK_THROWS_WITH(ImageFolder(root / "missing"), Catch::Contains("does not exist"));
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  write_png(root / "a" / "1.png", pattern(4, 4, 1));
  write_bytes(root / "b" / "readme.txt", {'x'});
  CHECK_THROWS_WITH(ImageFolder(root), Catch::Contains("class folder") && Catch::Contains("has no images") &&
                                           Catch::Contains((root / "b").string()));
  write_png(root / "b" / "1.png", pattern(4, 4, 2));
  write_bytes(root / "b" / "2.jpg", {0xFF, 0xD8, 0xFF, 0x00, 0x13});  // a JPEG header and nothing else
  CHECK_THROWS_WITH(ImageFolder(root), Catch::Contains("2.jpg") && Catch::Contains("cannot decode") &&
                                           Catch::Contains("skip_bad_images"));
  // documented skip-with-warning
  const ImageFolder skipping(root, {.skip_bad_images = true, .warn = false});
  CHECK(skipping.size() == 2);
  REQUIRE(skipping.skipped().size() == 1);
  CHECK(skipping.skipped()[0].path.filename() == "2.jpg");
  {  // the warning goes to stderr
    std::ostringstream captured;
    auto* old = std::cerr.rdbuf(captured.rdbuf());
    const ImageFolder warned(root, {.skip_bad_images = true});
    std::cerr.rdbuf(old);
    CHECK(warned.size() == 2);
    CHECK_THAT(captured.str(), Catch::Contains("warning") && Catch::Contains("skipped 1 undecodable") &&
                                   Catch::Contains("2.jpg"));
  }
  // ... but a class left with nothing is still an error
  fs::remove(root / "b" / "1.png");
  CHECK_THROWS_WITH(ImageFolder(root, {.skip_bad_images = true, .warn = false}),
                    Catch::Contains("no decodable images"));
  CHECK_THROWS_WITH(ImageFolder(root, {.height = 4}), Catch::Contains("both height and width"));
}

TEST_CASE("InMemoryDataset from arrays and tensors, Subset views") {
  std::vector<uint8_t> px(2 * 2 * 3 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  const auto ds = InMemoryDataset::from_hwc(px.data(), 3, 2, 2, 3, {0, 1, 1}, {"x", "y"});
  CHECK(ds.size() == 3);
  CHECK(ds.num_classes() == 2);
  CHECK(ds.image(1).at(1, 0, 2) == px[12 + 2 * 3 + 2]);
  CHECK_THROWS_WITH(InMemoryDataset::from_hwc(px.data(), 3, 2, 2, 3, {0, 2, 1}, {"x", "y"}),
                    Catch::Contains("label 2") && Catch::Contains("[0, 2)"));
  CHECK_THROWS_WITH(ds.image(3), Catch::Contains("index 3 out of range"));

  Tensor<float> t({2, 3, 1, 2});
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i) / 11.0f;
  const auto dt = InMemoryDataset::from_tensor(t, {1, 0}, {"a", "b"});
  CHECK(dt.image(1).at(0, 1, 2) == static_cast<uint8_t>(std::nearbyint(t.at(1, 2, 0, 1) * 255.0f)));
  t[0] = 1.5f;
  CHECK_THROWS_WITH(InMemoryDataset::from_tensor(t, {1, 0}, {"a", "b"}), Catch::Contains("outside [0, 1]"));

  const Subset sub(ds, {2, 0});
  CHECK(sub.size() == 2);
  CHECK(sub.label(0) == 1);
  CHECK(sub.image(1).pixels == ds.image(0).pixels);
  CHECK_THROWS_WITH(Subset(ds, {0, 3}), Catch::Contains("index 3"));
}

TEST_CASE("random_split is seeded, disjoint and complete, and stratifies per class") {
  std::vector<uint8_t> px(1000 * 3, 0);
  std::vector<int32_t> labels(1000);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i < 700 ? 0 : (i < 900 ? 1 : 2));
  const auto ds = InMemoryDataset::from_hwc(px.data(), 1000, 1, 1, 3, labels, {"a", "b", "c"});
  const auto s1 = random_split(ds, 0.1, 42), s2 = random_split(ds, 0.1, 42), s3 = random_split(ds, 0.1, 43);
  CHECK(s1.val.size() == 100);
  CHECK(s1.train.size() == 900);
  CHECK(s1.val == s2.val);
  CHECK(s1.val != s3.val);
  std::set<int64_t> all(s1.train.begin(), s1.train.end());
  all.insert(s1.val.begin(), s1.val.end());
  CHECK(all.size() == 1000);
  CHECK(std::is_sorted(s1.val.begin(), s1.val.end()));
  const auto st = random_split(ds, 0.1, 7, true);
  int per[3] = {0, 0, 0};
  for (int64_t i : st.val) ++per[labels[static_cast<size_t>(i)]];
  CHECK(per[0] == 70);
  CHECK(per[1] == 20);
  CHECK(per[2] == 10);
  CHECK(random_split(ds, 0.0, 1).val.empty());
  CHECK_THROWS_WITH(random_split(ds, 1.0, 1), Catch::Contains("[0, 1)"));
  const auto tiny = InMemoryDataset::from_hwc(px.data(), 1, 1, 1, 3, {0}, {"a"});
  CHECK_THROWS_WITH(random_split(tiny, 0.6, 1), Catch::Contains("no training samples"));
}

TEST_CASE("open_dataset detects CIFAR-10 binaries and ImageFolders, and explains an empty or missing --data") {
  const fs::path cifar = fresh_dir("open-cifar");
  write_bytes(cifar / "test_batch.bin", cifar_records({3, 4, 5}, 1));
  CHECK(open_dataset(cifar, {.train = false})->size() == 3);
  CHECK(open_dataset(cifar / "test_batch.bin")->size() == 3);
  CHECK_THROWS_WITH(open_dataset(cifar, {.train = true}), Catch::Contains("data_batch_1.bin"));

  const fs::path empty = fresh_dir("open-empty");
  CHECK_THROWS_WITH(open_dataset(empty), Catch::Contains("is empty") && Catch::Contains("cifar-10-binary.tar.gz") &&
                                             Catch::Contains("<class>/<image>"));
  CHECK_THROWS_WITH(open_dataset(empty / "nope"), Catch::Contains("does not exist") &&
                                                      Catch::Contains("cifar-10-binary.tar.gz"));

  // A tiny ImageFolder of JPEGs and PNGs of mixed sizes, resized on load, through the training Loader.
  const fs::path root = fresh_dir("open-folder");
  for (const char* cls : {"plane", "car", "bird"}) {
    fs::create_directories(root / cls);
    for (int i = 0; i < 4; ++i) {
      const Image img = pattern(20 + i * 7, 30 - i * 3, i + static_cast<int>(cls[0]));
      if (i % 2) write_jpg(root / cls / (std::to_string(i) + ".jpg"), img);
      else write_png(root / cls / (std::to_string(i) + ".png"), img);
    }
  }
  const auto ds = open_dataset(root, {.height = 32, .width = 32});
  REQUIRE(ds->size() == 12);
  CHECK(ds->class_names() == std::vector<std::string>{"bird", "car", "plane"});
  Loader<float> loader(*ds, cifar10_train_transforms(), {.batch_size = 5, .shuffle = true, .seed = 1});
  int64_t seen = 0;
  for (auto& [x, y] : loader) {
    CHECK(x.dim(1) == 3);
    CHECK(x.dim(2) == 32);
    CHECK(x.dim(3) == 32);
    for (int32_t label : y) CHECK((label >= 0 && label < 3));
    seen += x.dim(0);
  }
  CHECK(seen == 12);
}

}  // namespace unit_data_datasets
