// Replays what the libFuzzer harnesses (tests/fuzz/) found, through the same reader calls, so each
// fixed bug stays fixed in the ordinary (and the sanitized) test suite; and checks that every file
// of the committed seed corpus is valid, so the fuzzers start from inputs that reach deep code.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "xfer/data/cifar10.hpp"
#include "xfer/data/image.hpp"
#include "xfer/io/checkpoint.hpp"
#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_dict.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_fuzz_regressions {

using namespace xfer;
using Catch::Matchers::Contains;
using Catch::Matchers::Message;
namespace fs = std::filesystem;

namespace {
const fs::path kFuzzDir = fs::path(XFER_SOURCE_DIR) / "tests" / "fuzz";

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  REQUIRE(!out.empty());
  return out;
}
}  // namespace

TEST_CASE("A JPEG whose Huffman table declares more than 256 codes is refused before stb_image parses it") {
  // fuzz_image: stb_image 2.27 (Debian 12) wrote past stbi__huffman::size (ASan/UBSan: index 257 out of bounds).
  const fs::path f = kFuzzDir / "regressions" / "image-jpeg-dht-overflow.jpg";
  const auto bytes = data::read_file_bytes(f);
  CHECK_THROWS_WITH(data::decode_image_memory(bytes, f.string()),
                    Contains(f.string()) && Contains("corrupt JPEG: a Huffman table (DHT at byte ") &&
                        Contains("codes, at most 256 are possible"));
  CHECK_THROWS_WITH(data::decode_image(f), Contains("at most 256"));
  // The same overflow reached through FF fill bytes before the SOI marker (stb skips them).
  const fs::path g = kFuzzDir / "regressions" / "image-jpeg-dht-overflow-fill-before-soi.jpg";
  CHECK_THROWS_WITH(data::decode_image(g), Contains("corrupt JPEG: a Huffman table") && Contains("at most 256"));
}

TEST_CASE("A JPEG scan that uses a Huffman table no DHT defined is refused before stb_image decodes it") {
  // fuzz_image: stb_image 2.27 decoded with the never-initialised AC table 0 and aborted on its
  // assertion in stbi__jpeg_huff_decode (a plain read of uninitialised memory without asserts).
  const fs::path f = kFuzzDir / "regressions" / "image-jpeg-undefined-huffman-table.jpg";
  CHECK_THROWS_WITH(data::decode_image(f), Contains(f.string()) && Contains("corrupt JPEG: the scan at byte ") &&
                                               Contains("uses Huffman table AC 0, which no DHT segment before it defines"));
}

TEST_CASE("A PNG chunk longer than the file is refused before stb_image allocates for it") {
  // fuzz_image: stb_image 2.27 grew its IDAT buffer to the declared 2 GB before finding the data missing.
  const fs::path f = kFuzzDir / "regressions" / "image-png-idat-longer-than-file.png";
  CHECK_THROWS_WITH(data::decode_image(f), Contains(f.string()) && Contains("corrupt PNG: chunk '") &&
                                               Contains("bytes, only ") && Contains("remain in the file"));
}

TEST_CASE("A PGM/PPM header whose numbers overflow an int is refused before stb_image parses it") {
  // fuzz_image: stb_image 2.27 computed 542554255 * 10 in an int (UBSan: signed integer overflow),
  // also when the digits follow a '#' comment that contains a NUL byte.
  for (const char* name : {"image-ppm-width-overflow.ppm", "image-ppm-overflow-after-comment.ppm"}) {
    const fs::path f = kFuzzDir / "regressions" / name;
    INFO(f.string());
    CHECK_THROWS_WITH(data::decode_image(f), Contains(f.string()) && Contains("corrupt PGM/PPM header: the ") &&
                                                  Contains("does not fit in 32 bits"));
  }
  // A maximal legal header still reaches stb (and fails there for lack of pixel data, not in the check).
  const std::string ppm = "P6\n# comment 99999999999\n2147483647 1\n255\n";
  const std::vector<uint8_t> bytes(ppm.begin(), ppm.end());
  CHECK_THROWS_WITH(data::decode_image_memory(bytes, "big.ppm"), !Contains("does not fit"));
}

TEST_CASE("16-bit greyscale PGMs decode correctly and truncated PGM/PPMs are refused") {
  // fuzz_image: stb_image 2.27 converted a 16-bit PGM to 3 channels with its 8-bit converter, then read
  // twice the buffer (ASan heap-buffer-overflow in stbi__convert_16_to_8); xfer now asks for 1 channel.
  const fs::path f = kFuzzDir / "regressions" / "image-pgm16-overflow.pgm";
  CHECK_THROWS_WITH(data::decode_image(f), Contains(f.string()) && Contains("truncated PGM/PPM: 6x44 pixels of 2 bytes"));
  std::string pgm = "P5\n2 1\n65535\n";
  pgm += std::string("\x00\x00\xff\xff", 4);  // big-endian 0 and 65535
  const data::Image img = data::decode_image_memory(std::vector<uint8_t>(pgm.begin(), pgm.end()), "grey16.pgm");
  REQUIRE((img.width == 2 && img.height == 1 && img.channels == 3));
  CHECK(img.pixels == std::vector<uint8_t>{0, 0, 0, 255, 255, 255});
  // 8-bit PPM: exact bytes; one byte short: refused (stb 2.27 returned uninitialised memory).
  std::string ppm = "P6 2 1 255\n";
  ppm += std::string("\x01\x02\x03\x04\x05\x06", 6);
  CHECK(data::decode_image_memory(std::vector<uint8_t>(ppm.begin(), ppm.end()), "ok.ppm").pixels ==
        std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
  ppm.pop_back();
  CHECK_THROWS_WITH(data::decode_image_memory(std::vector<uint8_t>(ppm.begin(), ppm.end()), "short.ppm"),
                    Contains("short.ppm: truncated PGM/PPM: 2x1 pixels of 3 bytes, the file has 5 bytes after the header"));
}

TEST_CASE("Inputs where stb_image 2.27 has harmless undefined behaviour decode or fail cleanly") {
  // fuzz_image: a zero-length PNG chunk makes stb call memcpy(NULL, p, 0) (UBSan nonnull-attribute);
  // a corrupt JPEG scan makes its bit reader shift by 33 (UBSan shift-exponent). Neither touches
  // memory it should not (ASan is clean); both checks are ignored inside stb_image.h only
  // (tests/fuzz/ubsan_ignorelist.txt). Each input must give an xfer::Error or a 3-channel image.
  for (const char* name : {"image-png-zero-length-chunk.png", "image-jpeg-corrupt-scan-shift.jpg"}) {
    const fs::path f = kFuzzDir / "regressions" / name;
    INFO(f.string());
    try {
      const data::Image img = data::decode_image(f);
      CHECK(img.channels == 3);
      CHECK(img.pixels.size() == static_cast<size_t>(img.width * img.height * 3));
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains(f.string()));
    }
  }
}

TEST_CASE("An image header declaring more pixels than the limit is refused before anything is allocated") {
  // fuzz_image: a 23-byte GIF declaring a 65535x3839 screen made stb allocate 2.25 GB (libFuzzer OOM).
  const fs::path f = kFuzzDir / "regressions" / "image-gif-huge-screen.gif";
  const auto bytes = data::read_file_bytes(f);
  REQUIRE(bytes.size() == 23);
  CHECK_THROWS_WITH(data::decode_image_memory(bytes, "huge.gif"),
                    Contains("huge.gif declares 65535x3839 = 251588865 pixels, more than the limit of 178956970"));
  // The cap is the caller's: a 5x4 seed image decodes at 20 pixels and is refused at 19.
  const auto png = data::read_file_bytes(kFuzzDir / "corpus" / "image" / "rgb.png");
  CHECK(data::decode_image_memory(png, "rgb.png", 20).width == 5);
  CHECK_THROWS_WITH(data::decode_image_memory(png, "rgb.png", 19), Contains("declares 5x4 = 20 pixels"));
  // Bytes stb cannot identify are refused with stb's reason.
  const std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  CHECK_THROWS_WITH(data::decode_image_memory(junk, "junk.png"), Contains("cannot decode junk.png: "));
}

TEST_CASE("A checkpoint whose metadata 'version' is a string is refused with an xfer::Error") {
  // nlohmann's type_error escaped load_checkpoint (a non-xfer exception: std::terminate in the harness).
  const fs::path f = kFuzzDir / "regressions" / "checkpoint-version-string.safetensors";
  auto model = xfer_fuzz::small_model();
  auto opt = xfer_fuzz::small_optimizer(*model);
  CHECK_THROWS_MATCHES(io::load_checkpoint(f.string(), *model, opt.get()), Error,
                       Message("load_checkpoint '" + f.string() +
                               "': unsupported checkpoint metadata (expected version 1 with a state)"));
}

TEST_CASE("A checkpoint whose optimizer step count is a huge float is refused, not cast to int64") {
  // steps: [1, 1, 1, 1, 1, -1e30] made nlohmann cast -1e30 to int64_t (UBSan: float-cast-overflow).
  const fs::path f = kFuzzDir / "regressions" / "checkpoint-float-step.safetensors";
  auto model = xfer_fuzz::small_model();
  auto opt = xfer_fuzz::small_optimizer(*model);
  CHECK_THROWS_WITH(io::load_checkpoint(f.string(), *model, opt.get()),
                    Contains("optimizer state: group 0: key 'steps' must hold integers, got [1,1,1,1,1,-1e+30]"));
  CHECK(opt->step_count(0, 5) == 0);  // nothing changed
}

TEST_CASE("Every image of the seed corpus decodes to its known size") {
  for (const auto& f : files_in(kFuzzDir / "corpus" / "image")) {
    INFO(f.string());
    const data::Image img = data::decode_image(f);
    CHECK(img.channels == 3);
    if (f.filename() == "tiny.gif") CHECK((img.width == 2 && img.height == 2));
    else CHECK((img.width == 5 && img.height == 4));
  }
}

TEST_CASE("Every safetensors seed opens, and the model seed loads strictly into the fuzzers' model") {
  for (const auto& f : files_in(kFuzzDir / "corpus" / "safetensors")) {
    INFO(f.string());
    io::SafetensorsReader r(f.string());
    for (const auto& t : r.tensors()) CHECK(r.read<double>(t.name).size() == static_cast<size_t>(t.numel()));
  }
  auto model = xfer_fuzz::small_model();
  const auto rep = io::load_safetensors(*model, (kFuzzDir / "corpus" / "safetensors" / "model.safetensors").string());
  CHECK(rep.complete());
  CHECK(rep.loaded.size() == 9);  // conv w/b, bn w/b/mean/var/count, linear w/b
}

TEST_CASE("Every checkpoint seed resumes into the fuzzers' model and Adam") {
  for (const auto& f : files_in(kFuzzDir / "corpus" / "checkpoint")) {
    INFO(f.string());
    auto model = xfer_fuzz::small_model();
    auto opt = xfer_fuzz::small_optimizer(*model);
    const nlohmann::json state = io::load_checkpoint(f.string(), *model, opt.get());
    if (f.filename() == "adam_step1.safetensors") {
      CHECK(state.at("epoch") == 3);
      CHECK(opt->step_count(0, 0) == 1);
    } else {
      CHECK(opt->step_count(0, 0) == 0);
    }
  }
}

TEST_CASE("The CIFAR-10 seed holds two records with labels 3 and 9") {
  data::Cifar10 ds(kFuzzDir / "corpus" / "cifar10" / "two_records.bin");
  REQUIRE(ds.size() == 2);
  CHECK(ds.label(0) == 3);
  CHECK(ds.label(1) == 9);
}

}  // namespace unit_fuzz_regressions
