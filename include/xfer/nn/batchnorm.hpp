// BatchNorm2d with PyTorch semantics: batch statistics in training (biased variance to normalise,
// unbiased for the running estimate), running statistics in eval. Names: weight, bias,
// running_mean, running_var, num_batches_tracked.
//
// Running statistics can be frozen independently of train/eval (set_running_stats_frozen): the
// layer then normalises with the running statistics and never updates them, while its affine
// parameters may still learn — the usual way to fine-tune with small batches.
//
// State, explicit: uses_batch_stats() (training mode and statistics not frozen) or running
// statistics; folds() says whether nn::ConvBnAct applies this layer in the preceding convolution's
// epilogue: running statistics in use AND (statistics frozen, or inference folding switched on by
// set_inference_folding / prepare_inference). Parameter::trainable plays no part in it; the unit's
// backward gives every gradient either way. fold_coefficients() is recomputed on every forward, so
// the fold is never stale, and the trainable form is untouched.
//
// forward_fused(x, residual, relu) = relu?(bn(x) + residual) in the normalisation pass (one pass
// over the activations instead of three): what the unit runs while BN uses batch statistics.
//
// Synchronized BN (dist::enable_sync_batchnorm): with a cross-replica sum set, batch statistics and
// the backward's per-channel sums are taken over the batches of all data-parallel ranks, assuming
// each rank's loss is the mean over its own batch (rank r's gradient share is M_r / M_global).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/detail/batchnorm_sync.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::nn {

struct BatchNorm2dOptions {
  int64_t num_features = 0;
  double eps = 1e-5;
  double momentum = 0.1;
};

template <class T>
class BatchNorm2d : public Module<T> {
 public:
  explicit BatchNorm2d(BatchNorm2dOptions o)
      : opt_(o),
        weight_(this->register_parameter("weight", {o.num_features})),
        bias_(this->register_parameter("bias", {o.num_features})),
        running_mean_({o.num_features}, T(0)),
        running_var_({o.num_features}, T(1)) {
    XFER_CHECK(o.num_features > 0, "BatchNorm2d: num_features must be positive, got ", o.num_features);
    XFER_CHECK(o.eps > 0 && o.momentum >= 0 && o.momentum <= 1, "BatchNorm2d(", o.num_features,
               "): eps must be > 0 and momentum in [0, 1], got eps=", o.eps, " momentum=", o.momentum);
    this->register_buffer("running_mean", &running_mean_);
    this->register_buffer("running_var", &running_var_);
    this->register_buffer("num_batches_tracked", &num_batches_tracked_);
    Rng unused;
    reset_parameters(unused);
  }
  explicit BatchNorm2d(int64_t num_features) : BatchNorm2d(BatchNorm2dOptions{.num_features = num_features}) {}

  std::string type_name() const override { return "BatchNorm2d"; }
  std::string extra_repr() const override { return std::to_string(opt_.num_features); }
  bool is_batchnorm() const override { return true; }
  void set_running_stats_frozen(bool f) override { stats_frozen_ = f; }
  bool running_stats_frozen() const override { return stats_frozen_; }

  void reset_parameters(Rng&) override {
    init::constant(weight_, T(1));
    init::constant(bias_, T(0));
    running_mean_.fill(T(0));
    running_var_.fill(T(1));
    num_batches_tracked_ = 0;
  }

  Parameter<T>& weight() { return weight_; }
  Parameter<T>& bias() { return bias_; }
  Tensor<T>& running_mean() { return running_mean_; }
  Tensor<T>& running_var() { return running_var_; }
  int64_t num_batches_tracked() const { return num_batches_tracked_; }
  const BatchNorm2dOptions& options() const { return opt_; }
  // True when the next forward normalises with batch statistics.
  bool uses_batch_stats() const { return this->is_training() && !stats_frozen_; }

  // Folds this layer into the preceding convolution whenever it uses running statistics (eval
  // mode), not only while its statistics are frozen (prepare_inference switches it on).
  void set_inference_folding(bool on) { inference_folding_ = on; }
  bool inference_folding() const { return inference_folding_; }
  // True when a conv + BN unit applies this layer in the convolution: y = x * scale[c] + shift[c].
  bool folds() const { return !uses_batch_stats() && (stats_frozen_ || inference_folding_); }
  // The per-channel affine map of the running statistics (what folding applies).
  void fold_coefficients(T* scale, T* shift) const {
    for (int64_t c = 0; c < opt_.num_features; ++c) {
      const double inv = 1.0 / std::sqrt(static_cast<double>(running_var_[c]) + opt_.eps);
      scale[c] = static_cast<T>(weight_.value[c] * inv);
      shift[c] = static_cast<T>(bias_.value[c] - running_mean_[c] * weight_.value[c] * inv);
    }
  }
  // 1 / sqrt(running_var[c] + eps).
  double running_invstd(int64_t c) const { return 1.0 / std::sqrt(static_cast<double>(running_var_[c]) + opt_.eps); }
  // y = relu?(bn(x) + residual) in one pass (residual may be null; shaped like x). Backward then
  // takes the gradient before the ReLU (the unit applies the ReLU's mask).
  const Tensor<T>& forward_fused(const Tensor<T>& x, const Tensor<T>* residual, bool relu) {
    FlushDenormals flush = this->flush_scope(x, false);
    return normalize(x, residual, relu);
  }
  // Sums `n` doubles over all data-parallel ranks in place (empty: local statistics, the default).
  void set_cross_replica_sum(std::function<void(double*, int64_t)> sum) { cross_sum_ = std::move(sum); }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override { return normalize(x, nullptr, false); }

  const Tensor<T>& normalize(const Tensor<T>& x, const Tensor<T>* residual, bool relu) {
    XFER_CHECK(x.ndim() == 4, this->label(), ": expected a 4-D NCHW input, got shape ", shape_str(x.shape()));
    XFER_CHECK(x.dim(1) == opt_.num_features, this->label(), ": expected input with ", opt_.num_features,
               " channels, got shape ", shape_str(x.shape()));
    const int64_t N = x.dim(0), C = x.dim(1), P = x.dim(2) * x.dim(3), M = N * P;
    if (residual)
      XFER_CHECK(residual->shape() == x.shape(), this->label(), ": residual of shape ", shape_str(residual->shape()),
                 ", expected ", shape_str(x.shape()));
    batch_stats_ = uses_batch_stats();
    XFER_CHECK(!batch_stats_ || M > 1, this->label(), ": training needs more than one value per channel, got shape ",
               shape_str(x.shape()));
    x_ = &x;
    y_.resize(x.shape());
    mean_.resize(static_cast<size_t>(C));
    invstd_.resize(static_cast<size_t>(C));
    const T* xd = x.data();
    T* yd = y_.data();
    const T* rd = residual ? residual->data() : nullptr;
    synced_ = batch_stats_ && cross_sum_;
    if (synced_) {
      forward_synced(xd, yd, rd, relu, N, C, P);
      ++num_batches_tracked_;
      return y_;
    }
    if (P < kSmallPlane) {
      forward_small_planes(xd, yd, rd, relu, N, C, P);
      if (batch_stats_) ++num_batches_tracked_;
      return y_;
    }
    XFER_OMP_FOR(N * C * P)
    for (int64_t c = 0; c < C; ++c) {
      double mean, var;
      if (batch_stats_) {
        // Two passes in double: exact enough for float inputs with large means.
        // Per plane in T (vectorised), across planes in double.
        mean = detail::channel_sum(xd, N, C, P, c) / static_cast<double>(M);
        double ss = 0;
        const T mt = static_cast<T>(mean);
        for (int64_t n = 0; n < N; ++n) {
          const T* p = xd + (n * C + c) * P;
          T pss = 0;
#pragma omp simd reduction(+ : pss)
          for (int64_t i = 0; i < P; ++i) pss += (p[i] - mt) * (p[i] - mt);
          ss += pss;
        }
        var = ss / static_cast<double>(M);
        if (!stats_frozen_) update_running_stats(c, mean, ss, static_cast<double>(M));
      } else {
        mean = running_mean_[c];
        var = running_var_[c];
      }
      const double inv = 1.0 / std::sqrt(var + opt_.eps);
      mean_[static_cast<size_t>(c)] = static_cast<T>(mean);
      invstd_[static_cast<size_t>(c)] = static_cast<T>(inv);
      const T scale = static_cast<T>(weight_.value[c] * inv);
      const T shift = static_cast<T>(bias_.value[c] - mean * weight_.value[c] * inv);
      for (int64_t n = 0; n < N; ++n) {
        const T* p = xd + (n * C + c) * P;
        T* q = yd + (n * C + c) * P;
        const T* r = rd ? rd + (n * C + c) * P : nullptr;
        if (!r && !relu)
          for (int64_t i = 0; i < P; ++i) q[i] = p[i] * scale + shift;
        else if (!r)
          for (int64_t i = 0; i < P; ++i) q[i] = std::max(p[i] * scale + shift, T(0));
        else
          for (int64_t i = 0; i < P; ++i) {
            const T v = p[i] * scale + shift + r[i];
            q[i] = relu ? std::max(v, T(0)) : v;
          }
      }
    }
    if (batch_stats_) ++num_batches_tracked_;
    return y_;
  }

  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr, this->label(), ": backward called before forward");
    this->check_output_grad(dy, x_->shape());
    const int64_t N = dy.dim(0), C = dy.dim(1), P = dy.dim(2) * dy.dim(3);
    const double M = static_cast<double>(N * P);
    if (need_input_grad) dx_.resize(x_->shape());
    const T* xd = x_->data();
    const T* g = dy.data();
    T* dxd = need_input_grad ? dx_.data() : nullptr;
    if (synced_) {
      backward_synced(xd, g, dxd, N, C, P);
      return need_input_grad ? dx_ : this->empty_tensor();
    }
    if (P < kSmallPlane) {
      backward_small_planes(xd, g, dxd, N, C, P);
      return need_input_grad ? dx_ : this->empty_tensor();
    }
    XFER_OMP_FOR(N * C * P)
    for (int64_t c = 0; c < C; ++c) {
      const double mean = mean_[static_cast<size_t>(c)], inv = invstd_[static_cast<size_t>(c)];
      double sum_dy = 0, sum_dy_xhat = 0;
      const T mt = static_cast<T>(mean);
      for (int64_t n = 0; n < N; ++n) {
        const T* xp = xd + (n * C + c) * P;
        const T* gp = g + (n * C + c) * P;
        T a = 0, b = 0;  // per plane in T (vectorised), across planes in double
#pragma omp simd reduction(+ : a, b)
        for (int64_t i = 0; i < P; ++i) {
          a += gp[i];
          b += gp[i] * (xp[i] - mt);
        }
        sum_dy += a;
        sum_dy_xhat += static_cast<double>(b) * inv;
      }
      if (weight_.needs_grad()) weight_.grad[c] += static_cast<T>(sum_dy_xhat);
      if (bias_.needs_grad()) bias_.grad[c] += static_cast<T>(sum_dy);
      if (!dxd) continue;
      const double gamma_inv = weight_.value[c] * inv;
      for (int64_t n = 0; n < N; ++n) {
        const T* xp = xd + (n * C + c) * P;
        const T* gp = g + (n * C + c) * P;
        T* dp = dxd + (n * C + c) * P;
        if (batch_stats_) {
          // dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
          const double a = sum_dy / M, b = sum_dy_xhat / M;
          const T k = static_cast<T>(gamma_inv), at = static_cast<T>(a), kb = static_cast<T>(inv * b);
#pragma omp simd
          for (int64_t i = 0; i < P; ++i) dp[i] = k * (gp[i] - at - (xp[i] - mt) * kb);
        } else {
          const T k = static_cast<T>(gamma_inv);
#pragma omp simd
          for (int64_t i = 0; i < P; ++i) dp[i] = k * gp[i];
        }
      }
    }
    return need_input_grad ? dx_ : this->empty_tensor();
  }

 private:
  // Tiny maps (the late stages of ResNet at small inputs: 4x4 down to 1x1) would leave the per-plane
  // loops a handful of elements long; those run over blocks of channels instead, walking each
  // image's [channels x P] slab contiguously with per-element sums in double.
  static constexpr int64_t kSmallPlane = 16, kChannelBlock = 64;

  // PyTorch's momentum update from one batch: the unbiased variance (sum_sq_dev / (count - 1)).
  void update_running_stats(int64_t c, double mean, double sum_sq_dev, double count) {
    const double m = opt_.momentum;
    running_mean_[c] = static_cast<T>((1 - m) * running_mean_[c] + m * mean);
    running_var_[c] = static_cast<T>((1 - m) * running_var_[c] + m * sum_sq_dev / (count - 1));
  }

  void forward_synced(const T* xd, T* yd, const T* rd, bool relu, int64_t N, int64_t C, int64_t P) {
    std::vector<double> ss(static_cast<size_t>(C));
    const double M = detail::synced_moments(xd, N, C, P, cross_sum_, mean_.data(), ss.data());
    synced_share_ = static_cast<double>(N * P) / M;
    std::vector<T> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      const size_t k = static_cast<size_t>(c);
      if (!stats_frozen_) update_running_stats(c, mean_[k], ss[k], M);
      const double inv = 1.0 / std::sqrt(ss[k] / M + opt_.eps);
      invstd_[k] = static_cast<T>(inv);
      scale[k] = static_cast<T>(weight_.value[c] * inv);
      shift[k] = static_cast<T>(bias_.value[c] - mean_[k] * weight_.value[c] * inv);
    }
    detail::apply_affine(xd, yd, rd, relu, N, C, P, scale.data(), shift.data());
  }
  void backward_synced(const T* xd, const T* g, T* dxd, int64_t N, int64_t C, int64_t P) {
    std::vector<double> sum_dy(static_cast<size_t>(C)), sum_dy_xhat(static_cast<size_t>(C));
    detail::synced_backward(xd, g, dxd, N, C, P, mean_.data(), invstd_.data(), weight_.value, synced_share_, cross_sum_,
                            sum_dy.data(), sum_dy_xhat.data());
    for (int64_t c = 0; c < C; ++c) {
      if (weight_.needs_grad()) weight_.grad[c] += static_cast<T>(sum_dy_xhat[static_cast<size_t>(c)]);
      if (bias_.needs_grad()) bias_.grad[c] += static_cast<T>(sum_dy[static_cast<size_t>(c)]);
    }
  }

  void forward_small_planes(const T* xd, T* yd, const T* rd, bool relu, int64_t N, int64_t C, int64_t P) {
    const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
    const double M = static_cast<double>(N * P);
    XFER_OMP_FOR(N * C * P)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kChannelBlock, cb = std::min(kChannelBlock, C - c0), L = cb * P;
      double acc[kChannelBlock * kSmallPlane];
      T mean_j[kChannelBlock * kSmallPlane], scale_j[kChannelBlock * kSmallPlane], shift_j[kChannelBlock * kSmallPlane];
      double mean_c[kChannelBlock], var_c[kChannelBlock];
      if (batch_stats_) {
        std::fill(acc, acc + L, 0.0);
        for (int64_t n = 0; n < N; ++n) {
          const T* x = xd + (n * C + c0) * P;
          for (int64_t j = 0; j < L; ++j) acc[j] += x[j];
        }
        for (int64_t c = 0; c < cb; ++c) {
          double sum = 0;
          for (int64_t p = 0; p < P; ++p) sum += acc[c * P + p];
          mean_c[c] = sum / M;
          for (int64_t p = 0; p < P; ++p) mean_j[c * P + p] = static_cast<T>(mean_c[c]);
        }
        std::fill(acc, acc + L, 0.0);
        for (int64_t n = 0; n < N; ++n) {
          const T* x = xd + (n * C + c0) * P;
          for (int64_t j = 0; j < L; ++j) {
            const T d = x[j] - mean_j[j];
            acc[j] += static_cast<double>(d * d);
          }
        }
        for (int64_t c = 0; c < cb; ++c) {
          double ss = 0;
          for (int64_t p = 0; p < P; ++p) ss += acc[c * P + p];
          var_c[c] = ss / M;
          if (!stats_frozen_) update_running_stats(c0 + c, mean_c[c], ss, M);
        }
      } else {
        for (int64_t c = 0; c < cb; ++c) mean_c[c] = running_mean_[c0 + c], var_c[c] = running_var_[c0 + c];
      }
      for (int64_t c = 0; c < cb; ++c) {
        const double inv = 1.0 / std::sqrt(var_c[c] + opt_.eps), gamma = weight_.value[c0 + c];
        mean_[static_cast<size_t>(c0 + c)] = static_cast<T>(mean_c[c]);
        invstd_[static_cast<size_t>(c0 + c)] = static_cast<T>(inv);
        for (int64_t p = 0; p < P; ++p) {
          scale_j[c * P + p] = static_cast<T>(gamma * inv);
          shift_j[c * P + p] = static_cast<T>(bias_.value[c0 + c] - mean_c[c] * gamma * inv);
        }
      }
      for (int64_t n = 0; n < N; ++n) {
        const int64_t at = (n * C + c0) * P;
        const T* x = xd + at;
        T* y = yd + at;
        const T* r = rd ? rd + at : nullptr;
        for (int64_t j = 0; j < L; ++j) {
          T v = x[j] * scale_j[j] + shift_j[j];
          if (r) v += r[j];
          y[j] = relu ? std::max(v, T(0)) : v;
        }
      }
    }
  }

  void backward_small_planes(const T* xd, const T* g, T* dxd, int64_t N, int64_t C, int64_t P) {
    const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
    const double M = static_cast<double>(N * P);
    XFER_OMP_FOR(N * C * P)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * kChannelBlock, cb = std::min(kChannelBlock, C - c0), L = cb * P;
      double acc_dy[kChannelBlock * kSmallPlane], acc_dyx[kChannelBlock * kSmallPlane];
      T mean_j[kChannelBlock * kSmallPlane], k_j[kChannelBlock * kSmallPlane], a_j[kChannelBlock * kSmallPlane],
          kb_j[kChannelBlock * kSmallPlane];
      for (int64_t j = 0; j < L; ++j) mean_j[j] = mean_[static_cast<size_t>(c0 + j / P)];
      std::fill(acc_dy, acc_dy + L, 0.0);
      std::fill(acc_dyx, acc_dyx + L, 0.0);
      for (int64_t n = 0; n < N; ++n) {
        const T* x = xd + (n * C + c0) * P;
        const T* gp = g + (n * C + c0) * P;
        for (int64_t j = 0; j < L; ++j) {
          acc_dy[j] += gp[j];
          acc_dyx[j] += static_cast<double>(gp[j] * (x[j] - mean_j[j]));
        }
      }
      for (int64_t c = 0; c < cb; ++c) {
        const double inv = invstd_[static_cast<size_t>(c0 + c)];
        double sum_dy = 0, sum_dyx = 0;
        for (int64_t p = 0; p < P; ++p) sum_dy += acc_dy[c * P + p], sum_dyx += acc_dyx[c * P + p];
        const double sum_dy_xhat = sum_dyx * inv;
        if (weight_.needs_grad()) weight_.grad[c0 + c] += static_cast<T>(sum_dy_xhat);
        if (bias_.needs_grad()) bias_.grad[c0 + c] += static_cast<T>(sum_dy);
        const double gamma_inv = weight_.value[c0 + c] * inv;
        for (int64_t p = 0; p < P; ++p) {
          k_j[c * P + p] = static_cast<T>(gamma_inv);
          a_j[c * P + p] = batch_stats_ ? static_cast<T>(sum_dy / M) : T(0);
          kb_j[c * P + p] = batch_stats_ ? static_cast<T>(inv * sum_dy_xhat / M) : T(0);
        }
      }
      if (!dxd) continue;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t at = (n * C + c0) * P;
        const T* x = xd + at;
        const T* gp = g + at;
        T* d = dxd + at;
        if (batch_stats_)
          for (int64_t j = 0; j < L; ++j) d[j] = k_j[j] * (gp[j] - a_j[j] - (x[j] - mean_j[j]) * kb_j[j]);
        else
          for (int64_t j = 0; j < L; ++j) d[j] = k_j[j] * gp[j];
      }
    }
  }

  BatchNorm2dOptions opt_;
  Parameter<T>& weight_;
  Parameter<T>& bias_;
  Tensor<T> running_mean_, running_var_;
  int64_t num_batches_tracked_ = 0;
  bool stats_frozen_ = false;
  bool batch_stats_ = false;  // what the last forward used
  bool synced_ = false;       // the last forward took cross-replica statistics
  double synced_share_ = 1;   // this rank's share of the global batch in that forward
  std::function<void(double*, int64_t)> cross_sum_;
  bool inference_folding_ = false;
  const Tensor<T>* x_ = nullptr;
  Tensor<T> y_, dx_;
  std::vector<T> mean_, invstd_;
};

// Inference mode for a whole network: eval() plus inference folding on every BatchNorm2d, so each
// conv + BN unit applies BN (+ ReLU, + residual) in the convolution's epilogue
// (prepare_inference(net, false) switches the folding off again; train() alone does too in effect,
// since BN with batch statistics never folds). Returns how many BatchNorm2d layers it set.
template <class T>
int prepare_inference(Module<T>& net, bool on = true) {
  if (on) net.eval();
  int n = 0;
  for (auto& [name, m] : net.named_modules())
    if (auto* bn = dynamic_cast<BatchNorm2d<T>*>(m)) {
      bn->set_inference_folding(on);
      ++n;
    }
  return n;
}

}  // namespace xfer::nn
