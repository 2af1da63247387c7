// Checked reads from nlohmann::json for the state converters (io/state_json.hpp): a missing key or
// a value of the wrong type is an xfer::Error naming where and which key, never nlohmann's own
// exception or undefined behaviour.
#pragma once

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/core/error.hpp"

namespace xfer::io::detail {

inline const nlohmann::json& json_at(const nlohmann::json& j, const std::string& key, const std::string& where) {
  XFER_CHECK(j.is_object() && j.contains(key), where, ": missing key '", key, "'");
  return j.at(key);
}
// Integer targets (int64_t, std::vector<int64_t>, Shape lists) must hold JSON integers: nlohmann
// casts a float such as -1e30 straight to int64_t, which is undefined behaviour (found with the fuzz_checkpoint harness).
template <class V>
struct wants_integers : std::bool_constant<std::is_integral_v<V> && !std::is_same_v<V, bool>> {};
template <class V>
struct wants_integers<std::vector<V>> : wants_integers<V> {};
inline bool holds_float(const nlohmann::json& v) {
  if (v.is_number_float()) return true;
  if (v.is_array())
    for (const auto& e : v)
      if (holds_float(e)) return true;
  return false;
}

template <class V>
V json_get(const nlohmann::json& j, const std::string& key, const std::string& where) {
  const auto& v = json_at(j, key, where);
  if constexpr (wants_integers<V>::value)
    XFER_CHECK(!holds_float(v), where, ": key '", key, "' must hold integers, got ", v.dump());
  try {
    return v.get<V>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(xfer::detail::concat(where, ": key '", key, "' has the wrong type (", v.type_name(), "): ", e.what()));
  }
}

// JSON has no infinity: non-finite numbers are stored as the strings "inf", "-inf", "nan".
inline nlohmann::json json_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}
inline double number_from_json(const nlohmann::json& j, const std::string& key, const std::string& where) {
  const auto& v = json_at(j, key, where);
  if (v.is_number()) return v.get<double>();
  if (v == "inf") return std::numeric_limits<double>::infinity();
  if (v == "-inf") return -std::numeric_limits<double>::infinity();
  if (v == "nan") return std::numeric_limits<double>::quiet_NaN();
  throw Error(xfer::detail::concat(where, ": key '", key, "' must be a number, \"inf\", \"-inf\" or \"nan\", got ",
                                   v.dump()));
}

}  // namespace xfer::io::detail
