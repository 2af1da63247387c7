// The model zoo: torchvision names/shapes, heads, freezing, and the errors users hit first.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <xfer/xfer.hpp>

#include <fstream>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_models {

using namespace xfer;
using namespace xfer::models;

namespace {
nlohmann::json torchvision_keys() {
  std::ifstream f(std::string(XFER_FIXTURE_DIR) + "/model_keys.json");
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

void require_same_keys(Model<float>& net, const nlohmann::json& expected) {
  const auto params = net.named_parameters();
  REQUIRE(params.size() == expected["parameters"].size());
  for (size_t i = 0; i < params.size(); ++i) {
    INFO("parameter " << i);
    CHECK(params[i].name == expected["parameters"][i][0].get<std::string>());
    CHECK(params[i].param->shape == expected["parameters"][i][1].get<Shape>());
  }
  const auto buffers = net.named_buffers();
  REQUIRE(buffers.size() == expected["buffers"].size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    CHECK(buffers[i].name == expected["buffers"][i][0].get<std::string>());
    const Shape s = buffers[i].buffer.tensor ? buffers[i].buffer.tensor->shape() : Shape{};
    CHECK(s == expected["buffers"][i][1].get<Shape>());
  }
}

Tensor<float> random_images(int64_t n, int64_t size, uint64_t seed) {
  Rng rng(seed);
  Tensor<float> x({n, 3, size, size});
  for (auto& v : x) v = static_cast<float>(rng.normal());
  return x;
}
}  // namespace

TEST_CASE("Model parameter and buffer names, shapes and order equal torchvision's state_dict") {
  const auto keys = torchvision_keys();
  require_same_keys(*resnet18<float>({.num_classes = 1000}), keys["resnet18"]);
  require_same_keys(*resnet18<float>({.num_classes = 10}), keys["resnet18-10"]);
  require_same_keys(*resnet34<float>({.num_classes = 1000}), keys["resnet34"]);
  require_same_keys(*create<float>("vgg13"), keys["vgg13"]);
  require_same_keys(*create<float>("vgg16"), keys["vgg16"]);
}

TEST_CASE("ResNet-18 parameter counts equal torchvision's figures") {
  auto net = resnet18<float>({.num_classes = 10});
  CHECK(net->num_parameters() == 11181642);
  net->freeze_backbone();
  CHECK(net->num_trainable_parameters() == 5130);
  CHECK(resnet18<float>({.num_classes = 1000})->num_parameters() == 11689512);
  // The CIFAR stem only changes conv1 (3x3 instead of 7x7).
  CHECK(resnet18<float>({.num_classes = 10, .stem = Stem::Cifar})->num_parameters() == 11181642 - 64 * 3 * (49 - 9));
  CHECK(create<float>("vgg11-cifar", {.num_classes = 10})->num_parameters() == 9225984 + 5130);
}

TEST_CASE("Output shapes for both ResNet stems and VGG at 32x32") {
  for (const char* name : {"resnet18", "resnet18-cifar", "vgg11-cifar"}) {
    auto net = create<float>(name, {.num_classes = 7});
    net->eval();
    const auto& y = net->forward(random_images(2, 32, 1));
    INFO(name);
    CHECK(y.shape() == Shape{2, 7});
  }
}

TEST_CASE("Initialisation is seeded and follows torchvision (kaiming fan_out convs, BN 1/0)") {
  auto a = resnet18<float>({.num_classes = 10, .seed = 7});
  auto b = resnet18<float>({.num_classes = 10, .seed = 7});
  auto c = resnet18<float>({.num_classes = 10, .seed = 8});
  CHECK(std::equal(a->arena().values.begin(), a->arena().values.end(), b->arena().values.begin()));
  CHECK_FALSE(std::equal(a->arena().values.begin(), a->arena().values.end(), c->arena().values.begin()));
  for (auto& np : a->named_parameters()) {
    if (np.name == "layer3.0.conv2.weight") {  // fan_out = 256*9: std = sqrt(2/2304)
      double ss = 0;
      for (int64_t i = 0; i < np.param->numel; ++i) ss += double(np.param->value[i]) * np.param->value[i];
      CHECK(std::sqrt(ss / np.param->numel) == Approx(std::sqrt(2.0 / 2304)).epsilon(0.02));
    }
    if (np.name == "layer1.0.bn1.weight") CHECK(np.param->value[5] == 1.f);
    if (np.name == "layer1.0.bn1.bias") CHECK(np.param->value[5] == 0.f);
    if (np.name == "fc.weight")  // PyTorch's Linear default: U(-1/sqrt(512), 1/sqrt(512))
      for (int64_t i = 0; i < np.param->numel; ++i) CHECK(std::abs(np.param->value[i]) <= 1 / std::sqrt(512.f));
  }
}

TEST_CASE("replace_head swaps in a fresh Linear and keeps every backbone value") {
  auto net = resnet18<float>({.num_classes = 1000, .seed = 3});
  std::vector<float> before;
  for (auto& np : net->named_parameters())
    if (np.name == "layer4.1.conv2.weight") before.assign(np.param->value, np.param->value + np.param->numel);
  net->replace_head(10);
  CHECK(net->num_classes() == 10);
  CHECK(net->num_parameters() == 11181642);
  for (auto& np : net->named_parameters()) {
    if (np.name == "layer4.1.conv2.weight") CHECK(std::equal(before.begin(), before.end(), np.param->value));
    if (np.name == "fc.weight") CHECK(np.param->shape == Shape{10, 512});
  }
  CHECK(net->arena().size() == 11181642);
  net->eval();
  CHECK(net->forward(random_images(1, 32, 2)).shape() == Shape{1, 10});
}

TEST_CASE("VGG-11 in torchvision's layout: names, 32x32 forward through the 7x7 average pool, new head") {
  // One instance: a 133M-parameter model is worth building only once.
  auto v = create<float>("vgg11", {.num_classes = 1000});
  require_same_keys(*v, torchvision_keys()["vgg11"]);
  v->eval();
  CHECK(v->forward(random_images(2, 32, 1)).shape() == Shape{2, 1000});
  v->replace_head(5);
  CHECK(v->named_parameters().back().name == "classifier.6.bias");
  CHECK(v->named_parameters().back().param->shape == Shape{5});
  CHECK(v->forward(random_images(1, 32, 2)).shape() == Shape{1, 5});
}

TEST_CASE("A frozen backbone does no backward work and gets no gradient") {
  auto net = resnet18<float>({.num_classes = 10});
  net->freeze_backbone();
  const auto x = random_images(4, 32, 4);
  const auto& y = net->forward(x);
  auto loss = nn::cross_entropy(y, {1, 2, 3, 4});
  net->zero_grad();
  net->backward(loss.grad, false);
  for (auto& [name, m] : net->named_modules()) {
    INFO(name);
    if (name == "" || name == "fc")
      CHECK(m->backward_calls() == 1);
    else
      CHECK(m->backward_calls() == 0);  // not even avgpool: nothing below fc is trainable
  }
  for (auto& np : net->named_parameters()) {
    const bool any = std::any_of(np.param->grad, np.param->grad + np.param->numel, [](float g) { return g != 0; });
    INFO(np.name);
    CHECK(any == (np.name.rfind("fc.", 0) == 0));
  }
}

TEST_CASE("Backward stops below the earliest trainable layer") {
  auto net = resnet18<float>({.num_classes = 10});
  net->freeze(nn::all_except(nn::any_of({"layer4", "fc"})));
  CHECK(net->num_trainable_parameters() == 8393728 + 5130);  // layer4 + fc, as in torchvision
  net->forward(random_images(2, 32, 5));
  net->backward(nn::cross_entropy(net->forward(random_images(2, 32, 5)), {0, 1}).grad, false);
  for (auto& [name, m] : net->named_modules()) {
    INFO(name);
    const bool upper = name.rfind("layer4", 0) == 0 || name == "fc" || name == "avgpool" || name == "flatten" || name == "";
    if (!upper) CHECK(m->backward_calls() == 0);
  }
  for (auto& [name, m] : net->named_modules())
    if (name == "layer4.0.conv1" || name == "layer4") CHECK(m->backward_calls() == 1);
}

TEST_CASE("Freezing BatchNorm statistics keeps running stats fixed in training mode") {
  auto net = resnet18<float>({.num_classes = 10});
  net->freeze_backbone({.bn_stats = true});
  net->train();
  net->forward(random_images(4, 32, 6));
  for (auto& nb : net->named_buffers()) {
    if (nb.buffer.counter) CHECK(*nb.buffer.counter == 0);
    if (nb.name.find("running_mean") != std::string::npos)
      CHECK(std::all_of(nb.buffer.tensor->begin(), nb.buffer.tensor->end(), [](float v) { return v == 0.f; }));
  }
  net->unfreeze_all();
  net->forward(random_images(4, 32, 6));
  for (auto& nb : net->named_buffers())
    if (nb.buffer.counter) CHECK(*nb.buffer.counter == 1);
  net->set_bn_stats_frozen("layer1", true);
  net->forward(random_images(4, 32, 6));
  for (auto& nb : net->named_buffers())
    if (nb.buffer.counter) CHECK(*nb.buffer.counter == (nb.name.rfind("layer1.", 0) == 0 ? 1 : 2));
}

TEST_CASE("Selectors: prefixes respect dots, globs match whole names") {
  auto net = resnet18<float>({.num_classes = 10});
  CHECK(net->parameters("layer1").size() == 12);
  CHECK(net->parameters("layer1.0.bn*").size() == 4);
  CHECK(net->parameters("*.downsample.*").size() == 9);
  CHECK(net->parameters(nn::all_except("fc")).size() == 60);
  CHECK(net->freeze("layer*.bn?.weight") == 16);
  CHECK(net->unfreeze("layer*") == 57);
}

TEST_CASE("Bad input names the layer or pattern and the expected versus actual values") {
  auto net = resnet18<float>({.num_classes = 10});
  // A grayscale batch into an RGB model.
  Tensor<float> gray({2, 1, 32, 32});
  CHECK_THROWS_WITH(net->forward(gray), Catch::Contains("'conv1'") && Catch::Contains("3 channels") &&
                                            Catch::Contains("[2, 1, 32, 32]"));
  // A head with zero classes.
  CHECK_THROWS_WITH(net->replace_head(0), Catch::Contains("replace_head(0)") && Catch::Contains("'fc'") &&
                                              Catch::Contains("must be positive"));
  CHECK_THROWS_AS(resnet18<float>({.num_classes = 0}), Error);
  // A freeze pattern that matches nothing (typo: "layer5").
  CHECK_THROWS_WITH(net->freeze("layer5"), Catch::Contains("'layer5'") && Catch::Contains("matches no parameter") &&
                                               Catch::Contains("layer4"));
  CHECK_THROWS_WITH(net->unfreeze("fc.weights"), Catch::Contains("'fc.weights'"));
  CHECK_THROWS_WITH(create<float>("resnet101"), Catch::Contains("unknown model 'resnet101'") && Catch::Contains("resnet18"));
}

}  // namespace unit_models
