// bench_models: images per second of a whole model for inference, a full training step
// (forward + backward + SGD with momentum) or a frozen-backbone step (only the head learns; the
// backbone's BatchNorm statistics are frozen too, so it runs like inference).
//
//   bench_models --model resnet18 --mode train --batch 64 --threads 2 --seconds 10 --json
//
// Input is 3x32x32 with 10 classes (the CIFAR-sized workload compare_pytorch.py also runs).
// "vgg11" means vgg11_bn features with the 512 -> classes head (zoo name vgg11-cifar), the usual
// VGG for 32x32 inputs; any other zoo name is accepted as is. Every step is timed on its own after
// warm-up; img_per_s is the median over steps, img_per_s_min the slowest step. The kernels' ISA is
// chosen at run time (XFER_ISA=generic|avx2|avx512 forces a lower one) and printed with the result.
// The batch is the same every step, so the loss of a training mode falls (loss_first / loss_last in
// the JSON, over all steps including warm-up); --steps N runs exactly N timed steps (the ctest uses it).
// Training steps use optim::SGD (lr 0.01, momentum 0.9) and its zero_grad, as a user's loop does.
// Memory: rss_base_mb is the resident set after the model and batch exist; the kernel's high-water
// mark is then reset (/proc/self/clear_refs) and rss_peak_mb is the high-water mark over warm-up and
// timed steps, so rss_peak_mb - rss_base_mb is what stepping adds (compare_pytorch.py measures
// PyTorch the same way).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/models/zoo.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/optim/sgd.hpp"

using namespace xfer;

namespace {

// A "VmRSS:" / "VmHWM:" line of /proc/self/status, in MB (the kernel reports kB).
double proc_status_mb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0;
  return 0.0;
}

// Resets the high-water mark of the resident set to the current size (Linux >= 4.0).
void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

std::string zoo_name(const std::string& model) {
  if (model == "vgg11" || model == "vgg13" || model == "vgg16") return model + "-cifar";
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xfer model benchmark: images/s for inference, training and frozen-backbone steps"};
  std::string model = "resnet18", mode = "train";
  int64_t batch = 64, image = 32, classes = 10;
  int threads = 2, warmup = 3, steps = 0;
  double seconds = 10;
  bool json = false;
  app.add_option("--model", model, "resnet18 | resnet18-cifar | vgg11 (vgg11_bn, 512->classes head) | any zoo name");
  app.add_option("--mode", mode, "infer | train | frozen")->check(CLI::IsMember({"infer", "train", "frozen"}));
  app.add_option("--batch", batch, "images per step")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--seconds", seconds, "measurement time after warm-up")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", steps, "exactly this many timed steps instead of --seconds")->check(CLI::PositiveNumber);
  app.add_option("--image", image, "input height = width")->check(CLI::PositiveNumber);
  app.add_option("--classes", classes, "number of classes")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print one JSON line at the end");
  CLI11_PARSE(app, argc, argv);

  try {
    set_num_threads(threads);
    auto net = models::create<float>(zoo_name(model), {.num_classes = classes, .seed = 1});
    if (mode == "infer") {
      nn::prepare_inference(*net);  // eval() + BN folded into the convolutions
    } else {
      net->train();
      if (mode == "frozen") net->freeze_backbone({.bn_stats = true});
    }

    Rng rng(42);
    Tensor<float> x({batch, 3, image, image});
    for (auto& v : x) v = static_cast<float>(rng.normal());
    nn::Labels y(static_cast<size_t>(batch));
    for (auto& l : y) l = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));

    std::optional<optim::SGD<float>> opt;
    if (mode != "infer") opt.emplace(net->parameters(), optim::SGDOptions{.lr = 0.01, .momentum = 0.9});

    std::vector<double> losses;
    auto step = [&] {
      const Tensor<float>& logits = net->forward(x);
      auto [loss, grad] = nn::cross_entropy(logits, y);
      losses.push_back(loss);
      if (!opt) return;
      opt->zero_grad();
      net->backward(grad, false);
      opt->step();
    };

    const double rss_base = proc_status_mb("VmRSS:");
    reset_peak_rss();
    for (int i = 0; i < warmup; ++i) step();
    std::vector<double> rates;
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    do {
      const auto t0 = clock::now();
      step();
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      rates.push_back(static_cast<double>(batch) / dt);
    } while (steps ? rates.size() < static_cast<size_t>(steps)
                   : std::chrono::duration<double>(clock::now() - start).count() < seconds || rates.size() < 3);

    std::vector<double> sorted = rates;
    std::sort(sorted.begin(), sorted.end());
    const double median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                            : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
    const double worst = sorted.front();
    const double rss = proc_status_mb("VmHWM:");
    if (!json) {
      std::printf("%s %s batch=%lld threads=%d isa=%s: %.1f img/s median, %.1f min over %zu steps, RSS %.0f MB base + %.0f MB stepping, loss %.4f -> %.4f\n",
                  model.c_str(), mode.c_str(), static_cast<long long>(batch), threads, isa_summary().c_str(), median,
                  worst, rates.size(), rss_base, rss - rss_base, losses.front(), losses.back());
    } else {
      nlohmann::json j{{"model", model},         {"mode", mode},           {"batch", batch},
                       {"threads", threads},     {"img_per_s", median},    {"img_per_s_min", worst},
                       {"rss_base_mb", rss_base}, {"rss_peak_mb", rss}, {"steps", rates.size()},  {"isa", isa_name(active_isa())},
                       {"cpu", cpu_info().brand}, {"loss_first", losses.front()}, {"loss_last", losses.back()}};
      std::cout << j.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_models: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
