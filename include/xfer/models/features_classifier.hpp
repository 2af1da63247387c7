// FeaturesClassifier<T>: the shape torchvision's MobileNetV3 and EfficientNet share,
// features (Sequential) -> avgpool -> flatten -> classifier (Sequential whose child `head_index`
// is the Linear head: "classifier.3" for MobileNetV3, "classifier.1" for EfficientNet), and their
// common initialisation (convs kaiming-normal fan-out with zero bias, BN ones/zeros; the Linear
// layers as the subclass says).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "xfer/models/init.hpp"
#include "xfer/models/model.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/chain.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/flatten.hpp"
#include "xfer/nn/linear.hpp"
#include "xfer/nn/pooling.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::models {

template <class T>
class FeaturesClassifier : public Model<T> {
 public:
  std::string head_name() const override { return "classifier." + std::to_string(head_index_); }
  int64_t num_classes() const override { return head_->options().out_features; }
  int64_t num_features() const override { return head_->options().in_features; }
  nn::Sequential<T>& features() { return *features_; }
  nn::Sequential<T>& classifier() { return *classifier_; }
  nn::Linear<T>& head() { return *head_; }

  void reset_parameters(Rng& rng) override {
    nn::Module<T>::reset_parameters(rng);
    init_like_torchvision(rng);
  }

 protected:
  explicit FeaturesClassifier(uint64_t seed) : Model<T>(seed) {}

  // Registers the children in torchvision's order and initialises them; call once from the constructor.
  void finish(std::shared_ptr<nn::Sequential<T>> features, std::shared_ptr<nn::Sequential<T>> classifier,
              size_t head_index) {
    features_ = this->register_module("features", std::move(features));
    auto pool = this->register_module("avgpool", std::make_shared<nn::AdaptiveAvgPool2d<T>>(1));
    auto flat = this->register_module("flatten", std::make_shared<nn::Flatten<T>>());  // torch.flatten
    classifier_ = this->register_module("classifier", std::move(classifier));
    head_index_ = head_index;
    head_ = std::dynamic_pointer_cast<nn::Linear<T>>((*classifier_).children().at(head_index).second);
    XFER_CHECK(head_ != nullptr, this->type_name(), ": classifier child ", head_index, " is not a Linear");
    chain_.push(*features_);
    chain_.push(*pool);
    chain_.push(*flat);
    chain_.push(*classifier_);
    init_like_torchvision(this->rng_);
    this->flatten_parameters();
  }
  // How torchvision initialises this model's Linear layers.
  virtual LinearInit linear_init() const = 0;

  void install_head(std::shared_ptr<nn::Linear<T>> head) override {
    classifier_->replace(head_index_, head);
    head_ = std::move(head);
  }
  const Tensor<T>& forward_model(const Tensor<T>& x) override { return chain_.forward(x); }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    return chain_.backward(dy, need_input_grad);
  }

 private:
  void init_like_torchvision(Rng& rng) { models::init_like_torchvision(*this, linear_init(), rng); }

  std::shared_ptr<nn::Sequential<T>> features_, classifier_;
  std::shared_ptr<nn::Linear<T>> head_;
  size_t head_index_ = 0;
  nn::Chain<T> chain_;
};

}  // namespace xfer::models
