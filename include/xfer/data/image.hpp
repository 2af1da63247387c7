// Image: a decoded picture held in memory as uint8, HWC order (row by row, channels interleaved),
// the stb_image decoder (files and memory; always 3 channels) and torchvision-style bilinear resizing.
// The one thing to know: resize_image matches torchvision.transforms.functional.resize on a uint8
// tensor (antialias=True by default) to within one grey level on under 1% of pixels (round-half-to-even
// ties after float interpolation may land on the other side); the float path (data::functional::resize)
// matches to 1e-6. stb's JPEG decoder differs from PIL/libjpeg by 0.09 grey levels on average (at most 3,
// measured on 200 CIFAR-10 JPEGs); PNG decoding is exact.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"

// Debian's libstb ships the compiled implementation; with a header-only stb, the one translation unit
// that defines XFER_STB_IMPLEMENTATION before including xfer compiles it.
#if defined(XFER_STB_HEADER_ONLY) && defined(XFER_STB_IMPLEMENTATION) && !defined(STB_IMAGE_IMPLEMENTATION)
#define STB_IMAGE_IMPLEMENTATION
#endif
#include <stb_image.h>

namespace xfer::data {

// A non-owning view of HWC uint8 pixels (what datasets hand out without copying).
struct ImageView {
  int64_t height = 0, width = 0, channels = 0;
  const uint8_t* pixels = nullptr;
  int64_t numel() const { return height * width * channels; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return pixels[(y * width + x) * channels + c]; }
};

struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // HWC, height * width * channels bytes

  Image() = default;
  Image(int64_t h, int64_t w, int64_t c, uint8_t fill = 0) : height(h), width(w), channels(c) {
    XFER_CHECK(h >= 0 && w >= 0 && c > 0, "Image: invalid size ", h, "x", w, "x", c);
    pixels.assign(static_cast<size_t>(h * w * c), fill);
  }
  ImageView view() const { return {height, width, channels, pixels.data()}; }
  operator ImageView() const { return view(); }
  int64_t numel() const { return height * width * channels; }
  uint8_t& at(int64_t y, int64_t x, int64_t c) { return pixels[static_cast<size_t>((y * width + x) * channels + c)]; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return pixels[static_cast<size_t>((y * width + x) * channels + c)]; }
};

inline Image to_image(ImageView v) {
  Image img(v.height, v.width, v.channels);
  if (v.numel()) std::memcpy(img.pixels.data(), v.pixels, static_cast<size_t>(v.numel()));
  return img;
}

namespace detail {

// stb_image <= 2.27 (Debian 12's libstb) writes past its Huffman tables when a JPEG DHT segment
// declares more than 256 codes (fixed upstream in 2.28), and decodes a scan whose components name a
// Huffman table no DHT segment defined with uninitialised table memory (it then trips an assertion
// or reads garbage); both found by tests/fuzz/fuzz_image. We refuse such files before stb sees
// them: the marker segments up to the first scan are walked the way stb walks them, and after it
// every FF C4 (DHT) and FF DA (SOS) is checked (entropy-coded data never contains FF C4 or FF DA).
inline void check_jpeg_huffman_tables(std::span<const uint8_t> b, const std::string& name) {
  const size_t n = b.size();
  size_t pos = 0;
  while (pos < n && b[pos] == 0xFF) ++pos;  // stb accepts fill bytes before SOI too
  if (pos < 1 || pos >= n || b[pos] != 0xD8) return;  // not a JPEG
  ++pos;
  auto byte = [&](size_t i) -> unsigned { return i < n ? b[i] : 0u; };  // stb reads 0 past the end
  bool defined[2][4] = {};  // [DC/AC][table id] set by a DHT so far
  bool progressive = false;
  auto check_dht = [&](size_t seg) {  // seg: first byte after the FF C4 marker
    int64_t left = static_cast<int64_t>((byte(seg) << 8) | byte(seg + 1)) - 2;
    size_t p = seg + 2;
    while (left > 0 && p < n) {
      const unsigned q = byte(p);
      if ((q >> 4) > 1 || (q & 15) > 3) return;  // stb rejects this table itself
      unsigned codes = 0;
      for (size_t i = 1; i <= 16; ++i) codes += byte(p + i);
      XFER_CHECK(codes <= 256, "decode_image: cannot decode ", name, ": corrupt JPEG: a Huffman table (DHT at byte ",
                 seg - 2, ") declares ", codes, " codes, at most 256 are possible");
      defined[q >> 4][q & 15] = true;
      p += 17 + codes;
      left -= 17 + static_cast<int64_t>(codes);
    }
  };
  auto check_sos = [&](size_t seg) {  // seg: first byte after the FF DA marker
    const unsigned ns = byte(seg + 2);
    if (ns < 1 || ns > 4) return;  // stb rejects this scan itself
    const unsigned ss = byte(seg + 3 + 2 * ns), ah = byte(seg + 5 + 2 * ns) >> 4;
    // Baseline scans use both tables; progressive DC-first scans the DC table, AC scans the AC table.
    const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss != 0;
    for (unsigned c = 0; c < ns; ++c) {
      const unsigned t = byte(seg + 4 + 2 * c), dc = t >> 4, ac = t & 15;
      if (dc > 3 || ac > 3) return;  // stb rejects this scan itself
      XFER_CHECK((!uses_dc || defined[0][dc]) && (!uses_ac || defined[1][ac]), "decode_image: cannot decode ", name,
                 ": corrupt JPEG: the scan at byte ", seg - 2, " uses Huffman table ", !uses_dc || defined[0][dc] ? "AC " : "DC ",
                 !uses_dc || defined[0][dc] ? ac : dc, ", which no DHT segment before it defines");
    }
  };
  while (pos < n) {
    if (b[pos++] != 0xFF) continue;  // stb skips bytes that are not a marker
    while (pos < n && b[pos] == 0xFF) ++pos;
    if (pos >= n) return;
    const unsigned m = b[pos++];
    if (m == 0xDA) {  // first scan
      check_sos(pos);
      break;
    }
    if (m == 0xC2) progressive = true;
    if (m == 0xC4) check_dht(pos);
    const bool has_length = (m >= 0xC0 && m <= 0xCF) || (m >= 0xDB && m <= 0xDF) || (m >= 0xE0 && m <= 0xEF) || m == 0xFE;
    if (!has_length) return;  // stb stops with an error here
    const size_t len = (byte(pos) << 8) | byte(pos + 1);
    if (len < 2) return;
    pos += len;
  }
  for (size_t i = pos; i + 1 < n; ++i) {
    if (b[i] != 0xFF) continue;
    if (b[i + 1] == 0xC4) check_dht(i + 2);
    if (b[i + 1] == 0xDA) check_sos(i + 2);
  }
}

// stb_image <= 2.27 grows its PNG data buffer to the length an IDAT chunk declares before reading
// it, so a 100-byte file declaring a 2 GB chunk makes it allocate 2 GB (found by fuzz_image). Every
// chunk must fit in the file (stb fails on a short chunk anyway, after the allocation).
inline void check_png_chunks(std::span<const uint8_t> b, const std::string& name) {
  static constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() < 8 || !std::equal(kSignature, kSignature + 8, b.begin())) return;
  size_t pos = 8;
  while (pos + 8 <= b.size()) {
    const uint64_t len = (uint64_t{b[pos]} << 24) | (uint64_t{b[pos + 1]} << 16) | (uint64_t{b[pos + 2]} << 8) | b[pos + 3];
    const std::string type(reinterpret_cast<const char*>(b.data() + pos + 4), 4);
    const uint64_t left = b.size() - (pos + 8);
    XFER_CHECK(len <= left, "decode_image: cannot decode ", name, ": corrupt PNG: chunk '", type, "' at byte ", pos,
               " declares ", len, " bytes, only ", left, " remain in the file");
    if (type == "IEND") return;
    pos += 8 + len + 4;  // length, type, data, CRC
  }
}

// stb_image <= 2.27 accumulates a binary PGM/PPM's width, height and maxval in an int without an
// overflow check (signed overflow, undefined behaviour; fixed upstream in 2.28); found by fuzz_image.
// The header is read the way stb reads it and numbers that do not fit in an int are refused.
// Returns true for a 16-bit greyscale PGM (P5 with maximum value > 255): stb 2.27 converts those to
// 3 channels with its 8-bit converter and then reads twice the buffer it filled (heap overflow,
// found by fuzz_image), so decode_image_memory asks stb for 1 channel and replicates it itself.
inline bool check_pnm_header(std::span<const uint8_t> b, const std::string& name) {
  const size_t n = b.size();
  if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return false;
  size_t i = 2;
  auto eof = [&] { return i >= n; };
  auto get = [&]() -> char { return i < n ? static_cast<char>(b[i++]) : '\0'; };  // stb reads 0 at the end
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  char c = get();
  int64_t v = 0, dims[2] = {0, 0};
  int k = 0;
  for (const char* what : {"width", "height", "maximum value"}) {
    for (;;) {  // whitespace and '#' comments, exactly as stbi__pnm_skip_whitespace
      while (!eof() && space(c)) c = get();
      if (eof() || c != '#') break;
      while (!eof() && c != '\n' && c != '\r') c = get();
    }
    v = 0;
    while (!eof() && c >= '0' && c <= '9') {
      v = v * 10 + (c - '0');
      XFER_CHECK(v <= INT32_MAX, "decode_image: cannot decode ", name, ": corrupt PGM/PPM header: the ", what,
                 " does not fit in 32 bits");
      c = get();
    }
    if (k < 2) dims[k++] = v;
  }
  // stb 2.27 also ignores a short read of the pixels and returns uninitialised memory as the image.
  const int64_t pixel_bytes = (b[1] == '6' ? 3 : 1) * (v > 255 ? 2 : 1);
  const int64_t avail = static_cast<int64_t>(n - std::min(i, n));
  XFER_CHECK(dims[0] == 0 || dims[1] == 0 || v == 0 || avail / pixel_bytes >= dims[0] * dims[1],
             "decode_image: cannot decode ", name, ": truncated PGM/PPM: ", dims[0], "x", dims[1], " pixels of ",
             pixel_bytes, " bytes, the file has ", avail, " bytes after the header");
  return b[1] == '5' && v > 255;  // v: the maximum value
}

}  // namespace detail

// Images declaring more pixels than this are refused before decoding: a 20-byte GIF or PSD header
// can otherwise make stb allocate gigabytes. PIL's DecompressionBombError threshold (2 x 89478485).
inline constexpr int64_t kMaxImagePixels = 178'956'970;

// Decodes JPEG/PNG/BMP/TGA/GIF(first frame)/PNM bytes into a 3-channel image (grey and alpha are
// converted as stb does). `name` is used in the error message (a file name, or "<memory>").
inline Image decode_image_memory(std::span<const uint8_t> bytes, const std::string& name = "<memory>",
                                 int64_t max_pixels = kMaxImagePixels) {
  XFER_CHECK(!bytes.empty(), "decode_image: ", name, " is empty (0 bytes)");
  XFER_CHECK(bytes.size() <= static_cast<size_t>(INT32_MAX), "decode_image: ", name, " is too large (", bytes.size(),
             " bytes; stb_image reads at most 2 GiB)");
  detail::check_jpeg_huffman_tables(bytes, name);
  detail::check_png_chunks(bytes, name);
  const bool grey16 = detail::check_pnm_header(bytes, name);
  int w = 0, h = 0, comp = 0;
  // The header alone gives the size, so the cap applies before anything is allocated.
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp)) {
    const char* why = stbi_failure_reason();
    throw Error(::xfer::detail::concat("decode_image: cannot decode ", name, ": ", why ? why : "unknown image format"));
  }
  XFER_CHECK(static_cast<int64_t>(w) * h <= max_pixels, "decode_image: ", name, " declares ", w, "x", h, " = ",
             static_cast<int64_t>(w) * h, " pixels, more than the limit of ", max_pixels,
             " (decompression bomb or corrupt header)");
  stbi_uc* data = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &comp, grey16 ? 1 : 3);
  if (!data) {
    const char* why = stbi_failure_reason();
    throw Error(::xfer::detail::concat("decode_image: cannot decode ", name, ": ", why ? why : "unknown stb_image error"));
  }
  Image img;
  img.height = h;
  img.width = w;
  img.channels = 3;
  if (grey16) {
    img.pixels.resize(static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = data[i / 3];
  } else {
    img.pixels.assign(data, data + static_cast<size_t>(w) * static_cast<size_t>(h) * 3);
  }
  stbi_image_free(data);
  XFER_CHECK(w > 0 && h > 0, "decode_image: ", name, " decoded to an empty ", h, "x", w, " image");
  return img;
}

inline std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  XFER_CHECK(std::filesystem::exists(path, ec), "cannot open ", path.string(), ": no such file");
  XFER_CHECK(!std::filesystem::is_directory(path, ec), "cannot read ", path.string(), ": it is a directory, not a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  XFER_CHECK(in.good(), "cannot open ", path.string());
  const std::streamoff size = in.tellg();
  XFER_CHECK(size >= 0, "cannot read the size of ", path.string());
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  XFER_CHECK(in.good() || size == 0, "cannot read ", size, " bytes from ", path.string());
  return bytes;
}

inline Image decode_image(const std::filesystem::path& path) {
  const auto bytes = read_file_bytes(path);
  return decode_image_memory(bytes, path.string());
}

namespace detail {

// Interpolation taps along one axis: output o reads input[start[o] + k] * weight[o * taps + k] for k < taps.
struct AxisTaps {
  int64_t taps = 0;
  std::vector<int64_t> start;
  std::vector<float> weight;
};

// torch's upsample_bilinear2d_aa (PIL's algorithm): a triangle filter stretched by the scale when
// downsampling, weights normalised per output. Computed in float like torch does for float inputs.
inline AxisTaps antialias_taps(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float support = scale >= 1.0f ? 1.0f * scale : 1.0f;
  const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
  AxisTaps t;
  t.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.start.resize(static_cast<size_t>(out));
  t.weight.assign(static_cast<size_t>(out * t.taps), 0.0f);
  for (int64_t o = 0; o < out; ++o) {
    const float center = scale * (static_cast<float>(o) + 0.5f);
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5f), 0);
    const int64_t xsize = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5f), in) - xmin;
    float* w = &t.weight[static_cast<size_t>(o * t.taps)];
    float total = 0.0f;
    for (int64_t j = 0; j < xsize && j < t.taps; ++j) {
      const float x = (static_cast<float>(j + xmin) - center + 0.5f) * invscale;
      const float ax = std::abs(x);
      w[j] = ax < 1.0f ? 1.0f - ax : 0.0f;
      total += w[j];
    }
    if (total != 0.0f)
      for (int64_t j = 0; j < t.taps; ++j) w[j] /= total;
    t.start[static_cast<size_t>(o)] = xmin;
  }
  return t;
}

// torch's upsample_bilinear2d with align_corners=False (no antialias: aliasing when shrinking a lot).
inline AxisTaps bilinear_taps(int64_t in, int64_t out) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  AxisTaps t;
  t.taps = 2;
  t.start.resize(static_cast<size_t>(out));
  t.weight.assign(static_cast<size_t>(out * 2), 0.0f);
  for (int64_t o = 0; o < out; ++o) {
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    const int64_t i0 = static_cast<int64_t>(src);
    const float l1 = src - static_cast<float>(i0);
    t.start[static_cast<size_t>(o)] = i0;
    if (i0 < in - 1) {
      t.weight[static_cast<size_t>(2 * o)] = 1.0f - l1;
      t.weight[static_cast<size_t>(2 * o + 1)] = l1;
    } else {
      t.weight[static_cast<size_t>(2 * o)] = 1.0f;  // both taps read the last pixel
    }
  }
  return t;
}

// Resamples `planes` float planes of in_h x in_w into out_h x out_w: horizontal pass, then vertical (torch's order).
inline void resample_planes(const float* in, int64_t planes, int64_t in_h, int64_t in_w, float* out, int64_t out_h,
                            int64_t out_w, bool antialias) {
  const AxisTaps tx = antialias ? antialias_taps(in_w, out_w) : bilinear_taps(in_w, out_w);
  const AxisTaps ty = antialias ? antialias_taps(in_h, out_h) : bilinear_taps(in_h, out_h);
  std::vector<float> tmp(static_cast<size_t>(in_h * out_w));
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = in + p * in_h * in_w;
    for (int64_t y = 0; y < in_h; ++y)
      for (int64_t x = 0; x < out_w; ++x) {
        const float* w = &tx.weight[static_cast<size_t>(x * tx.taps)];
        const int64_t s = tx.start[static_cast<size_t>(x)];
        float acc = 0.0f;
        for (int64_t k = 0; k < tx.taps && s + k < in_w; ++k) acc += src[y * in_w + s + k] * w[k];
        tmp[static_cast<size_t>(y * out_w + x)] = acc;
      }
    float* dst = out + p * out_h * out_w;
    for (int64_t y = 0; y < out_h; ++y) {
      const float* w = &ty.weight[static_cast<size_t>(y * ty.taps)];
      const int64_t s = ty.start[static_cast<size_t>(y)];
      for (int64_t x = 0; x < out_w; ++x) {
        float acc = 0.0f;
        for (int64_t k = 0; k < ty.taps && s + k < in_h; ++k) acc += tmp[static_cast<size_t>((s + k) * out_w + x)] * w[k];
        dst[y * out_w + x] = acc;
      }
    }
  }
}

}  // namespace detail

// Bilinear resize of a uint8 image to exactly height x width, as torchvision's F.resize on a uint8
// tensor: interpolate in float, round half to even, clamp to [0, 255].
inline Image resize_image(ImageView img, int64_t height, int64_t width, bool antialias = true) {
  XFER_CHECK(height > 0 && width > 0, "resize_image: target size must be positive, got ", height, "x", width);
  XFER_CHECK(img.height > 0 && img.width > 0 && img.channels > 0, "resize_image: empty input image ", img.height, "x",
             img.width, "x", img.channels);
  if (height == img.height && width == img.width) return to_image(img);
  const int64_t C = img.channels, H = img.height, W = img.width;
  std::vector<float> planes(static_cast<size_t>(C * H * W));
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < C; ++c) planes[static_cast<size_t>((c * H + y) * W + x)] = img.at(y, x, c);
  std::vector<float> out(static_cast<size_t>(C * height * width));
  detail::resample_planes(planes.data(), C, H, W, out.data(), height, width, antialias);
  Image r(height, width, C);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t c = 0; c < C; ++c) {
        const float v = std::nearbyint(out[static_cast<size_t>((c * height + y) * width + x)]);
        r.at(y, x, c) = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
      }
  return r;
}

}  // namespace xfer::data
