// Progress bar, metrics CSV, curves picture and atomic file writes.
#include <catch2/catch.hpp>
#include <xfer/io/atomic_file.hpp>
#include <xfer/train/curves.hpp>
#include <xfer/train/metrics.hpp>
#include <xfer/train/progress.hpp>

#include <fstream>
#include <sstream>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_train_utils {

using namespace xfer;

namespace {
std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
std::vector<train::EpochMetrics> history() {
  std::vector<train::EpochMetrics> h;
  for (int e = 1; e <= 4; ++e)
    h.push_back({.epoch = e, .train_loss = 2.0 / e, .train_acc = 0.2 * e, .val_loss = 2.2 / e, .val_acc = 0.18 * e,
                 .lr = 1e-3, .seconds = 10, .img_per_s = 500, .backbone_frozen = e == 1});
  return h;
}
}  // namespace

TEST_CASE("metrics.csv has a header and one row per epoch") {
  const auto path = std::filesystem::path(XFER_TEST_TMP) / "metrics.csv";
  train::write_metrics_csv(path, history());
  const std::string s = slurp(path);
  CHECK(s.rfind("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds", 0) == 0);
  CHECK(std::count(s.begin(), s.end(), '\n') == 5);
  CHECK(s.find("\n2,1.000000,0.400000,1.100000,0.360000,") != std::string::npos);
  CHECK(s.find(",1\n") != std::string::npos);  // epoch 1 had the backbone frozen
}

TEST_CASE("EpochMetrics round-trip through JSON, missing values as null") {
  auto h = history();
  h[0].val_loss = NAN;
  nlohmann::json j = h;
  CHECK(j[0]["val_loss"].is_null());
  auto back = j.get<std::vector<train::EpochMetrics>>();
  CHECK(std::isnan(back[0].val_loss));
  CHECK(back[3].val_acc == Approx(0.72));
  CHECK(back[0].backbone_frozen);
}

TEST_CASE("The curves picture has a loss panel and an accuracy panel with train and validation lines") {
  const auto path = std::filesystem::path(XFER_TEST_TMP) / "curves.svg";
  train::write_curves_svg(path, history());
  const std::string s = slurp(path);
  CHECK(s.find("<svg") != std::string::npos);
  CHECK(s.rfind("</svg>\n") == s.size() - 7);
  CHECK(s.find(">Loss<") != std::string::npos);
  CHECK(s.find(">Accuracy<") != std::string::npos);
  size_t lines = 0;
  for (size_t p = s.find("<polyline"); p != std::string::npos; p = s.find("<polyline", p + 1)) ++lines;
  CHECK(lines == 4);
  size_t points = 0;
  for (size_t p = s.find("<circle"); p != std::string::npos; p = s.find("<circle", p + 1)) ++points;
  CHECK(points == 16);
  // A single epoch (and NaN gaps) still draws.
  CHECK_NOTHROW(train::curves_svg({{.epoch = 1, .train_loss = 1.0}}));
}

TEST_CASE("The progress bar prints plain lines every 10% when not on a terminal") {
  const auto path = std::filesystem::path(XFER_TEST_TMP) / "progress.txt";
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  train::ProgressBar bar({.label = "epoch 1", .total_batches = 20, .out = f, .interactive = 0});
  for (int b = 1; b <= 20; ++b) bar.update(b, b * 64, 1.0 / b);
  bar.finish();
  std::fclose(f);
  const std::string s = slurp(path);
  CHECK(std::count(s.begin(), s.end(), '\n') == 10);
  CHECK(s.find("epoch 1 100% 20/20 loss 0.0500") != std::string::npos);
  CHECK(s.find("img/s") != std::string::npos);
  CHECK(s.find("ETA") != std::string::npos);
  CHECK(train::format_duration(3725) == "1:02:05");
  CHECK(train::format_duration(65) == "01:05");
}

TEST_CASE("write_file_atomic replaces the whole file and leaves no temp file") {
  const auto dir = std::filesystem::path(XFER_TEST_TMP) / "atomic";
  std::filesystem::create_directories(dir);
  io::write_file_atomic(dir / "a.txt", "first version, longer");
  io::write_file_atomic(dir / "a.txt", "second");
  CHECK(slurp(dir / "a.txt") == "second");
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 1);
  CHECK_THROWS_AS(io::write_file_atomic(dir / "missing-dir" / "b.txt", "x"), Error);
}

}  // namespace unit_train_utils
