// pretrain -> finetune -> predict end to end on a small generated image folder: predict agrees with
// the fine-tune's own evaluation image by image (also for a model file moved elsewhere), the
// imagenet preset runs at 224 px, rotation weights load as a backbone, and bad input (missing
// class, too many labels per class, a weights-only file, a truncated image) is a clear error with
// no output written.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <xfer/xfer.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;
using namespace xfer;

namespace {
const fs::path kRoot = fs::path(XFER_TEST_TMP) / "e2e-transfer";

struct Run {
  int status;
  std::string output;
};
Run run(const std::string& exe, const std::string& args) {
  const fs::path log = kRoot / "log.txt";
  const std::string cmd = exe + " " + args + " --threads 2 > " + log.string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}
Run pretrain(const std::string& a) { return run(PRETRAIN_EXE, a + " --no-progress"); }
Run finetune(const std::string& a) { return run(FINETUNE_EXE, a + " --no-progress"); }
Run predict(const std::string& a) { return run(PREDICT_EXE, a); }

// root/<class>/<i>.ppm: 4 classes told apart by colour, 20 x 24 pixels (not square), with noise.
fs::path make_folder() {
  const fs::path root = kRoot / "images";
  if (fs::exists(root)) return root;
  Rng rng(3);
  const char* names[] = {"ant", "bee", "cow", "dog"};
  for (int c = 0; c < 4; ++c) {
    fs::create_directories(root / names[c]);
    for (int i = 0; i < 30; ++i) {
      std::ofstream f(root / names[c] / (std::to_string(100 + i) + ".ppm"), std::ios::binary);
      f << "P6\n24 20\n255\n";
      for (int p = 0; p < 24 * 20; ++p)
        for (int ch = 0; ch < 3; ++ch)
          f.put(static_cast<char>(static_cast<uint8_t>(std::min(255.0, (ch == c % 3 ? 150 : 40) + 30 * c + 60 * rng.uniform()))));
    }
  }
  return root;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("pretrain, fine-tune from its weights, and predict agree image by image", "[e2e][transfer]") {
  const auto data = make_folder().string();
  const auto src = (kRoot / "src").string(), ft = (kRoot / "ft").string();
  auto p = pretrain("--data " + data + " --classes ant,bee --method supervised --epochs 1 --batch 16 --out " + src);
  INFO(p.output);
  REQUIRE(p.status == 0);
  auto srcm = models::load<float>(src + "/best.safetensors");
  CHECK(srcm.info.class_names == std::vector<std::string>{"ant", "bee"});
  CHECK(srcm.info.recipe["method"] == "supervised");

  auto f = finetune("--data " + data + " --classes cow,dog --labels-per-class 10 --weights " + src +
                    "/best.safetensors --epochs 2 --freeze-epochs 1 --batch 8 --val-fraction 0.3 --out " + ft);
  INFO(f.output);
  REQUIRE(f.status == 0);
  CHECK(f.output.find("preset cifar") != std::string::npos);  // taken from the weights' metadata
  CHECK(f.output.find("1 epoch(s) train only the head") != std::string::npos);
  CHECK(f.output.find("top-5") != std::string::npos);
  for (const char* out : {"best.safetensors", "last.safetensors", "metrics.csv", "curves.svg", "confusion.csv",
                          "confusion.svg", "predictions.csv"})
    CHECK(fs::exists(fs::path(ft) / out));
  CHECK(models::load<float>(ft + "/last.safetensors").info.class_names == std::vector<std::string>{"cow", "dog"});

  // The fine-tune's own verdicts, then predict on the same files from a model file moved elsewhere.
  std::map<std::string, std::string> expected;
  std::istringstream csv(slurp(fs::path(ft) / "predictions.csv"));
  std::string line, files;
  std::getline(csv, line);
  while (std::getline(csv, line)) {
    const auto a = line.find(','), b = line.rfind(',');
    expected[line.substr(0, a)] = line.substr(b + 1);
    files.append(" ").append(line.substr(0, a));
  }
  REQUIRE(expected.size() >= 10);
  fs::create_directories(kRoot / "moved");
  fs::copy_file(fs::path(ft) / "best.safetensors", kRoot / "moved" / "m.safetensors", fs::copy_options::overwrite_existing);
  auto pr = predict("--model " + (kRoot / "moved" / "m.safetensors").string() + " --json --top 2" + files);
  INFO(pr.output);
  REQUIRE(pr.status == 0);
  std::istringstream lines(pr.output);
  size_t seen = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line);
    INFO(line);
    REQUIRE(expected.count(j["file"].get<std::string>()) == 1);
    CHECK(j["top"].size() == 2);
    CHECK(j["top"][0]["class"] == expected[j["file"].get<std::string>()]);
    const double p0 = j["top"][0]["prob"].get<double>(), p1 = j["top"][1]["prob"].get<double>();
    CHECK(p0 >= p1);
    CHECK(p0 + p1 == Approx(1.0).margin(1e-6));  // 2 classes: softmax sums to one
    ++seen;
  }
  CHECK(seen == expected.size());

  // predict --eval over a labelled folder: same top-1 as the report of the fine-tune on it.
  auto ev = predict("--model " + ft + "/best.safetensors --eval " + data + " --out " + (kRoot / "eval").string());
  CHECK(ev.status == 1);  // the folder has 4 classes, the model 2
  CHECK(ev.output.find("other classes than the model") != std::string::npos);
}

TEST_CASE("rotation pretraining gives weights a fine-tune loads as its backbone", "[e2e][transfer]") {
  const auto data = make_folder().string();
  const auto rot = (kRoot / "rot").string();
  auto p = pretrain("--data " + data + " --method rotation --epochs 1 --batch 16 --out " + rot);
  INFO(p.output);
  REQUIRE(p.status == 0);
  CHECK(p.output.find("rotation acc") != std::string::npos);
  auto m = models::load<float>(rot + "/last.safetensors");
  CHECK(m.info.num_classes == 4);
  CHECK(m.info.recipe["method"] == "rotation");
  auto f = finetune("--data " + data + " --labels-per-class 5 --weights " + rot +
                    "/last.safetensors --epochs 1 --freeze-epochs 1 --batch 8 --out " + (kRoot / "ft-rot").string());
  INFO(f.output);
  CHECK(f.status == 0);
  CHECK(f.output.find("2 missing, 0 unexpected, 0 shape-mismatched") != std::string::npos);  // all but fc
}

TEST_CASE("an imagenet-preset fine-tune at 224 px runs end to end", "[e2e][transfer]") {
  const auto data = make_folder().string();
  const auto out = (kRoot / "imagenet").string();
  auto f = finetune("--data " + data + " --preset imagenet --classes ant,cow --labels-per-class 6 --epochs 1 --batch 6 "
                    "--val-fraction 0.2 --out " + out);
  INFO(f.output);
  REQUIRE(f.status == 0);
  CHECK(f.output.find("no pretrained weights") != std::string::npos);
  CHECK(f.output.find("Resize(256) -> CenterCrop(224x224)") != std::string::npos);
  auto m = models::load<float>(out + "/best.safetensors");
  CHECK(m.info.input_height == 224);
  CHECK(m.info.eval.resize == 256);
  CHECK(m.info.eval.load_height == 0);
  CHECK(m.info.eval.mean == train::imagenet_mean());
  auto pr = predict("--model " + out + "/best.safetensors " + data + "/ant/100.ppm");
  CHECK(pr.status == 0);
  CHECK(pr.output.find("ant/100.ppm\t") != std::string::npos);
}

TEST_CASE("bad input is a clear error naming the class or file, with nothing written", "[e2e][transfer]") {
  const auto data = make_folder().string();
  auto a = finetune("--data " + data + " --classes ant,zebra --out " + (kRoot / "bad1").string());
  CHECK(a.status == 1);
  CHECK(a.output.find("class 'zebra' is not a folder of") != std::string::npos);
  CHECK_FALSE(fs::exists(kRoot / "bad1"));
  auto b = pretrain("--data " + data + " --classes ant --labels-per-class 29 --val-fraction 0.5 --out " + (kRoot / "bad2").string());
  CHECK(b.status == 1);
  CHECK(b.output.find("--labels-per-class 29: class 'ant' has only") != std::string::npos);
  CHECK_FALSE(fs::exists(kRoot / "bad2"));

  // A weights-only file.
  fs::create_directories(kRoot / "plain");
  auto net = models::resnet18<float>({.num_classes = 4});
  io::save_safetensors(*net, (kRoot / "plain" / "w.safetensors").string());
  auto c = predict("--model " + (kRoot / "plain" / "w.safetensors").string() + " " + data + "/ant/100.ppm");
  CHECK(c.status == 1);
  CHECK(c.output.find("w.safetensors has no 'xfer.model' metadata") != std::string::npos);

  // A truncated image inside a folder: finetune stops naming it; predict reports it and goes on.
  const fs::path broken = kRoot / "broken";
  fs::remove_all(broken);
  fs::copy(data, broken, fs::copy_options::recursive);
  {
    std::ofstream t(broken / "bee" / "105.ppm", std::ios::binary | std::ios::trunc);
    t << "P6\n24 20\n255\n" << std::string(100, 'x');
  }
  auto d = finetune("--data " + broken.string() + " --out " + (kRoot / "bad3").string());
  CHECK(d.status == 1);
  CHECK(d.output.find("bee/105.ppm") != std::string::npos);
  CHECK(d.output.find("truncated") != std::string::npos);
  CHECK_FALSE(fs::exists(kRoot / "bad3"));
  REQUIRE(fs::exists(kRoot / "ft" / "best.safetensors"));  // from the first test case
  auto e = predict("--model " + (kRoot / "ft" / "best.safetensors").string() + " " + (broken / "bee").string());
  CHECK(e.status == 2);
  CHECK(e.output.find("105.ppm\terror:") != std::string::npos);
  CHECK(e.output.find("1 of 30 image(s) could not be read") != std::string::npos);
  size_t predicted = 0;
  std::istringstream lines(e.output);
  std::string line;
  while (std::getline(lines, line)) predicted += line.find(".ppm\t") != std::string::npos && line.find("error:") == std::string::npos;
  CHECK(predicted == 29);
}
