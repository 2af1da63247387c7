// The saved form of optimizers and schedulers as plain structs: what state_dict() / state()
// return and load_state_dict() / load_state() take back. No file format here: io/state_json.hpp
// converts these to and from the JSON a checkpoint stores, so an SGD user compiles no JSON library.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"

namespace xfer::optim {

// One saved hyperparameter: a flag, an integer, a real, a name or a list of reals (Adam's betas).
using OptionValue = std::variant<bool, int64_t, double, std::string, std::vector<double>>;
// Hyperparameters by their PyTorch names ("lr", "betas", "step_size", ...).
using Options = std::map<std::string, OptionValue>;

// Per parameter group: hyperparameters, and per parameter its shape, step count and whether it
// has state tensors yet (an optimizer creates them on a parameter's first update).
struct GroupState {
  double lr = 0;
  double weight_decay = 0;
  std::optional<double> initial_lr = std::nullopt;  // PyTorch's 'initial_lr', set by the first scheduler attached
  std::vector<Shape> shapes = {};
  std::vector<int64_t> steps = {};
  std::vector<bool> has_state = {};
  bool operator==(const GroupState&) const = default;
};

// An optimizer's state: kind ("SGD", "Adam", "AdamW"), scalar type ("float32"), options, groups,
// and the state tensors named "group<g>.param<i>.<slot>" ("group0.param3.exp_avg").
template <class T>
struct OptimizerState {
  std::string kind;
  std::string dtype;
  Options options = {};
  std::vector<GroupState> groups = {};
  std::vector<std::pair<std::string, Tensor<T>>> tensors = {};
  // Everything but the tensors (what the JSON form holds).
  bool same_meta(const OptimizerState& o) const {
    return kind == o.kind && dtype == o.dtype && options == o.options && groups == o.groups;
  }
};

// A learning-rate scheduler's state: counters, options (empty for a scheduler without), and named
// nested schedulers (LinearWarmup's "warmup" and "after"; a null pointer saves "none").
struct SchedulerState {
  std::string kind;
  int64_t last_epoch = 0;
  std::vector<double> base_lrs = {}, last_lr = {};
  std::optional<int64_t> step_count = std::nullopt;  // schedulers that count their own steps
  Options options = {};
  Options values = {};  // further counters of one kind (CosineAnnealingWarmRestarts' T_cur, T_i)
  std::map<std::string, std::shared_ptr<const SchedulerState>> children = {};
};

namespace detail {
inline const char* option_type_name(const OptionValue& v) {
  constexpr const char* names[] = {"a flag", "an integer", "a real number", "a string", "a list of numbers"};
  return names[v.index()];
}

// The option `key` as V, or an xfer::Error saying where, which key and what it holds. A real
// accepts an integer (JSON writes 1.0 as 1 in some writers); nothing else converts.
template <class V>
V option(const Options& o, const std::string& key, const std::string& where) {
  auto it = o.find(key);
  XFER_CHECK(it != o.end(), where, ": missing key '", key, "'");
  const OptionValue& v = it->second;
  if constexpr (std::is_same_v<V, double>) {
    if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  }
  if constexpr (std::is_same_v<V, std::array<double, 2>>) {
    const auto* list = std::get_if<std::vector<double>>(&v);
    XFER_CHECK(list && list->size() == 2, where, ": key '", key, "' must hold two numbers, got ", option_type_name(v),
               list ? xfer::detail::concat(" of ", list->size()) : std::string());
    return {(*list)[0], (*list)[1]};
  } else {
    const auto* p = std::get_if<V>(&v);
    XFER_CHECK(p != nullptr, where, ": key '", key, "' has the wrong type (", option_type_name(v), ")");
    return *p;
  }
}
}  // namespace detail

}  // namespace xfer::optim
