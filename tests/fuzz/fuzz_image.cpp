// libFuzzer harness: the image decode path ImageFolder uses (data::decode_image_memory, stb_image
// compiled into this program so the fuzzer instruments it), then resize_image as ImageFolder's
// resize-on-load does.
#define XFER_STB_IMPLEMENTATION
#include <cstdint>
#include <span>

#include "xfer/data/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // A 1M-pixel cap instead of the default 179M keeps every input fast (big images starve the fuzzer).
    const xfer::data::Image img =
        xfer::data::decode_image_memory(std::span<const uint8_t>(data, size), "<fuzz>", int64_t{1} << 20);
    if (img.channels != 3 || img.pixels.size() != static_cast<size_t>(img.height * img.width * 3)) __builtin_trap();
    if (img.height * img.width <= 4096) (void)xfer::data::resize_image(img, 8, 8);
  } catch (const xfer::Error&) {
  }
  return 0;
}
