// Every layer's backward against central finite differences in double precision.
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_layers {

using namespace xfer;
using namespace xfer::nn;

namespace {
Tensor<double> random_tensor(Shape s, uint64_t seed) {
  Rng rng(seed);
  Tensor<double> t(std::move(s));
  for (auto& v : t) v = rng.normal();
  return t;
}

void require_gradients_match(Module<double>& m, const Tensor<double>& x, GradcheckOptions opt = {}) {
  const auto results = gradcheck(m, x, opt);
  REQUIRE_FALSE(results.empty());
  for (const auto& r : results) {
    INFO(m.type_name() << "(" << m.extra_repr() << ") input " << shape_str(x.shape()) << " gradient of " << r.name
                       << ": relative error " << r.relative_error);
    CHECK(r.analytic_norm > 0);  // a zero gradient would make the comparison meaningless
    CHECK(r.relative_error < 1e-6);
  }
}
}  // namespace

TEST_CASE("Conv2d backward matches finite differences") {
  struct Case { Conv2dOptions opt; Shape in; };
  const std::vector<Case> cases = {
      {{.in_channels = 2, .out_channels = 3, .kernel_size = 3, .stride = 1, .padding = 1}, {2, 2, 5, 5}},
      {{.in_channels = 3, .out_channels = 4, .kernel_size = 3, .stride = 2, .padding = 1}, {2, 3, 7, 6}},
      {{.in_channels = 2, .out_channels = 2, .kernel_size = 1, .stride = 1, .padding = 0, .bias = false}, {3, 2, 4, 4}},
      {{.in_channels = 2, .out_channels = 3, .kernel_size = 1, .stride = 2, .padding = 0, .bias = false}, {1, 2, 5, 5}},
      {{.in_channels = 1, .out_channels = 2, .kernel_size = 7, .stride = 2, .padding = 3, .bias = false}, {2, 1, 9, 9}},
      {{.in_channels = 2, .out_channels = 2, .kernel_size = 2, .stride = 3, .padding = 0}, {1, 2, 8, 7}},
  };
  uint64_t seed = 10;
  for (const auto& c : cases) {
    Rng rng(seed);
    Conv2d<double> conv(c.opt, rng);
    require_gradients_match(conv, random_tensor(c.in, seed++));
  }
}

TEST_CASE("BatchNorm2d backward matches finite differences in train and eval mode") {
  Rng rng(3);
  BatchNorm2d<double> bn(3);
  for (int64_t i = 0; i < 3; ++i) {  // non-trivial affine parameters and running statistics
    bn.weight().value[i] = 0.5 + rng.uniform();
    bn.bias().value[i] = rng.normal();
    bn.running_mean()[i] = rng.normal();
    bn.running_var()[i] = 0.5 + rng.uniform();
  }
  for (const Shape& s : {Shape{4, 3, 3, 3}, Shape{5, 3, 1, 1}, Shape{1, 3, 4, 5}}) {
    bn.train();
    require_gradients_match(bn, random_tensor(s, 20 + s[0]));
    bn.eval();
    require_gradients_match(bn, random_tensor(s, 30 + s[0]));
  }
  bn.train();
  bn.set_running_stats_frozen(true);  // train mode, but normalising with the running statistics
  require_gradients_match(bn, random_tensor({2, 3, 2, 2}, 40));
  // Tiny maps with more channels than one block of the small-map path (64), and a plain plane.
  BatchNorm2d<double> wide(70);
  for (int64_t i = 0; i < 70; ++i) wide.weight().value[i] = 0.5 + rng.uniform(), wide.bias().value[i] = rng.normal();
  for (const Shape& s : {Shape{3, 70, 2, 2}, Shape{2, 70, 5, 4}}) {
    wide.train();
    require_gradients_match(wide, random_tensor(s, 50 + s[2]));
    wide.eval();
    require_gradients_match(wide, random_tensor(s, 60 + s[2]));
  }
}

TEST_CASE("ReLU, MaxPool2d, AdaptiveAvgPool2d and Flatten backward match finite differences") {
  ReLU<double> relu;
  require_gradients_match(relu, random_tensor({2, 3, 4, 4}, 1));
  MaxPool2d<double> pool({.kernel_size = 3, .stride = 2, .padding = 1});
  require_gradients_match(pool, random_tensor({2, 2, 7, 6}, 2));
  MaxPool2d<double> pool2({.kernel_size = 2});
  require_gradients_match(pool2, random_tensor({1, 3, 4, 5}, 3));
  AdaptiveAvgPool2d<double> gap(1);
  require_gradients_match(gap, random_tensor({2, 3, 5, 3}, 4));
  AdaptiveAvgPool2d<double> gap7(AdaptiveAvgPool2dOptions{3, 2});  // uneven, overlapping bins
  require_gradients_match(gap7, random_tensor({1, 2, 5, 7}, 5));
  Flatten<double> flat;
  require_gradients_match(flat, random_tensor({2, 3, 2, 2}, 6));
}

TEST_CASE("Linear backward matches finite differences, with and without bias") {
  Rng rng(5);
  Linear<double> lin({.in_features = 5, .out_features = 3}, rng);
  require_gradients_match(lin, random_tensor({4, 5}, 7));
  Linear<double> nobias({.in_features = 6, .out_features = 2, .bias = false}, rng);
  require_gradients_match(nobias, random_tensor({1, 6}, 8));
}

TEST_CASE("Dropout backward matches finite differences with a fixed mask") {
  Dropout<double> drop(0.3);
  GradcheckOptions opt;
  opt.before_forward = [&] { drop.set_seed(99); };
  require_gradients_match(drop, random_tensor({3, 8}, 9), opt);
  drop.eval();
  require_gradients_match(drop, random_tensor({3, 8}, 10));
}

TEST_CASE("BasicBlock backward matches finite differences with identity and downsample shortcuts") {
  Rng rng(11);
  models::BasicBlock<double> same({.in_channels = 3, .out_channels = 3, .stride = 1}, rng);
  require_gradients_match(same, random_tensor({2, 3, 4, 4}, 12));
  models::BasicBlock<double> down({.in_channels = 2, .out_channels = 4, .stride = 2}, rng);
  require_gradients_match(down, random_tensor({2, 2, 5, 5}, 13));
}

TEST_CASE("Sequential backward matches finite differences through a small CNN") {
  Rng rng(14);
  Sequential<double> net;
  net.push_back(std::make_shared<Conv2d<double>>(Conv2dOptions{2, 3, 3, 1, 1, false}, rng));  // a bias before BN gets no gradient
  net.push_back(std::make_shared<BatchNorm2d<double>>(3));
  net.push_back(std::make_shared<ReLU<double>>());
  net.push_back(std::make_shared<MaxPool2d<double>>(MaxPool2dOptions{2}));
  net.push_back(std::make_shared<Flatten<double>>());
  net.push_back(std::make_shared<Linear<double>>(LinearOptions{12, 4}, rng));
  require_gradients_match(net, random_tensor({3, 2, 4, 4}, 15));
}

TEST_CASE("Dropout zeroes about p of the elements and keeps the expectation in training") {
  manual_seed(1);
  Dropout<float> drop(0.25);
  Tensor<float> x({100, 100}, 1.f);
  const auto& y = drop.forward(x);
  int64_t zeros = 0;
  double sum = 0;
  for (float v : y) {
    zeros += v == 0.f;
    sum += v;
  }
  CHECK(zeros == Approx(2500).margin(250));
  CHECK(sum / 10000 == Approx(1.0).epsilon(0.05));
  drop.eval();
  const auto& z = drop.forward(x);
  CHECK(std::all_of(z.begin(), z.end(), [](float v) { return v == 1.f; }));
}

TEST_CASE("BatchNorm2d updates running statistics like PyTorch") {
  BatchNorm2d<double> bn({.num_features = 1, .eps = 1e-5, .momentum = 0.1});
  Tensor<double> x({2, 1, 1, 2}, {1, 2, 3, 6});  // mean 3, biased var 3.5, unbiased var 14/3
  bn.forward(x);
  CHECK(bn.running_mean()[0] == Approx(0.3));
  CHECK(bn.running_var()[0] == Approx(0.9 + 0.1 * 14.0 / 3.0));
  CHECK(bn.num_batches_tracked() == 1);
  bn.eval();
  bn.forward(x);
  CHECK(bn.num_batches_tracked() == 1);  // eval does not touch the statistics
  bn.train();
  bn.set_running_stats_frozen(true);
  const auto& y = bn.forward(x);
  CHECK(bn.num_batches_tracked() == 1);
  CHECK(y[0] == Approx((1 - 0.3) / std::sqrt(0.9 + 0.1 * 14.0 / 3.0 + 1e-5)));
}

TEST_CASE("Layers reject inputs of the wrong shape with the layer and both shapes in the message") {
  Conv2d<float> conv({.in_channels = 3, .out_channels = 8, .kernel_size = 3});
  Tensor<float> x({1, 4, 8, 8});
  CHECK_THROWS_WITH(conv.forward(x), Catch::Contains("Conv2d(3, 8") && Catch::Contains("3 channels") &&
                                         Catch::Contains("[1, 4, 8, 8]"));
  const Tensor<float> x3d({4, 8, 8}), tiny({1, 3, 2, 2}), x3c({2, 3, 2, 2}), single({1, 4, 1, 1}), x9({2, 9});
  CHECK_THROWS_AS(conv.forward(x3d), Error);
  CHECK_THROWS_AS(conv.forward(tiny), Error);  // smaller than the kernel
  BatchNorm2d<float> bn(4);
  CHECK_THROWS_WITH(bn.forward(x3c), Catch::Contains("4 channels"));
  CHECK_THROWS_WITH(bn.forward(single), Catch::Contains("more than one value"));
  Linear<float> lin({.in_features = 10, .out_features = 2});
  CHECK_THROWS_WITH(lin.forward(x9), Catch::Contains("[N, 10]") && Catch::Contains("[2, 9]"));
  CHECK_THROWS_AS(Conv2d<float>({.in_channels = 0, .out_channels = 8}), Error);
  CHECK_THROWS_AS(Linear<float>({.in_features = 4, .out_features = 0}), Error);
  CHECK_THROWS_AS(Dropout<float>(1.0), Error);
}

}  // namespace unit_layers
