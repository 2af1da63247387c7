// Optimizer<T>: the base of SGD, Adam and AdamW. It owns parameter groups (each with its own lr
// and weight decay), the per-parameter state (moments, step counts) and its checkpoint form.
//
// The one thing to know: a parameter with `trainable == false` is skipped by step() exactly like
// PyTorch skips a parameter whose grad is None: no state update, no weight decay. The optimizer
// keeps raw pointers to the parameters, so build a new one (or add_param_group) after a change
// of the model that destroys parameters (replace_head). state_dict() is a plain struct
// (optim/state.hpp); io/state_json.hpp and io/checkpoint.hpp store it.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/float_env.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/nn/parameter.hpp"
#include "xfer/optim/state.hpp"

namespace xfer::optim {

// What a learning-rate scheduler needs from an optimizer, independent of the scalar type, so
// schedulers are plain classes: `optim::StepLR sched(opt, {.step_size = 30})`.
class LrGroups {
 public:
  virtual ~LrGroups() = default;
  virtual size_t num_groups() const = 0;
  virtual double lr(size_t group = 0) const = 0;
  virtual void set_lr(size_t group, double lr) = 0;
  // The lr a scheduler multiplies (PyTorch's group['initial_lr']); set by the first scheduler.
  virtual std::optional<double> initial_lr(size_t group) const = 0;
  virtual void set_initial_lr(size_t group, double lr) = 0;
};

template <class T>
struct ParamGroup {
  std::vector<nn::Parameter<T>*> params;
  double lr = 0;
  double weight_decay = 0;
  std::optional<double> initial_lr;  // set by the first scheduler attached (PyTorch's 'initial_lr')
};

// How a caller describes a group: unset lr / weight_decay fall back to the optimizer's defaults.
//   {.params = net.parameters("fc"), .lr = 1e-2}
template <class T>
struct ParamGroupSpec {
  std::vector<nn::Parameter<T>*> params = {};
  std::optional<double> lr = std::nullopt;
  std::optional<double> weight_decay = std::nullopt;
};

namespace detail {
template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float32";
  else if constexpr (std::is_same_v<T, double>)
    return "float64";
  else
    return "unknown";
}

inline void check_lr(double lr, const std::string& where) {
  XFER_CHECK(std::isfinite(lr) && lr >= 0, where, ": learning rate must be a finite value >= 0, got ", lr);
}
inline void check_weight_decay(double wd, const std::string& where) {
  XFER_CHECK(std::isfinite(wd) && wd >= 0, where, ": weight_decay must be a finite value >= 0, got ", wd);
}

}  // namespace detail

template <class T>
class Optimizer : public LrGroups {
 public:
  ~Optimizer() override = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "SGD", "Adam", "AdamW": the kind recorded in (and checked against) the saved state.
  virtual std::string kind() const = 0;

  // One update of every trainable parameter from its current gradient (subnormals flushed:
  // core/float_env.hpp).
  void step() {
    FlushDenormals flush([this] {  // the update loops count 4-12 operations per element
      int64_t n = 0;
      for (const auto& group : groups_)
        for (const auto* p : group.params) n += p->trainable ? p->numel : 0;
      return 12 * n;
    });
    for (size_t g = 0; g < groups_.size(); ++g) {
      auto& group = groups_[g];
      for (size_t i = 0; i < group.params.size(); ++i) {
        nn::Parameter<T>& p = *group.params[i];
        if (!p.trainable) continue;
        update(group, p, state_[g][i]);
      }
    }
  }

  // Zeroes the gradients of every parameter this optimizer holds (frozen ones included). Nothing
  // writes a frozen parameter's gradient, so it is cleared once, the first time it is seen frozen,
  // and then skipped: a frozen backbone costs no memset per step (45 MB for ResNet-18).
  void zero_grad() {
    zeroed_while_frozen_.resize(groups_.size());
    for (size_t g = 0; g < groups_.size(); ++g) {
      auto& clean = zeroed_while_frozen_[g];
      clean.resize(groups_[g].params.size(), 0);
      for (size_t i = 0; i < clean.size(); ++i) {
        nn::Parameter<T>* p = groups_[g].params[i];
        if (p->trainable || !clean[i]) p->zero_grad();
        clean[i] = !p->trainable;
      }
    }
  }

  size_t num_groups() const override { return groups_.size(); }
  const std::vector<ParamGroup<T>>& groups() const { return groups_; }

  double lr(size_t group = 0) const override { return checked_group(group, "lr").lr; }
  // Sets the lr of every group.
  void set_lr(double lr) {
    detail::check_lr(lr, kind() + "::set_lr");
    for (auto& g : groups_) g.lr = lr;
  }
  void set_lr(size_t group, double lr) override {
    detail::check_lr(lr, kind() + "::set_lr(group " + std::to_string(group) + ")");
    checked_group(group, "set_lr").lr = lr;
  }
  double weight_decay(size_t group = 0) const { return checked_group(group, "weight_decay").weight_decay; }
  void set_weight_decay(size_t group, double wd) {
    detail::check_weight_decay(wd, kind() + "::set_weight_decay(group " + std::to_string(group) + ")");
    checked_group(group, "set_weight_decay").weight_decay = wd;
  }
  std::optional<double> initial_lr(size_t group) const override { return checked_group(group, "initial_lr").initial_lr; }
  void set_initial_lr(size_t group, double lr) override {
    detail::check_lr(lr, kind() + "::set_initial_lr");
    checked_group(group, "set_initial_lr").initial_lr = lr;
  }

  // Adds a group (PyTorch's add_param_group); unset lr / weight_decay take the defaults.
  void add_param_group(const ParamGroupSpec<T>& spec) {
    const std::string where = kind() + ": parameter group " + std::to_string(groups_.size());
    XFER_CHECK(!spec.params.empty(), where, " has no parameters");
    ParamGroup<T> g;
    g.lr = spec.lr.value_or(default_lr());
    g.weight_decay = spec.weight_decay.value_or(default_weight_decay());
    detail::check_lr(g.lr, where);
    detail::check_weight_decay(g.weight_decay, where);
    std::unordered_map<const nn::Parameter<T>*, std::string> seen;
    for (size_t gi = 0; gi < groups_.size(); ++gi)
      for (size_t i = 0; i < groups_[gi].params.size(); ++i)
        seen.emplace(groups_[gi].params[i], "group " + std::to_string(gi) + " parameter " + std::to_string(i));
    for (size_t i = 0; i < spec.params.size(); ++i) {
      const nn::Parameter<T>* p = spec.params[i];
      XFER_CHECK(p != nullptr, where, ": parameter ", i, " is a null pointer");
      auto [it, fresh] = seen.emplace(p, "group " + std::to_string(groups_.size()) + " parameter " + std::to_string(i));
      XFER_CHECK(fresh, where, ": parameter ", i, " ('", p->local_name, "' ", shape_str(p->shape),
                 ") is already in this optimizer as ", it->second, "; a parameter may appear only once");
    }
    g.params = spec.params;
    groups_.push_back(std::move(g));
    state_.emplace_back(groups_.back().params.size());
  }

  // ---- checkpoint ---------------------------------------------------------------------------
  OptimizerState<T> state_dict() const {
    OptimizerState<T> out{.kind = kind(), .dtype = detail::dtype_name<T>(), .options = saved_options()};
    const auto slots = slot_names(out.options);
    for (size_t g = 0; g < groups_.size(); ++g) {
      const auto& group = groups_[g];
      GroupState& gs = out.groups.emplace_back(
          GroupState{.lr = group.lr, .weight_decay = group.weight_decay, .initial_lr = group.initial_lr});
      for (size_t i = 0; i < group.params.size(); ++i) {
        const auto& st = state_[g][i];
        gs.shapes.push_back(group.params[i]->shape);
        gs.steps.push_back(st.step);
        gs.has_state.push_back(!st.slots.empty());
        for (size_t s = 0; s < st.slots.size(); ++s)
          out.tensors.emplace_back(tensor_name(g, i, slots[s]), st.slots[s]);
      }
    }
    return out;
  }

  // Restores hyperparameters, step counts and state tensors saved by state_dict() of an optimizer
  // of the same kind over the same parameter layout. Everything is validated before anything
  // changes, so a failed load leaves the optimizer as it was.
  void load_state_dict(const OptimizerState<T>& st) {
    const std::string where = kind() + "::load_state_dict";
    XFER_CHECK(st.kind == kind(), where, ": the state was saved by a ", st.kind, " optimizer, this is ", kind());
    XFER_CHECK(st.dtype == detail::dtype_name<T>(), where, ": the state holds ", st.dtype,
               " tensors, this optimizer uses ", detail::dtype_name<T>());
    XFER_CHECK(st.groups.size() == groups_.size(), where, ": the state has ", st.groups.size(),
               " parameter groups, this optimizer has ", groups_.size());

    // Options first: they decide which state slots to expect (amsgrad adds one).
    load_options(st.options, where + ": options", /*apply=*/false);
    const auto slots = slot_names(st.options);

    std::unordered_map<std::string, const Tensor<T>*> by_name;
    for (const auto& [name, t] : st.tensors) {
      XFER_CHECK(by_name.emplace(name, &t).second, where, ": tensor '", name, "' appears twice");
    }
    std::vector<ParamGroup<T>> new_groups = groups_;
    std::vector<std::vector<ParamState>> new_state(groups_.size());
    size_t used = 0;
    for (size_t g = 0; g < groups_.size(); ++g) {
      const std::string gw = where + ": group " + std::to_string(g);
      const GroupState& saved = st.groups[g];
      auto& group = new_groups[g];
      group.lr = saved.lr;
      group.weight_decay = saved.weight_decay;
      detail::check_lr(group.lr, gw);
      detail::check_weight_decay(group.weight_decay, gw);
      if (saved.initial_lr) detail::check_lr(*saved.initial_lr, gw + " initial_lr");
      group.initial_lr = saved.initial_lr;
      const auto& shapes = saved.shapes;
      const auto& steps = saved.steps;
      const auto& has_state = saved.has_state;
      const size_t n = group.params.size();
      XFER_CHECK(shapes.size() == n && steps.size() == n && has_state.size() == n, gw, ": the state has ", shapes.size(),
                 " parameters, this optimizer's group has ", n);
      new_state[g].resize(n);
      for (size_t i = 0; i < n; ++i) {
        const auto& p = *group.params[i];
        XFER_CHECK(shapes[i] == p.shape, gw, " parameter ", i, " ('", p.local_name, "'): saved shape ",
                   shape_str(shapes[i]), ", this parameter has ", shape_str(p.shape));
        XFER_CHECK(steps[i] >= 0, gw, " parameter ", i, ": negative step count ", steps[i]);
        auto& ps = new_state[g][i];
        ps.step = steps[i];
        if (!has_state[i]) continue;
        for (const auto& slot : slots) {
          const std::string name = tensor_name(g, i, slot);
          auto it = by_name.find(name);
          XFER_CHECK(it != by_name.end(), where, ": missing state tensor '", name, "'");
          XFER_CHECK(it->second->shape() == p.shape, where, ": state tensor '", name, "' has shape ",
                     shape_str(it->second->shape()), ", expected ", shape_str(p.shape), " (parameter '", p.local_name,
                     "')");
          ps.slots.push_back(*it->second);
          ++used;
        }
      }
    }
    if (used != by_name.size()) {
      std::unordered_set<std::string> expected;
      for (size_t g = 0; g < new_state.size(); ++g)
        for (size_t i = 0; i < new_state[g].size(); ++i)
          if (!new_state[g][i].slots.empty())
            for (const auto& slot : slots) expected.insert(tensor_name(g, i, slot));
      for (const auto& [name, t] : st.tensors)
        XFER_CHECK(expected.count(name), where, ": unexpected state tensor '", name, "' (expected slots of ", kind(),
                   " named group<g>.param<i>.<slot>)");
    }
    load_options(st.options, where + ": options", /*apply=*/true);
    groups_ = std::move(new_groups);
    zeroed_while_frozen_.clear();
    state_ = std::move(new_state);
  }

  // Number of steps taken by one parameter (PyTorch's state['step']; 0 before its first update).
  int64_t step_count(size_t group, size_t param) const {
    checked_group(group, "step_count");
    XFER_CHECK(param < state_[group].size(), kind(), "::step_count: group ", group, " has ", state_[group].size(),
               " parameters, asked for ", param);
    return state_[group][param].step;
  }

 protected:
  // Per-parameter state: the step count and the state tensors, created on the first update.
  struct ParamState {
    int64_t step = 0;
    std::vector<Tensor<T>> slots;
  };

  Optimizer() = default;

  // Derived constructors call this after validating their options.
  void init_groups(const std::vector<ParamGroupSpec<T>>& specs) {
    XFER_CHECK(!specs.empty(), kind(), ": no parameter groups given");
    for (const auto& s : specs) add_param_group(s);
  }
  void init_groups(const std::vector<nn::Parameter<T>*>& params) {
    XFER_CHECK(!params.empty(), kind(), ": got an empty parameter list");
    add_param_group({.params = params});
  }

  // One update of one trainable parameter.
  virtual void update(const ParamGroup<T>& group, nn::Parameter<T>& p, ParamState& st) = 0;
  // Optimizer-wide options (momentum, betas, ...) by name; load_options reads and validates saved
  // ones and assigns them only when `apply` is true (so a failed load changes nothing).
  virtual Options saved_options() const = 0;
  virtual void load_options(const Options& o, const std::string& where, bool apply) = 0;
  // Names of the per-parameter state tensors under the given options ("exp_avg", ...).
  virtual std::vector<std::string> slot_names(const Options& options) const = 0;
  // The lr and weight decay of groups that do not set their own.
  virtual double default_lr() const = 0;
  virtual double default_weight_decay() const = 0;

  static std::string tensor_name(size_t g, size_t i, const std::string& slot) {
    return "group" + std::to_string(g) + ".param" + std::to_string(i) + "." + slot;
  }

 private:
  ParamGroup<T>& checked_group(size_t g, const char* what) {
    XFER_CHECK(g < groups_.size(), kind(), "::", what, ": group ", g, " does not exist (", groups_.size(), " groups)");
    return groups_[g];
  }
  const ParamGroup<T>& checked_group(size_t g, const char* what) const {
    XFER_CHECK(g < groups_.size(), kind(), "::", what, ": group ", g, " does not exist (", groups_.size(), " groups)");
    return groups_[g];
  }

  std::vector<ParamGroup<T>> groups_;
  std::vector<std::vector<ParamState>> state_;
  std::vector<std::vector<char>> zeroed_while_frozen_;  // zero_grad: cleared since it was frozen
};

}  // namespace xfer::optim
