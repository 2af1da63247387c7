// bench_finetune: the main job's speed over a real run, not a few seconds of random weights.
// Trains resnet18 on real CIFAR-10 images through the freeze -> unfreeze transition of
// finetune_cifar10's recipe (head only at lr 1e-3, then everything at lr 1e-4) for each optimizer
// and prints per epoch: img/s, the optimizer's share of the step, its GB/s against a measured
// STREAM-like triad, and how much of the optimizer state and gradients is subnormal.
//
//   bench_finetune --data /tmp/cifar10/train --images 5120 --epochs 5 --freeze-epochs 2 --json
//   bench_finetune ... --no-flush      # the same with IEEE subnormals (xfer::set_flush_denormals(false))
//
// Bytes per element of an optimizer step (what the kernel must read and write): Adam/AdamW read
// w, g, m, v and write w, m, v (28 B for float); SGD with momentum reads w, g, buf and writes w, buf
// (20 B). The triad a = b + s * c is counted as 12 B per element, as STREAM counts it.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "xfer/core/float_env.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/open_dataset.hpp"
#include "xfer/data/transforms.hpp"
#include "xfer/models/zoo.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/optim/adam.hpp"
#include "xfer/optim/sgd.hpp"

using namespace xfer;
using clock_type = std::chrono::steady_clock;

namespace {

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// STREAM-like triad over arrays far larger than the caches, on all threads; best of `reps`, GB/s.
double triad_gbs(int64_t n, int reps) {
  AlignedVector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n)), c(static_cast<size_t>(n));
  float* pa = a.data();
  float* pb = b.data();
  float* pc = c.data();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {  // first touch by the threads that use the pages
    pa[i] = 0.0f;
    pb[i] = 1.0f;
    pc[i] = 2.0f;
  }
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clock_type::now();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) pa[i] = pb[i] + 0.5f * pc[i];
    best = std::min(best, since(t0));
  }
  volatile float sink = pa[n / 2];
  (void)sink;
  return 12.0 * static_cast<double>(n) / best / 1e9;
}

std::unique_ptr<optim::Optimizer<float>> make_optimizer(const std::string& kind, models::Model<float>& net, double lr,
                                                        double wd) {
  if (kind == "adam") return std::make_unique<optim::Adam<float>>(net.parameters(), optim::AdamOptions{.lr = lr, .weight_decay = wd});
  if (kind == "adamw") return std::make_unique<optim::AdamW<float>>(net.parameters(), optim::AdamWOptions{.lr = lr, .weight_decay = wd});
  return std::make_unique<optim::SGD<float>>(net.parameters(), optim::SGDOptions{.lr = lr, .momentum = 0.9, .weight_decay = wd, .nesterov = true});
}

double bytes_per_element(const std::string& kind) { return kind == "sgd" ? 20.0 : 28.0; }

bool subnormal(float x) { return std::fpclassify(x) == FP_SUBNORMAL; }

struct Census {
  double state = 0, grads = 0;  // fractions of subnormal values
};
Census census(optim::Optimizer<float>& opt, models::Model<float>& net) {
  Census c;
  int64_t sub = 0, total = 0;
  for (const auto& [name, t] : opt.state_dict().tensors) {
    sub += std::count_if(t.data(), t.data() + t.numel(), subnormal);
    total += t.numel();
  }
  c.state = total ? static_cast<double>(sub) / static_cast<double>(total) : 0.0;
  const auto& g = net.arena().grads;
  c.grads = static_cast<double>(std::count_if(g.begin(), g.end(), subnormal)) / static_cast<double>(g.size());
  return c;
}

struct Config {
  std::string data = "/tmp/cifar10/train", model = "resnet18", optimizers = "adam,adamw,sgd";
  int64_t images = 5120, batch = 64;
  int epochs = 5, freeze_epochs = 2, threads = 2;
  double lr = 1e-3, unfreeze_lr = 1e-4, weight_decay = 1e-4;
  uint64_t seed = 0;
  bool flush = true, json = false;
};

nlohmann::json run_one(const Config& c, const std::string& kind, const data::Dataset& train, double triad) {
  auto net = models::create<float>(c.model, {.num_classes = 10, .seed = c.seed});
  auto opt = make_optimizer(kind, *net, c.lr, c.weight_decay);
  data::Loader<float> loader(train, data::cifar10_train_transforms(), {.batch_size = c.batch, .shuffle = true, .seed = c.seed});
  nlohmann::json epochs = nlohmann::json::array();
  double lo = 1e30, hi = 0, lo_unfrozen = 1e30, hi_unfrozen = 0, opt_gbs_sum = 0;
  int unfrozen = 0;
  for (int epoch = 1; epoch <= c.epochs; ++epoch) {
    const bool frozen = epoch <= c.freeze_epochs;
    net->unfreeze_all();
    if (frozen) net->freeze_backbone();
    if (!frozen && epoch == c.freeze_epochs + 1 && c.freeze_epochs > 0) opt->set_lr(c.unfreeze_lr);
    net->train();
    loader.set_epoch(epoch - 1);
    int64_t trainable = 0;
    for (auto* p : net->parameters())
      if (p->trainable) trainable += p->numel;

    double t_data = 0, t_fwd = 0, t_bwd = 0, t_opt = 0, loss_sum = 0;
    int64_t images = 0, steps = 0;
    const auto start = clock_type::now();
    auto mark = start;
    for (auto& batch : loader) {
      t_data += since(mark);
      auto t0 = clock_type::now();
      const Tensor<float>& logits = net->forward(batch.x);
      auto l = nn::cross_entropy(logits, batch.y);
      t_fwd += since(t0);
      t0 = clock_type::now();
      opt->zero_grad();
      net->backward(l.grad, false);
      t_bwd += since(t0);
      t0 = clock_type::now();
      opt->step();
      t_opt += since(t0);
      loss_sum += static_cast<double>(l.loss) * static_cast<double>(batch.x.dim(0));
      images += batch.x.dim(0);
      ++steps;
      mark = clock_type::now();
    }
    const double seconds = since(start);
    const double img_s = static_cast<double>(images) / seconds;
    const double opt_gbs = bytes_per_element(kind) * static_cast<double>(trainable) * static_cast<double>(steps) / t_opt / 1e9;
    const Census cs = census(*opt, *net);
    lo = std::min(lo, img_s);
    hi = std::max(hi, img_s);
    if (!frozen) {
      lo_unfrozen = std::min(lo_unfrozen, img_s);
      hi_unfrozen = std::max(hi_unfrozen, img_s);
      opt_gbs_sum += opt_gbs;
      ++unfrozen;
    }
    const double step_ms = 1e3 * seconds / static_cast<double>(steps);
    const double opt_ms = 1e3 * t_opt / static_cast<double>(steps);
    std::printf("  %-5s epoch %d%s  %7.1f img/s  loss %.4f  step %6.1f ms = data %5.1f + fwd %6.1f + bwd %6.1f + %s %5.2f ms (%4.1f%%, %5.1f GB/s = %3.0f%% of triad)  subnormal: state %.2f%%, grads %.2f%%\n",
                kind.c_str(), epoch, frozen ? " [frozen]" : "         ", img_s, loss_sum / static_cast<double>(images),
                step_ms, 1e3 * t_data / steps, 1e3 * t_fwd / steps, 1e3 * t_bwd / steps, kind.c_str(), opt_ms,
                100 * t_opt / seconds, opt_gbs, 100 * opt_gbs / triad, 100 * cs.state, 100 * cs.grads);
    std::fflush(stdout);
    epochs.push_back({{"epoch", epoch},
                      {"frozen", frozen},
                      {"img_per_s", img_s},
                      {"loss", loss_sum / static_cast<double>(images)},
                      {"steps", steps},
                      {"trainable_params", trainable},
                      {"step_ms", step_ms},
                      {"data_ms", 1e3 * t_data / steps},
                      {"forward_ms", 1e3 * t_fwd / steps},
                      {"backward_ms", 1e3 * t_bwd / steps},
                      {"optimizer_ms", opt_ms},
                      {"optimizer_share", t_opt / seconds},
                      {"optimizer_gbs", opt_gbs},
                      {"optimizer_pct_of_triad", 100 * opt_gbs / triad},
                      {"subnormal_state_frac", cs.state},
                      {"subnormal_grad_frac", cs.grads}});
  }
  nlohmann::json r = {{"optimizer", kind},
                      {"epochs", epochs},
                      {"img_per_s_min", lo},
                      {"img_per_s_max", hi}};
  if (unfrozen > 0) {
    r["unfrozen_img_per_s_min"] = lo_unfrozen;
    r["unfrozen_img_per_s_max"] = hi_unfrozen;
    r["unfrozen_optimizer_gbs_mean"] = opt_gbs_sum / unfrozen;
    r["unfrozen_optimizer_pct_of_triad_mean"] = 100 * opt_gbs_sum / unfrozen / triad;
  }
  std::printf("  %-5s img/s min %.1f max %.1f%s\n", kind.c_str(), lo, hi,
                unfrozen ? ("; unfrozen min " + std::to_string(static_cast<int>(lo_unfrozen)) + " max " +
                            std::to_string(static_cast<int>(hi_unfrozen)) + ", optimizer " +
                            std::to_string(static_cast<int>(std::lround(100 * opt_gbs_sum / unfrozen / triad))) +
                            "% of triad")
                               .c_str()
                         : "");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"Fine-tune speed over a real run through freeze -> unfreeze: img/s per epoch, optimizer share and GB/s"};
  app.add_option("--data", c.data, "CIFAR-10 ImageFolder train root or binary directory");
  app.add_option("--model", c.model, "zoo model")->check(CLI::IsMember(models::model_names()));
  app.add_option("--images", c.images, "training images (a seeded random subset)")->check(CLI::PositiveNumber);
  app.add_option("--epochs", c.epochs, "epochs in total")->check(CLI::Range(1, 1000));
  app.add_option("--freeze-epochs", c.freeze_epochs, "epochs that train only the head")->check(CLI::Range(0, 1000));
  app.add_option("--batch", c.batch, "batch size")->check(CLI::PositiveNumber);
  app.add_option("--optimizers", c.optimizers, "comma-separated: adam, adamw, sgd");
  app.add_option("--threads", c.threads, "OpenMP threads")->check(CLI::PositiveNumber);
  app.add_option("--seed", c.seed, "seed for the subset, shuffling and initialisation");
  app.add_flag("!--no-flush", c.flush, "keep IEEE subnormals (xfer::set_flush_denormals(false)): the 'before' run");
  app.add_flag("--json", c.json, "also print one JSON line at the end");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<std::string> kinds;
    std::stringstream ss(c.optimizers);
    for (std::string k; std::getline(ss, k, ',');) {
      XFER_CHECK(k == "adam" || k == "adamw" || k == "sgd", "--optimizers: unknown optimizer '", k,
                 "' (expected adam, adamw or sgd)");
      kinds.push_back(k);
    }
    set_num_threads(c.threads);
    set_flush_denormals(c.flush);
    const double triad = triad_gbs(int64_t{1} << 25, 10);  // 3 x 128 MB
    const auto t_load = clock_type::now();
    auto full = data::open_dataset(c.data, {.train = true, .height = 32, .width = 32});
    std::vector<int64_t> idx(static_cast<size_t>(full->size()));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
    Rng pick(c.seed ^ 0x5eedull);
    for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[pick.below(i)]);
    idx.resize(static_cast<size_t>(std::min<int64_t>(c.images, full->size())));
    std::sort(idx.begin(), idx.end());
    data::Subset train(*full, idx);
    const double load_s = since(t_load);
    std::printf("%s, %lld of %lld images (loaded in %.1fs), batch %lld, %d threads, subnormals %s; triad %.1f GB/s\n",
                  c.model.c_str(), static_cast<long long>(train.size()), static_cast<long long>(full->size()), load_s,
                  static_cast<long long>(c.batch), c.threads, c.flush ? "flushed (FTZ/DAZ)" : "IEEE (--no-flush)", triad);
    nlohmann::json runs = nlohmann::json::array();
    for (const auto& k : kinds) runs.push_back(run_one(c, k, train, triad));
    if (c.json) {
      nlohmann::json j = {{"model", c.model},     {"images", train.size()}, {"batch", c.batch},
                          {"threads", c.threads}, {"epochs", c.epochs},     {"freeze_epochs", c.freeze_epochs},
                          {"flush_denormals", c.flush}, {"triad_gbs", triad}, {"runs", runs}};
      std::cout << j.dump() << std::endl;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_finetune: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
