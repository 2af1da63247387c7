// libFuzzer harness: load_checkpoint (resume) of arbitrary bytes into a small model + Adam, then one
// optimizer step so a state that loaded is also usable.
#define XFER_STB_IMPLEMENTATION
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "xfer/io/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static auto model = xfer_fuzz::small_model();
  static auto opt = xfer_fuzz::small_optimizer(*model);
  const std::string& path = xfer_fuzz::write_scratch(data, size, ".ckpt.safetensors");
  try {
    nlohmann::json state = xfer::io::load_checkpoint(path, *model, opt.get());
    (void)state.dump();
    for (auto* p : model->parameters())
      for (int64_t i = 0; i < p->numel; ++i) p->grad[i] = 0.01f;
    opt->step();
  } catch (const xfer::Error&) {
  }
  try {
    (void)xfer::io::load_checkpoint(path, *model, static_cast<xfer::optim::Optimizer<float>*>(nullptr));  // weights only
  } catch (const xfer::Error&) {
  }
  return 0;
}
