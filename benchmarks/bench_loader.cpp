// bench_loader: throughput of the data pipeline on the CIFAR-10 training JPEGs (an ImageFolder):
//   1. decode: ImageFolder load (stb_image, OpenMP over files), images/s;
//   2. augment + batch: one epoch of the CIFAR training recipe through the Loader without prefetch,
//      on 1 thread and on --threads threads, images/s;
//   3. overlap: --steps ResNet-18 training steps (forward + cross-entropy + backward) fed by the
//      prefetching Loader; data_share is the time the step loop waited for batches over its total.
//
//   tar xzf ../shared/data/cifar10-train-jpg.tar.gz -C /tmp/cifar10
//   bench_loader --data /tmp/cifar10/train --threads 2 --json
//
// With --json the last stdout line is one JSON object with every number.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "xfer/core/parallel.hpp"
#include "xfer/data/image_folder.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/split.hpp"
#include "xfer/models/zoo.hpp"
#include "xfer/nn/loss.hpp"

using namespace xfer;
using Clock = std::chrono::steady_clock;

namespace {
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One epoch (or `limit` batches) of the loader; returns images per second.
double loader_rate(const data::Dataset& ds, const data::Compose& tf, data::LoaderOptions opt, int64_t limit_batches) {
  data::Loader<float> loader(ds, tf, opt);
  int64_t images = 0, batches = 0;
  const auto t0 = Clock::now();
  for (auto& [x, y] : loader) {
    images += x.dim(0);
    if (++batches == limit_batches) break;
  }
  return static_cast<double>(images) / seconds_since(t0);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xfer data pipeline benchmark: decode, augmentation + batching, and its share of a training step"};
  std::string data_dir = "/tmp/cifar10/train", model = "resnet18";
  int64_t batch = 64, limit = 0, steps = 8;
  int threads = 2;
  bool json = false;
  app.add_option("--data", data_dir, "ImageFolder root with the CIFAR-10 training JPEGs");
  app.add_option("--batch", batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--limit", limit, "use only the first N images of the folder (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", steps, "training steps for the overlap measurement (0 skips it)")->check(CLI::NonNegativeNumber);
  app.add_option("--model", model, "model trained in the overlap measurement (zoo name)");
  app.add_flag("--json", json, "print one JSON line at the end");
  CLI11_PARSE(app, argc, argv);

  try {
    set_num_threads(threads);
    nlohmann::json out{{"threads", threads}, {"batch", batch}};

    auto t0 = Clock::now();
    const data::ImageFolder folder(data_dir);
    const double decode_s = seconds_since(t0);
    const double decode_rate = static_cast<double>(folder.size()) / decode_s;
    std::printf("decode      %6lld images in %.2f s: %8.0f img/s (%d threads)\n", static_cast<long long>(folder.size()),
                decode_s, decode_rate, threads);
    out["images"] = folder.size();
    out["decode_img_per_s"] = decode_rate;

    std::vector<int64_t> idx;
    const int64_t n = limit > 0 ? std::min(limit, folder.size()) : folder.size();
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    const data::Subset ds(folder, idx);
    const data::Compose tf = data::cifar10_train_transforms();

    const double aug1 = loader_rate(ds, tf, {.batch_size = batch, .shuffle = true, .seed = 1, .prefetch = false, .threads = 1}, 0);
    const double augT =
        loader_rate(ds, tf, {.batch_size = batch, .shuffle = true, .seed = 1, .prefetch = false, .threads = threads}, 0);
    std::printf("augment     %8.0f img/s on 1 thread, %8.0f img/s on %d threads (crop, flip, jitter, rotation, normalize, batch)\n",
                aug1, augT, threads);
    out["augment_img_per_s_1thread"] = aug1;
    out["augment_img_per_s"] = augT;

    if (steps > 0) {
      auto net = models::create<float>(model, {.num_classes = folder.num_classes(), .seed = 1});
      net->train();
      data::Loader<float> loader(ds, tf, {.batch_size = batch, .shuffle = true, .seed = 1, .prefetch = true});
      double wait = 0;
      std::vector<double> waits;
      int64_t done = 0, images = 0;
      // one warm-up step (allocates the model's buffers), then `steps` timed ones
      auto step = [&](const data::Batch<float>& b) {
        net->zero_grad();
        const auto& logits = net->forward(b.x);
        auto [loss, grad] = nn::cross_entropy(logits, b.y);
        net->backward(grad, false);
      };
      step(*loader.next());
      const auto t_all = Clock::now();
      while (done < steps) {
        const auto tw = Clock::now();
        data::Batch<float>* b = loader.next();
        if (!b) b = loader.next();
        waits.push_back(seconds_since(tw));
        wait += waits.back();
        step(*b);
        images += b->x.dim(0);
        ++done;
      }
      const double total = seconds_since(t_all);
      std::sort(waits.begin(), waits.end());
      const double wait_median = waits[waits.size() / 2], wait_max = waits.back();
      std::printf("train step  %s, %lld steps: %.3f s/step, waiting for data %.4f s/step (median %.4f, max %.4f) = %.2f%% of the step\n",
                  model.c_str(), static_cast<long long>(steps), total / static_cast<double>(steps),
                  wait / static_cast<double>(steps), wait_median, wait_max, 100.0 * wait / total);
      out["model"] = model;
      out["step_s"] = total / static_cast<double>(steps);
      out["data_wait_s_per_step"] = wait / static_cast<double>(steps);
      out["data_wait_s_median"] = wait_median;
      out["data_wait_s_max"] = wait_max;
      out["data_share"] = wait / total;
      out["train_img_per_s"] = static_cast<double>(images) / total;
    }
    if (json) std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_loader: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
