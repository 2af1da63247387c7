// The README's "Training basics" loop, end to end on a small synthetic image folder: TrivialAugmentWide
// + RandomErasing in the pipeline, CutMix with soft-target cross-entropy, gradient clipping, OneCycleLR,
// an EMA evaluated through swap_in, early stopping, and the EMA saved as a plain weights file.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <xfer/core/parallel.hpp>
#include <xfer/data/auto_augment.hpp>
#include <xfer/data/dataset.hpp>
#include <xfer/data/loader.hpp>
#include <xfer/data/mix.hpp>
#include <xfer/data/random_erasing.hpp>
#include <xfer/io/state_dict.hpp>
#include <xfer/nn/batchnorm.hpp>
#include <xfer/nn/conv2d.hpp>
#include <xfer/nn/flatten.hpp>
#include <xfer/nn/linear.hpp>
#include <xfer/nn/pooling.hpp>
#include <xfer/nn/relu.hpp>
#include <xfer/nn/sequential.hpp>
#include <xfer/optim/clip_grad.hpp>
#include <xfer/optim/onecycle.hpp>
#include <xfer/optim/sgd.hpp>
#include <xfer/train/early_stopping.hpp>
#include <xfer/train/ema.hpp>
#include <xfer/train/epoch.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_train_basics_loop {

using namespace xfer;

namespace {
// Class 0: horizontal stripes, 1: vertical stripes, 2: a bright centre blob; random phase and noise.
data::InMemoryDataset make_set(int n, uint64_t seed) {
  Rng rng(seed);
  data::InMemoryDataset ds({"h", "v", "blob"});
  std::vector<uint8_t> px(16 * 16 * 3);
  for (int i = 0; i < n; ++i) {
    const int c = i % 3;
    const int phase = static_cast<int>(rng.below(4));
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x) {
        double v = 0.3 + 0.15 * rng.normal();
        if (c == 0 && (y + phase) % 4 < 2) v += 0.5;
        if (c == 1 && (x + phase) % 4 < 2) v += 0.5;
        if (c == 2 && std::abs(y - 8) < 4 && std::abs(x - 8) < 4) v += 0.5;
        for (int ch = 0; ch < 3; ++ch)
          px[static_cast<size_t>((y * 16 + x) * 3 + ch)] = static_cast<uint8_t>(std::clamp(v, 0.0, 1.0) * 255);
      }
    ds.add({16, 16, 3, px.data()}, c);
  }
  return ds;
}
std::shared_ptr<nn::Sequential<float>> make_net() {
  Rng rng(1);
  auto net = std::make_shared<nn::Sequential<float>>();
  net->push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{3, 8, 3, 1, 1, false}, rng));
  net->push_back(std::make_shared<nn::BatchNorm2d<float>>(8));
  net->push_back(std::make_shared<nn::ReLU<float>>());
  net->push_back(std::make_shared<nn::MaxPool2d<float>>(nn::MaxPool2dOptions{2}));
  net->push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{8, 16, 3, 1, 1, false}, rng));
  net->push_back(std::make_shared<nn::BatchNorm2d<float>>(16));
  net->push_back(std::make_shared<nn::ReLU<float>>());
  net->push_back(std::make_shared<nn::AdaptiveAvgPool2d<float>>(1));
  net->push_back(std::make_shared<nn::Flatten<float>>());
  net->push_back(std::make_shared<nn::Linear<float>>(nn::LinearOptions{16, 3}, rng));
  net->flatten_parameters();
  return net;
}
}  // namespace

TEST_CASE("The training-basics loop of the README trains a small CNN and evaluates its EMA") {
  set_num_threads(1);  // a tiny model: threads would only wait for each other
  const auto train_set = make_set(240, 1), val_set = make_set(120, 2);
  const std::vector<float> mean{0.5f, 0.5f, 0.5f}, std{0.25f, 0.25f, 0.25f};
  data::Compose train_tf(data::RandomHorizontalFlip(), data::TrivialAugmentWide(), data::Normalize(mean, std),
                         data::RandomErasing({.p = 0.25}));
  data::Loader<float> loader(train_set, train_tf, {.batch_size = 24, .shuffle = true, .drop_last = true, .seed = 3});
  data::Loader<float> val_loader(val_set, data::Compose(data::Normalize(mean, std)), {.batch_size = 60});
  auto net = make_net();
  const int epochs = 12;
  optim::SGD<float> opt(net->parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-4});
  optim::OneCycleLR sched(opt, {.max_lr = {0.2}, .total_steps = epochs * loader.num_batches()});
  train::ModelEma<float> ema(*net, {.decay = 0.9, .warmup = true});
  train::EarlyStopping stop({.mode = train::MetricMode::max, .patience = 4});
  data::CutMix cutmix({.alpha = 1.0, .num_classes = 3});
  Rng rng(0);
  double first_norm = 0, acc = 0, live_acc = 0;
  int epoch = 0;
  const std::string best = std::string(XFER_TEST_TMP) + "/train_basics_best_ema.safetensors";
  for (; epoch < epochs; ++epoch) {
    net->train();
    for (auto& [x, y] : loader) {
      const auto targets = cutmix(x, y, rng);
      const auto [loss, dlogits] = nn::soft_cross_entropy(net->forward(x), targets);
      REQUIRE(std::isfinite(loss));
      opt.zero_grad();
      net->backward(dlogits);
      const double norm = optim::clip_grad_norm(*net, 2.0);
      if (first_norm == 0) first_norm = norm;
      opt.step();
      sched.step();
      ema.update();
    }
    live_acc = train::evaluate(*net, val_loader).accuracy;
    {
      auto swapped = ema.swap_in();
      acc = train::evaluate(*net, val_loader).accuracy;
    }
    const bool done = stop.step(acc);
    if (stop.improved()) ema.save(best);
    if (done) break;
  }
  INFO("epochs run " << epoch << ", EMA accuracy " << acc << ", live accuracy " << live_acc << ", best "
                     << stop.best());
  CHECK(first_norm > 0);
  CHECK(ema.updates() == static_cast<int64_t>(std::min(epoch + 1, epochs)) * loader.num_batches());
  CHECK(stop.best() > 0.9);  // chance is 1/3
  CHECK(stop.should_stop());  // the problem is easy: accuracy saturates and patience runs out early
  CHECK(epoch < epochs - 1);
  // The best EMA file loads as plain weights and reproduces the best accuracy.
  auto fresh = make_net();
  io::load_safetensors(*fresh, best);
  CHECK(train::evaluate(*fresh, val_loader).accuracy == stop.best());
}

}  // namespace unit_train_basics_loop
