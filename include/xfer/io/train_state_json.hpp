// JSON form of train::EarlyStoppingState, for checkpoints that store a JSON document (ModelEma's
// state is tensors: ModelEma::save writes a safetensors file). The helpers themselves keep plain
// structs, so a user who does not checkpoint compiles no JSON library.
//
//   doc["early_stopping"] = io::to_json(stop.state());
//   stop.load_state(io::early_stopping_state_from_json(doc.at("early_stopping")));
//
// The one thing to know: reading checks every key and type and throws xfer::Error naming the key;
// the infinite / NaN values JSON cannot hold are written as the strings "inf", "-inf", "nan".
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "xfer/core/error.hpp"
#include "xfer/io/detail/json.hpp"
#include "xfer/train/early_stopping.hpp"

namespace xfer::io {

namespace detail {
template <class V>
V typed_from_json(const nlohmann::json& j, const std::string& key, const std::string& where) {
  XFER_CHECK(j.is_object() && j.contains(key), where, ": missing key '", key, "'");
  const auto& v = j.at(key);
  if constexpr (std::is_same_v<V, bool>) {
    XFER_CHECK(v.is_boolean(), where, ": key '", key, "' must hold true or false, got ", v.dump());
  } else {
    XFER_CHECK(v.is_number_integer(), where, ": key '", key, "' must hold an integer, got ", v.dump());
  }
  return v.get<V>();
}
}  // namespace detail

inline nlohmann::json to_json(const train::EarlyStoppingState& s) {
  return {{"best", detail::json_number(s.best)}, {"best_epoch", s.best_epoch},   {"epochs", s.epochs},
          {"bad_epochs", s.bad_epochs},            {"stopped", s.stopped},         {"last_improved", s.last_improved}};
}
inline train::EarlyStoppingState early_stopping_state_from_json(const nlohmann::json& j) {
  const std::string where = "EarlyStopping state";
  XFER_CHECK(j.is_object(), where, ": expected a JSON object, got ", j.type_name());
  train::EarlyStoppingState s;
  s.best = detail::number_from_json(j, "best", where);
  s.best_epoch = detail::typed_from_json<int64_t>(j, "best_epoch", where);
  s.epochs = detail::typed_from_json<int64_t>(j, "epochs", where);
  s.bad_epochs = detail::typed_from_json<int64_t>(j, "bad_epochs", where);
  s.stopped = detail::typed_from_json<bool>(j, "stopped", where);
  s.last_improved = detail::typed_from_json<bool>(j, "last_improved", where);
  return s;
}

}  // namespace xfer::io
