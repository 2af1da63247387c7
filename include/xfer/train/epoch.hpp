// train_epoch and evaluate: one pass over a Loader with a classifier and cross-entropy, the loop
// every fine-tune script writes. train_epoch draws the progress bar and refuses to continue on a
// non-finite loss (it throws, naming the epoch and batch, before the optimizer step can spread
// NaN into the weights).
#pragma once

#include <chrono>
#include <cmath>
#include <functional>
#include <string>

#include "xfer/data/loader.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/optim/optimizer.hpp"
#include "xfer/train/progress.hpp"

namespace xfer::train {

struct EpochResult {
  double loss = NAN;
  double accuracy = NAN;
  int64_t samples = 0;
  double seconds = 0;
  double img_per_s = 0;
};

struct TrainEpochOptions {
  int epoch = 1;  // for messages and the progress label
  bool progress = true;
  FILE* progress_out = stdout;
  double label_smoothing = 0.0;
  // Called after every optimizer step with (batch index, loss); for custom logging.
  std::function<void(int64_t, double)> on_batch = {};
};

template <class T>
EpochResult train_epoch(nn::Module<T>& model, optim::Optimizer<T>& opt, data::Loader<T>& loader,
                        const TrainEpochOptions& o = {}) {
  model.train();
  EpochResult r;
  const int64_t total = loader.num_batches() - loader.position();
  ProgressBar bar({.label = "epoch " + std::to_string(o.epoch), .total_batches = total, .out = o.progress_out});
  const auto start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t correct = 0, done = 0;
  for (auto& batch : loader) {
    const Tensor<T>& logits = model.forward(batch.x);
    auto l = nn::cross_entropy(logits, batch.y, {.label_smoothing = o.label_smoothing});
    XFER_CHECK(std::isfinite(static_cast<double>(l.loss)), "training diverged: the loss is ", l.loss, " at epoch ",
               o.epoch, ", batch ", done + 1, " of ", total,
               " (lower the learning rate; the last checkpoint is left untouched)");
    const int64_t n = batch.x.dim(0);
    correct += nn::count_correct(logits, batch.y);
    opt.zero_grad();
    model.backward(l.grad, false);
    opt.step();
    loss_sum += static_cast<double>(l.loss) * static_cast<double>(n);
    r.samples += n;
    ++done;
    if (o.on_batch) o.on_batch(done - 1, l.loss);
    if (o.progress) bar.update(done, r.samples, loss_sum / static_cast<double>(r.samples));
  }
  if (o.progress) bar.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.loss = r.samples ? loss_sum / static_cast<double>(r.samples) : NAN;
  r.accuracy = r.samples ? static_cast<double>(correct) / static_cast<double>(r.samples) : NAN;
  r.img_per_s = r.seconds > 0 ? static_cast<double>(r.samples) / r.seconds : 0;
  return r;
}

// Mean cross-entropy and accuracy over one full pass, in eval mode (the model is left in eval mode).
template <class T>
EpochResult evaluate(nn::Module<T>& model, data::Loader<T>& loader) {
  model.eval();
  loader.set_state({loader.epoch(), 0});
  EpochResult r;
  const auto start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t correct = 0;
  for (auto& batch : loader) {
    const Tensor<T>& logits = model.forward(batch.x);
    auto l = nn::cross_entropy(logits, batch.y);
    loss_sum += static_cast<double>(l.loss) * static_cast<double>(batch.x.dim(0));
    correct += nn::count_correct(logits, batch.y);
    r.samples += batch.x.dim(0);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.loss = r.samples ? loss_sum / static_cast<double>(r.samples) : NAN;
  r.accuracy = r.samples ? static_cast<double>(correct) / static_cast<double>(r.samples) : NAN;
  r.img_per_s = r.seconds > 0 ? static_cast<double>(r.samples) / r.seconds : 0;
  return r;
}

}  // namespace xfer::train
