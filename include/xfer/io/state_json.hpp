// JSON form of the training state: optimizer, scheduler, ReduceLROnPlateau and Loader state (plain
// structs from optim/ and data/) to and from nlohmann::json, as checkpoints store them.
//
//   nlohmann::json j = opt.state_dict();           // everything but the tensors
//   plateau.load_state(j.at("plateau").get<optim::PlateauState>());
//
// Reading validates every key and type and throws xfer::Error naming the key (never nlohmann's
// exceptions); the owning object then validates the values when it loads them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/data/loader.hpp"
#include "xfer/io/detail/json.hpp"
#include "xfer/optim/plateau.hpp"
#include "xfer/optim/state.hpp"

namespace xfer::optim {

// ---- Options: {"lr": 0.1, "betas": [0.9, 0.999], "nesterov": true, ...} --------------------------
inline void to_json(nlohmann::json& j, const Options& o) {
  j = nlohmann::json::object();
  for (const auto& [key, v] : o) std::visit([&, &key = key](const auto& x) { j[key] = x; }, v);
}
inline OptionValue option_from_json(const nlohmann::json& j, const std::string& key, const std::string& where) {
  const auto& v = io::detail::json_at(j, key, where);
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) return v.get<double>();
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) return io::detail::json_get<std::vector<double>>(j, key, where);
  throw Error(xfer::detail::concat(where, ": key '", key, "' has the unsupported type ", v.type_name()));
}
inline Options options_from_json(const nlohmann::json& j, const std::string& where) {
  XFER_CHECK(j.is_object(), where, ": options must be a JSON object, got ", j.type_name());
  Options o;
  for (const auto& [key, v] : j.items()) o[key] = option_from_json(j, key, where);
  return o;
}

// ---- Optimizer (without its tensors, which a checkpoint stores as safetensors) ------------------
template <class T>
void to_json(nlohmann::json& j, const OptimizerState<T>& st) {
  j = {{"kind", st.kind}, {"dtype", st.dtype}, {"groups", nlohmann::json::array()}};
  to_json(j["options"], st.options);
  for (const auto& g : st.groups)
    j["groups"].push_back({{"lr", g.lr},
                           {"weight_decay", g.weight_decay},
                           {"initial_lr", g.initial_lr ? nlohmann::json(*g.initial_lr) : nlohmann::json(nullptr)},
                           {"shapes", g.shapes},
                           {"steps", g.steps},
                           {"has_state", g.has_state}});
}
template <class T>
void from_json(const nlohmann::json& j, OptimizerState<T>& st) {
  using io::detail::json_at, io::detail::json_get;
  const std::string where = "optimizer state";
  st.kind = json_get<std::string>(j, "kind", where);
  st.dtype = json_get<std::string>(j, "dtype", where);
  st.options = options_from_json(json_at(j, "options", where), where + ": options");
  const auto& jgroups = json_at(j, "groups", where);
  XFER_CHECK(jgroups.is_array(), where, ": 'groups' must be an array, got ", jgroups.type_name());
  st.groups.clear();
  for (size_t g = 0; g < jgroups.size(); ++g) {
    const std::string gw = where + ": group " + std::to_string(g);
    const auto& jg = jgroups[g];
    GroupState& gs = st.groups.emplace_back();
    gs.lr = json_get<double>(jg, "lr", gw);
    gs.weight_decay = json_get<double>(jg, "weight_decay", gw);
    if (!json_at(jg, "initial_lr", gw).is_null()) gs.initial_lr = json_get<double>(jg, "initial_lr", gw);
    gs.shapes = json_get<std::vector<Shape>>(jg, "shapes", gw);
    gs.steps = json_get<std::vector<int64_t>>(jg, "steps", gw);
    gs.has_state = json_get<std::vector<bool>>(jg, "has_state", gw);
  }
}

// ---- Schedulers: counters, "options"; further values and nested schedulers under their own keys --
inline void to_json(nlohmann::json& j, const SchedulerState& st) {
  j = {{"kind", st.kind}, {"last_epoch", st.last_epoch}, {"base_lrs", st.base_lrs}, {"last_lr", st.last_lr}};
  if (st.step_count) j["step_count"] = *st.step_count;
  if (!st.options.empty()) to_json(j["options"], st.options);
  for (const auto& [key, v] : st.values) std::visit([&, &key = key](const auto& x) { j[key] = x; }, v);
  for (const auto& [name, child] : st.children) j[name] = child ? nlohmann::json(*child) : nlohmann::json(nullptr);
}
inline void from_json(const nlohmann::json& j, SchedulerState& st) {
  using io::detail::json_at, io::detail::json_get;
  const std::string kind = json_get<std::string>(j, "kind", "scheduler state");
  const std::string where = kind + " state";
  st = SchedulerState{.kind = kind,
                      .last_epoch = json_get<int64_t>(j, "last_epoch", where),
                      .base_lrs = json_get<std::vector<double>>(j, "base_lrs", where),
                      .last_lr = json_get<std::vector<double>>(j, "last_lr", where)};
  if (j.contains("step_count")) st.step_count = json_get<int64_t>(j, "step_count", where);
  if (j.contains("options")) st.options = options_from_json(j.at("options"), where + ": options");
  for (const auto& [key, v] : j.items()) {
    if (key == "kind" || key == "last_epoch" || key == "base_lrs" || key == "last_lr" || key == "step_count" ||
        key == "options")
      continue;
    if (v.is_null() || v.is_object())  // a nested scheduler, or none
      st.children[key] = v.is_null() ? nullptr : std::make_shared<const SchedulerState>(v.get<SchedulerState>());
    else
      st.values[key] = option_from_json(j, key, where);
  }
}

// ---- ReduceLROnPlateau: flat, modes as "min"/"max" and "rel"/"abs", best may be "inf" ------------
inline void to_json(nlohmann::json& j, const PlateauState& st) {
  const auto& o = st.options;
  j = {{"kind", "ReduceLROnPlateau"},
       {"mode", o.mode == PlateauMode::min ? "min" : "max"},
       {"factor", o.factor},
       {"patience", o.patience},
       {"threshold", o.threshold},
       {"threshold_mode", o.threshold_mode == ThresholdMode::rel ? "rel" : "abs"},
       {"cooldown", o.cooldown},
       {"min_lrs", o.min_lrs},
       {"eps", o.eps},
       {"last_epoch", st.last_epoch},
       {"best", io::detail::json_number(st.best)},
       {"num_bad_epochs", st.num_bad_epochs},
       {"cooldown_counter", st.cooldown_counter},
       {"last_lr", st.last_lr}};
}
inline void from_json(const nlohmann::json& j, PlateauState& st) {
  using io::detail::json_get;
  const std::string where = "ReduceLROnPlateau::load_state";
  const auto kind = json_get<std::string>(j, "kind", where);
  XFER_CHECK(kind == "ReduceLROnPlateau", where, ": the state was saved by a ", kind,
             " scheduler, this is ReduceLROnPlateau");
  auto& o = st.options;
  const auto mode = json_get<std::string>(j, "mode", where);
  XFER_CHECK(mode == "min" || mode == "max", where, ": mode must be \"min\" or \"max\", got \"", mode, "\"");
  o.mode = mode == "min" ? PlateauMode::min : PlateauMode::max;
  const auto tmode = json_get<std::string>(j, "threshold_mode", where);
  XFER_CHECK(tmode == "rel" || tmode == "abs", where, ": threshold_mode must be \"rel\" or \"abs\", got \"", tmode,
             "\"");
  o.threshold_mode = tmode == "rel" ? ThresholdMode::rel : ThresholdMode::abs;
  o.factor = json_get<double>(j, "factor", where);
  o.patience = json_get<int64_t>(j, "patience", where);
  o.threshold = json_get<double>(j, "threshold", where);
  o.cooldown = json_get<int64_t>(j, "cooldown", where);
  o.min_lrs = json_get<std::vector<double>>(j, "min_lrs", where);
  o.eps = json_get<double>(j, "eps", where);
  st.last_lr = json_get<std::vector<double>>(j, "last_lr", where);
  st.last_epoch = json_get<int64_t>(j, "last_epoch", where);
  st.best = io::detail::number_from_json(j, "best", where);
  st.num_bad_epochs = json_get<int64_t>(j, "num_bad_epochs", where);
  st.cooldown_counter = json_get<int64_t>(j, "cooldown_counter", where);
}

}  // namespace xfer::optim

namespace xfer::data {

inline void to_json(nlohmann::json& j, const LoaderState& s) { j = {{"epoch", s.epoch}, {"position", s.position}}; }
inline void from_json(const nlohmann::json& j, LoaderState& s) {
  s.epoch = io::detail::json_get<int64_t>(j, "epoch", "loader state");
  s.position = io::detail::json_get<int64_t>(j, "position", "loader state");
}

}  // namespace xfer::data
