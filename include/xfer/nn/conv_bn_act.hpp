// ConvBnAct<T>: the one named fusion, y = relu?(bn(conv(x)) + residual), run over a Conv2d and a
// BatchNorm2d that stay registered children of the block or Sequential that owns the unit (so
// parameter names stay torchvision's: layer1.0.conv1.weight, layer1.0.bn1.weight, features.1.bias).
// The unit is not a Module: it is a plan the owner's forward/backward runs; the layers stay plain.
//
// The rule (BatchNorm2d::folds(), explicit BN state, never Parameter::trainable):
//   - BN uses batch statistics (training):           conv, then BN + residual + ReLU in BN's
//     normalisation pass (forward_fused); backward through BN and the conv modules.
//   - BN uses running statistics and folds() (statistics frozen, or inference folding from
//     prepare_inference):                             BN's per-channel scale/shift, the residual and
//     the ReLU applied in the conv GEMM epilogue (kernels::ConvEpilogue). Backward gives every
//     gradient from the unit's output alone: with g = dL/d(pre-ReLU) and G = conv_backward_weights(x,
//     g) (the weight gradient at scale 1), dW = scale[o] G, dbias = scale[o] sum(g), dbeta = sum(g),
//     dgamma = invstd[o] (<W[o], G[o]> + (bias[o] - running_mean[o]) sum(g)) (since conv(x) - bias
//     = W * patches), dx = conv_backward_data(g, scale[o] W), residual gradient = g. BN's affine
//     parameters may therefore learn with frozen statistics (--freeze-bn-stats, MAML in eval mode);
//     G costs one weight-gradient GEMM even when only BN's affine parameters need gradients.
//   - BN uses running statistics but does not fold (eval() without prepare_inference): as training.
// The conv and BN still count their backward calls and run their backward hooks (dist::DataParallel).
#pragma once

#include <memory>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/kernels/conv2d.hpp"
#include "xfer/nn/batchnorm.hpp"
#include "xfer/nn/conv2d.hpp"
#include "xfer/nn/relu.hpp"

namespace xfer::nn {

struct ConvBnActOptions {
  bool relu = true;  // apply a ReLU after BN (+ residual)
};

template <class T>
class ConvBnAct {
 public:
  ConvBnAct(Conv2d<T>& conv, BatchNorm2d<T>& bn, ConvBnActOptions o = {}) : conv_(conv), bn_(bn), opt_(o) {
    XFER_CHECK(bn.options().num_features == conv.options().out_channels, conv.label(), ": cannot fuse with ",
               bn.label(), ": ", bn.options().num_features, " BN channels for ", conv.options().out_channels,
               " output channels");
  }
  ConvBnAct(const ConvBnAct&) = delete;
  ConvBnAct& operator=(const ConvBnAct&) = delete;

  Conv2d<T>& conv() { return conv_; }
  BatchNorm2d<T>& bn() { return bn_; }
  const ConvBnActOptions& options() const { return opt_; }
  // True when the next forward applies BN (+ ReLU, + residual) in the convolution's epilogue.
  bool folds() const { return bn_.folds(); }
  // True when the last forward did.
  bool folded() const { return folded_; }
  bool needs_grad() const { return conv_.needs_grad() || bn_.needs_grad(); }

  // y = relu?(bn(conv(x)) + residual); residual (shaped like y) may be null. x and residual must
  // stay alive until backward has run.
  const Tensor<T>& forward(const Tensor<T>& x, const Tensor<T>* residual = nullptr) {
    folded_ = bn_.folds();
    if (!folded_) {
      const Tensor<T>& z = conv_.forward(x);
      check_residual(residual, z.shape());
      out_ = &bn_.forward_fused(z, residual, opt_.relu);
      return *out_;
    }
    geom_ = conv_.geometry(x.shape());
    x_ = &x;
    y_.resize({geom_.n, geom_.o, geom_.oh, geom_.ow});
    check_residual(residual, y_.shape());
    // y = relu?(scale * conv(x, w) + shift + residual), BN's scale/shift recomputed each time (O
    // values) so the fold can never go stale when parameters or statistics change.
    const int64_t O = geom_.o;
    scale_.resize(static_cast<size_t>(O));
    shift_.resize(static_cast<size_t>(O));
    bn_.fold_coefficients(scale_.data(), shift_.data());
    if (Parameter<T>* b = conv_.bias())
      for (int64_t o = 0; o < O; ++o) shift_[static_cast<size_t>(o)] += b->value[o] * scale_[static_cast<size_t>(o)];
    kernels::conv2d_forward(geom_, x.data(), conv_.weight().value, y_.data(),
                            kernels::ConvEpilogue<T>{.scale = scale_.data(), .shift = shift_.data(),
                                                     .residual = residual ? residual->data() : nullptr,
                                                     .relu = opt_.relu});
    out_ = &y_;
    return y_;
  }

  // From the gradient of the output: accumulates the conv's and BN's parameter gradients (those
  // that need one) and returns dx (an empty tensor unless need_input_grad). residual_grad() is then
  // the residual's gradient, valid until release_input_grad().
  const Tensor<T>& backward(const Tensor<T>& dy, bool need_input_grad) {
    XFER_CHECK(out_ != nullptr, conv_.label(), ": conv-BN unit backward called before forward");
    XFER_CHECK(dy.shape() == out_->shape(), conv_.label(), ": conv-BN unit output gradient has shape ",
               shape_str(dy.shape()), ", expected ", shape_str(out_->shape()));
    const Tensor<T>* g = &dy;
    if (opt_.relu) {
      detail::relu_backward(*out_, dy, dpre_);
      g = &dpre_;
    }
    gpre_ = g;
    returned_ = nullptr;
    if (!folded_) {
      const bool conv_runs = need_input_grad || conv_.needs_grad();
      if (!conv_runs) {
        if (bn_.needs_grad()) {
          (void)bn_.backward(*g, false);
          bn_.release_input_grad();
        }
        return empty();
      }
      const Tensor<T>& dz = bn_.backward(*g, true);
      const Tensor<T>& dx = conv_.backward(dz, need_input_grad);
      bn_.release_input_grad();  // dz consumed
      if (need_input_grad) returned_ = &dx;
      return need_input_grad ? dx : empty();
    }
    backward_folded(*g, need_input_grad);
    bn_.note_fused_backward();
    conv_.note_fused_backward();
    if (!need_input_grad) return empty();
    returned_ = &dx_;
    return dx_;
  }
  // The gradient of the residual of the last forward (= the gradient before the ReLU).
  const Tensor<T>& residual_grad() const {
    XFER_CHECK(gpre_ != nullptr, conv_.label(), ": conv-BN unit residual_grad() before backward");
    return *gpre_;
  }
  // The tensors the last backward returned are consumed: their storage goes back to the pool.
  void release_input_grad() {
    if (returned_ == &dx_) dx_.recycle();
    else if (returned_) conv_.release_input_grad();
    returned_ = nullptr;
    if (gpre_ == &dpre_) dpre_.recycle();
    gpre_ = nullptr;
  }

 private:
  static const Tensor<T>& empty() {
    static const Tensor<T> e;
    return e;
  }
  void check_residual(const Tensor<T>* r, const Shape& expect) const {
    if (r)
      XFER_CHECK(r->shape() == expect, conv_.label(), ": residual of shape ", shape_str(r->shape()),
                 " differs from the conv-BN output shape ", shape_str(expect));
  }

  // The folded backward (see the rule at the top); g is the gradient before the ReLU.
  void backward_folded(const Tensor<T>& g, bool need_input_grad) {
    const kernels::Conv2dGeometry& geo = geom_;
    const int64_t N = geo.n, O = geo.o, P = geo.out_plane(), K = geo.ckk();
    Parameter<T>& w = conv_.weight();
    Parameter<T>* b = conv_.bias();
    Parameter<T>& gamma = bn_.weight();
    Parameter<T>& beta = bn_.bias();
    const bool dw = w.needs_grad(), db = b && b->needs_grad(), dgamma = gamma.needs_grad(), dbeta = beta.needs_grad();
    const T* gd = g.data();
    if (db || dgamma || dbeta) {
      sum_.assign(static_cast<size_t>(O), 0.0);
      XFER_OMP_FOR(N * O * P)
      for (int64_t o = 0; o < O; ++o) sum_[static_cast<size_t>(o)] = detail::channel_sum(gd, N, O, P, o);
    }
    if (dw || dgamma) {
      wg_.assign(static_cast<size_t>(O * K), T(0));
      kernels::conv2d_backward_weights(geo, x_->data(), gd, wg_.data(), static_cast<T*>(nullptr));
    }
    for (int64_t o = 0; o < O; ++o) {
      const size_t k = static_cast<size_t>(o);
      const T sc = scale_[k];
      const T* G = wg_.data() + o * K;
      if (dw)
        for (int64_t i = 0; i < K; ++i) w.grad[o * K + i] += sc * G[i];
      if (db) b->grad[o] += static_cast<T>(static_cast<double>(sc) * sum_[k]);
      if (dbeta) beta.grad[o] += static_cast<T>(sum_[k]);
      if (dgamma) {
        double dot = 0;
        for (int64_t i = 0; i < K; ++i) dot += static_cast<double>(w.value[o * K + i]) * G[i];
        const double shifted = (b ? static_cast<double>(b->value[o]) : 0.0) - static_cast<double>(bn_.running_mean()[o]);
        gamma.grad[o] += static_cast<T>(bn_.running_invstd(o) * (dot + shifted * sum_[k]));
      }
    }
    if (!need_input_grad) return;
    ws_.resize(static_cast<size_t>(O * K));
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < K; ++i) ws_[static_cast<size_t>(o * K + i)] = scale_[static_cast<size_t>(o)] * w.value[o * K + i];
    dx_.resize(x_->shape());
    kernels::conv2d_backward_data(geo, gd, ws_.data(), dx_.data());
  }

  Conv2d<T>& conv_;
  BatchNorm2d<T>& bn_;
  ConvBnActOptions opt_;
  bool folded_ = false;
  kernels::Conv2dGeometry geom_;
  const Tensor<T>* x_ = nullptr;    // the folded forward's input
  const Tensor<T>* out_ = nullptr;  // the last output (y_, or BN's)
  const Tensor<T>* gpre_ = nullptr;      // gradient before the ReLU (dpre_, or the caller's dy)
  const Tensor<T>* returned_ = nullptr;  // what the last backward returned (dx_, or the conv's)
  Tensor<T> y_, dpre_, dx_;
  AlignedVector<T> scale_, shift_, wg_, ws_;
  std::vector<double> sum_;
};

// Every conv + BN unit of a network (tests and tools count those that fold).
template <class T>
std::vector<ConvBnAct<T>*> fusion_units(Module<T>& net) {
  std::vector<ConvBnAct<T>*> out;
  for (auto& [name, m] : net.named_modules())
    for (ConvBnAct<T>* u : m->own_fusion_units()) out.push_back(u);
  return out;
}

}  // namespace xfer::nn
