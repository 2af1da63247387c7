// Shared by the libFuzzer harnesses and the seed generator: the small model and optimizer the
// weight/checkpoint harnesses load into, and a per-process scratch file for readers that take a path.
// The one thing to know: a harness may only let xfer::Error escape its reader call; any other
// exception, crash or sanitizer report is a bug, so harnesses catch xfer::Error and nothing else.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "xfer/core/rng.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/linear.hpp"
#include "xfer/nn/sequential.hpp"
#include "xfer/optim/adam.hpp"

namespace xfer_fuzz {

// Conv(3->4, 3x3) + BatchNorm(4) + Linear(4->3): weights, biases, running stats and a counter,
// i.e. every kind of state_dict entry, in about 1 KB.
inline std::shared_ptr<xfer::nn::Sequential<float>> small_model() {
  auto net = std::make_shared<xfer::nn::Sequential<float>>();
  xfer::Rng rng(7);
  net->push_back(std::make_shared<xfer::nn::Conv2d<float>>(xfer::nn::Conv2dOptions{3, 4, 3, 1, 1, true}, rng));
  net->push_back(std::make_shared<xfer::nn::BatchNorm2d<float>>(4));
  net->push_back(std::make_shared<xfer::nn::Linear<float>>(xfer::nn::LinearOptions{4, 3, true}, rng));
  return net;
}

inline std::unique_ptr<xfer::optim::Adam<float>> small_optimizer(xfer::nn::Module<float>& model) {
  return std::make_unique<xfer::optim::Adam<float>>(model.parameters(), xfer::optim::AdamOptions{.lr = 1e-3});
}

// Writes the fuzz input to a file private to this process (the readers under test take a path);
// $XFER_FUZZ_TMP or /tmp. The file is overwritten on every input, never deleted mid-run.
inline const std::string& write_scratch(const uint8_t* data, size_t size, const char* ext) {
  static const std::string path = [ext] {
    const char* dir = std::getenv("XFER_FUZZ_TMP");
    return std::string(dir && *dir ? dir : "/tmp") + "/xfer-fuzz-" + std::to_string(::getpid()) + ext;
  }();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) std::abort();  // the harness itself failed, not the reader
  return path;
}

}  // namespace xfer_fuzz
