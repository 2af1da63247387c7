// EarlyStopping: patience, min_delta and mode on scripted metric sequences, non-finite metrics,
// and a resumed run that stops at the same epoch.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <nlohmann/json.hpp>
#include <xfer/io/train_state_json.hpp>
#include <xfer/train/early_stopping.hpp>

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_early_stopping {

using namespace xfer;

namespace {
// The epoch index at which step() first returns true (-1 if it never does).
int stop_epoch(train::EarlyStopping& es, const std::vector<double>& metrics) {
  for (size_t e = 0; e < metrics.size(); ++e)
    if (es.step(metrics[e])) return static_cast<int>(e);
  return -1;
}
}  // namespace

TEST_CASE("EarlyStopping in min mode stops after `patience` epochs without improvement") {
  train::EarlyStopping es({.mode = train::MetricMode::min, .patience = 3});
  const std::vector<double> loss = {1.0, 0.8, 0.85, 0.7, 0.75, 0.71, 0.72, 0.5};
  CHECK(stop_epoch(es, loss) == 6);
  CHECK(es.best() == 0.7);
  CHECK(es.best_epoch() == 3);
  CHECK(es.should_stop());
  CHECK_THROWS_WITH(es.step(0.1), Catch::Contains("already stopped"));
}

TEST_CASE("EarlyStopping in max mode with min_delta ignores improvements that are too small") {
  train::EarlyStopping es({.mode = train::MetricMode::max, .patience = 2, .min_delta = 0.01});
  std::vector<bool> improved;
  const std::vector<double> acc = {0.50, 0.60, 0.605, 0.609, 0.7};
  int stopped = -1;
  for (size_t e = 0; e < acc.size() && stopped < 0; ++e) {
    if (es.step(acc[e])) stopped = static_cast<int>(e);
    improved.push_back(es.improved());
  }
  CHECK(stopped == 3);  // 0.605 and 0.609 are within min_delta of 0.60
  CHECK(improved == std::vector<bool>{true, true, false, false});
  CHECK(es.best() == 0.60);
}

TEST_CASE("EarlyStopping never stops while the metric keeps improving, and counts bad epochs") {
  train::EarlyStopping es({.patience = 1});
  for (int e = 0; e < 50; ++e) CHECK_FALSE(es.step(100.0 - e));
  CHECK(es.bad_epochs() == 0);
  CHECK(es.best_epoch() == 49);
  CHECK(es.step(100.0));
}

TEST_CASE("EarlyStopping stops on a NaN metric, or treats it as no improvement when asked") {
  train::EarlyStopping a({.patience = 5});
  CHECK_FALSE(a.step(1.0));
  CHECK(a.step(std::nan("")));
  train::EarlyStopping b({.patience = 2, .stop_on_nonfinite = false});
  CHECK_FALSE(b.step(std::numeric_limits<double>::infinity()));
  CHECK_FALSE(b.has_best());
  CHECK_THROWS_WITH(b.best(), Catch::Contains("no finite metric"));
  CHECK(b.step(std::nan("")));
}

TEST_CASE("EarlyStopping resumed from its state stops at the same epoch") {
  const std::vector<double> loss = {0.9, 0.7, 0.72, 0.69, 0.695, 0.7, 0.71, 0.6};
  train::EarlyStopping straight({.patience = 3, .min_delta = 0.005});
  const int want = stop_epoch(straight, loss);
  REQUIRE(want == 6);
  for (size_t cut = 1; cut < 6; ++cut) {
    train::EarlyStopping first({.patience = 3, .min_delta = 0.005});
    for (size_t e = 0; e < cut; ++e) REQUIRE_FALSE(first.step(loss[e]));
    const train::EarlyStoppingState saved = first.state();
    train::EarlyStopping resumed({.patience = 3, .min_delta = 0.005});
    resumed.load_state(saved);
    int got = -1;
    for (size_t e = cut; e < loss.size() && got < 0; ++e)
      if (resumed.step(loss[e])) got = static_cast<int>(e);
    CHECK(got == want);
    CHECK(resumed.best_epoch() == straight.best_epoch());
  }
}

TEST_CASE("EarlyStopping rejects bad options and inconsistent state") {
  CHECK_THROWS_WITH(train::EarlyStopping({.patience = 0}), Catch::Contains("patience"));
  CHECK_THROWS_WITH(train::EarlyStopping({.min_delta = -0.1}), Catch::Contains("min_delta"));
  train::EarlyStopping es;
  CHECK_THROWS_WITH(es.load_state({.best = 1.0, .best_epoch = 4, .epochs = 3}), Catch::Contains("best_epoch"));
  CHECK_THROWS_WITH(es.load_state({.epochs = 2, .bad_epochs = 3}), Catch::Contains("inconsistent counters"));
}

TEST_CASE("EarlyStopping state survives a JSON round trip; bad JSON is an xfer::Error naming the key") {
  train::EarlyStopping es({.mode = train::MetricMode::max, .patience = 4});
  for (double acc : {0.1, 0.3, 0.2, 0.25}) es.step(acc);
  const auto text = io::to_json(es.state()).dump();
  const auto back = io::early_stopping_state_from_json(nlohmann::json::parse(text));
  CHECK(back.best == 0.3);
  CHECK(back.best_epoch == 1);
  CHECK(back.epochs == 4);
  CHECK(back.bad_epochs == 2);
  CHECK_FALSE(back.stopped);
  train::EarlyStoppingState nan_best;
  nan_best.best = std::nan("");
  CHECK(std::isnan(io::early_stopping_state_from_json(nlohmann::json::parse(io::to_json(nan_best).dump())).best));
  auto j = nlohmann::json::parse(text);
  j["bad_epochs"] = 1.5;
  CHECK_THROWS_WITH(io::early_stopping_state_from_json(j), Catch::Contains("'bad_epochs' must hold an integer"));
  j.erase("bad_epochs");
  CHECK_THROWS_WITH(io::early_stopping_state_from_json(j), Catch::Contains("missing key 'bad_epochs'"));
}

}  // namespace unit_early_stopping
