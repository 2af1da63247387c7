// bench_conv: GFLOP/s and % of the measured FMA peak of xfer's convolution kernels (forward,
// backward-data, backward-weights) on every distinct conv shape of ResNet-18 (CIFAR stem and
// ImageNet stem) and VGG-11 at 32x32 input, plus the peak-FMA probe the percentages are based on.
//
//   bench_conv --batch 64 --threads 2 [--filter cifar] [--min-time 0.3] [--json]
//
// The probe runs independent FMA chains on every thread with the vectors of the ISA the kernels
// use (chosen at run time; XFER_ISA forces a lower one), so "% of peak" is relative to what this
// machine does with this many threads, not a data sheet.
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
#include "xfer/kernels/conv2d.hpp"
#include "xfer/kernels/probe.hpp"

using namespace xfer;
using clock_type = std::chrono::steady_clock;

namespace {

struct Shape2 {
  std::string net;   // which model(s) use it
  std::string name;  // layer name in that model
  int64_t c, o, hw, k, s, p;
};

std::vector<Shape2> conv_shapes() {
  return {
      {"resnet18-cifar", "conv1", 3, 64, 32, 3, 1, 1},
      {"resnet18-cifar", "layer1.*.conv*", 64, 64, 32, 3, 1, 1},
      {"resnet18-cifar", "layer2.0.conv1", 64, 128, 32, 3, 2, 1},
      {"resnet18-cifar", "layer2.*.conv2", 128, 128, 16, 3, 1, 1},
      {"resnet18-cifar", "layer2.0.downsample", 64, 128, 32, 1, 2, 0},
      {"resnet18-cifar", "layer3.0.conv1", 128, 256, 16, 3, 2, 1},
      {"resnet18-cifar", "layer3.*.conv2", 256, 256, 8, 3, 1, 1},
      {"resnet18-cifar", "layer3.0.downsample", 128, 256, 16, 1, 2, 0},
      {"resnet18-cifar", "layer4.0.conv1", 256, 512, 8, 3, 2, 1},
      {"resnet18-cifar", "layer4.*.conv2", 512, 512, 4, 3, 1, 1},
      {"resnet18-cifar", "layer4.0.downsample", 256, 512, 8, 1, 2, 0},
      {"resnet18", "conv1 7x7/2", 3, 64, 32, 7, 2, 3},
      {"resnet18", "layer1.*.conv*", 64, 64, 8, 3, 1, 1},
      {"resnet18", "layer2.0.conv1", 64, 128, 8, 3, 2, 1},
      {"resnet18", "layer2.*.conv2", 128, 128, 4, 3, 1, 1},
      {"resnet18", "layer2.0.downsample", 64, 128, 8, 1, 2, 0},
      {"resnet18", "layer3.0.conv1", 128, 256, 4, 3, 2, 1},
      {"resnet18", "layer3.*.conv2", 256, 256, 2, 3, 1, 1},
      {"resnet18", "layer3.0.downsample", 128, 256, 4, 1, 2, 0},
      {"resnet18", "layer4.0.conv1", 256, 512, 2, 3, 2, 1},
      {"resnet18", "layer4.*.conv2", 512, 512, 1, 3, 1, 1},
      {"resnet18", "layer4.0.downsample", 256, 512, 2, 1, 2, 0},
      {"vgg11", "features.0", 3, 64, 32, 3, 1, 1},
      {"vgg11", "features.4", 64, 128, 16, 3, 1, 1},
      {"vgg11", "features.8", 128, 256, 8, 3, 1, 1},
      {"vgg11", "features.11", 256, 256, 8, 3, 1, 1},
      {"vgg11", "features.15", 256, 512, 4, 3, 1, 1},
      {"vgg11", "features.18", 512, 512, 4, 3, 1, 1},
      {"vgg11", "features.22/25", 512, 512, 2, 3, 1, 1},
  };
}

// Peak fp32 FMA rate of `threads` threads, in GFLOP/s (2 flops per lane per FMA).
double fma_peak(int threads, double seconds = 0.3) {
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const int64_t iters = 20'000'000;
    double total_flops = 0;
    const auto t0 = clock_type::now();
#pragma omp parallel num_threads(threads) reduction(+ : total_flops)
    {
      float sink = 0;
      const auto start = clock_type::now();
      double n = 0;
      do {
        n += kernels::fma_chains(active_isa(), iters / 100, &sink);
      } while (std::chrono::duration<double>(clock_type::now() - start).count() < seconds);
      total_flops += n + (sink == 12345.f ? 1 : 0);
    }
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    best = std::max(best, total_flops / dt * 1e-9);
  }
  return best;
}

// What the GEMM micro-kernel itself does with its panels resident in L1 (every thread runs it):
// the ceiling of any convolution built on it, below the FMA peak by the cost of its loads.
double micro_kernel_ceiling(int threads, double seconds = 0.3) {
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double total_flops = 0;
    const auto t0 = clock_type::now();
#pragma omp parallel num_threads(threads) reduction(+ : total_flops)
    {
      kernels::detail::with_gemm_kernels(active_isa(), [&](auto kern) {
        using K = decltype(kern);
        constexpr int64_t kc = 256;
        AlignedVector<float> a(K::MR * kc, 1e-3f), b(K::NR * kc, 1e-3f), c(K::MR * K::NR, 0.0f);
        int64_t calls = 0;
        const auto start = clock_type::now();
        do {
          for (int r = 0; r < 200; ++r) K::micro(kc, a.data(), b.data(), c.data(), K::NR, r == 0);
          calls += 200;
        } while (std::chrono::duration<double>(clock_type::now() - start).count() < seconds);
        total_flops += 2.0 * K::MR * K::NR * kc * static_cast<double>(calls) + (c[0] == 12345.f ? 1 : 0);
      });
    }
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    best = std::max(best, total_flops / dt * 1e-9);
  }
  return best;
}

template <class F>
double median_seconds(F&& f, double min_time) {
  f();  // warm-up (grows the workspace)
  std::vector<double> t;
  const auto start = clock_type::now();
  do {
    const auto t0 = clock_type::now();
    f();
    t.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
  } while (std::chrono::duration<double>(clock_type::now() - start).count() < min_time || t.size() < 3);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xfer convolution kernel benchmark (GFLOP/s and % of measured FMA peak)"};
  int64_t batch = 64;
  int threads = 2;
  double min_time = 0.3;
  std::string filter;
  bool json = false;
  app.add_option("--batch", batch, "images")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--min-time", min_time, "seconds per kernel and shape")->check(CLI::PositiveNumber);
  app.add_option("--filter", filter, "only shapes whose model or layer name contains this");
  app.add_flag("--json", json, "print one JSON object at the end instead of the table");
  CLI11_PARSE(app, argc, argv);

  set_num_threads(threads);
  const double peak1 = fma_peak(1), peak = fma_peak(threads);
  const double ceiling = micro_kernel_ceiling(threads);
  if (!json) {
    std::printf("ISA: %s\n", isa_summary().c_str());
    std::printf("FMA peak: %.0f GFLOP/s on 1 thread, %.0f GFLOP/s on %d threads; batch %lld\n", peak1, peak, threads,
                static_cast<long long>(batch));
    if (ceiling > 0)
      std::printf("GEMM micro-kernel (panels in L1) on %d threads: %.0f GFLOP/s = %.0f%% of peak\n", threads,
                  ceiling, 100 * ceiling / peak);
    std::printf("GFLOP/s count the full kernel's FLOPs (2*N*O*C*k*k*OH*OW); taps that only see padding are\n"
                "skipped, so a 3x3 conv on a 1x1 map can exceed 100%%.\n\n");
  }
  if (!json)
    std::printf("| model | layer | C->O | k/s | map | fwd GFLOP/s | %% | bwd-data GFLOP/s | %% | bwd-weights GFLOP/s | %% |\n"
                "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|\n");
  nlohmann::json rows = nlohmann::json::array();
  Rng rng(7);
  for (const auto& s : conv_shapes()) {
    if (!filter.empty() && s.net.find(filter) == std::string::npos && s.name.find(filter) == std::string::npos)
      continue;
    kernels::Conv2dGeometry g{.n = batch, .c = s.c, .h = s.hw, .w = s.hw, .o = s.o, .kh = s.k, .kw = s.k,
                              .sh = s.s, .sw = s.s, .ph = s.p, .pw = s.p};
    g.finish();
    Tensor<float> x({g.n, g.c, g.h, g.w}), w({g.o, g.c, g.kh, g.kw}), y({g.n, g.o, g.oh, g.ow}), dx(x.shape()),
        dw(w.shape());
    for (auto* t : {&x, &w, &y})
      for (auto& v : *t) v = static_cast<float>(rng.normal());
    const double tf = median_seconds([&] { kernels::conv2d_forward(g, x.data(), w.data(), static_cast<const float*>(nullptr), y.data()); }, min_time);
    const double td = median_seconds([&] { kernels::conv2d_backward_data(g, y.data(), w.data(), dx.data()); }, min_time);
    const double tw =
        median_seconds([&] { kernels::conv2d_backward_weights(g, x.data(), y.data(), dw.data(), static_cast<float*>(nullptr)); }, min_time);
    const double gf = g.flops() * 1e-9;
    const double f = gf / tf, d = gf / td, wgt = gf / tw;
    if (!json)
      std::printf("| %s | %s | %lld->%lld | %lldx%lld/%lld | %lldx%lld | %.0f | %.0f%% | %.0f | %.0f%% | %.0f | %.0f%% |\n",
                  s.net.c_str(), s.name.c_str(), static_cast<long long>(s.c), static_cast<long long>(s.o),
                  static_cast<long long>(s.k), static_cast<long long>(s.k), static_cast<long long>(s.s),
                  static_cast<long long>(s.hw), static_cast<long long>(s.hw), f, 100 * f / peak, d, 100 * d / peak, wgt,
                  100 * wgt / peak);
    std::fflush(stdout);
    rows.push_back({{"model", s.net}, {"layer", s.name}, {"c", s.c}, {"o", s.o}, {"hw", s.hw}, {"k", s.k},
                    {"stride", s.s}, {"pad", s.p}, {"gflop", gf}, {"fwd_gflops", f}, {"bwd_data_gflops", d},
                    {"bwd_weights_gflops", wgt}, {"fwd_pct_peak", 100 * f / peak}, {"bwd_data_pct_peak", 100 * d / peak},
                    {"bwd_weights_pct_peak", 100 * wgt / peak}});
  }
  if (json) {
    nlohmann::json j{{"isa", isa_name(active_isa())}, {"cpu", cpu_info().brand}, {"batch", batch}, {"threads", threads}, {"peak_gflops_1thread", peak1},
                     {"peak_gflops", peak}, {"micro_kernel_gflops", ceiling}, {"layers", rows}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}
