// BnStatistics: the running statistics of every BatchNorm layer of a model (running_mean,
// running_var, num_batches_tracked), saved to and loaded from snapshots. meta::MAML uses it to
// leave the shared model's statistics untouched by inner loops, and for MAML++'s per-step
// statistics (one snapshot per inner step).
//
// The one thing to know: it holds pointers into the model's buffers, so it belongs to one model
// and must not outlive it; a snapshot taken from one model cannot be loaded into another layout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::meta {

template <class T>
class BnStatistics {
 public:
  struct Snapshot {
    std::vector<T> values;
    std::vector<int64_t> counters;
    bool empty() const { return values.empty() && counters.empty(); }
  };

  explicit BnStatistics(nn::Module<T>& model) {
    for (auto& nb : model.named_buffers()) {
      if (nb.buffer.tensor) {
        tensors_.push_back(nb.buffer.tensor);
        size_ += nb.buffer.tensor->numel();
      }
      if (nb.buffer.counter) counters_.push_back(nb.buffer.counter);
    }
  }

  // True when the model has no buffers (no BatchNorm): save/load are then no-ops.
  bool empty() const { return tensors_.empty() && counters_.empty(); }

  void save(Snapshot& s) const {
    s.values.resize(static_cast<size_t>(size_));
    s.counters.resize(counters_.size());
    T* out = s.values.data();
    for (const Tensor<T>* t : tensors_) out = std::copy(t->data(), t->data() + t->numel(), out);
    for (size_t i = 0; i < counters_.size(); ++i) s.counters[i] = *counters_[i];
  }
  Snapshot save() const {
    Snapshot s;
    save(s);
    return s;
  }
  void load(const Snapshot& s) {
    XFER_CHECK(static_cast<int64_t>(s.values.size()) == size_ && s.counters.size() == counters_.size(),
               "BnStatistics: snapshot of ", s.values.size(), " values and ", s.counters.size(),
               " counters does not fit the model's ", size_, " values and ", counters_.size(), " counters");
    const T* in = s.values.data();
    for (Tensor<T>* t : tensors_) {
      std::copy(in, in + t->numel(), t->data());
      in += t->numel();
    }
    for (size_t i = 0; i < counters_.size(); ++i) *counters_[i] = s.counters[i];
  }

 private:
  std::vector<Tensor<T>*> tensors_;
  std::vector<int64_t*> counters_;
  int64_t size_ = 0;
};

// What meta-learners do with BatchNorm statistics around an inner loop: a Scope saves the model's
// statistics and restores them when it ends (unless update_shared); with per_step, the forwards at
// the weights after j inner steps use and update their own statistics (enter_step / leave_step),
// each set starting from the model's statistics at its first use.
template <class T>
class InnerLoopBn {
 public:
  using Snapshot = typename BnStatistics<T>::Snapshot;
  InnerLoopBn(nn::Module<T>& model, bool per_step, bool update_shared)
      : stats_(model), per_step_(per_step), update_shared_(update_shared) {}

  struct Scope {
    InnerLoopBn& b;
    Snapshot saved;
    explicit Scope(InnerLoopBn& owner) : b(owner) {
      if (!b.stats_.empty()) b.stats_.save(saved);
      if (!b.shared_) b.shared_ = &saved;
    }
    ~Scope() {
      if (!b.stats_.empty() && !b.update_shared_) b.stats_.load(saved);
      if (b.shared_ == &saved) b.shared_ = nullptr;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

  // Call inside a Scope, before the forward at the weights after j steps.
  void enter_step(int j) {
    if (!per_step_ || stats_.empty()) return;
    const size_t s = static_cast<size_t>(std::max(j, 0));
    if (steps_.size() <= s) steps_.resize(s + 1);
    if (steps_[s].empty()) steps_[s] = *shared_;
    stats_.load(steps_[s]);
  }
  // After a forward whose statistics update step j keeps.
  void leave_step(int j) {
    if (per_step_ && !stats_.empty()) stats_.save(steps_[static_cast<size_t>(std::max(j, 0))]);
  }
  // Statistics of step j (empty before its first use).
  const Snapshot& step(int j) const {
    static const Snapshot none;
    return j >= 0 && static_cast<size_t>(j) < steps_.size() ? steps_[static_cast<size_t>(j)] : none;
  }

 private:
  BnStatistics<T> stats_;
  bool per_step_, update_shared_;
  std::vector<Snapshot> steps_;
  const Snapshot* shared_ = nullptr;  // the outermost Scope's snapshot
};

}  // namespace xfer::meta
