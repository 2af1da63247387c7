// Sequential: children applied in order, named "0", "1", ... (or explicit names), like nn.Sequential.
// Backward stops below the earliest child with trainable parameters unless the caller needs dx.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "xfer/nn/module.hpp"

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
    chain_.push_back(r.get());
    return r;
  }
  // Replaces child i (for example a classifier head) with a new module.
  void replace(size_t i, std::shared_ptr<Module<T>> m) {
    XFER_CHECK(i < chain_.size(), "Sequential: replace(", i, ") but there are only ", chain_.size(), " children");
    chain_[i] = m.get();
    this->replace_module(this->children()[i].first, std::move(m));
  }
  size_t size() const { return chain_.size(); }
  Module<T>& operator[](size_t i) { return *chain_.at(i); }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    const Tensor<T>* cur = &x;
    for (Module<T>* m : chain_) cur = &m->forward(*cur);
    return *cur;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    const Tensor<T>* dx = detail::chain_backward(chain_, dy, need_input_grad);
    return dx ? *dx : this->empty_tensor();
  }

 private:
  std::vector<Module<T>*> chain_;
};

}  // namespace xfer::nn
