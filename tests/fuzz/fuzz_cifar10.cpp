// libFuzzer harness: the CIFAR-10 binary reader (data::Cifar10 on one .bin file), then every sample.
#define XFER_STB_IMPLEMENTATION
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "xfer/data/cifar10.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = xfer_fuzz::write_scratch(data, size, ".bin");
  try {
    xfer::data::Cifar10 ds(path);
    unsigned sum = 0;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const auto v = ds.image(i);
      if (v.height != 32 || v.width != 32 || v.channels != 3 || ds.label(i) < 0 || ds.label(i) > 9) __builtin_trap();
      for (int64_t k = 0; k < v.numel(); ++k) sum += v.pixels[k];
    }
    (void)sum;
  } catch (const xfer::Error&) {
  }
  return 0;
}
