// The safetensors file layer (io/safetensors.hpp) and the model layer (io/state_dict.hpp):
// round trips, dtype conversions, one test per kind of bad input, strict / non-strict loading.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "xfer/io/safetensors.hpp"
#include "xfer/io/state_dict.hpp"
#include "xfer/models/resnet.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/sequential.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_safetensors {

using namespace xfer;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  fs::create_directories(std::string(XFER_TEST_TMP) + "/safetensors");
  return std::string(XFER_TEST_TMP) + "/safetensors/" + name;
}

// Writes a file byte by byte: header length (or an explicit override), header text, data.
std::string raw_file(const std::string& name, const std::string& header, const std::string& data,
                     std::optional<uint64_t> length = std::nullopt) {
  const std::string path = tmp_path(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = length.value_or(header.size());
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out << header << data;
  return path;
}

// Expects opening `path` to throw an xfer::Error that names the file and contains `problem`.
void expect_bad(const std::string& path, const std::string& problem, io::ReaderOptions opt = {}) {
  try {
    io::SafetensorsReader r(path, opt);
    FAIL("no error for " << path);
  } catch (const Error& e) {
    INFO(e.what());
    CHECK_THAT(e.what(), Contains(path));
    CHECK_THAT(e.what(), Contains(problem));
  }
}

std::string bytes_of(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::shared_ptr<nn::Sequential<float>> small_net() {
  auto net = std::make_shared<nn::Sequential<float>>();
  Rng rng(3);
  net->push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{2, 3, 3, 1, 1, true}, rng));
  net->push_back(std::make_shared<nn::BatchNorm2d<float>>(3));
  return net;
}

}  // namespace

// ---- file layer ---------------------------------------------------------------------------------

TEST_CASE("write_safetensors then SafetensorsReader gives back every tensor, dtype, shape and metadata") {
  const std::string path = tmp_path("roundtrip.safetensors");
  Tensor<float> a({2, 3}, {1, -2, 3.5f, 4, 5, 6});
  Tensor<double> b({4}, {0.1, 0.2, -0.3, 1e300});
  int64_t counter = 42;
  Tensor<float> empty({0, 5});
  io::write_safetensors(path, {io::view("a", a), io::view("b", b), io::view("n", &counter, {}), io::view("e", empty)},
                        {{"epoch", "3"}, {"note", "{\"json\": true}"}});
  CHECK_FALSE(fs::exists(path + ".tmp." + std::to_string(::getpid())));

  io::SafetensorsReader r(path);
  CHECK(r.keys() == std::vector<std::string>{"a", "b", "n", "e"});  // data order
  CHECK(r.info("a").dtype == io::Dtype::F32);
  CHECK(r.info("b").dtype == io::Dtype::F64);
  CHECK(r.info("n").dtype == io::Dtype::I64);
  CHECK(r.info("n").shape.empty());
  CHECK(r.info("e").shape == Shape{0, 5});
  CHECK(r.metadata().at("epoch") == "3");
  CHECK(r.metadata().at("note") == "{\"json\": true}");
  CHECK(r.read<float>("a") == std::vector<float>(a.begin(), a.end()));
  CHECK(r.read<double>("b") == std::vector<double>(b.begin(), b.end()));
  CHECK(r.read<int64_t>("n") == std::vector<int64_t>{42});
  CHECK(r.read<float>("e").empty());
  CHECK(r.read_tensor<float>("a").shape() == Shape{2, 3});
  // The header is padded so the data section starts 8-byte aligned, as the reference writer does.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  CHECK(n % 8 == 0);
}

TEST_CASE("Reading converts F16, BF16, F8 and integer dtypes exactly") {
  // Half bit patterns and their values: 1, -2, 65504 (max), 2^-24 (smallest subnormal), 2^-14, inf.
  const std::vector<uint16_t> half = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0400, 0x7C00, 0x8000};
  const std::vector<float> half_v = {1.f, -2.f, 65504.f, 0x1p-24f, 0x1p-14f, INFINITY, -0.f};
  const std::vector<uint16_t> bf = {0x3F80, 0xC040, 0x7F80, 0x0001};
  const std::vector<float> bf_v = {1.f, -3.f, INFINITY, 0x1p-133f};
  const std::vector<uint8_t> e4m3 = {0x38, 0xC0, 0x7E, 0x01};  // 1, -2, 448 (max), 2^-9
  const std::vector<float> e4m3_v = {1.f, -2.f, 448.f, 0x1p-9f};
  const std::vector<uint8_t> e5m2 = {0x3C, 0x7B};  // 1, 57344 (max)
  const std::vector<float> e5m2_v = {1.f, 57344.f};
  const std::vector<int32_t> i32 = {-7, 1 << 20};
  const std::vector<uint8_t> flags = {0, 1};
  const std::string path = tmp_path("dtypes.safetensors");
  io::write_safetensors(path, {{"h", io::Dtype::F16, {7}, half.data()},
                               {"bf", io::Dtype::BF16, {2, 2}, bf.data()},
                               {"e4", io::Dtype::F8_E4M3, {4}, e4m3.data()},
                               {"e5", io::Dtype::F8_E5M2, {2}, e5m2.data()},
                               {"i", io::Dtype::I32, {2}, i32.data()},
                               {"b", io::Dtype::BOOL, {2}, flags.data()}});
  io::SafetensorsReader r(path);
  CHECK(r.read<float>("h") == half_v);
  CHECK(std::signbit(r.read<float>("h")[6]));
  CHECK(r.read<float>("bf") == bf_v);
  CHECK(r.read<float>("e4") == e4m3_v);
  CHECK(r.read<float>("e5") == e5m2_v);
  CHECK(r.read<double>("i") == std::vector<double>{-7, 1 << 20});
  CHECK(r.read<int64_t>("i") == std::vector<int64_t>{-7, 1 << 20});
  CHECK(r.read<int64_t>("b") == std::vector<int64_t>{0, 1});
  CHECK(std::isnan(io::detail::f8e4m3fn_to_float(0x7F)));
  CHECK(std::isnan(io::detail::half_to_float(0x7E00)));
  CHECK(io::detail::float_to_bf16(1.0f + 0x1p-8f) == 0x3F80);  // ties to even
  CHECK(io::detail::float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81);
}

TEST_CASE("Reading a float tensor as int64 accepts integral values only") {
  const std::vector<float> ok = {3.f, -1.f}, bad = {2.5f};
  const std::string path = tmp_path("float_as_int.safetensors");
  io::write_safetensors(path, {io::view("ok", ok.data(), {2}), io::view("bad", bad.data(), {1})});
  io::SafetensorsReader r(path);
  CHECK(r.read<int64_t>("ok") == std::vector<int64_t>{3, -1});
  CHECK_THROWS_WITH(r.read<int64_t>("bad"), Contains("not an integer") && Contains("'bad'"));
}

TEST_CASE("Asking for a tensor the file does not hold names the file and the key") {
  const std::vector<float> v = {1};
  const std::string path = tmp_path("one.safetensors");
  io::write_safetensors(path, {io::view("x", v.data(), {1})});
  io::SafetensorsReader r(path);
  CHECK_THROWS_WITH(r.read<float>("y"), Contains(path) && Contains("no tensor named 'y'"));
  std::vector<float> two(2);
  CHECK_THROWS_WITH(r.read_into("x", two.data(), 2), Contains("has 1 elements"));
}

TEST_CASE("write_safetensors rejects duplicate names and leaves no temporary file behind") {
  const std::vector<float> v = {1};
  const std::string path = tmp_path("dup_write.safetensors");
  CHECK_THROWS_WITH(io::write_safetensors(path, {io::view("x", v.data(), {1}), io::view("x", v.data(), {1})}),
                    Contains("given twice"));
  CHECK_THROWS_WITH(io::write_safetensors(path, {io::view("__metadata__", v.data(), {1})}), Contains("invalid tensor name"));
  CHECK_THROWS_WITH(io::write_safetensors(tmp_path("no/such/dir/x.safetensors"), {io::view("x", v.data(), {1})}),
                    Contains("cannot open"));
  for (const auto& e : fs::directory_iterator(tmp_path("")))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("Overwriting replaces the old file in one step") {
  const std::string path = tmp_path("overwrite.safetensors");
  const std::vector<float> a = {1, 2}, b = {3, 4, 5};
  io::write_safetensors(path, {io::view("a", a.data(), {2})});
  io::write_safetensors(path, {io::view("b", b.data(), {3})});
  io::SafetensorsReader r(path);
  CHECK(r.keys() == std::vector<std::string>{"b"});
  CHECK(r.read<float>("b") == b);
}

// ---- bad input: one test per case -------------------------------------------------------------

TEST_CASE("A 0-byte file is rejected") {
  const std::string path = tmp_path("zero.safetensors");
  std::ofstream(path, std::ios::trunc).close();
  expect_bad(path, "too short for the 8-byte header length");
}

TEST_CASE("A file shorter than the 8-byte length prefix is rejected") {
  const std::string path = tmp_path("five.safetensors");
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "\x10\0\0\0\0";
  expect_bad(path, "too short");
}

TEST_CASE("A header length larger than the file is rejected") {
  expect_bad(raw_file("hlen.safetensors", "{}", "", 1000), "is larger than the rest of the file");
}

TEST_CASE("A header length above the configured cap is rejected before anything is read") {
  const std::string header = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string path = raw_file("cap.safetensors", header, bytes_of({1.f}));
  expect_bad(path, "exceeds the limit of 16 bytes", {.max_header_bytes = 16});
  expect_bad(raw_file("huge_len.safetensors", "{}", "", ~uint64_t(0)), "exceeds the limit");
  CHECK_NOTHROW(io::SafetensorsReader(path));
}

TEST_CASE("A data section above max_data_bytes is rejected") {
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  expect_bad(raw_file("datacap.safetensors", header, bytes_of({1.f, 2.f})), "exceeds the limit of 4 bytes",
             {.max_data_bytes = 4});
}

TEST_CASE("A truncated file is rejected") {
  const std::string header = R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  expect_bad(raw_file("truncated.safetensors", header, bytes_of({1.f, 2.f})), "run past the end of the data section");
  // Cut inside the header itself.
  expect_bad(raw_file("truncated_header.safetensors", header.substr(0, 10), "", header.size()), "larger than the rest");
}

TEST_CASE("A header that is not JSON is rejected") {
  expect_bad(raw_file("notjson.safetensors", "{not json at all}", ""), "header is not valid JSON");
  expect_bad(raw_file("binary.safetensors", std::string("\x00\x01\x02\x03", 4), ""), "not a JSON object");
  expect_bad(raw_file("badutf8.safetensors", "{\"\xff\xfe\":1}", ""), "header is not valid JSON");
}

TEST_CASE("A JSON header that is not an object of tensor entries is rejected") {
  expect_bad(raw_file("array.safetensors", "[1, 2]", ""), "not a JSON object");
  expect_bad(raw_file("entry.safetensors", R"({"x": 5})", ""), "entry 'x' must be an object");
  expect_bad(raw_file("nodtype.safetensors", R"({"x": {"shape": [1], "data_offsets": [0, 4]}})", bytes_of({1.f})),
             "missing or non-string 'dtype'");
  expect_bad(raw_file("noffs.safetensors", R"({"x": {"dtype": "F32", "shape": [1]}})", bytes_of({1.f})),
             "'data_offsets' must be two non-negative integers");
  expect_bad(raw_file("deep.safetensors", "{\"x\":" + std::string(100000, '[') + std::string(100000, ']') + "}", ""),
             "nested deeper");
}

TEST_CASE("An unknown dtype is rejected") {
  expect_bad(raw_file("dtype.safetensors", R"({"x":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", bytes_of({1.f})),
             "unknown dtype 'F31'");
}

TEST_CASE("Shape entries must be non-negative integers without overflow") {
  expect_bad(raw_file("negshape.safetensors", R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", bytes_of({1.f})),
             "shape entries must be non-negative integers");
  expect_bad(raw_file("fshape.safetensors", R"({"x":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", bytes_of({1.f})),
             "shape entries must be non-negative integers");
  expect_bad(raw_file("bigshape.safetensors",
                      R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", bytes_of({1.f})),
             "too many elements");
  // 2^62 elements of 4 bytes overflow 64-bit byte counts.
  expect_bad(raw_file("bytesoverflow.safetensors",
                      R"({"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", bytes_of({1.f})),
             "too large in bytes");
}

TEST_CASE("data_offsets outside the data section are rejected") {
  expect_bad(raw_file("outside.safetensors", R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", bytes_of({1.f})),
             "run past the end of the data section");
  expect_bad(raw_file("reversed.safetensors", R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", bytes_of({1.f})),
             "end before they begin");
}

TEST_CASE("Overlapping data_offsets are rejected") {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_bad(raw_file("overlap.safetensors", header, bytes_of({1.f, 2.f, 3.f})), "overlap tensor 'a'");
}

TEST_CASE("Gaps and trailing bytes in the data section are rejected") {
  const std::string gap =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_bad(raw_file("gap.safetensors", gap, bytes_of({1.f, 2.f, 3.f})), "gap in the data section");
  expect_bad(raw_file("trailing.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                      bytes_of({1.f, 2.f})),
             "trailing bytes");
}

TEST_CASE("A shape whose byte size differs from its data_offsets is rejected") {
  expect_bad(raw_file("sizemismatch.safetensors", R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                      bytes_of({1.f, 2.f})),
             "needs 12 bytes but data_offsets [0, 8) span 8");
}

TEST_CASE("Duplicate keys are rejected (not silently resolved to the last one)") {
  const std::string header =
      R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_bad(raw_file("dupkeys.safetensors", header, bytes_of({1.f, 2.f})), "duplicate key 'x'");
  // Duplicates inside an entry count too.
  expect_bad(raw_file("dupfield.safetensors", R"({"x":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})",
                      bytes_of({1.f})),
             "duplicate key 'dtype'");
}

TEST_CASE("__metadata__ must map strings to strings") {
  expect_bad(raw_file("meta.safetensors", R"({"__metadata__":{"epoch":3}})", ""), "__metadata__ value of 'epoch'");
  expect_bad(raw_file("meta2.safetensors", R"({"__metadata__":[1]})", ""), "__metadata__ must be an object");
}

TEST_CASE("An empty header object with trailing space padding is a valid empty file") {
  io::SafetensorsReader r(raw_file("empty.safetensors", "{}      ", ""));
  CHECK(r.tensors().empty());
}

TEST_CASE("A nonexistent path is an error naming the path") {
  expect_bad(tmp_path("does_not_exist.safetensors"), "not a readable regular file");
}

// ---- model layer --------------------------------------------------------------------------------

TEST_CASE("save_safetensors then load_safetensors restores every parameter and buffer bit for bit") {
  auto a = models::resnet18<float>({.num_classes = 10, .stem = models::Stem::Cifar, .seed = 1});
  // One train-mode forward gives non-trivial running statistics and counters.
  Tensor<float> x({2, 3, 8, 8});
  Rng rng(5);
  for (auto& v : x) v = static_cast<float>(rng.normal());
  a->train();
  a->forward(x);
  const std::string path = tmp_path("resnet_cifar.safetensors");
  io::save_safetensors(a, path);

  io::SafetensorsReader file(path);
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.info("conv1.weight").dtype == io::Dtype::F32);
  CHECK(file.info("bn1.num_batches_tracked").dtype == io::Dtype::I64);
  CHECK(file.info("layer2.0.downsample.0.weight").shape == Shape{128, 64, 1, 1});
  CHECK(file.tensors().size() == 122);
  // Data in torch's state_dict order: each module's parameters, then its buffers.
  const auto keys = file.keys();
  CHECK(std::vector<std::string>(keys.begin(), keys.begin() + 7) ==
        std::vector<std::string>{"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                                 "bn1.num_batches_tracked", "layer1.0.conv1.weight"});
  CHECK(keys.back() == "fc.bias");

  auto b = models::resnet18<float>({.num_classes = 10, .stem = models::Stem::Cifar, .seed = 2});
  io::LoadReport rep = io::load_safetensors(b, path);
  CHECK(rep.complete());
  CHECK(rep.loaded.size() == 122);
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name);
    CHECK(std::memcmp(pa[i].param->value, pb[i].param->value, sizeof(float) * pa[i].param->numel) == 0);
  }
  auto ba = a->named_buffers(), bb = b->named_buffers();
  for (size_t i = 0; i < ba.size(); ++i) {
    INFO(ba[i].name);
    if (ba[i].buffer.counter) CHECK(*ba[i].buffer.counter == 1);
    if (ba[i].buffer.counter) CHECK(*bb[i].buffer.counter == 1);
    else CHECK(std::equal(ba[i].buffer.tensor->begin(), ba[i].buffer.tensor->end(), bb[i].buffer.tensor->begin()));
  }
}

TEST_CASE("A double model saves F64 and loads F32 files converted") {
  auto net = std::make_shared<nn::Sequential<double>>();
  Rng rng(1);
  net->push_back(std::make_shared<nn::Conv2d<double>>(nn::Conv2dOptions{2, 3, 3, 1, 1, true}, rng));
  net->push_back(std::make_shared<nn::BatchNorm2d<double>>(3));
  const std::string path = tmp_path("double.safetensors");
  io::save_safetensors(net, path);
  CHECK(io::SafetensorsReader(path).info("0.weight").dtype == io::Dtype::F64);

  auto f = small_net();
  const std::string fpath = tmp_path("float_small.safetensors");
  io::save_safetensors(f, fpath);
  io::load_safetensors(net, fpath);
  auto pf = f->named_parameters();
  auto pd = net->named_parameters();
  for (size_t i = 0; i < pf.size(); ++i)
    for (int64_t k = 0; k < pf[i].param->numel; ++k) CHECK(pd[i].param->value[k] == double(pf[i].param->value[k]));
}

TEST_CASE("Strict loading lists every problem at once and leaves the model unchanged") {
  auto net = small_net();
  const std::vector<float> w(3 * 2 * 5 * 5, 1.f), bias(3, 2.f), extra(1, 0.f);
  const std::vector<int64_t> wrong_dtype(3, 1);
  const std::string path = tmp_path("problems.safetensors");
  io::write_safetensors(path, {io::view("0.weight", w.data(), {3, 2, 5, 5}),  // shape mismatch
                               io::view("0.bias", bias.data(), {3}),          // fine
                               io::view("1.weight", wrong_dtype.data(), {3}),  // integer weight
                               io::view("2.foo", extra.data(), {1})});         // unexpected
  const std::vector<float> before(net->named_parameters()[1].param->value,
                                  net->named_parameters()[1].param->value + 3);
  try {
    io::load_safetensors(net, path);
    FAIL("strict load accepted a bad file");
  } catch (const Error& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK_THAT(m, Contains(path));
    CHECK_THAT(m, Contains("shape mismatch for '0.weight': file [3, 2, 5, 5], model [3, 2, 3, 3]"));
    CHECK_THAT(m, Contains("dtype of '1.weight'") && Contains("got I64"));
    CHECK_THAT(m, Contains("unexpected key '2.foo'"));
    CHECK_THAT(m, Contains("missing key '1.bias'"));
    CHECK_THAT(m, Contains("missing key '1.running_mean'"));
    CHECK_THAT(m, Contains("missing key '1.running_var'"));
    CHECK_THAT(m, Contains("6 problem(s)"));
  }
  const float* bias_now = net->named_parameters()[1].param->value;
  CHECK(std::equal(before.begin(), before.end(), bias_now));  // 0.bias untouched
}

TEST_CASE("Non-strict loading loads what matches and reports the rest") {
  auto net = small_net();
  const std::vector<float> w(3 * 2 * 5 * 5, 1.f), bias(3, 2.f), extra(1, 0.f);
  const std::string path = tmp_path("partial.safetensors");
  io::write_safetensors(path, {io::view("0.weight", w.data(), {3, 2, 5, 5}), io::view("0.bias", bias.data(), {3}),
                               io::view("2.foo", extra.data(), {1})});
  io::LoadReport r = io::load_safetensors(net, path, {.strict = false});
  CHECK(r.loaded == std::vector<std::string>{"0.bias"});
  CHECK(r.mismatched == std::vector<std::string>{"0.weight"});
  CHECK(r.skipped == std::vector<std::string>{"0.weight"});
  CHECK(r.unexpected == std::vector<std::string>{"2.foo"});
  CHECK(r.missing.size() == 5);  // 1.weight, 1.bias, running_mean, running_var, num_batches_tracked
  CHECK_FALSE(r.complete());
  CHECK(net->named_parameters()[1].param->value[2] == 2.f);
}

TEST_CASE("ImageNet weights load into a model with a replaced head: fc is reported and keeps its new init") {
  auto src = models::resnet18<float>({.num_classes = 1000, .stem = models::Stem::Cifar, .seed = 7});
  const std::string path = tmp_path("imagenet_like.safetensors");
  io::save_safetensors(src, path);
  auto net = models::resnet18<float>({.num_classes = 1000, .stem = models::Stem::Cifar, .seed = 8});
  net->replace_head(10);
  std::vector<float> fc_before(net->fc().weight().value, net->fc().weight().value + net->fc().weight().numel);
  CHECK_THROWS_WITH(io::load_safetensors(net, path), Contains("shape mismatch for 'fc.weight': file [1000, 512], model [10, 512]"));
  io::LoadReport r = io::load_safetensors(net, path, {.strict = false});
  CHECK(r.mismatched == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(r.loaded.size() == 120);
  CHECK(std::equal(fc_before.begin(), fc_before.end(), net->fc().weight().value));
  CHECK(net->named_parameters()[0].param->value[5] == src->named_parameters()[0].param->value[5]);
}

TEST_CASE("F16 and BF16 weights load converted; counters load from I64 or float; absent counters are tolerated") {
  auto net = small_net();
  // 0.weight = 0.5 in F16 (0x3800), 0.bias = -1.5 in BF16 (0xBFC0), BN weight F64, counter as F32.
  const std::vector<uint16_t> w(3 * 2 * 3 * 3, 0x3800), b(3, 0xBFC0);
  const std::vector<double> bnw = {1, 2, 3}, bnb = {0, 0, 0}, rm = {0.1, 0.2, 0.3}, rv = {1, 1, 4};
  const float counter = 9.f;
  const std::string path = tmp_path("mixed.safetensors");
  std::vector<io::TensorView> v = {{"0.weight", io::Dtype::F16, {3, 2, 3, 3}, w.data()},
                                   {"0.bias", io::Dtype::BF16, {3}, b.data()},
                                   io::view("1.weight", bnw.data(), {3}),
                                   io::view("1.bias", bnb.data(), {3}),
                                   io::view("1.running_mean", rm.data(), {3}),
                                   io::view("1.running_var", rv.data(), {3})};
  io::write_safetensors(path, v);
  io::LoadReport r = io::load_safetensors(net, path);  // strict: the counter may be absent
  CHECK(r.missing == std::vector<std::string>{"1.num_batches_tracked"});
  CHECK(r.complete());
  CHECK_THROWS_WITH(io::load_safetensors(net, path, {.require_counters = true}), Contains("missing key '1.num_batches_tracked'"));
  v.push_back(io::view("1.num_batches_tracked", &counter, {}));
  io::write_safetensors(path, v);
  io::load_safetensors(net, path);
  auto* bn = dynamic_cast<nn::BatchNorm2d<float>*>(net->children()[1].second.get());
  REQUIRE(bn);
  CHECK(bn->num_batches_tracked() == 9);
  CHECK(bn->running_var()[2] == 4.f);
  CHECK(bn->running_mean()[1] == 0.2f);
  CHECK(net->named_parameters()[0].param->value[17] == 0.5f);
  CHECK(net->named_parameters()[1].param->value[0] == -1.5f);
}

TEST_CASE("strip_prefix and remap translate file keys to model keys") {
  auto src = small_net();
  const std::string path = tmp_path("prefixed.safetensors");
  auto views = io::state_dict_views(*src);
  for (auto& v : views) v.name = "module." + v.name;
  const std::vector<float> junk = {0};
  views.push_back(io::view("module.aux.weight", junk.data(), {1}));
  io::write_safetensors(path, views);
  auto net = small_net();
  net->named_parameters()[0].param->value[0] = 123.f;
  io::LoadReport r = io::load_safetensors(net, path, {.strip_prefix = "module.", .remap = [](const std::string& k) {
                                                        return k.rfind("aux.", 0) == 0 ? std::string() : k;
                                                      }});
  CHECK(r.ignored == std::vector<std::string>{"module.aux.weight"});
  CHECK(r.loaded.size() == 7);
  CHECK(net->named_parameters()[0].param->value[0] == src->named_parameters()[0].param->value[0]);
}

TEST_CASE("Randomly corrupted and truncated files give xfer::Error or valid tensors, never anything else") {
  // A valid file with three tensors and metadata, then 3000 mutations of its header and length.
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> n = {7};
  const std::vector<uint16_t> h = {0x3C00, 0x4000};
  const std::string good = tmp_path("fuzz_good.safetensors");
  io::write_safetensors(good, {io::view("a", a.data(), {2, 3}), io::view("n", n.data(), {}),
                               {"h", io::Dtype::F16, {2}, h.data()}},
                        {{"k", "v"}});
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string path = tmp_path("fuzz.safetensors");
  const std::string alphabet = "{}[]\":,0123456789-eE. \\uFabcdtypesh_";
  Rng rng(2024);
  int errors = 0, opened = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string m = bytes;
    const int kind = static_cast<int>(rng.below(4));
    if (kind == 0) {  // overwrite a few header bytes with JSON-ish characters
      for (int k = 0; k < 1 + static_cast<int>(rng.below(3)); ++k)
        m[8 + rng.below(m.size() - 8)] = alphabet[rng.below(alphabet.size())];
    } else if (kind == 1) {  // truncate anywhere
      m.resize(rng.below(m.size()));
    } else if (kind == 2) {  // random header length
      const uint64_t len = rng.below(2) ? rng.below(m.size() + 16) : rng.next_u64();
      for (int i = 0; i < 8; ++i) m[static_cast<size_t>(i)] = static_cast<char>((len >> (8 * i)) & 0xFF);
    } else {  // random bytes anywhere
      m[rng.below(m.size())] = static_cast<char>(rng.below(256));
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << m;
    try {
      io::SafetensorsReader r(path);
      ++opened;
      for (const auto& t : r.tensors()) {
        if (t.dtype == io::Dtype::BOOL) continue;
        try {
          r.read<double>(t.name);
          r.read<int64_t>(t.name);
        } catch (const Error&) {  // non-integral float as int64 is a valid refusal
        }
      }
    } catch (const Error& e) {
      ++errors;
      CHECK_THAT(e.what(), Contains(path));
    }
  }
  CHECK(errors > 1000);  // most mutations must be caught
  CHECK(opened > 0);     // some (data bytes, padding) are harmless
}

}  // namespace unit_safetensors
