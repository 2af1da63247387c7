// Writes the seed corpus for the fuzz harnesses: small valid files of every kind each harness reads.
// Usage: fuzz_seeds <out_dir>   (creates <out_dir>/{safetensors,checkpoint,cifar10,image}/).
// Deterministic: same bytes on every run (fixed seeds, no timestamps), so the committed corpus can
// be regenerated and diffed.
#define XFER_STB_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stb_image_write.h>

#include "fuzz_common.hpp"
#include "xfer/io/checkpoint.hpp"
#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_dict.hpp"

namespace fs = std::filesystem;

static void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  XFER_CHECK(out.good(), "fuzz_seeds: cannot write ", p.string());
}

static void stb_to_vec(void* ctx, void* data, int size) {
  auto* v = static_cast<std::vector<uint8_t>*>(ctx);
  v->insert(v->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <out_dir>\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  for (const char* d : {"safetensors", "checkpoint", "cifar10", "image"}) fs::create_directories(out / d);

  // A trained-looking model: one Adam step with a non-zero gradient, one train-mode forward.
  auto model = xfer_fuzz::small_model();
  auto opt = xfer_fuzz::small_optimizer(*model);
  for (auto* p : model->parameters())
    for (int64_t i = 0; i < p->numel; ++i) p->grad[i] = 0.001f * static_cast<float>(i % 7 - 3);
  opt->step();

  // safetensors: the model's weights, an empty file, and one tensor of each dtype family.
  xfer::io::save_safetensors(*model, (out / "safetensors/model.safetensors").string());
  xfer::io::write_safetensors((out / "safetensors/empty.safetensors").string(), {}, {{"format", "pt"}});
  {
    const uint16_t f16[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};  // 1, -2, max, smallest subnormal
    const uint16_t bf16[2] = {0x3F80, 0xFF80};                   // 1, -inf
    const uint8_t f8[3] = {0x38, 0x7F, 0x80};
    const int64_t i64[2] = {-5, 1LL << 40};
    const uint64_t u64[1] = {~0ULL};
    const int32_t i32[3] = {1, -2, 3};
    const double f64[2] = {0.5, -1e300};
    const uint8_t b[2] = {0, 1};
    using xfer::io::Dtype;
    xfer::io::write_safetensors((out / "safetensors/dtypes.safetensors").string(),
                                {{"f16", Dtype::F16, {2, 2}, f16},       {"bf16", Dtype::BF16, {2}, bf16},
                                 {"f8a", Dtype::F8_E4M3, {3}, f8},       {"f8b", Dtype::F8_E5M2, {3}, f8},
                                 {"i64", Dtype::I64, {2}, i64},          {"u64", Dtype::U64, {}, u64},
                                 {"i32", Dtype::I32, {3, 1}, i32},       {"f64", Dtype::F64, {2}, f64},
                                 {"bool", Dtype::BOOL, {2}, b},          {"zero", Dtype::F32, {0, 3}, nullptr}},
                                {{"note", "seed"}});
  }

  // checkpoints: with Adam state and a caller state document, and before any optimizer step.
  const nlohmann::json state = {{"epoch", 3}, {"history", {{{"loss", 1.5}, {"acc", 0.25}}}}, {"rng", "123 456"}};
  xfer::io::save_checkpoint((out / "checkpoint/adam_step1.safetensors").string(), *model, opt.get(), state);
  {
    auto fresh = xfer_fuzz::small_model();
    auto fresh_opt = xfer_fuzz::small_optimizer(*fresh);
    xfer::io::save_checkpoint((out / "checkpoint/adam_step0.safetensors").string(), *fresh, fresh_opt.get(),
                              nlohmann::json::object());
  }

  // CIFAR-10: two records (labels 3 and 9) with a gradient pattern.
  {
    std::vector<uint8_t> b;
    for (int r = 0; r < 2; ++r) {
      b.push_back(r == 0 ? 3 : 9);
      for (int i = 0; i < 3072; ++i) b.push_back(static_cast<uint8_t>((i * 7 + r * 31) & 0xFF));
    }
    write_bytes(out / "cifar10/two_records.bin", b);
  }

  // Images: 5x4 RGB pattern in every format stb_image_write produces, plus PNM and GIF by hand.
  {
    const int w = 5, h = 4;
    std::vector<uint8_t> rgb(static_cast<size_t>(w * h * 3)), grey(static_cast<size_t>(w * h));
    std::vector<uint8_t> rgba(static_cast<size_t>(w * h * 4));
    for (int i = 0; i < w * h; ++i) {
      rgb[3 * i] = static_cast<uint8_t>(i * 12), rgb[3 * i + 1] = static_cast<uint8_t>(255 - i * 9),
      rgb[3 * i + 2] = static_cast<uint8_t>(i * i);
      grey[i] = static_cast<uint8_t>(i * 13);
      for (int c = 0; c < 4; ++c) rgba[4 * i + c] = static_cast<uint8_t>(i * 10 + c * 50);
    }
    std::vector<float> hdr(rgb.begin(), rgb.end());
    auto emit = [&](const char* name, auto write) {
      std::vector<uint8_t> v;
      XFER_CHECK(write(&v) != 0, "fuzz_seeds: stb_image_write failed for ", name);
      write_bytes(out / "image" / name, v);
    };
    emit("rgb.png", [&](void* c) { return stbi_write_png_to_func(stb_to_vec, c, w, h, 3, rgb.data(), w * 3); });
    emit("grey.png", [&](void* c) { return stbi_write_png_to_func(stb_to_vec, c, w, h, 1, grey.data(), w); });
    emit("rgba.png", [&](void* c) { return stbi_write_png_to_func(stb_to_vec, c, w, h, 4, rgba.data(), w * 4); });
    emit("rgb.bmp", [&](void* c) { return stbi_write_bmp_to_func(stb_to_vec, c, w, h, 3, rgb.data()); });
    emit("rgb.tga", [&](void* c) { return stbi_write_tga_to_func(stb_to_vec, c, w, h, 3, rgb.data()); });
    emit("rgb.jpg", [&](void* c) { return stbi_write_jpg_to_func(stb_to_vec, c, w, h, 3, rgb.data(), 90); });
    emit("grey.jpg", [&](void* c) { return stbi_write_jpg_to_func(stb_to_vec, c, w, h, 1, grey.data(), 75); });
    emit("rgb.hdr", [&](void* c) { return stbi_write_hdr_to_func(stb_to_vec, c, w, h, 3, hdr.data()); });
    std::string ppm = "P6\n5 4\n255\n";
    ppm.append(reinterpret_cast<const char*>(rgb.data()), rgb.size());
    write_bytes(out / "image/rgb.ppm", std::vector<uint8_t>(ppm.begin(), ppm.end()));
    // A 2x2 GIF89a with a 4-colour global palette (LZW minimum code size 2).
    const std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 2, 0, 2, 0, 0x81, 0, 0,  // screen, 4-colour GCT
                                      255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255,       // palette
                                      0x2C, 0, 0, 0, 0, 2, 0, 2, 0, 0,                      // image descriptor
                                      2, 3, 0x84, 0x1D, 0x05, 0,                            // LZW data: 0 1 2 3
                                      0x3B};
    write_bytes(out / "image/tiny.gif", gif);
  }
  std::printf("seed corpus written to %s\n", out.string().c_str());
  return 0;
}
