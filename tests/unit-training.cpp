// End-to-end learning: the model zoo, losses and optimizers together must be able to fit data.
#include <catch2/catch.hpp>
#include <xfer/optim/adam.hpp>
#include <xfer/optim/sgd.hpp>
#include <xfer/xfer.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_training {

using namespace xfer;

TEST_CASE("ResNet-18 (ImageNet stem) memorises 64 random 32x32 images with 10 labels") {
  set_num_threads(2);
  auto net = models::resnet18<float>({.num_classes = 10, .seed = 1});
  Rng rng(2);
  Tensor<float> x({64, 3, 32, 32});
  for (auto& v : x) v = static_cast<float>(rng.normal());
  nn::Labels y(64);
  for (auto& l : y) l = static_cast<int32_t>(rng.below(10));
  optim::Adam<float> opt(net->parameters(), {.lr = 1e-3});
  double loss = 1e9;
  int steps = 0;
  for (; steps < 200 && loss >= 0.05; ++steps) {
    auto r = nn::cross_entropy(net->forward(x), y);
    loss = r.loss;
    opt.zero_grad();
    net->backward(r.grad, false);
    opt.step();
  }
  INFO("steps: " << steps << ", final training loss " << loss);
  CHECK(loss < 0.05);
  // Memorised: every training image is classified as its (random) label. PyTorch needs the same
  // handful of Adam steps on this problem (2.50 -> 0.036 after two steps, seed-dependent).
  CHECK(nn::count_correct(net->forward(x), y) == 64);
}

TEST_CASE("A small CNN learns a separable synthetic problem to > 95% held-out accuracy") {
  // Class 0: a bright horizontal bar, class 1: a vertical bar, class 2: a diagonal — at random
  // positions, on noise. Translation means the network has to learn features, not pixels.
  auto make = [](int n, uint64_t seed) {
    Rng rng(seed);
    Tensor<float> x({n, 1, 12, 12});
    nn::Labels y(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const int c = static_cast<int>(rng.below(3));
      y[static_cast<size_t>(i)] = c;
      for (int p = 0; p < 144; ++p) x[i * 144 + p] = static_cast<float>(0.3 * rng.normal());
      const int r0 = 2 + static_cast<int>(rng.below(8)), c0 = 2 + static_cast<int>(rng.below(3));
      for (int k = 0; k < 6; ++k) {
        const int row = c == 0 ? r0 : c == 1 ? c0 + k : c0 + k;
        const int col = c == 0 ? c0 + k : c == 1 ? r0 : c0 + k + (r0 % 3);
        if (row < 12 && col < 12) x[i * 144 + row * 12 + col] += 1.5f;
      }
    }
    return std::pair{x, y};
  };
  auto [xtr, ytr] = make(384, 1);
  auto [xte, yte] = make(300, 2);
  Rng rng(3);
  nn::Sequential<float> net;
  net.push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{1, 8, 3, 1, 1, false}, rng));
  net.push_back(std::make_shared<nn::BatchNorm2d<float>>(8));
  net.push_back(std::make_shared<nn::ReLU<float>>());
  net.push_back(std::make_shared<nn::MaxPool2d<float>>(nn::MaxPool2dOptions{2}));
  net.push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{8, 16, 3, 1, 1, false}, rng));
  net.push_back(std::make_shared<nn::BatchNorm2d<float>>(16));
  net.push_back(std::make_shared<nn::ReLU<float>>());
  net.push_back(std::make_shared<nn::AdaptiveAvgPool2d<float>>(1));
  net.push_back(std::make_shared<nn::Flatten<float>>());
  net.push_back(std::make_shared<nn::Linear<float>>(nn::LinearOptions{16, 3}, rng));
  optim::SGD<float> opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
  for (int epoch = 0; epoch < 30; ++epoch) {
    for (int b = 0; b < 384; b += 32) {
      Tensor<float> xb({32, 1, 12, 12});
      std::copy(xtr.data() + b * 144, xtr.data() + (b + 32) * 144, xb.data());
      nn::Labels yb(ytr.begin() + b, ytr.begin() + b + 32);
      auto r = nn::cross_entropy(net.forward(xb), yb);
      opt.zero_grad();
      net.backward(r.grad, false);
      opt.step();
    }
  }
  net.eval();
  const double acc = static_cast<double>(nn::count_correct(net.forward(xte), yte)) / 300.0;
  INFO("held-out accuracy " << acc);
  CHECK(acc > 0.95);
}

}  // namespace unit_training
