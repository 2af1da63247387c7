// Chain<T>: steps applied in sequence, each a module or a conv + BN unit (nn::ConvBnAct) over
// registered children: the one forward/backward loop that Sequential, ResNet and VGG share.
//
// The one thing to know: backward computes a step's dx only when something below needs it (an
// earlier step whose parameters need gradients, or the caller), so it stops below the earliest
// layer that still learns; each step's input gradient is released once the step below consumed it.
#pragma once

#include <vector>

#include "xfer/nn/conv_bn_act.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::nn {

template <class T>
class Chain {
 public:
  void push(Module<T>& m) { steps_.push_back({&m, nullptr}); }
  void push(ConvBnAct<T>& u) { steps_.push_back({nullptr, &u}); }
  // Makes step i run module m (e.g. a new classifier head).
  void set(size_t i, Module<T>& m) {
    XFER_CHECK(i < steps_.size(), "Chain: set(", i, ") but there are only ", steps_.size(), " steps");
    steps_[i] = {&m, nullptr};
  }
  void clear() { steps_.clear(); }
  size_t size() const { return steps_.size(); }

  const Tensor<T>& forward(const Tensor<T>& x) {
    const Tensor<T>* cur = &x;
    for (Step& s : steps_) cur = s.module ? &s.module->forward(*cur) : &s.unit->forward(*cur);
    return *cur;
  }

  // Backward from dy; returns the first step's dx, or Module's empty tensor when need_input_grad is false.
  const Tensor<T>& backward(const Tensor<T>& dy, bool need_input_grad) {
    const size_t n = steps_.size();
    std::vector<char>& learns_below = learns_below_;  // [i]: some step j < i needs gradients
    learns_below.assign(n + 1, 0);                     // keeps its capacity: no allocation per step
    for (size_t i = 0; i < n; ++i) learns_below[i + 1] = learns_below[i] || steps_[i].needs_grad();
    const Tensor<T>* cur = &dy;
    for (size_t i = n; i-- > 0;) {
      const bool need_dx = need_input_grad || learns_below[i];
      if (!need_dx && !steps_[i].needs_grad()) {
        if (i + 1 < n) steps_[i + 1].release();
        return Module<T>::empty_tensor();
      }
      const Tensor<T>* next = steps_[i].module ? &steps_[i].module->backward(*cur, need_dx)
                                               : &steps_[i].unit->backward(*cur, need_dx);
      // Step i + 1's input gradient is consumed (the caller's dy is theirs to keep).
      if (i + 1 < n && next != cur) steps_[i + 1].release();
      cur = next;
    }
    return need_input_grad ? *cur : Module<T>::empty_tensor();
  }

  // The units among the steps.
  std::vector<ConvBnAct<T>*> units() const {
    std::vector<ConvBnAct<T>*> out;
    for (const Step& s : steps_)
      if (s.unit) out.push_back(s.unit);
    return out;
  }

 private:
  struct Step {
    Module<T>* module;
    ConvBnAct<T>* unit;
    bool needs_grad() const { return module ? module->needs_grad() : unit->needs_grad(); }
    void release() {
      if (module) module->release_input_grad();
      else unit->release_input_grad();
    }
  };
  std::vector<Step> steps_;
  std::vector<char> learns_below_;  // backward's scratch, kept so a training step allocates nothing
};

}  // namespace xfer::nn
