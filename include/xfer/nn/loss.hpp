// Losses: each returns the mean loss and its gradient with respect to the prediction, ready for
// model.backward(). cross_entropy works on logits with a stable log-sum-exp and optional label
// smoothing (PyTorch's definition); mse_loss is the mean of squared differences.
#pragma once

#include <cmath>
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
};

template <class T>
LossResult<T> cross_entropy(const Tensor<T>& logits, const Labels& labels, CrossEntropyOptions opt = {}) {
  XFER_CHECK(logits.ndim() == 2, "cross_entropy: expected logits of shape [N, classes], got ", shape_str(logits.shape()));
  const int64_t N = logits.dim(0), C = logits.dim(1);
  XFER_CHECK(N > 0 && C > 0, "cross_entropy: empty logits ", shape_str(logits.shape()));
  XFER_CHECK(static_cast<int64_t>(labels.size()) == N, "cross_entropy: ", labels.size(), " labels for a batch of ", N);
  XFER_CHECK(opt.label_smoothing >= 0 && opt.label_smoothing <= 1, "cross_entropy: label_smoothing must be in [0, 1], got ",
             opt.label_smoothing);
  for (int64_t i = 0; i < N; ++i)
    XFER_CHECK(labels[static_cast<size_t>(i)] >= 0 && labels[static_cast<size_t>(i)] < C, "cross_entropy: label ",
               labels[static_cast<size_t>(i)], " of sample ", i, " is outside [0, ", C, ")");
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
