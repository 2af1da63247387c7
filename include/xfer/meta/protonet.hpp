// meta::ProtoNet: prototypical networks (Snell et al. 2017). An encoder maps support and query
// images to features; each class's prototype is the mean of its support features; a query's logits
// are minus its squared Euclidean distance to each prototype (or the scaled cosine similarity),
// trained episodically with cross-entropy on the query set.
//
// The one thing to know: support and query go through the encoder as ONE batch (support first), so
// BatchNorm in training mode normalises them together, as the reference implementation does;
// accumulate() ADDS weight * d(query loss)/d(theta) into the encoder's gradients (run any xfer
// optimizer on encoder.parameters() afterwards), exactly like meta::MAML::accumulate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/meta/detail/row_norm.hpp"
#include "xfer/meta/task.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::meta {

enum class Metric { SquaredEuclidean, Cosine };

struct ProtoNetOptions {
  Metric metric = Metric::SquaredEuclidean;
  double cosine_scale = 10.0;  // logits = scale * cos(query, prototype) for Metric::Cosine
};

// The prototype classifier on features: forward(features [S + Q, D], support labels) -> query logits
// [Q, ways]; backward(dlogits) -> d features. Usable on its own (e.g. on frozen features).
template <class T>
class PrototypeHead {
 public:
  explicit PrototypeHead(ProtoNetOptions o = {}) : opt_(o) {}

  const Tensor<T>& forward(const Tensor<T>& f, const nn::Labels& support_labels) {
    XFER_CHECK(f.ndim() == 2, "ProtoNet: encoder output must be [N, features], got ", shape_str(f.shape()));
    S_ = static_cast<int64_t>(support_labels.size());
    D_ = f.dim(1);
    Q_ = f.dim(0) - S_;
    XFER_CHECK(S_ > 0 && Q_ > 0, "ProtoNet: ", f.dim(0), " encoded samples for ", S_, " support labels; need queries too");
    ways_ = 0;
    for (int32_t l : support_labels) {
      XFER_CHECK(l >= 0, "ProtoNet: support label ", l, " is negative");
      ways_ = std::max<int64_t>(ways_, l + 1);
    }
    count_.assign(static_cast<size_t>(ways_), 0);
    for (int32_t l : support_labels) ++count_[static_cast<size_t>(l)];
    for (int64_t c = 0; c < ways_; ++c)
      XFER_CHECK(count_[static_cast<size_t>(c)] > 0, "ProtoNet: class ", c, " has no support sample (labels must be 0..N-1)");
    labels_ = &support_labels;
    f_ = &f;
    // Prototypes (and for cosine the normalised prototypes and queries).
    proto_.resize({ways_, D_});
    proto_.fill(T(0));
    for (int64_t i = 0; i < S_; ++i) {
      T* p = proto_.data() + (*labels_)[static_cast<size_t>(i)] * D_;
      const T* x = f.data() + i * D_;
      for (int64_t d = 0; d < D_; ++d) p[d] += x[d];
    }
    for (int64_t c = 0; c < ways_; ++c)
      for (int64_t d = 0; d < D_; ++d) proto_.data()[c * D_ + d] /= static_cast<T>(count_[static_cast<size_t>(c)]);
    logits_.resize({Q_, ways_});
    if (opt_.metric == Metric::Cosine) {
      normalise(proto_.data(), ways_, pn_, pnorm_);
      normalise(f.data() + S_ * D_, Q_, qn_, qnorm_);
    }
    for (int64_t q = 0; q < Q_; ++q)
      for (int64_t c = 0; c < ways_; ++c) {
        double s = 0;
        if (opt_.metric == Metric::SquaredEuclidean) {
          const T* x = f.data() + (S_ + q) * D_;
          const T* p = proto_.data() + c * D_;
          for (int64_t d = 0; d < D_; ++d) s -= static_cast<double>(x[d] - p[d]) * (x[d] - p[d]);
        } else {
          const T* x = qn_.data() + q * D_;
          const T* p = pn_.data() + c * D_;
          for (int64_t d = 0; d < D_; ++d) s += static_cast<double>(x[d]) * p[d];
          s *= opt_.cosine_scale;
        }
        logits_.data()[q * ways_ + c] = static_cast<T>(s);
      }
    return logits_;
  }

  const Tensor<T>& backward(const Tensor<T>& dlogits) {
    XFER_CHECK(f_ && dlogits.shape() == logits_.shape(), "ProtoNet: backward needs the forward's logits shape");
    const T* G = dlogits.data();
    df_.resize(f_->shape());
    df_.fill(T(0));
    dproto_.resize({ways_, D_});
    dproto_.fill(T(0));
    T* dq = df_.data() + S_ * D_;
    if (opt_.metric == Metric::SquaredEuclidean) {
      // l_qc = -|x_q - p_c|^2: dl/dx_q = -2 (x_q - p_c), dl/dp_c = 2 (x_q - p_c).
      for (int64_t q = 0; q < Q_; ++q)
        for (int64_t c = 0; c < ways_; ++c) {
          const T g = G[q * ways_ + c];
          const T* x = f_->data() + (S_ + q) * D_;
          const T* p = proto_.data() + c * D_;
          for (int64_t d = 0; d < D_; ++d) {
            const T diff = x[d] - p[d];
            dq[q * D_ + d] -= 2 * g * diff;
            dproto_.data()[c * D_ + d] += 2 * g * diff;
          }
        }
    } else {
      // l_qc = s <xn_q, pn_c>: gradients w.r.t. the normalised vectors, then through the norms.
      Tensor<T> dqn({Q_, D_}, T(0));
      const T s = static_cast<T>(opt_.cosine_scale);
      for (int64_t q = 0; q < Q_; ++q)
        for (int64_t c = 0; c < ways_; ++c) {
          const T g = s * G[q * ways_ + c];
          for (int64_t d = 0; d < D_; ++d) {
            dqn.data()[q * D_ + d] += g * pn_[static_cast<size_t>(c * D_ + d)];
            dproto_.data()[c * D_ + d] += g * qn_[static_cast<size_t>(q * D_ + d)];
          }
        }
      detail::normalise_rows_backward(dqn.data(), qn_.data(), qnorm_.data(), Q_, D_, dq);
      Tensor<T> dp = dproto_;
      dproto_.fill(T(0));
      detail::normalise_rows_backward(dp.data(), pn_.data(), pnorm_.data(), ways_, D_, dproto_.data());
    }
    // Prototype = mean of its support features.
    for (int64_t i = 0; i < S_; ++i) {
      const int32_t c = (*labels_)[static_cast<size_t>(i)];
      const T inv = T(1) / static_cast<T>(count_[static_cast<size_t>(c)]);
      for (int64_t d = 0; d < D_; ++d) df_.data()[i * D_ + d] = dproto_.data()[c * D_ + d] * inv;
    }
    return df_;
  }

  int64_t ways() const { return ways_; }
  const Tensor<T>& prototypes() const { return proto_; }

 private:
  void normalise(const T* x, int64_t rows, std::vector<T>& out, std::vector<T>& norms) const {
    out.resize(static_cast<size_t>(rows * D_));
    norms.resize(static_cast<size_t>(rows));
    detail::normalise_rows(x, rows, D_, out.data(), norms.data());
  }

  ProtoNetOptions opt_;
  const Tensor<T>* f_ = nullptr;
  const nn::Labels* labels_ = nullptr;
  int64_t S_ = 0, Q_ = 0, D_ = 0, ways_ = 0;
  std::vector<int64_t> count_;
  Tensor<T> proto_, logits_, df_, dproto_;
  std::vector<T> pn_, qn_, pnorm_, qnorm_;
};

template <class T>
class ProtoNet {
 public:
  explicit ProtoNet(nn::Module<T>& encoder, ProtoNetOptions o = {}) : encoder_(encoder), head_(o) {}

  nn::Module<T>& encoder() { return encoder_; }
  std::vector<nn::Parameter<T>*> parameters() { return encoder_.parameters(); }
  void zero_grad() { encoder_.zero_grad(); }

  // One episode of a meta-batch: adds weight * d(query cross-entropy)/d(theta) to the encoder's
  // gradients and returns the query loss and accuracy.
  Evaluation accumulate(const Tensor<T>& support_x, const nn::Labels& support_y, const Tensor<T>& query_x,
                        const nn::Labels& query_y, double weight = 1.0) {
    const Tensor<T>& logits = logits_of(support_x, support_y, query_x, query_y);
    auto l = nn::cross_entropy(logits, query_y);
    Evaluation e{static_cast<double>(l.loss), nn::count_correct(logits, query_y), logits.dim(0)};
    if (weight != 1.0) l.grad.array() *= static_cast<T>(weight);
    encoder_.backward(head_.backward(l.grad), false);
    return e;
  }

  // Query loss and accuracy of an episode (no gradients).
  Evaluation evaluate(const Tensor<T>& support_x, const nn::Labels& support_y, const Tensor<T>& query_x,
                      const nn::Labels& query_y) {
    const Tensor<T>& logits = logits_of(support_x, support_y, query_x, query_y);
    return {static_cast<double>(nn::cross_entropy(logits, query_y).loss), nn::count_correct(logits, query_y), logits.dim(0)};
  }

  // Query logits [Q, ways] of an episode.
  const Tensor<T>& logits_of(const Tensor<T>& support_x, const nn::Labels& support_y, const Tensor<T>& query_x,
                             const nn::Labels& query_y) {
    XFER_CHECK(support_x.ndim() >= 1 && query_x.ndim() == support_x.ndim() && support_x.dim(0) == static_cast<int64_t>(support_y.size()) &&
                   query_x.dim(0) == static_cast<int64_t>(query_y.size()),
               "ProtoNet: support ", shape_str(support_x.shape()), " with ", support_y.size(), " labels and query ",
               shape_str(query_x.shape()), " with ", query_y.size(), " labels do not match");
    XFER_CHECK(query_x.numel() / std::max<int64_t>(query_x.dim(0), 1) == support_x.numel() / std::max<int64_t>(support_x.dim(0), 1),
               "ProtoNet: support samples ", shape_str(support_x.shape()), " and query samples ", shape_str(query_x.shape()),
               " differ in shape");
    Shape s = support_x.shape();
    s[0] += query_x.dim(0);
    x_.resize(s);
    std::copy(support_x.begin(), support_x.end(), x_.data());
    std::copy(query_x.begin(), query_x.end(), x_.data() + support_x.numel());
    const Tensor<T>& logits = head_.forward(encoder_.forward(x_), support_y);
    for (int32_t l : query_y)
      XFER_CHECK(l >= 0 && l < head_.ways(), "ProtoNet: query label ", l, " is outside [0, ", head_.ways(), ")");
    return logits;
  }

 private:
  nn::Module<T>& encoder_;
  PrototypeHead<T> head_;
  Tensor<T> x_;
};

}  // namespace xfer::meta
