// Self-supervised pretraining by rotation prediction (RotNet, Gidaris et al. 2018): every image of
// a batch is turned by k x 90 degrees (k drawn per sample) after its augmentation, and the network
// learns k with a 4-way head. No labels are read. Writes OUT/last.safetensors after every epoch
// with ModelInfo metadata (4 classes rot0..rot270, the preset, method "rotation"), so `--weights`
// loads the backbone (the head is replaced) and picks the same preset.
// Supervised pretraining is the ordinary recipe (train/finetune.hpp) on the source classes.
// The one thing to know: images must be square after the transforms (a 90 degree turn must keep the
// shape); the rotation is applied to the normalised tensor, which commutes with per-channel Normalize.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "xfer/data/loader.hpp"
#include "xfer/io/checkpoint.hpp"
#include "xfer/io/model_info.hpp"
#include "xfer/models/model.hpp"
#include "xfer/optim/adam.hpp"
#include "xfer/optim/scheduler.hpp"
#include "xfer/train/curves.hpp"
#include "xfer/train/finetune.hpp"
#include "xfer/train/metrics.hpp"
#include "xfer/train/progress.hpp"

namespace xfer::train {

// dst = src (C x S x S) turned k x 90 degrees counter-clockwise (torch.rot90(x, k, dims=(1, 2))).
template <class T>
void rotate90(const T* src, T* dst, int64_t C, int64_t S, int k) {
  k = ((k % 4) + 4) % 4;
  for (int64_t c = 0; c < C; ++c) {
    const T* in = src + c * S * S;
    T* out = dst + c * S * S;
    for (int64_t y = 0; y < S; ++y)
      for (int64_t x = 0; x < S; ++x) {
        int64_t sy = y, sx = x;  // out[y][x] = in[sy][sx]
        if (k == 1) sy = x, sx = S - 1 - y;
        else if (k == 2) sy = S - 1 - y, sx = S - 1 - x;
        else if (k == 3) sy = S - 1 - x, sx = y;
        out[y * S + x] = in[sy * S + sx];
      }
  }
}

inline std::vector<std::string> rotation_class_names() { return {"rot0", "rot90", "rot180", "rot270"}; }

struct RotationOptions {
  Preset preset = make_preset("cifar");
  int epochs = 10;
  double lr = 1e-3, weight_decay = 1e-4;
  int64_t batch = 64;
  uint64_t seed = 0;
  bool progress = true;
  bool verbose = true;
  std::filesystem::path out;
  std::string architecture = "resnet18";
  nlohmann::json recipe = nlohmann::json::object();
};

struct RotationResult {
  std::vector<EpochMetrics> history;  // train loss / rotation accuracy per epoch
  double seconds = 0;
};

// Trains `net` (a 4-output head) to predict rotations of `images` (labels ignored); Adam with a
// cosine decay of the learning rate over all steps.
template <class T>
RotationResult pretrain_rotation(models::Model<T>& net, const data::Dataset& images, const RotationOptions& o) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  XFER_CHECK(net.num_classes() == 4, "pretrain_rotation: the model's head has ", net.num_classes(),
             " outputs; rotation prediction needs 4");
  XFER_CHECK(!o.out.empty(), "pretrain_rotation: no output directory");
  fs::create_directories(o.out);
  nlohmann::json recipe = o.recipe;
  recipe["method"] = "rotation";
  recipe["preset"] = o.preset.name;
  recipe["epochs"] = o.epochs;
  recipe["lr"] = o.lr;
  recipe["images"] = images.size();
  recipe["train_transform"] = o.preset.train.describe() + " -> rot90(k)";
  const io::ModelInfo info{.architecture = o.architecture, .num_classes = 4, .class_names = rotation_class_names(),
                           .input_height = o.preset.image_size, .input_width = o.preset.image_size,
                           .eval = o.preset.eval, .recipe = recipe};
  data::Loader<T> loader(images, o.preset.train, {.batch_size = o.batch, .shuffle = true, .drop_last = images.size() > o.batch, .seed = o.seed});
  optim::Adam<T> opt(net.parameters(), {.lr = o.lr, .weight_decay = o.weight_decay});
  const int64_t steps = static_cast<int64_t>(o.epochs) * loader.num_batches();
  RotationResult r;
  Tensor<T> x;
  nn::Labels y;
  int64_t step = 0;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    net.train();
    loader.set_epoch(epoch - 1);
    ProgressBar bar({.label = "rotation " + std::to_string(epoch), .total_batches = loader.num_batches()});
    const auto e0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, b = 0;
    const double lr = o.lr * 0.5 * (1 + std::cos(3.141592653589793 * static_cast<double>(step) / static_cast<double>(steps)));
    for (auto& batch : loader) {
      opt.set_lr(o.lr * 0.5 * (1 + std::cos(3.141592653589793 * static_cast<double>(step) / static_cast<double>(steps))));
      const Tensor<T>& in = batch.x;
      const int64_t N = in.dim(0), C = in.dim(1), S = in.dim(2);
      XFER_CHECK(in.dim(3) == S, "pretrain_rotation: images are ", S, "x", in.dim(3), " after the transforms; rotation needs squares");
      x.resize(in.shape());
      y.resize(static_cast<size_t>(N));
      Rng rng(data::sample_seed(o.seed ^ 0x526f744e6574ull, epoch, b));
      for (int64_t i = 0; i < N; ++i) {
        const int k = static_cast<int>(rng.below(4));
        y[static_cast<size_t>(i)] = k;
        rotate90(in.data() + i * C * S * S, x.data() + i * C * S * S, C, S, k);
      }
      const Tensor<T>& logits = net.forward(x);
      auto l = nn::cross_entropy(logits, y);
      XFER_CHECK(std::isfinite(static_cast<double>(l.loss)), "pretrain_rotation: the loss is ", l.loss, " at epoch ",
                 epoch, ", batch ", b + 1, " (lower the learning rate)");
      correct += nn::count_correct(logits, y);
      opt.zero_grad();
      net.backward(l.grad, false);
      opt.step();
      loss_sum += static_cast<double>(l.loss) * static_cast<double>(N);
      seen += N;
      ++b;
      ++step;
      if (o.progress) bar.update(b, seen, loss_sum / static_cast<double>(seen));
    }
    if (o.progress) bar.finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    r.history.push_back({.epoch = epoch, .train_loss = loss_sum / static_cast<double>(seen),
                         .train_acc = static_cast<double>(correct) / static_cast<double>(seen), .lr = lr,
                         .seconds = secs, .img_per_s = static_cast<double>(seen) / secs});
    if (o.verbose) {
      std::printf("rotation epoch %2d/%d  loss %.4f  rotation acc %.2f%%  lr %.1e  %.1fs (%.0f img/s)\n", epoch, o.epochs,
                  r.history.back().train_loss, 100 * r.history.back().train_acc, lr, secs, r.history.back().img_per_s);
      std::fflush(stdout);
    }
    write_metrics_csv(o.out / "metrics.csv", r.history);
    write_curves_svg(o.out / "curves.svg", r.history);
    io::save_model(net, info, (o.out / "last.safetensors").string(), {{"epoch", std::to_string(epoch)}});
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace xfer::train
