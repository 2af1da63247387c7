// libFuzzer harness: SafetensorsReader on arbitrary bytes (header validation, every tensor read
// as float / double / int64 and as raw bytes), then strict and non-strict loading into a small model.
#define XFER_STB_IMPLEMENTATION
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_dict.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto model = xfer_fuzz::small_model();
  const std::string& path = xfer_fuzz::write_scratch(data, size, ".safetensors");
  try {
    xfer::io::SafetensorsReader file(path);
    (void)file.keys();
    for (const auto& t : file.tensors()) {
      try {
        (void)file.read<float>(t.name);
        (void)file.read<double>(t.name);
        (void)file.read_bytes(t.name);
        (void)file.read<int64_t>(t.name);  // throws for non-integral floats
      } catch (const xfer::Error&) {
      }
    }
    try {
      xfer::io::load_state_dict(*model, file, {.strict = false});
      xfer::io::load_state_dict(*model, file);
    } catch (const xfer::Error&) {
    }
  } catch (const xfer::Error&) {
  }
  return 0;
}
