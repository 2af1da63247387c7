// Model<T>: a classifier = backbone + a named head. Adds what transfer learning needs on top of
// Module: replace_head(n) (fresh Linear with n outputs), freeze_backbone(), and an input copy so the
// caller's tensor may die right after forward.
#pragma once

#include <memory>
#include <string>

#include "xfer/nn/linear.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::models {

template <class T>
class Model : public nn::Module<T> {
 public:
  using nn::Module<T>::forward;
  // A model copies its input, so a temporary batch is fine here (unlike a bare layer).
  const Tensor<T>& forward(Tensor<T>&& x) {
    FlushDenormals flush = this->flush_scope(x, false);
    input_ = std::move(x);
    return forward_model(input_);
  }

  // Dotted name of the classifier layer ("fc", "classifier.6", "classifier").
  virtual std::string head_name() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual int64_t num_features() const = 0;  // inputs of the head

  // Swaps the classifier for a freshly initialised Linear(num_features, num_classes). Parameters
  // are re-flattened, so optimizers built before must be rebuilt.
  void replace_head(int64_t num_classes) {
    XFER_CHECK(num_classes > 0, this->type_name(), ": replace_head(", num_classes,
               "): the number of classes must be positive (head '", head_name(), "' has ", this->num_classes(), ")");
    auto head = std::make_shared<nn::Linear<T>>(nn::LinearOptions{num_features(), num_classes}, rng_);
    install_head(std::move(head));
    this->flatten_parameters();
  }
  // Freezes everything but the head; with bn_stats the backbone's BatchNorm statistics are fixed too.
  void freeze_backbone(nn::FreezeOptions opt = {}) { this->freeze(nn::all_except(head_name()), opt); }

  Rng& rng() { return rng_; }

 protected:
  explicit Model(uint64_t seed) : rng_(seed) {}
  virtual void install_head(std::shared_ptr<nn::Linear<T>> head) = 0;
  virtual const Tensor<T>& forward_model(const Tensor<T>& x) = 0;

  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    input_.resize(x.shape());
    std::copy(x.begin(), x.end(), input_.begin());
    return forward_model(input_);
  }

  Rng rng_;

 private:
  Tensor<T> input_;
};

}  // namespace xfer::models
