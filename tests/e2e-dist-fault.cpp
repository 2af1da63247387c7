// finetune_cifar10 under mpirun -np 2 on a tiny generated CIFAR-10 file: a rank killed in the middle
// of an epoch makes mpirun exit non-zero and name the rank; --resume continues the whole job from
// the last checkpoint rank 0 wrote; the distributed run reports the global batch.
#include <catch2/catch.hpp>
#include <xfer/xfer.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;
using namespace xfer;

namespace {
const fs::path kRoot = fs::path(XFER_TEST_TMP) / "e2e-dist-fault";

// data_batch_1..5.bin, 20 records each; the label sets the brightness of a noisy image.
fs::path make_data() {
  const fs::path dir = kRoot / "cifar";
  fs::create_directories(dir);
  Rng rng(8);
  std::string rec(3073, '\0');
  for (int b = 1; b <= 5; ++b) {
    std::ofstream f(dir / ("data_batch_" + std::to_string(b) + ".bin"), std::ios::binary);
    for (int i = 0; i < 20; ++i) {
      rec[0] = static_cast<char>(i % 10);
      for (size_t p = 1; p < rec.size(); ++p) rec[p] = static_cast<char>(20 * (i % 10) + rng.below(60));
      f.write(rec.data(), static_cast<std::streamsize>(rec.size()));
    }
  }
  return dir;
}

struct Run {
  int status;
  std::string output;
};
Run mpirun(const std::string& args, const std::string& env = "") {
  const fs::path log = kRoot / "log.txt";
  const std::string cmd = env + " " MPIRUN " 2 " FINETUNE_EXE " " + args + " --threads 1 --no-progress > " + log.string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}
}  // namespace

TEST_CASE("A rank killed mid-epoch fails the mpirun job naming the rank; --resume continues from the checkpoint") {
  fs::remove_all(kRoot);
  const fs::path data = make_data();
  // 100 images, 20 for validation: 80 / (2 ranks x batch 8) = 5 steps per epoch.
  const std::string args = "--data " + data.string() + " --epochs 3 --freeze-epochs 1 --batch 8 --seed 2 --val-split 0.2 --out " +
                           (kRoot / "run").string();
  auto killed = mpirun(args, "XFER_DIST_TEST_DIE=1:8");  // rank 1, step 3 of epoch 2
  INFO(killed.output);
  CHECK(killed.status != 0);
  CHECK(killed.output.find("rank 1") != std::string::npos);
  CHECK(killed.output.find("2 ranks x batch 8 = global batch 16") != std::string::npos);
  CHECK(killed.output.find("epoch  1/3") != std::string::npos);
  CHECK(killed.output.find("epoch  2/3") == std::string::npos);
  auto net = models::resnet18<float>({.num_classes = 10});
  auto st = io::load_checkpoint((kRoot / "run" / "last.safetensors").string(), *net,
                                static_cast<optim::Optimizer<float>*>(nullptr));
  CHECK(st["epoch"] == 1);

  auto resumed = mpirun(args + " --resume --json");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK(resumed.output.find("resumed from") != std::string::npos);
  CHECK(resumed.output.find("after epoch 1") != std::string::npos);
  CHECK(resumed.output.find("epoch  3/3") != std::string::npos);
  // Rank 0 alone prints: one summary line.
  CHECK(resumed.output.find("\"epochs\":3") == resumed.output.rfind("\"epochs\":3"));
  st = io::load_checkpoint((kRoot / "run" / "last.safetensors").string(), *net, static_cast<optim::Optimizer<float>*>(nullptr));
  CHECK(st["epoch"] == 3);
}
