// EpochMetrics and the training history: one row per epoch, written as OUT/metrics.csv (atomically,
// the whole file each epoch) and carried in checkpoints as JSON so a resumed run continues it.
#pragma once

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/io/atomic_file.hpp"

namespace xfer::train {

struct EpochMetrics {
  int epoch = 0;  // 1-based
  double train_loss = NAN, train_acc = NAN;
  double val_loss = NAN, val_acc = NAN;
  double lr = NAN;
  double seconds = NAN;
  double img_per_s = NAN;
  bool backbone_frozen = false;
};

inline void to_json(nlohmann::json& j, const EpochMetrics& m) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  j = {{"epoch", m.epoch}, {"train_loss", num(m.train_loss)}, {"train_acc", num(m.train_acc)},
       {"val_loss", num(m.val_loss)}, {"val_acc", num(m.val_acc)}, {"lr", num(m.lr)},
       {"seconds", num(m.seconds)}, {"img_per_s", num(m.img_per_s)}, {"backbone_frozen", m.backbone_frozen}};
}
inline void from_json(const nlohmann::json& j, EpochMetrics& m) {
  auto num = [&](const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN; };
  m.epoch = j.at("epoch").get<int>();
  m.train_loss = num("train_loss");
  m.train_acc = num("train_acc");
  m.val_loss = num("val_loss");
  m.val_acc = num("val_acc");
  m.lr = num("lr");
  m.seconds = num("seconds");
  m.img_per_s = num("img_per_s");
  m.backbone_frozen = j.value("backbone_frozen", false);
}

inline std::string metrics_csv(const std::vector<EpochMetrics>& history) {
  std::string s = "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,img_per_s,backbone_frozen\n";
  char buf[256];
  for (const auto& m : history) {
    std::snprintf(buf, sizeof buf, "%d,%.6f,%.6f,%.6f,%.6f,%.8g,%.3f,%.1f,%d\n", m.epoch, m.train_loss, m.train_acc,
                  m.val_loss, m.val_acc, m.lr, m.seconds, m.img_per_s, m.backbone_frozen ? 1 : 0);
    s += buf;
  }
  return s;
}

inline void write_metrics_csv(const std::filesystem::path& path, const std::vector<EpochMetrics>& history) {
  io::write_file_atomic(path, metrics_csv(history));
}

}  // namespace xfer::train
