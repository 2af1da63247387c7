// Module<T>: the node of a network tree. forward(x) caches what backward(dy) needs; backward
// returns dx and accumulates parameter gradients. Children are registered under names, so every
// parameter has a dotted name equal to torchvision's state_dict key.
//
// The one thing to know: forward returns a reference to a buffer the module owns (reused across
// steps); it stays valid until the module's next forward. Modules keep a pointer to their input
// for backward, so the input must stay alive until backward has run (models copy their input).
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/float_env.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/nn/parameter.hpp"
#include "xfer/nn/selector.hpp"

namespace xfer::nn {

template <class T>
class Module;
template <class T>
class ConvBnAct;

// All parameters of a flattened model in two contiguous buffers (values, gradients).
template <class T>
class ParameterArena {
 public:
  std::vector<NamedParameter<T>> params;  // in registration order; params[i].param->offset is its place
  AlignedVector<T> values, grads;

  int64_t size() const { return static_cast<int64_t>(values.size()); }

  // Points every parameter at external buffers with this arena's layout (MAML fast weights).
  // Pass nullptr for grads to keep the arena's own gradient buffer.
  void bind(T* external_values, T* external_grads = nullptr) {
    for (auto& np : params) {
      np.param->value = external_values + np.param->offset;
      np.param->grad = (external_grads ? external_grads : grads.data()) + np.param->offset;
    }
  }
  // Points every parameter back at this arena's own buffers.
  void unbind() { bind(values.data(), grads.data()); }
  void zero_grad() {
    T* g = grads.data();
    const auto n = static_cast<int64_t>(grads.size());
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) g[i] = T(0);
  }
};

struct FreezeOptions {
  // Also keep the running statistics of BatchNorm layers fixed when all their parameters are frozen
  // (the BN layer then normalises with running statistics even in training mode).
  bool bn_stats = false;
};

template <class T>
class Module {
 public:
  using ModulePtr = std::shared_ptr<Module<T>>;

  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  // "Conv2d", "BatchNorm2d", ...; extra_repr() adds the configuration ("3, 64, kernel=7, stride=2").
  virtual std::string type_name() const = 0;
  virtual std::string extra_repr() const { return {}; }
  // Dotted name inside the model it was flattened into ("layer1.0.conv1"); empty for a root.
  const std::string& path() const { return path_; }
  // How error messages name this module: "'layer1.0.conv1' Conv2d(64, 64, kernel=3, ...)".
  std::string label() const {
    std::string s = type_name() + "(" + extra_repr() + ")";
    return path_.empty() ? s : "'" + path_ + "' " + s;
  }

  // forward and backward run with subnormals flushed (core/float_env.hpp; opt out there).
  const Tensor<T>& forward(const Tensor<T>& x) {
    FlushDenormals flush = flush_scope(x, false);
    return forward_impl(x);
  }
  // Layers keep a pointer to their input for backward, so a temporary input would dangle: keep
  // the batch in a named variable. (models::Model copies its input and accepts temporaries.)
  const Tensor<T>& forward(Tensor<T>&& x) = delete;

  // Backward from the gradient of the output. When need_input_grad is false the module skips dx
  // (returns an empty tensor) and only accumulates the gradients of its trainable parameters.
  const Tensor<T>& backward(const Tensor<T>& dy, bool need_input_grad = true) {
    ++backward_calls_;
    FlushDenormals flush = flush_scope(dy, true);
    const Tensor<T>& dx = backward_impl(dy, need_input_grad);
    input_grad_ = &dx;
    if (backward_hook_) backward_hook_(*this);
    return dx;
  }
  // Called at the end of every backward of this module, when the gradients of all parameters of its
  // subtree are complete (dist::DataParallel starts allreducing them while backward goes on).
  void set_backward_hook(std::function<void(Module<T>&)> hook) { backward_hook_ = std::move(hook); }
  // Called by whoever consumed the input gradient the last backward returned (the layer below in
  // a chain): its storage goes back to the spare-buffer pool for the next layer's gradient, so a
  // backward pass keeps a few gradient tensors alive instead of one per layer. A module that
  // returned a tensor of a child releases that child's.
  void release_input_grad() {
    if (input_grad_ && input_grad_ != &empty_tensor()) const_cast<Tensor<T>*>(input_grad_)->recycle();
    input_grad_ = nullptr;
  }
  // How often backward ran on this module (tests use it to prove frozen layers do no work).
  int64_t backward_calls() const { return backward_calls_; }
  // A fusion unit (nn::ConvBnAct) that computed this module's gradients itself reports it here:
  // counts the call and runs the backward hook, as backward() would have.
  void note_fused_backward() {
    ++backward_calls_;
    if (backward_hook_) backward_hook_(*this);
  }

  // Re-initialises all parameters (and buffers) of the subtree from `rng`.
  virtual void reset_parameters(Rng& rng) {
    for (auto& [name, child] : children_) child->reset_parameters(rng);
  }

  // ---- train / eval -------------------------------------------------------------------------
  void train(bool on = true) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // BatchNorm overrides: use running statistics even in training mode (no update).
  virtual void set_running_stats_frozen(bool) {}
  virtual bool running_stats_frozen() const { return false; }

  // ---- tree ---------------------------------------------------------------------------------
  const std::vector<std::pair<std::string, ModulePtr>>& children() const { return children_; }

  // Every module of the subtree with its dotted name ("" for this one), in registration order.
  std::vector<std::pair<std::string, Module<T>*>> named_modules() {
    std::vector<std::pair<std::string, Module<T>*>> out;
    collect_modules("", out);
    return out;
  }
  std::vector<NamedParameter<T>> named_parameters() {
    std::vector<NamedParameter<T>> out;
    collect_parameters("", out);
    return out;
  }
  std::vector<NamedBuffer<T>> named_buffers() {
    std::vector<NamedBuffer<T>> out;
    collect_buffers("", out);
    return out;
  }
  // Parameters in registration order, optionally only those the selector matches.
  std::vector<Parameter<T>*> parameters() {
    std::vector<Parameter<T>*> out;
    for (auto& np : named_parameters()) out.push_back(np.param);
    return out;
  }
  std::vector<Parameter<T>*> parameters(const Selector& sel) {
    std::vector<Parameter<T>*> out;
    for (auto& np : named_parameters())
      if (sel(np.name)) out.push_back(np.param);
    XFER_CHECK(!out.empty(), type_name(), ": pattern ", sel.description(), " matches no parameter",
               available_prefixes());
    return out;
  }
  const std::vector<std::unique_ptr<Parameter<T>>>& own_parameters() const { return params_; }

  int64_t num_parameters() {
    int64_t n = 0;
    for (auto& np : named_parameters()) n += np.param->numel;
    return n;
  }
  int64_t num_trainable_parameters() {
    int64_t n = 0;
    for (auto& np : named_parameters())
      if (np.param->trainable) n += np.param->numel;
    return n;
  }
  bool has_trainable() const {
    for (const auto& p : params_)
      if (p->trainable) return true;
    for (const auto& [name, child] : children_)
      if (child->has_trainable()) return true;
    return false;
  }
  // Some parameter of the subtree needs a gradient now (trainable and not masked): what backward
  // chains consult to decide where they stop.
  bool needs_grad() const {
    for (const auto& p : params_)
      if (p->needs_grad()) return true;
    for (const auto& [name, child] : children_)
      if (child->needs_grad()) return true;
    return false;
  }

  // ---- freezing -----------------------------------------------------------------------------
  // Marks the matched parameters frozen: no gradient is computed for them, and backward stops
  // below the earliest layer that still has trainable parameters. Returns how many tensors were
  // matched; a pattern that matches nothing throws (it is almost always a typo).
  int freeze(const Selector& sel, FreezeOptions opt = {}) { return set_trainable(sel, false, opt.bn_stats); }
  int unfreeze(const Selector& sel, FreezeOptions opt = {}) { return set_trainable(sel, true, opt.bn_stats); }
  void freeze_all(FreezeOptions opt = {}) { set_trainable(all(), false, opt.bn_stats); }
  void unfreeze_all() { set_trainable(all(), true, true); }

  // Freezes or releases the running statistics of the BatchNorm modules whose name matches.
  int set_bn_stats_frozen(const Selector& sel, bool frozen) {
    int n = 0;
    for (auto& [name, m] : named_modules())
      if (m->is_batchnorm() && sel(name)) {
        m->set_running_stats_frozen(frozen);
        ++n;
      }
    XFER_CHECK(n > 0, type_name(), ": pattern ", sel.description(), " matches no BatchNorm module");
    return n;
  }
  virtual bool is_batchnorm() const { return false; }
  // The conv + BN units (nn::ConvBnAct) this module runs over its own children.
  virtual std::vector<ConvBnAct<T>*> own_fusion_units() { return {}; }

  void zero_grad() {
    if (arena_) {
      arena_->zero_grad();
      return;
    }
    for (auto& np : named_parameters()) np.param->zero_grad();
  }

  // ---- arena ----------------------------------------------------------------------------------
  // Moves every parameter of the subtree into one contiguous arena owned by this module (values
  // are preserved). Call again after the tree changed (models do this in replace_head).
  ParameterArena<T>& flatten_parameters() {
    auto fresh = std::make_unique<ParameterArena<T>>();
    fresh->params = named_parameters();
    int64_t total = 0;
    for (auto& np : fresh->params) total += np.param->numel;
    // Fill each buffer in one pass (reserve + insert: no zero-fill of 2x the model's size first),
    // releasing each parameter's own storage as soon as it has been copied.
    fresh->values.reserve(static_cast<size_t>(total));
    fresh->grads.reserve(static_cast<size_t>(total));
    for (auto& np : fresh->params) {
      Parameter<T>& p = *np.param;
      p.offset = static_cast<int64_t>(fresh->values.size());
      fresh->values.insert(fresh->values.end(), p.value, p.value + p.numel);
      fresh->grads.insert(fresh->grads.end(), p.grad, p.grad + p.numel);
      AlignedVector<T>().swap(p.own_value);
      AlignedVector<T>().swap(p.own_grad);
    }
    fresh->unbind();
    for (auto& [name, m] : named_modules()) {
      m->path_ = name;
      if (m != this) m->arena_.reset();
    }
    arena_ = std::move(fresh);
    return *arena_;
  }
  // The arena, flattening on first use.
  ParameterArena<T>& arena() { return arena_ ? *arena_ : flatten_parameters(); }
  bool is_flattened() const { return arena_ != nullptr; }

  // Throws unless dy, the gradient a backward receives, has the shape of the output it belongs to.
  void check_output_grad(const Tensor<T>& dy, const Shape& expected) const {
    XFER_CHECK(dy.shape() == expected, label(), ": output gradient has shape ", shape_str(dy.shape()), ", expected ",
               shape_str(expected));
  }
  // The tensor a backward returns when no input gradient was asked for.
  static const Tensor<T>& empty_tensor() {
    static const Tensor<T> e;
    return e;
  }

 protected:
  virtual const Tensor<T>& forward_impl(const Tensor<T>& x) = 0;
  virtual const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) = 0;

  Parameter<T>& register_parameter(std::string name, Shape shape) {
    params_.push_back(std::make_unique<Parameter<T>>(std::move(name), std::move(shape)));
    return *params_.back();
  }
  void register_buffer(std::string name, Tensor<T>* t) { buffers_.push_back({std::move(name), t, nullptr}); }
  void register_buffer(std::string name, int64_t* counter) {
    buffers_.push_back({std::move(name), nullptr, counter});
  }
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
    XFER_CHECK(m != nullptr, type_name(), ": register_module('", name, "') got a null module");
    for (auto& c : children_)
      XFER_CHECK(c.first != name, type_name(), ": a child named '", name, "' already exists");
    m->train(training_);
    children_.emplace_back(std::move(name), m);
    return m;
  }
  // Swaps the child registered under `name` (the parameters of the old one disappear).
  void replace_module(const std::string& name, ModulePtr m) {
    for (auto& c : children_)
      if (c.first == name) {
        m->train(training_);
        c.second = std::move(m);
        return;
      }
    throw Error(xfer::detail::concat(type_name(), ": no child named '", name, "' to replace"));
  }


  // The subnormal-flushing scope of a forward over x or a backward from dy, with an estimate from
  // above of the pass's work for FlushDenormals: parameters x positions (a pass uses each weight
  // at most once per batch element and pixel) + elements. Backward takes forward's positions too,
  // since the gradient of logits has lost the spatial ones.
  FlushDenormals flush_scope(const Tensor<T>& x, bool backward) {
    const int64_t positions = x.ndim() >= 2 && x.dim(1) > 0 ? x.numel() / x.dim(1) : x.numel();
    if (!backward) flush_positions_ = positions;
    const int64_t pos = std::max<int64_t>({positions, backward ? flush_positions_ : 0, 1});
    return FlushDenormals([&] { return (arena_ ? arena_->size() : count_parameters()) * pos + x.numel(); });
  }

 private:
  void collect_modules(const std::string& prefix, std::vector<std::pair<std::string, Module<T>*>>& out) {
    out.emplace_back(prefix, this);
    for (auto& [name, child] : children_) child->collect_modules(prefix.empty() ? name : prefix + "." + name, out);
  }
  void collect_parameters(const std::string& prefix, std::vector<NamedParameter<T>>& out) {
    for (auto& p : params_) out.push_back({prefix.empty() ? p->local_name : prefix + "." + p->local_name, p.get()});
    for (auto& [name, child] : children_) child->collect_parameters(prefix.empty() ? name : prefix + "." + name, out);
  }
  void collect_buffers(const std::string& prefix, std::vector<NamedBuffer<T>>& out) {
    for (auto& b : buffers_) out.push_back({prefix.empty() ? b.local_name : prefix + "." + b.local_name, b});
    for (auto& [name, child] : children_) child->collect_buffers(prefix.empty() ? name : prefix + "." + name, out);
  }
  int64_t count_parameters() const {
    int64_t n = 0;
    for (const auto& p : params_) n += p->numel;
    for (const auto& [name, child] : children_) n += child->count_parameters();
    return n;
  }
  std::string available_prefixes() {
    std::string s = " (top-level names: ";
    bool first = true;
    for (auto& p : params_) s += (first ? "" : ", ") + p->local_name, first = false;
    for (auto& [name, child] : children_)
      if (child->num_parameters() > 0) s += (first ? "" : ", ") + name, first = false;
    return s + ")";
  }
  int set_trainable(const Selector& sel, bool trainable, bool bn_stats) {
    int matched = 0;
    for (auto& np : named_parameters())
      if (sel(np.name)) {
        np.param->trainable = trainable;
        ++matched;
      }
    XFER_CHECK(matched > 0, type_name(), ": ", trainable ? "unfreeze" : "freeze", " pattern ",
               sel.description(), " matches no parameter", available_prefixes());
    if (bn_stats) {
      for (auto& [name, m] : named_modules()) {
        if (!m->is_batchnorm() || m->own_parameters().empty()) continue;
        bool all_matched = true;
        for (auto& p : m->own_parameters())
          all_matched = all_matched && sel(name.empty() ? p->local_name : name + "." + p->local_name);
        if (all_matched) m->set_running_stats_frozen(!trainable);
      }
    }
    return matched;
  }

  std::vector<std::unique_ptr<Parameter<T>>> params_;
  std::vector<Buffer<T>> buffers_;
  std::vector<std::pair<std::string, ModulePtr>> children_;
  std::unique_ptr<ParameterArena<T>> arena_;
  std::string path_;
  bool training_ = true;
  int64_t backward_calls_ = 0;
  int64_t flush_positions_ = 0;  // positions of the last forward's input (flush_scope)
  const Tensor<T>* input_grad_ = nullptr;  // what the last backward returned (release_input_grad)
  std::function<void(Module<T>&)> backward_hook_;
};

}  // namespace xfer::nn
