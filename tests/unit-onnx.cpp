// ONNX export (io/onnx.hpp): graph structure, initializer names and shapes, the symbolic batch, bad
// input, the atomic write. The hidden case [.onnx-export] writes the models, inputs and xfer's eval
// logits that tests/scripts/onnx_runtime_check.py runs in ONNX Runtime (tests/onnx.cmake).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <xfer/io/onnx.hpp>
#include <xfer/xfer.hpp>

#include <filesystem>
#include <fstream>
#include <map>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_onnx {

using namespace xfer;
namespace fs = std::filesystem;

namespace {

std::map<std::string, int> op_counts(const onnx::ModelProto& m) {
  std::map<std::string, int> c;
  for (const auto& n : m.graph().node()) ++c[n.op_type()];
  return c;
}
std::map<std::string, Shape> initializers(const onnx::ModelProto& m) {
  std::map<std::string, Shape> out;
  for (const auto& t : m.graph().initializer()) out[t.name()] = Shape(t.dims().begin(), t.dims().end());
  return out;
}
// What torchvision's state_dict has, minus num_batches_tracked (not used at inference).
std::map<std::string, Shape> state_tensors(nn::Module<float>& net) {
  std::map<std::string, Shape> out;
  for (auto& p : net.named_parameters()) out[p.name] = p.param->shape;
  for (auto& b : net.named_buffers())
    if (b.buffer.tensor) out[b.name] = b.buffer.tensor->shape();
  return out;
}
std::vector<std::string> dims(const onnx::ValueInfoProto& v) {
  std::vector<std::string> out;
  for (const auto& d : v.type().tensor_type().shape().dim())
    out.push_back(d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value()));
  return out;
}
// Random BN statistics and affine parameters, so BN is not the identity in eval mode.
void randomize_batchnorm(nn::Module<float>& net, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, m] : net.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm2d<float>*>(m)) {
      const int64_t C = bn->options().num_features;
      rng.fill_uniform(bn->weight().value, C, 0.5, 1.5);
      rng.fill_normal(bn->bias().value, C, 0.0, 0.2);
      rng.fill_normal(bn->running_mean().data(), C, 0.0, 0.2);
      rng.fill_uniform(bn->running_var().data(), C, 0.5, 2.0);
    }
}

// A module type the exporter does not know.
struct Tanh : nn::Module<float> {
  std::string type_name() const override { return "Tanh"; }
  const Tensor<float>& forward_impl(const Tensor<float>& x) override { return x; }
  const Tensor<float>& backward_impl(const Tensor<float>& dy, bool) override { return dy; }
};

}  // namespace

TEST_CASE("resnet18 exports as Conv/BatchNormalization/Relu/Add with torchvision's initializer names") {
  auto net = models::resnet18<float>({.num_classes = 1000});
  const auto m = io::to_onnx(*net, {.input_shape = {3, 224, 224}});
  const auto ops = op_counts(m);
  CHECK(ops.at("Conv") == 20);  // stem + 16 in blocks + 3 downsample
  CHECK(ops.at("BatchNormalization") == 20);
  CHECK(ops.at("Relu") == 17);  // stem + 2 per block
  CHECK(ops.at("Add") == 8);
  CHECK(ops.at("MaxPool") == 1);
  CHECK(ops.at("GlobalAveragePool") == 1);
  CHECK(ops.at("Flatten") == 1);
  CHECK(ops.at("Gemm") == 1);
  CHECK(m.graph().node_size() == 69);
  CHECK(initializers(m) == state_tensors(*net));  // every name and shape, nothing else
  CHECK(initializers(m).at("layer2.0.downsample.0.weight") == Shape{128, 64, 1, 1});
  CHECK(m.opset_import(0).version() == 17);
  REQUIRE(m.graph().input_size() == 1);
  CHECK(dims(m.graph().input(0)) == std::vector<std::string>{"N", "3", "224", "224"});
  CHECK(dims(m.graph().output(0)) == std::vector<std::string>{"N", "1000"});
  CHECK(m.graph().output(0).name() == "logits");
}

TEST_CASE("fold_batchnorm folds every BatchNorm2d into its convolution") {
  auto net = models::resnet18<float>({.num_classes = 10, .stem = models::Stem::Cifar});
  const auto m = io::to_onnx(*net, {.input_shape = {3, 32, 32}, .fold_batchnorm = true});
  const auto ops = op_counts(m);
  CHECK(ops.count("BatchNormalization") == 0);
  CHECK(ops.at("Conv") == 20);
  CHECK(ops.count("MaxPool") == 0);  // the CIFAR stem has none
  const auto inits = initializers(m);
  CHECK(inits.size() == 20 * 2 + 2);  // conv weight + folded bias, fc weight + bias
  CHECK(inits.at("conv1.bias") == Shape{64});
  CHECK(inits.at("layer3.0.downsample.0.bias") == Shape{256});
  CHECK(inits.count("bn1.weight") == 0);
}

TEST_CASE("vgg11-cifar exports with features.N names and a 512 -> classes Gemm") {
  auto net = models::create<float>("vgg11-cifar", {.num_classes = 10});
  const auto m = io::to_onnx(*net, {.input_shape = {3, 32, 32}});
  const auto ops = op_counts(m);
  CHECK(ops.at("Conv") == 8);
  CHECK(ops.at("BatchNormalization") == 8);
  CHECK(ops.at("Relu") == 8);
  CHECK(ops.at("MaxPool") == 5);
  CHECK(ops.at("Flatten") == 1);
  CHECK(ops.at("Gemm") == 1);
  CHECK(m.graph().node_size() == 31);
  CHECK(initializers(m) == state_tensors(*net));
  CHECK(initializers(m).at("features.0.bias") == Shape{64});
  CHECK(initializers(m).at("classifier.weight") == Shape{10, 512});
  CHECK(dims(m.graph().output(0)) == std::vector<std::string>{"N", "10"});
}

TEST_CASE("AdaptiveAvgPool2d exports as AveragePool when the windows are even, and Dropout disappears") {
  auto seq = std::make_shared<nn::Sequential<float>>();
  seq->add("conv", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .kernel_size = 3, .padding = 1}));
  seq->add("pool", std::make_shared<nn::AdaptiveAvgPool2d<float>>(2));
  seq->add("flatten", std::make_shared<nn::Flatten<float>>());
  seq->add("drop", std::make_shared<nn::Dropout<float>>(0.5));
  seq->add("fc", std::make_shared<nn::Linear<float>>(nn::LinearOptions{16, 5}));
  const auto m = io::to_onnx(*seq, {.input_shape = {3, 8, 8}});
  const auto ops = op_counts(m);
  CHECK(ops.at("AveragePool") == 1);
  CHECK(ops.count("Dropout") == 0);
  CHECK(m.graph().node_size() == 4);
  CHECK_THROWS_WITH(io::to_onnx(*seq, {.input_shape = {3, 7, 7}}),
                    Catch::Contains("'pool'") && Catch::Contains("uneven windows"));
}

TEST_CASE("Hardswish, Hardsigmoid and SiLU export as HardSwish, HardSigmoid(1/6, 1/2) and Sigmoid * x") {
  nn::Sequential<float> net;
  net.add("a", std::make_shared<nn::Hardswish<float>>());
  net.add("b", std::make_shared<nn::Hardsigmoid<float>>());
  net.add("c", std::make_shared<nn::SiLU<float>>());
  const auto m17 = io::to_onnx(net, {.input_shape = {2, 4, 4}});
  CHECK(op_counts(m17) == std::map<std::string, int>{{"HardSwish", 1}, {"HardSigmoid", 1}, {"Sigmoid", 1}, {"Mul", 1}});
  const auto& hs = m17.graph().node(1);
  REQUIRE(hs.attribute_size() == 2);
  CHECK(hs.attribute(0).f() == Approx(1.0 / 6));
  CHECK(hs.attribute(1).f() == 0.5f);
  const auto m13 = io::to_onnx(net, {.input_shape = {2, 4, 4}, .opset = 13});  // HardSwish is opset 14
  CHECK(op_counts(m13) == std::map<std::string, int>{{"HardSigmoid", 2}, {"Sigmoid", 1}, {"Mul", 2}});
}

TEST_CASE("mobilenet_v3_small exports depthwise convs with their group and SqueezeExcitation as GlobalAveragePool .. Mul") {
  auto net = models::create<float>("mobilenet_v3_small", {.num_classes = 10});
  const onnx::ModelProto m = io::to_onnx(*net, {.input_shape = {3, 64, 64}});
  const auto ops = op_counts(m);
  int convs = 0, grouped = 0;
  for (auto& [name, mod] : net->named_modules())
    if (auto* c = dynamic_cast<nn::Conv2d<float>*>(mod)) ++convs, grouped += c->options().groups > 1;
  CHECK(ops.at("Conv") == convs);
  CHECK(grouped == 11);  // the stem is dense; each of the 11 blocks has one depthwise conv
  int with_group = 0;
  for (const auto& n : m.graph().node())
    for (const auto& a : n.attribute())
      if (a.name() == "group" && a.i() > 1) ++with_group;
  CHECK(with_group == grouped);
  CHECK(ops.at("GlobalAveragePool") == 9 + 1);  // SE in 9 blocks, then the model's avgpool
  CHECK(ops.at("Mul") == 9);                    // the SE products (Hardswish is HardSwish at opset 17)
  CHECK(ops.at("Add") == 6);                    // residual blocks
  CHECK(initializers(m) == state_tensors(*net));
}

TEST_CASE("An unsupported module is an error naming its path and type, and no file is written") {
  auto block = std::make_shared<nn::Sequential<float>>();
  block->add("conv", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4}));
  block->add("act", std::make_shared<Tanh>());
  nn::Sequential<float> net;
  net.add("block1", block);
  CHECK_THROWS_WITH(io::to_onnx(net, {.input_shape = {3, 8, 8}}),
                    Catch::Contains("module 'block1.act' of type Tanh") && Catch::Contains("not supported"));
  const fs::path dir = fs::path(XFER_TEST_TMP) / "onnx-unsupported";
  fs::remove_all(dir);
  fs::create_directories(dir);
  CHECK_THROWS_AS(io::save_onnx(net, dir / "net.onnx", {.input_shape = {3, 8, 8}}), Error);
  CHECK(fs::is_empty(dir));
  // Bad options: wrong channels (named at the first conv), an opset this exporter does not write.
  auto r18 = models::resnet18<float>({.num_classes = 10});
  CHECK_THROWS_WITH(io::to_onnx(*r18, {.input_shape = {1, 64, 64}}), Catch::Contains("'conv1' Conv2d") && Catch::Contains("gets [N, 1, 64, 64]"));
  CHECK_THROWS_WITH(io::to_onnx(*r18, {.input_shape = {3, 64, 64}, .opset = 9}), Catch::Contains("opset 9"));
}

TEST_CASE("save_onnx writes the checked model atomically") {
  const fs::path dir = fs::path(XFER_TEST_TMP) / "onnx-atomic";
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto net = models::conv4<float>({.width = 8, .image_size = 32, .num_classes = 5});
  const fs::path path = dir / "conv4.onnx";
  {
    std::ofstream old(path);
    old << "old contents";
  }
  io::save_onnx(*net, path, {.input_shape = {3, 32, 32}});
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  onnx::ModelProto m;
  REQUIRE(m.ParseFromString(bytes));
  onnx::checker::check_model(m);
  CHECK(op_counts(m).at("MaxPool") == 4);
  CHECK(initializers(m) == state_tensors(*net));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);  // no temp file left
  // A failing export leaves the previous file as it was.
  CHECK_THROWS_AS(io::save_onnx(*net, path, {.input_shape = {3, 32, 32}, .opset = 99}), Error);
  CHECK(fs::file_size(path) == bytes.size());
}

namespace {
void write_f32(const fs::path& p, const Tensor<float>& t) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.numel() * sizeof(float)));
  REQUIRE(out.good());
}
// Exports `net`, a random batch of 3 and xfer's eval logits for batch 3 and for its first image alone.
// `tolerance`: the largest |ONNX Runtime - xfer| logit difference accepted (~100x the measured one).
nlohmann::json export_case(const std::string& name, nn::Module<float>& net, Shape chw, const fs::path& dir,
                           double tolerance, const io::OnnxOptions& extra = {}) {
  randomize_batchnorm(net, 7);
  net.eval();
  io::OnnxOptions o = extra;
  o.input_shape = std::vector<int64_t>(chw.begin(), chw.end());
  io::save_onnx(net, dir / (name + ".onnx"), o);
  Tensor<float> x3({3, chw[0], chw[1], chw[2]}), x1({1, chw[0], chw[1], chw[2]});
  Rng rng(11);
  rng.fill_normal(x3.data(), x3.numel(), 0.0, 1.0);
  std::copy(x3.data(), x3.data() + x1.numel(), x1.data());
  write_f32(dir / (name + "_input.f32"), x3);
  const Tensor<float> y3 = net.forward(x3);
  write_f32(dir / (name + "_logits3.f32"), y3);
  const Tensor<float> y1 = net.forward(x1);
  write_f32(dir / (name + "_logits1.f32"), y1);
  return {{"name", name}, {"input_shape", {3, chw[0], chw[1], chw[2]}}, {"logits_shape", y3.shape()},
          {"tolerance", tolerance}};
}
}  // namespace

TEST_CASE("Export the ONNX Runtime comparison set", "[.onnx-export]") {
  const fs::path dir = fs::path(XFER_TEST_TMP) / "onnx-runtime";
  fs::remove_all(dir);
  fs::create_directories(dir);
  nlohmann::json cases = nlohmann::json::array();
  auto r18c = models::create<float>("resnet18-cifar", {.num_classes = 10, .seed = 1});
  cases.push_back(export_case("resnet18-cifar", *r18c, {3, 32, 32}, dir, 1e-4));
  cases.push_back(export_case("resnet18-cifar-folded", *r18c, {3, 32, 32}, dir, 1e-4, {.fold_batchnorm = true}));
  auto r18 = models::create<float>("resnet18", {.num_classes = 1000, .seed = 2});
  cases.push_back(export_case("resnet18-64px", *r18, {3, 64, 64}, dir, 1e-4));
  auto vgg = models::create<float>("vgg11-cifar", {.num_classes = 10, .seed = 3});
  cases.push_back(export_case("vgg11-cifar", *vgg, {3, 32, 32}, dir, 1e-5));
  auto c4 = models::conv4<float>({.width = 32, .image_size = 32, .num_classes = 5, .seed = 4});
  cases.push_back(export_case("conv4", *c4, {3, 32, 32}, dir, 1e-5));
  auto seq = std::make_shared<nn::Sequential<float>>();
  seq->add("conv", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 8, .kernel_size = 3, .padding = 1}));
  seq->add("bn", std::make_shared<nn::BatchNorm2d<float>>(8));
  seq->add("relu", std::make_shared<nn::ReLU<float>>());
  seq->add("pool", std::make_shared<nn::AdaptiveAvgPool2d<float>>(2));
  seq->add("flatten", std::make_shared<nn::Flatten<float>>());
  seq->add("drop", std::make_shared<nn::Dropout<float>>(0.5));
  seq->add("fc", std::make_shared<nn::Linear<float>>(nn::LinearOptions{32, 4}));
  cases.push_back(export_case("sequential-avgpool", *seq, {3, 8, 8}, dir, 1e-5, {.fold_batchnorm = true}));
  // nn/activations.hpp; Hardswish as HardSwish (opset 17) and as x * HardSigmoid(x) (opset 13).
  auto act = std::make_shared<nn::Sequential<float>>();
  act->add("conv", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 8, .kernel_size = 3, .padding = 1}));
  act->add("hswish", std::make_shared<nn::Hardswish<float>>());
  act->add("conv2", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 8, .kernel_size = 3, .padding = 1}));
  act->add("silu", std::make_shared<nn::SiLU<float>>());
  act->add("conv3", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 8, .kernel_size = 3, .padding = 1}));
  act->add("hsig", std::make_shared<nn::Hardsigmoid<float>>());
  act->add("pool", std::make_shared<nn::AdaptiveAvgPool2d<float>>(1));
  act->add("flatten", std::make_shared<nn::Flatten<float>>());
  act->add("fc", std::make_shared<nn::Linear<float>>(nn::LinearOptions{8, 4}));
  Rng wr(9);  // default init gives tiny activations; spread the conv weights so the kinks matter
  for (auto& p : act->parameters()) wr.fill_normal(p->value, p->numel, 0.0, 1.0);
  cases.push_back(export_case("activations", *act, {3, 8, 8}, dir, 5e-5));
  cases.push_back(export_case("activations-opset13", *act, {3, 8, 8}, dir, 5e-5, {.opset = 13}));
  // The zoo of issue 14 at 64 px, BN as BatchNormalization and (mobile nets) folded into the convs.
  // Tolerances ~50x the measured differences (2026-12-03): resnet50 2.8e-5 (max |logit| 42, the
  // issue's 1e-4 kept), MobileNetV3 2.2e-8 (max |logit| 0.04), EfficientNet-B0 1.6e-7 (0.4).
  const std::vector<std::pair<std::string, double>> zoo = {
      {"resnet50", 1e-4}, {"mobilenet_v3_large", 1e-6}, {"mobilenet_v3_small", 1e-6}, {"efficientnet_b0", 1e-5}};
  for (const auto& [name, tol] : zoo) {
    auto net = models::create<float>(name, {.num_classes = 1000, .seed = 5});
    cases.push_back(export_case(name, *net, {3, 64, 64}, dir, tol));
    if (name != "resnet50") cases.push_back(export_case(name + "-folded", *net, {3, 64, 64}, dir, tol, {.fold_batchnorm = true}));
  }
  // Dilated, grouped and depthwise (channel multiplier 2, stride 2) convolutions.
  auto grp = std::make_shared<nn::Sequential<float>>();
  grp->add("dilated", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 8, .kernel_size = 3, .padding = 2, .dilation = 2}));
  grp->add("grouped", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 8, .kernel_size = 3, .padding = 1, .groups = 4}));
  grp->add("depthwise", std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 16, .kernel_size = 3, .stride = 2, .padding = 1, .groups = 8}));
  grp->add("pool", std::make_shared<nn::AdaptiveAvgPool2d<float>>(1));
  grp->add("flatten", std::make_shared<nn::Flatten<float>>());
  grp->add("fc", std::make_shared<nn::Linear<float>>(nn::LinearOptions{16, 4}));
  cases.push_back(export_case("grouped-dilated", *grp, {3, 12, 12}, dir, 1e-5));
  std::ofstream(dir / "cases.json") << cases.dump(1);
  CHECK(cases.size() == 16);
}

}  // namespace unit_onnx
