// BasicBlock: ResNet-18/34's residual block, relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
// conv1 carries the stride; the shortcut is identity or downsample = Sequential(1x1 conv, BN),
// giving torchvision's names (conv1, bn1, conv2, bn2, downsample.0, downsample.1).
#pragma once

#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/relu.hpp"
#include "xfer/nn/sequential.hpp"

namespace xfer::nn {

struct BasicBlockOptions {
  int64_t in_channels = 64;
  int64_t out_channels = 64;
  int64_t stride = 1;
};

template <class T>
class BasicBlock : public Module<T> {
 public:
  explicit BasicBlock(BasicBlockOptions o, Rng& rng = global_rng()) : opt_(o) {
    conv1_ = this->register_module("conv1", std::make_shared<Conv2d<T>>(
        Conv2dOptions{o.in_channels, o.out_channels, 3, o.stride, 1, false}, rng));
    bn1_ = this->register_module("bn1", std::make_shared<BatchNorm2d<T>>(o.out_channels));
    conv2_ = this->register_module("conv2", std::make_shared<Conv2d<T>>(
        Conv2dOptions{o.out_channels, o.out_channels, 3, 1, 1, false}, rng));
    bn2_ = this->register_module("bn2", std::make_shared<BatchNorm2d<T>>(o.out_channels));
    if (o.stride != 1 || o.in_channels != o.out_channels) {
      downsample_ = this->register_module("downsample", std::make_shared<Sequential<T>>());
      auto ds_conv = downsample_->push_back(std::make_shared<Conv2d<T>>(Conv2dOptions{o.in_channels, o.out_channels, 1, o.stride, 0, false}, rng));
      ds_conv->fold_into(downsample_->push_back(std::make_shared<BatchNorm2d<T>>(o.out_channels)).get());
    }
    // Eval-mode / frozen BN folds into the convolutions; conv2 then also adds the shortcut and
    // applies the final ReLU in its epilogue (see forward_impl).
    conv1_->fold_into(bn1_.get(), &relu_mid_);
    conv2_->fold_into(bn2_.get(), &relu_out_);
  }
  std::string type_name() const override { return "BasicBlock"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_channels, " -> ", opt_.out_channels, ", stride=", opt_.stride);
  }
  Conv2d<T>& conv1() { return *conv1_; }
  Conv2d<T>& conv2() { return *conv2_; }
  BatchNorm2d<T>& bn1() { return *bn1_; }
  BatchNorm2d<T>& bn2() { return *bn2_; }
  Sequential<T>* downsample() { return downsample_.get(); }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    const Tensor<T>& s = downsample_ ? downsample_->forward(x) : x;
    const Tensor<T>& mid = relu_mid_.forward(bn1_->forward(conv1_->forward(x)));
    if (conv2_->folds_bn()) {
      // relu(bn2(conv2(mid)) + s) in conv2's epilogue: bn2 and relu_out_ pass its output through.
      const Shape expect{s.dim(0), conv2_->options().out_channels, mid.dim(2), mid.dim(3)};
      XFER_CHECK(s.shape() == expect, this->label(), ": shortcut shape ", shape_str(s.shape()),
                 " differs from residual branch shape ", shape_str(expect));
      conv2_->set_residual(&s);
      struct Clear {
        Conv2d<T>* c;
        ~Clear() { c->set_residual(nullptr); }
      } clear{conv2_.get()};
      return relu_out_.forward(bn2_->forward(conv2_->forward(mid)));
    }
    // Otherwise bn2 adds the shortcut and applies the ReLU in its normalisation pass.
    const Tensor<T>& h = conv2_->forward(mid);
    XFER_CHECK(h.shape() == s.shape(), this->label(), ": residual branch shape ", shape_str(h.shape()),
               " differs from shortcut shape ", shape_str(s.shape()));
    bn2_->set_residual(&s);
    struct Clear {
      BatchNorm2d<T>* b;
      ~Clear() { b->set_residual(nullptr); }
    } clear{bn2_.get()};
    return relu_out_.forward(bn2_->forward(h));
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    const Tensor<T>& d = relu_out_.backward(dy);
    std::vector<Module<T>*> main{conv1_.get(), bn1_.get(), &relu_mid_, conv2_.get(), bn2_.get()};
    const Tensor<T>* dmain = detail::chain_backward(main, d, need_input_grad);
    const Tensor<T>* dshort = &d;
    if (downsample_) {
      const bool run = need_input_grad || downsample_->has_trainable();
      dshort = run ? &downsample_->backward(d, need_input_grad) : nullptr;
    }
    if (!need_input_grad) {
      relu_out_.release_input_grad();
      return this->empty_tensor();
    }
    dx_.resize(dmain->shape());
    const int64_t n = dx_.numel();
    const T *a = dmain->data(), *b = dshort->data();
    T* out = dx_.data();
    XFER_OMP_FOR(n)
    for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
    // All three gradients are consumed (dshort may be d itself: released once, through relu_out_).
    conv1_->release_input_grad();
    if (downsample_) downsample_->release_input_grad();
    relu_out_.release_input_grad();
    return dx_;
  }

 private:
  BasicBlockOptions opt_;
  std::shared_ptr<Conv2d<T>> conv1_, conv2_;
  std::shared_ptr<BatchNorm2d<T>> bn1_, bn2_;
  std::shared_ptr<Sequential<T>> downsample_;
  ReLU<T> relu_mid_, relu_out_;  // stateful (they cache outputs), so one per use; no parameters
  Tensor<T> dx_;
};

}  // namespace xfer::nn
