// Transfer plumbing: self-describing model files (io/model_info.hpp, models::load), data selection
// (classes, held-out split by name, labels per class), rotation, the class report, and the imagenet
// preset's eval transform against torchvision (tests/fixtures/gen_imagenet_eval.py).
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_transfer {

namespace fs = std::filesystem;
using namespace xfer;

namespace {
const fs::path kRoot = fs::path(XFER_TEST_TMP) / "unit-transfer";

io::ModelInfo small_info(int64_t classes) {
  io::ModelInfo m;
  m.architecture = "resnet18";
  m.num_classes = classes;
  for (int64_t c = 0; c < classes; ++c) m.class_names.push_back("class" + std::to_string(c));
  m.input_height = m.input_width = 32;
  auto p = train::make_preset("cifar");
  m.eval = p.eval;
  m.recipe = {{"preset", "cifar"}};
  return m;
}

Tensor<float> random_batch(uint64_t seed) {
  Rng rng(seed);
  Tensor<float> x({2, 3, 32, 32});
  for (auto& v : x) v = static_cast<float>(rng.normal());
  return x;
}

void write_ppm(const fs::path& p, int w, int h, uint8_t base) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << "P6\n" << w << " " << h << "\n255\n";
  for (int i = 0; i < w * h * 3; ++i) f.put(static_cast<char>(static_cast<uint8_t>(base + i % 7)));
}

// root/<class>/<i>.ppm for 3 classes x n images.
fs::path make_folder(const std::string& name, int n) {
  const fs::path root = kRoot / name;
  fs::remove_all(root);
  for (const char* c : {"cat", "dog", "owl"})
    for (int i = 0; i < n; ++i) write_ppm(root / c / (std::to_string(i) + ".ppm"), 6, 5, static_cast<uint8_t>(10 * i));
  return root;
}
}  // namespace

TEST_CASE("a model file moved elsewhere and loaded by path alone gives the same logits", "[transfer]") {
  fs::create_directories(kRoot / "a");
  fs::create_directories(kRoot / "elsewhere");
  auto net = models::resnet18<float>({.num_classes = 3, .seed = 7});
  const auto x = random_batch(1);
  net->eval();
  const Tensor<float> before = net->forward(x);
  const auto info = small_info(3);
  io::save_model(*net, info, (kRoot / "a" / "best.safetensors").string());
  fs::rename(kRoot / "a" / "best.safetensors", kRoot / "elsewhere" / "model.safetensors");

  auto m = models::load<float>((kRoot / "elsewhere" / "model.safetensors").string());
  CHECK(m.info.architecture == "resnet18");
  CHECK(m.info.class_names == info.class_names);
  CHECK(m.info.eval.load_height == 32);
  CHECK(m.info.eval.mean == data::cifar10_mean());
  CHECK(m.info.recipe["preset"] == "cifar");
  m.net->eval();
  const Tensor<float>& after = m.net->forward(x);
  REQUIRE(after.shape() == before.shape());
  for (int64_t i = 0; i < before.numel(); ++i) CHECK(after.data()[i] == before.data()[i]);
  // prepare_inference (BN folded) agrees to float rounding.
  nn::prepare_inference(*m.net);
  const Tensor<float>& folded = m.net->forward(x);
  for (int64_t i = 0; i < before.numel(); ++i) CHECK(folded.data()[i] == Approx(before.data()[i]).margin(1e-4));
}

TEST_CASE("models::load refuses files without metadata or with contradicting metadata", "[transfer]") {
  fs::create_directories(kRoot);
  auto net = models::resnet18<float>({.num_classes = 3, .seed = 7});
  const std::string plain = (kRoot / "plain.safetensors").string();
  io::save_safetensors(*net, plain);
  CHECK_THROWS_WITH(models::load<float>(plain), Catch::Contains("plain.safetensors has no 'xfer.model' metadata"));

  const std::string wrong = (kRoot / "wrong.safetensors").string();
  io::save_model(*net, small_info(5), wrong);  // says 5 classes, the head has 3
  CHECK_THROWS_WITH(models::load<float>(wrong), Catch::Contains("the metadata says 5 classes") && Catch::Contains("[3, 512]"));

  auto other = small_info(3);
  other.architecture = "resnet34";  // same head, other backbone
  const std::string arch = (kRoot / "arch.safetensors").string();
  io::save_model(*net, other, arch);
  CHECK_THROWS_WITH(models::load<float>(arch), Catch::Contains("do not match the architecture 'resnet34'"));

  auto names = small_info(3);
  names.class_names.pop_back();
  CHECK_THROWS_WITH(io::save_model(*net, names, (kRoot / "n.safetensors").string()), Catch::Contains("2 class names"));
  CHECK_FALSE(fs::exists(kRoot / "n.safetensors"));

  // Damaged metadata: a missing field is named.
  auto j = io::to_json(small_info(3));
  j.erase("class_names");
  CHECK_THROWS_WITH(io::model_info_from_json(j, "f"), Catch::Contains("lacks the field 'class_names'"));
}

TEST_CASE("the held-out split depends on file names only; class and label selection", "[transfer]") {
  const auto root = make_folder("sel", 40);
  data::ImageFolder all(root), two(root, {.classes = {"owl", "cat"}});
  CHECK(two.class_names() == std::vector<std::string>{"cat", "owl"});
  CHECK(two.size() == 80);
  auto names = [](const data::ImageFolder& f, const std::vector<int64_t>& idx) {
    std::set<std::string> s;
    for (auto i : idx) s.insert(f.path(i).lexically_relative(f.root()).generic_string());
    return s;
  };
  const auto va = names(all, data::name_split(all, 0.25, 3).val), vt = names(two, data::name_split(two, 0.25, 3).val);
  CHECK(va.size() > 10);
  CHECK(va.size() < 50);
  std::set<std::string> expect;
  for (const auto& s : va)
    if (s.rfind("dog/", 0) != 0) expect.insert(s);
  CHECK(vt == expect);  // the same files held out whichever classes are loaded
  CHECK(names(all, data::name_split(all, 0.25, 4).val) != va);  // the seed matters

  auto split = data::name_split(all, 0.25, 3);
  auto picked = data::labels_per_class(all, split.train, 5, 1);
  REQUIRE(picked.size() == 15);
  std::vector<int> per(3, 0);
  for (auto i : picked) {
    ++per[static_cast<size_t>(all.label(i))];
    CHECK(std::binary_search(split.train.begin(), split.train.end(), i));
  }
  CHECK(per == std::vector<int>{5, 5, 5});
  CHECK(data::labels_per_class(all, split.train, 5, 2) != picked);
  CHECK_THROWS_WITH(data::labels_per_class(all, split.train, 40, 1),
                    Catch::Contains("--labels-per-class 40: class 'cat' has only"));
  CHECK_THROWS_WITH(data::ImageFolder(root, {.classes = {"cat", "zebra"}}),
                    Catch::Contains("class 'zebra' is not a folder of") && Catch::Contains("cat, dog, owl"));
  CHECK(data::parse_class_list("a,b") == std::vector<std::string>{"a", "b"});
  CHECK_THROWS(data::parse_class_list("a,,b"));
}

TEST_CASE("rotate90 turns counter-clockwise like torch.rot90", "[transfer]") {
  // 1 channel 2x2: [[1, 2], [3, 4]]; rot90 k=1 -> [[2, 4], [1, 3]].
  const float in[4] = {1, 2, 3, 4};
  float out[4];
  train::rotate90(in, out, 1, 2, 1);
  CHECK(std::vector<float>(out, out + 4) == std::vector<float>{2, 4, 1, 3});
  train::rotate90(in, out, 1, 2, 2);
  CHECK(std::vector<float>(out, out + 4) == std::vector<float>{4, 3, 2, 1});
  train::rotate90(in, out, 1, 2, 3);
  CHECK(std::vector<float>(out, out + 4) == std::vector<float>{3, 1, 4, 2});
  // Four quarter turns of a 3x3x3 are the identity.
  std::vector<float> a(27), b(27);
  for (int i = 0; i < 27; ++i) a[static_cast<size_t>(i)] = static_cast<float>(i);
  auto c = a;
  for (int t = 0; t < 4; ++t) {
    train::rotate90(c.data(), b.data(), 3, 3, 1);
    c = b;
  }
  CHECK(c == a);
}

TEST_CASE("the imagenet preset's eval transform matches torchvision Resize(256)+CenterCrop(224)+Normalize", "[transfer]") {
  // The input of tests/fixtures/gen_imagenet_eval.py, rebuilt from the same integer formula.
  const int64_t H = 400, W = 330;
  data::Image img(H, W, 3);
  uint64_t state = 11;
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        state = (state * 1103515245ull + 12345ull) % (1ull << 31);
        const int64_t noise = static_cast<int64_t>((state >> 16) % 64);
        const int64_t base = (y * 191 / H + x * (2 + c) * 37 / W + c * 50) % 192;
        img.at(y, x, c) = static_cast<uint8_t>(std::min<int64_t>(255, base + noise));
      }
  std::ifstream f(std::string(XFER_FIXTURE_DIR) + "/imagenet_eval.bin", std::ios::binary);
  REQUIRE(f);
  std::vector<float> expect(3 * 224 * 224);
  f.read(reinterpret_cast<char*>(expect.data()), static_cast<std::streamsize>(expect.size() * sizeof(float)));
  REQUIRE(f.gcount() == static_cast<std::streamsize>(expect.size() * sizeof(float)));

  const auto p = train::make_preset("imagenet");
  CHECK(p.image_size == 224);
  CHECK(p.eval.resize == 256);
  CHECK(p.load_height == 0);  // images keep their aspect until the transforms
  Rng rng(0);
  const Tensor<float> out = p.eval.transforms()(p.eval.load(img), rng);
  REQUIRE(out.shape() == Shape{3, 224, 224});
  double worst = 0;
  for (size_t i = 0; i < expect.size(); ++i) worst = std::max(worst, std::abs(double(out.data()[i]) - expect[i]));
  INFO("max |xfer - torchvision| = " << worst);
  CHECK(worst < 2e-5);
}

TEST_CASE("the class report counts top-1, top-5, per-class accuracy and the confusion matrix", "[transfer]") {
  // A 6-class "model" whose logits are the 6 pixels of a 1x6 grey image, so predictions are chosen.
  struct Pick : nn::Module<float> {
    Tensor<float> y;
    std::string type_name() const override { return "Pick"; }
    const Tensor<float>& forward_impl(const Tensor<float>& x) override {
      y.resize({x.dim(0), 6});
      for (int64_t n = 0; n < x.dim(0); ++n)
        for (int64_t c = 0; c < 6; ++c) y.data()[n * 6 + c] = x.data()[n * 6 + c];
      return y;
    }
    const Tensor<float>& backward_impl(const Tensor<float>& dy, bool) override { return dy; }
  } pick;
  // Sample i has label i % 6; even samples put it first, odd samples last (so not in the top 5).
  const int N = 12;
  std::vector<uint8_t> px;
  std::vector<int32_t> labels;
  for (int i = 0; i < N; ++i) {
    const int y = i % 6;
    labels.push_back(y);
    for (int c = 0; c < 6; ++c) px.push_back(static_cast<uint8_t>(c == y ? (i % 2 == 0 ? 200 : 0) : 10 + 5 * c));
  }
  auto ds = data::InMemoryDataset::from_hwc(px.data(), N, 1, 6, 1, labels, {"a", "b", "c", "d", "e", "f"});
  data::Loader<float> loader(ds, data::LoaderOptions{.batch_size = 5});
  auto r = train::class_report(pick, loader);
  CHECK(r.samples == N);
  CHECK(r.top1_correct == 6);  // the even samples
  CHECK(r.top5_correct == 6);  // odd samples rank their label 6th of 6
  REQUIRE(r.predictions.size() == static_cast<size_t>(N));
  CHECK(r.predictions[1] == 5);  // label 1 ranked last: the largest other pixel is class 5
  CHECK(r.predictions[5] == 4);
  CHECK(r.confusion[0][0] == 2);  // samples 0 and 6
  CHECK(r.confusion[1][5] == 2);  // samples 1 and 7
  CHECK(r.class_accuracy(1) == 0.0);
  CHECK(r.class_accuracy(2) == 1.0);
  CHECK(train::confusion_csv(r).rfind("true\\predicted,a,b,c,d,e,f,accuracy\na,2,0,0,0,0,0,1.0000\n", 0) == 0);
  CHECK(train::confusion_svg(r).find("<svg") == 0);
}

}  // namespace unit_transfer
