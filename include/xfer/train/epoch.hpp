// train_epoch and evaluate: one pass over a Loader with a classifier and cross-entropy, the loop
// every fine-tune script writes. train_epoch draws the progress bar and refuses to continue on a
// non-finite loss (it throws, naming the epoch and batch, before the optimizer step can spread
// NaN into the weights). With options.replicas (dist::DataParallel) the same loop trains data
// parallel: the ranks agree on the loss before backward, gradients are averaged before the step,
// and the returned loss, accuracy and sample counts are totals over all ranks.
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
#include "xfer/train/replicas.hpp"

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
  // Data parallelism (dist::DataParallel); nullptr: this process alone. Only rank 0 draws progress.
  Replicas* replicas = nullptr;
};

template <class T>
EpochResult train_epoch(nn::Module<T>& model, optim::Optimizer<T>& opt, data::Loader<T>& loader,
                        const TrainEpochOptions& o = {}) {
  model.train();
  EpochResult r;
  Replicas* rep = o.replicas;
  const bool progress = o.progress && (!rep || rep->rank() == 0);
  const int64_t total = loader.num_batches() - loader.position();
  ProgressBar bar({.label = "epoch " + std::to_string(o.epoch), .total_batches = total, .out = o.progress_out});
  const auto start = std::chrono::steady_clock::now();
  double loss_sum = 0;
  int64_t correct = 0, done = 0;
  for (auto& batch : loader) {
    const Tensor<T>& logits = model.forward(batch.x);
    auto l = nn::cross_entropy(logits, batch.y, {.label_smoothing = o.label_smoothing});
    const int64_t n = batch.x.dim(0);
    if (rep) {
      if (const int bad = rep->begin_step(static_cast<double>(l.loss), n); bad >= 0)
        throw AgreedError(xfer::detail::concat("training diverged: the loss is not finite on rank ", bad, " of ",
                                               rep->world(), " at epoch ", o.epoch, ", batch ", done + 1, " of ", total,
                                               " (lower the learning rate; the last checkpoint is left untouched)"));
    }
    XFER_CHECK(std::isfinite(static_cast<double>(l.loss)), "training diverged: the loss is ", l.loss, " at epoch ",
               o.epoch, ", batch ", done + 1, " of ", total,
               " (lower the learning rate; the last checkpoint is left untouched)");
    correct += nn::count_correct(logits, batch.y);
    opt.zero_grad();
    model.backward(l.grad, false);
    if (rep) rep->end_step();
    opt.step();
    loss_sum += static_cast<double>(l.loss) * static_cast<double>(n);
    r.samples += n;
    ++done;
    if (o.on_batch) o.on_batch(done - 1, l.loss);
    if (progress) bar.update(done, r.samples, loss_sum / static_cast<double>(r.samples));
  }
  if (progress) bar.finish();
  if (rep) {
    double totals[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(r.samples)};
    rep->sum(totals, 3);
    rep->end_epoch();
    loss_sum = totals[0];
    correct = static_cast<int64_t>(totals[1]);
    r.samples = static_cast<int64_t>(totals[2]);
  }
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
