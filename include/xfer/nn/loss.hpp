// Losses: each returns the mean loss and its gradient with respect to the prediction, ready for
// model.backward(). cross_entropy works on logits with a stable log-sum-exp, optional label
// smoothing and optional class weights (PyTorch's definitions, including the weighted mean: the sum
// is divided by the total weight of the batch's labels, not by N); soft_cross_entropy takes class
// probabilities as targets (mixup / cutmix); mse_loss is the mean of squared differences.
#pragma once

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/core/tensor.hpp"

namespace xfer::nn {

using Labels = std::vector<int32_t>;

template <class T>
struct LossResult {
  T loss = 0;
  Tensor<T> grad;  // d loss / d prediction, same shape as the prediction
};

struct CrossEntropyOptions {
  double label_smoothing = 0.0;
  // One weight per class (torch's `weight=`): empty means all 1. With weights, the mean is
  // sum_i w[y_i] * loss_i / sum_i w[y_i], and the smoothing term weighs class c by w[c].
  std::vector<double> weight = {};
};

namespace detail {
inline void check_ce_options(const CrossEntropyOptions& opt, int64_t C, const char* what) {
  XFER_CHECK(opt.label_smoothing >= 0 && opt.label_smoothing <= 1, what, ": label_smoothing must be in [0, 1], got ",
             opt.label_smoothing);
  XFER_CHECK(opt.weight.empty() || static_cast<int64_t>(opt.weight.size()) == C, what, ": ", opt.weight.size(),
             " class weights for ", C, " classes");
  for (size_t c = 0; c < opt.weight.size(); ++c)
    XFER_CHECK(std::isfinite(opt.weight[c]) && opt.weight[c] >= 0, what, ": weight of class ", c,
               " must be a finite value >= 0, got ", opt.weight[c]);
}
// log-softmax of one row into logp (double).
template <class T>
void log_softmax_row(const T* z, int64_t C, double* logp) {
  double mx = z[0];
  for (int64_t c = 1; c < C; ++c) mx = std::max(mx, static_cast<double>(z[c]));
  double se = 0;
  for (int64_t c = 0; c < C; ++c) se += std::exp(static_cast<double>(z[c]) - mx);
  const double lse = mx + std::log(se);
  for (int64_t c = 0; c < C; ++c) logp[c] = static_cast<double>(z[c]) - lse;
}
}  // namespace detail

namespace detail {
// torch's weighted form: loss = [(1 - eps) * sum_i w[y_i] (-logp[i, y_i]) + eps / C * sum_i sum_c w[c] (-logp[i, c])]
// / sum_i w[y_i], so the gradient of row i is [(1 - eps) w[y_i] (p_i - onehot) + eps / C (W p_i - w)] / sum w[y_i]
// with W = sum_c w[c].
template <class T>
LossResult<T> weighted_cross_entropy(const Tensor<T>& logits, const Labels& labels, const CrossEntropyOptions& opt) {
  const int64_t N = logits.dim(0), C = logits.dim(1);
  const auto& w = opt.weight;
  double wsum = 0, wclasses = 0;
  for (int64_t i = 0; i < N; ++i) wsum += w[static_cast<size_t>(labels[static_cast<size_t>(i)])];
  for (double v : w) wclasses += v;
  XFER_CHECK(wsum > 0, "cross_entropy: the labels of this batch have total class weight 0 (the weighted mean is undefined)");
  const double eps = opt.label_smoothing, Cd = static_cast<double>(C);
  LossResult<T> r;
  r.grad.resize(logits.shape());
  std::vector<double> logp(static_cast<size_t>(C));
  double nll = 0, smooth = 0;
  for (int64_t i = 0; i < N; ++i) {
    log_softmax_row(logits.data() + i * C, C, logp.data());
    const auto y = static_cast<size_t>(labels[static_cast<size_t>(i)]);
    nll -= w[y] * logp[y];
    T* g = r.grad.data() + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const auto cc = static_cast<size_t>(c);
      smooth -= w[cc] * logp[cc];
      const double p = std::exp(logp[cc]);
      const double gn = w[y] * (p - (cc == y ? 1.0 : 0.0));
      const double gs = wclasses * p - w[cc];
      g[c] = static_cast<T>(((1 - eps) * gn + eps / Cd * gs) / wsum);
    }
  }
  r.loss = static_cast<T>(((1 - eps) * nll + eps / Cd * smooth) / wsum);
  return r;
}
}  // namespace detail

template <class T>
LossResult<T> cross_entropy(const Tensor<T>& logits, const Labels& labels, CrossEntropyOptions opt = {}) {
  XFER_CHECK(logits.ndim() == 2, "cross_entropy: expected logits of shape [N, classes], got ", shape_str(logits.shape()));
  const int64_t N = logits.dim(0), C = logits.dim(1);
  XFER_CHECK(N > 0 && C > 0, "cross_entropy: empty logits ", shape_str(logits.shape()));
  XFER_CHECK(static_cast<int64_t>(labels.size()) == N, "cross_entropy: ", labels.size(), " labels for a batch of ", N);
  detail::check_ce_options(opt, C, "cross_entropy");
  for (int64_t i = 0; i < N; ++i)
    XFER_CHECK(labels[static_cast<size_t>(i)] >= 0 && labels[static_cast<size_t>(i)] < C, "cross_entropy: label ",
               labels[static_cast<size_t>(i)], " of sample ", i, " is outside [0, ", C, ")");
  if (!opt.weight.empty()) return detail::weighted_cross_entropy(logits, labels, opt);
  LossResult<T> r;
  r.grad.resize(logits.shape());
  const double eps = opt.label_smoothing;
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits.data() + i * C;
    T* g = r.grad.data() + i * C;
    double mx = z[0];
    for (int64_t c = 1; c < C; ++c) mx = std::max(mx, static_cast<double>(z[c]));
    double se = 0;
    for (int64_t c = 0; c < C; ++c) se += std::exp(static_cast<double>(z[c]) - mx);
    const double lse = mx + std::log(se);
    const int64_t y = labels[static_cast<size_t>(i)];
    double loss = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double q = (c == y ? 1.0 - eps : 0.0) + eps / static_cast<double>(C);
      const double logp = static_cast<double>(z[c]) - lse;
      loss -= q * logp;
      g[c] = static_cast<T>((std::exp(logp) - q) / static_cast<double>(N));
    }
    total += loss;
  }
  r.loss = static_cast<T>(total / static_cast<double>(N));
  return r;
}

// Cross-entropy against class probabilities (torch's F.cross_entropy with a probability target):
// targets [N, C], each row usually summing to 1 (mixup / cutmix targets). Label smoothing mixes the
// targets with the uniform distribution first; class weights scale each term and the mean is over
// N (torch's definition for probability targets, unlike the class-index form).
template <class T>
LossResult<T> soft_cross_entropy(const Tensor<T>& logits, const Tensor<T>& targets, CrossEntropyOptions opt = {}) {
  XFER_CHECK(logits.ndim() == 2, "soft_cross_entropy: expected logits of shape [N, classes], got ",
             shape_str(logits.shape()));
  XFER_CHECK(targets.shape() == logits.shape(), "soft_cross_entropy: targets of shape ", shape_str(targets.shape()),
             " for logits of shape ", shape_str(logits.shape()));
  const int64_t N = logits.dim(0), C = logits.dim(1);
  XFER_CHECK(N > 0 && C > 0, "soft_cross_entropy: empty logits ", shape_str(logits.shape()));
  detail::check_ce_options(opt, C, "soft_cross_entropy");
  const double eps = opt.label_smoothing, Cd = static_cast<double>(C);
  LossResult<T> r;
  r.grad.resize(logits.shape());
  std::vector<double> logp(static_cast<size_t>(C));
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    detail::log_softmax_row(logits.data() + i * C, C, logp.data());
    const T* t = targets.data() + i * C;
    T* g = r.grad.data() + i * C;
    double tw_sum = 0;  // sum_c w_c q_c, the weight of this row's target mass
    for (int64_t c = 0; c < C; ++c) {
      const auto cc = static_cast<size_t>(c);
      XFER_CHECK(std::isfinite(static_cast<double>(t[c])), "soft_cross_entropy: target [", i, ", ", c, "] is not finite");
      const double q = static_cast<double>(t[c]) * (1 - eps) + eps / Cd;
      const double wc = opt.weight.empty() ? 1.0 : opt.weight[cc];
      total -= wc * q * logp[cc];
      tw_sum += wc * q;
    }
    // d/dz_k of -sum_c w_c q_c logp_c = tw_sum * p_k - w_k q_k
    for (int64_t c = 0; c < C; ++c) {
      const auto cc = static_cast<size_t>(c);
      const double q = static_cast<double>(t[c]) * (1 - eps) + eps / Cd;
      const double wc = opt.weight.empty() ? 1.0 : opt.weight[cc];
      g[c] = static_cast<T>((tw_sum * std::exp(logp[cc]) - wc * q) / static_cast<double>(N));
    }
  }
  r.loss = static_cast<T>(total / static_cast<double>(N));
  return r;
}

template <class T>
LossResult<T> mse_loss(const Tensor<T>& pred, const Tensor<T>& target) {
  XFER_CHECK(pred.shape() == target.shape(), "mse_loss: prediction shape ", shape_str(pred.shape()),
             " differs from target shape ", shape_str(target.shape()));
  XFER_CHECK(pred.numel() > 0, "mse_loss: empty prediction");
  LossResult<T> r;
  r.grad.resize(pred.shape());
  const double n = static_cast<double>(pred.numel());
  double total = 0;
  for (int64_t i = 0; i < pred.numel(); ++i) {
    const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    total += d * d;
    r.grad[i] = static_cast<T>(2.0 * d / n);
  }
  r.loss = static_cast<T>(total / n);
  return r;
}

// Index of the largest logit per row.
template <class T>
Labels argmax(const Tensor<T>& logits) {
  XFER_CHECK(logits.ndim() == 2, "argmax: expected [N, classes], got ", shape_str(logits.shape()));
  Labels out(static_cast<size_t>(logits.dim(0)));
  const int64_t C = logits.dim(1);
  for (int64_t i = 0; i < logits.dim(0); ++i) {
    const T* z = logits.data() + i * C;
    out[static_cast<size_t>(i)] = static_cast<int32_t>(std::max_element(z, z + C) - z);
  }
  return out;
}

// Number of rows whose argmax equals the label.
template <class T>
int64_t count_correct(const Tensor<T>& logits, const Labels& labels) {
  const Labels pred = argmax(logits);
  XFER_CHECK(pred.size() == labels.size(), "count_correct: ", labels.size(), " labels for ", pred.size(), " rows");
  int64_t n = 0;
  for (size_t i = 0; i < pred.size(); ++i) n += pred[i] == labels[i];
  return n;
}

}  // namespace xfer::nn
