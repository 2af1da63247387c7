// train_epoch / evaluate: the loop the examples share, and its refusal to train on a non-finite loss.
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_train_epoch {

using namespace xfer;

namespace {
// 64 images 8x8: class 0 dark, class 1 bright.
data::InMemoryDataset two_tone() {
  std::vector<uint8_t> px(64 * 8 * 8 * 3);
  std::vector<int32_t> labels(64);
  Rng rng(1);
  for (int i = 0; i < 64; ++i) {
    labels[static_cast<size_t>(i)] = i % 2;
    for (int p = 0; p < 192; ++p)
      px[static_cast<size_t>(i * 192 + p)] = static_cast<uint8_t>((i % 2 ? 160 : 40) + rng.below(60));
  }
  return data::InMemoryDataset::from_hwc(px.data(), 64, 8, 8, 3, labels, {"dark", "bright"});
}

std::shared_ptr<nn::Sequential<float>> tiny_net() {
  auto net = std::make_shared<nn::Sequential<float>>();
  Rng rng(2);
  net->push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{3, 4, 3, 1, 1, false}, rng));
  net->push_back(std::make_shared<nn::BatchNorm2d<float>>(4));
  net->push_back(std::make_shared<nn::ReLU<float>>());
  net->push_back(std::make_shared<nn::AdaptiveAvgPool2d<float>>(1));
  net->push_back(std::make_shared<nn::Flatten<float>>());
  net->push_back(std::make_shared<nn::Linear<float>>(nn::LinearOptions{4, 2}, rng));
  return net;
}
}  // namespace

TEST_CASE("train_epoch learns an easy problem and evaluate reports loss and accuracy") {
  auto ds = two_tone();
  auto net = tiny_net();
  optim::Adam<float> opt(net->parameters(), {.lr = 0.05});
  data::Loader<float> train(ds, data::Compose(), {.batch_size = 16, .shuffle = true, .seed = 1});
  data::Loader<float> val(ds, data::Compose(), {.batch_size = 32});
  train::EpochResult first, last;
  for (int e = 1; e <= 8; ++e) {
    train.set_epoch(e - 1);
    last = train::train_epoch(*net, opt, train, {.epoch = e, .progress = false});
    if (e == 1) first = last;
  }
  CHECK(last.samples == 64);
  CHECK(last.loss < first.loss);
  auto ev = train::evaluate(*net, val);
  CHECK(ev.samples == 64);
  CHECK(ev.accuracy > 0.95);
  CHECK(std::isfinite(ev.loss));
  CHECK_FALSE(net->is_training());  // evaluate leaves the model in eval mode
}

TEST_CASE("train_epoch stops on a non-finite loss before the optimizer step, naming epoch and batch") {
  auto ds = two_tone();
  auto net = tiny_net();
  optim::SGD<float> opt(net->parameters(), {.lr = 0.1});
  data::Loader<float> train(ds, data::Compose(), {.batch_size = 16});
  auto& head = *net->named_parameters().back().param;  // the head's bias
  head.value[1] = std::numeric_limits<float>::infinity();
  const std::vector<float> before(head.value, head.value + head.numel);
  auto conv_before = std::vector<float>(net->named_parameters()[0].param->value,
                                        net->named_parameters()[0].param->value + 5);
  CHECK_THROWS_WITH(train::train_epoch(*net, opt, train, {.epoch = 3, .progress = false}),
                    Catch::Contains("epoch 3, batch 1 of 4") && Catch::Contains("checkpoint"));
  // No step was taken: the weights are exactly what they were.
  CHECK(std::equal(conv_before.begin(), conv_before.end(), net->named_parameters()[0].param->value));
  CHECK(std::isinf(head.value[1]));
  CHECK(before[0] == head.value[0]);
}

}  // namespace unit_train_epoch
