// bench_depthwise: GB/s of xfer's depthwise convolution kernels (kernels/depthwise.hpp: forward,
// backward-data, backward-weights) on every distinct depthwise shape of MobileNetV3-Large and
// EfficientNet-B0 at 224x224, against a measured memory-bandwidth probe (y = a * x over arrays far
// larger than the caches, same threads). A depthwise conv is memory-bound, so GB/s, not GFLOP/s,
// says how close to the machine it runs.
//
//   bench_depthwise --batch 16 --threads 2 [--min-time 0.3] [--json]
//
// Bytes counted per call: forward reads x and writes y; backward-data reads dy and writes dx;
// backward-weights reads x and dy (the weights are a few KB and left out).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/kernels/conv2d.hpp"

using namespace xfer;
using clock_type = std::chrono::steady_clock;

namespace {

struct DwShape {
  std::string net, layer;
  int64_t c, hw, k, s;
};

std::vector<DwShape> dw_shapes() {
  return {
      {"mobilenet_v3_large", "features.1", 16, 112, 3, 1},     {"mobilenet_v3_large", "features.2", 64, 112, 3, 2},
      {"mobilenet_v3_large", "features.3", 72, 56, 3, 1},      {"mobilenet_v3_large", "features.4", 72, 56, 5, 2},
      {"mobilenet_v3_large", "features.5-6", 120, 28, 5, 1},   {"mobilenet_v3_large", "features.7", 240, 28, 3, 2},
      {"mobilenet_v3_large", "features.11", 480, 14, 3, 1},    {"mobilenet_v3_large", "features.13", 672, 14, 5, 2},
      {"mobilenet_v3_large", "features.14-15", 960, 7, 5, 1},  {"efficientnet_b0", "features.1.0", 32, 112, 3, 1},
      {"efficientnet_b0", "features.2.0", 96, 112, 3, 2},      {"efficientnet_b0", "features.2.1", 144, 56, 3, 1},
      {"efficientnet_b0", "features.3.0", 144, 56, 5, 2},      {"efficientnet_b0", "features.3.1", 240, 28, 5, 1},
      {"efficientnet_b0", "features.5.1-2", 672, 14, 5, 1},    {"efficientnet_b0", "features.6.1-3", 1152, 7, 5, 1},
  };
}

template <class F>
double median_seconds(F&& f, double min_time) {
  f();  // warm-up (scratch buffers, page faults)
  std::vector<double> t;
  const auto start = clock_type::now();
  while (t.size() < 5 || std::chrono::duration<double>(clock_type::now() - start).count() < min_time) {
    const auto t0 = clock_type::now();
    f();
    t.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Memory bandwidth of y = a * x over 2 x 128 MB (read + write), GB/s: the best of 5 passes.
double bandwidth_probe(double min_time) {
  const int64_t n = int64_t{32} << 20;
  AlignedVector<float> x(static_cast<size_t>(n), 1.0f), y(static_cast<size_t>(n), 0.0f);
  float* yp = y.data();
  const float* xp = x.data();
  const double s = median_seconds([&] {
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) yp[i] = 1.0001f * xp[i];
  }, min_time);
  return 2.0 * static_cast<double>(n) * sizeof(float) / s * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GB/s of the depthwise convolution kernels against a memory-bandwidth probe"};
  int64_t batch = 16;
  int threads = 2;
  double min_time = 0.3;
  bool json = false;
  app.add_option("--batch", batch, "images per call")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--min-time", min_time, "seconds per measurement")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print one JSON line at the end");
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const double bw = bandwidth_probe(min_time);
    if (!json)
      std::printf("ISA %s, %d thread(s), batch %lld; memory-bandwidth probe (y = a * x, 256 MB): %.1f GB/s\n\n"
                  "| model | layer | C | map | k/s | fwd GB/s | %% | bwd-data GB/s | %% | bwd-weights GB/s | %% |\n"
                  "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|\n",
                  isa_summary().c_str(), threads, static_cast<long long>(batch), bw);
    nlohmann::json rows = nlohmann::json::array();
    Rng rng(7);
    for (const auto& s : dw_shapes()) {
      kernels::Conv2dGeometry g{.n = batch, .c = s.c, .h = s.hw, .w = s.hw, .o = s.c, .kh = s.k, .kw = s.k,
                                .sh = s.s, .sw = s.s, .ph = s.k / 2, .pw = s.k / 2, .groups = s.c};
      g.finish();
      Tensor<float> x({g.n, g.c, g.h, g.w}), w({g.o, 1, g.kh, g.kw}), y({g.n, g.o, g.oh, g.ow}), dx(x.shape()), dw(w.shape());
      for (auto* t : {&x, &w, &y})
        for (auto& v : *t) v = static_cast<float>(rng.normal());
      const double xb = static_cast<double>(x.numel()) * 4e-9, yb = static_cast<double>(y.numel()) * 4e-9;
      const double f = (xb + yb) / median_seconds([&] {
        kernels::conv2d_forward(g, x.data(), w.data(), static_cast<const float*>(nullptr), y.data());
      }, min_time);
      const double d = (xb + yb) / median_seconds([&] { kernels::conv2d_backward_data(g, y.data(), w.data(), dx.data()); }, min_time);
      const double wg = (xb + yb) / median_seconds([&] {
        kernels::conv2d_backward_weights(g, x.data(), y.data(), dw.data(), static_cast<float*>(nullptr));
      }, min_time);
      if (!json)
        std::printf("| %s | %s | %lld | %lldx%lld | %lldx%lld/%lld | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.0f%% |\n",
                    s.net.c_str(), s.layer.c_str(), static_cast<long long>(s.c), static_cast<long long>(s.hw),
                    static_cast<long long>(s.hw), static_cast<long long>(s.k), static_cast<long long>(s.k),
                    static_cast<long long>(s.s), f, 100 * f / bw, d, 100 * d / bw, wg, 100 * wg / bw);
      std::fflush(stdout);
      rows.push_back({{"model", s.net}, {"layer", s.layer}, {"c", s.c}, {"hw", s.hw}, {"k", s.k}, {"stride", s.s},
                      {"fwd_gbs", f}, {"bwd_data_gbs", d}, {"bwd_weights_gbs", wg}});
    }
    if (json)
      std::cout << nlohmann::json{{"isa", isa_name(active_isa())}, {"threads", threads}, {"batch", batch},
                                  {"bandwidth_gbs", bw}, {"layers", rows}}.dump()
                << std::endl;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_depthwise: %s\n", e.what());
    return 1;
  }
  return 0;
}
