// Sequential: children applied in order, named "0", "1", ... (or explicit names), like nn.Sequential.
// fuse(i) runs children i (Conv2d), i+1 (BatchNorm2d) and optionally i+2 (ReLU) as one conv + BN
// unit (nn::ConvBnAct): the names stay, the unit decides the path from BN's state.
// Backward stops below the earliest child whose parameters need gradients unless the caller needs dx.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "xfer/nn/chain.hpp"
#include "xfer/nn/conv_bn_act.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/relu.hpp"

namespace xfer::nn {

template <class T>
class Sequential : public Module<T> {
 public:
  Sequential() = default;

  std::string type_name() const override { return "Sequential"; }

  // Appends a module under the next index name.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    return add(std::to_string(this->children().size()), std::move(m));
  }
  template <class M, class... Args>
  std::shared_ptr<M> emplace_back(Args&&... args) {
    return push_back(std::make_shared<M>(std::forward<Args>(args)...));
  }
  template <class M>
  std::shared_ptr<M> add(std::string name, std::shared_ptr<M> m) {
    auto r = this->register_module(std::move(name), std::move(m));
    rebuild();
    return r;
  }
  // Runs child i (a Conv2d), child i+1 (a BatchNorm2d) and, with o.relu, child i+2 (a ReLU) as one
  // conv + BN unit. The children stay registered under their names.
  ConvBnAct<T>& fuse(size_t i, ConvBnActOptions o = {}) {
    const size_t span = o.relu ? 3 : 2;
    XFER_CHECK(i + span <= size(), "Sequential: fuse(", i, ") needs ", span, " children from ", i, ", there are ",
               size());
    for (auto& [at, u] : units_)
      XFER_CHECK(i + span <= at || at + u.second <= i, "Sequential: fuse(", i, ") overlaps the unit at child ", at);
    auto* conv = dynamic_cast<Conv2d<T>*>(&(*this)[i]);
    auto* bn = dynamic_cast<BatchNorm2d<T>*>(&(*this)[i + 1]);
    XFER_CHECK(conv && bn, "Sequential: fuse(", i, ") needs a Conv2d and a BatchNorm2d at children ", i, " and ",
               i + 1, ", got ", (*this)[i].type_name(), " and ", (*this)[i + 1].type_name());
    XFER_CHECK(!o.relu || dynamic_cast<ReLU<T>*>(&(*this)[i + 2]), "Sequential: fuse(", i,
               ", relu) needs a ReLU at child ", i + 2, ", got ", (*this)[i + 2].type_name());
    auto& slot = units_[i];
    slot = {std::make_unique<ConvBnAct<T>>(*conv, *bn, o), span};
    rebuild();
    return *slot.first;
  }
  // Replaces child i (for example a classifier head) with a new module.
  void replace(size_t i, std::shared_ptr<Module<T>> m) {
    XFER_CHECK(i < size(), "Sequential: replace(", i, ") but there are only ", size(), " children");
    for (auto& [at, u] : units_)
      XFER_CHECK(i < at || i >= at + u.second, "Sequential: replace(", i, "): child ", i,
                 " belongs to the conv-BN unit at child ", at);
    this->replace_module(this->children()[i].first, std::move(m));
    rebuild();
  }
  size_t size() const { return this->children().size(); }
  Module<T>& operator[](size_t i) { return *this->children().at(i).second; }
  std::vector<ConvBnAct<T>*> own_fusion_units() override { return chain_.units(); }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override { return chain_.forward(x); }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    return chain_.backward(dy, need_input_grad);
  }

 private:
  void rebuild() {
    chain_.clear();
    const auto& ch = this->children();
    for (size_t i = 0; i < ch.size();) {
      if (auto it = units_.find(i); it != units_.end()) {
        chain_.push(*it->second.first);
        i += it->second.second;
      } else {
        chain_.push(*ch[i].second);
        ++i;
      }
    }
  }

  Chain<T> chain_;
  std::map<size_t, std::pair<std::unique_ptr<ConvBnAct<T>>, size_t>> units_;  // first child -> (unit, children)
};

}  // namespace xfer::nn
