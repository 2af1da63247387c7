// The transfer baselines of few-shot classification (Chen et al. 2019, "A Closer Look at Few-shot
// Classification"): train a backbone with a classifier on the meta-train classes as usual, then for
// each meta-test episode fit a NEW classifier on the frozen features of the support set and score
// the query set. Baseline: a linear classifier. Baseline++: a cosine classifier (CosineClassifier),
// which also replaces the linear head during pretraining.
//
// The one thing to know: features_of(model, "fc") shares the model's modules (no copy): put the
// model in eval mode before extracting features (BatchNorm uses the running statistics), and keep
// the model alive while the feature extractor is used.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "xfer/core/error.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/meta/detail/row_norm.hpp"
#include "xfer/meta/task.hpp"
#include "xfer/nn/init.hpp"
#include "xfer/nn/linear.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/sequential.hpp"
#include "xfer/optim/adam.hpp"

namespace xfer::meta {

struct CosineClassifierOptions {
  int64_t in_features = 0;
  int64_t out_features = 0;
  double scale = 10.0;  // logits = scale * cos(x, w_c)
};

// Baseline++'s classifier: logits[n, c] = scale * <x_n / |x_n|, w_c / |w_c|> (no bias). Name: weight [out, in].
template <class T>
class CosineClassifier : public nn::Module<T> {
 public:
  explicit CosineClassifier(CosineClassifierOptions o, Rng& rng = global_rng())
      : opt_(o), weight_(this->register_parameter("weight", {std::max<int64_t>(o.out_features, 0), std::max<int64_t>(o.in_features, 0)})) {
    XFER_CHECK(o.in_features > 0 && o.out_features > 0 && o.scale > 0, "CosineClassifier: need in_features, out_features ",
               "and scale > 0, got ", o.in_features, " -> ", o.out_features, ", scale ", o.scale);
    reset_parameters(rng);
  }
  std::string type_name() const override { return "CosineClassifier"; }
  std::string extra_repr() const override {
    return xfer::detail::concat(opt_.in_features, " -> ", opt_.out_features, ", scale=", opt_.scale);
  }
  void reset_parameters(Rng& rng) override { nn::init::default_weight(weight_, rng); }
  nn::Parameter<T>& weight() { return weight_; }

 protected:
  const Tensor<T>& forward_impl(const Tensor<T>& x) override {
    XFER_CHECK(x.ndim() == 2 && x.dim(1) == opt_.in_features, this->label(), ": expected input of shape [N, ",
               opt_.in_features, "], got ", shape_str(x.shape()));
    const int64_t N = x.dim(0), D = opt_.in_features, C = opt_.out_features;
    x_ = &x;
    xn_.resize({N, D});
    wn_.resize({C, D});
    xnorm_.resize(static_cast<size_t>(N));
    wnorm_.resize(static_cast<size_t>(C));
    detail::normalise_rows(x.data(), N, D, xn_.data(), xnorm_.data());
    detail::normalise_rows(weight_.value, C, D, wn_.data(), wnorm_.data());
    y_.resize({N, C});
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        double s = 0;
        for (int64_t d = 0; d < D; ++d) s += static_cast<double>(xn_.data()[n * D + d]) * wn_.data()[c * D + d];
        y_.data()[n * C + c] = static_cast<T>(opt_.scale * s);
      }
    return y_;
  }
  const Tensor<T>& backward_impl(const Tensor<T>& dy, bool need_input_grad) override {
    XFER_CHECK(x_ != nullptr && dy.shape() == y_.shape(), this->label(), ": output gradient has shape ",
               shape_str(dy.shape()), ", expected ", shape_str(y_.shape()));
    const int64_t N = dy.dim(0), D = opt_.in_features, C = opt_.out_features;
    const T s = static_cast<T>(opt_.scale);
    if (weight_.needs_grad()) {
      // d wn_c = s * sum_n dy[n, c] xn_n, then through the normalisation.
      Tensor<T> dwn({C, D}, T(0));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c) {
          const T g = s * dy.data()[n * C + c];
          for (int64_t d = 0; d < D; ++d) dwn.data()[c * D + d] += g * xn_.data()[n * D + d];
        }
      detail::normalise_rows_backward(dwn.data(), wn_.data(), wnorm_.data(), C, D, weight_.grad);
    }
    if (!need_input_grad) return this->empty_tensor();
    Tensor<T> dxn({N, D}, T(0));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const T g = s * dy.data()[n * C + c];
        for (int64_t d = 0; d < D; ++d) dxn.data()[n * D + d] += g * wn_.data()[c * D + d];
      }
    dx_.resize({N, D});
    dx_.fill(T(0));
    detail::normalise_rows_backward(dxn.data(), xn_.data(), xnorm_.data(), N, D, dx_.data());
    return dx_;
  }

 private:
  CosineClassifierOptions opt_;
  nn::Parameter<T>& weight_;
  const Tensor<T>* x_ = nullptr;
  Tensor<T> xn_, wn_, y_, dx_;
  std::vector<T> xnorm_, wnorm_;
};

// A Sequential that runs `model`'s children except the one named `head` (shared, not copied).
template <class T>
std::shared_ptr<nn::Sequential<T>> features_of(nn::Module<T>& model, const std::string& head) {
  auto f = std::make_shared<nn::Sequential<T>>();
  bool found = false;
  for (const auto& [name, child] : model.children()) {
    if (name == head) {
      found = true;
      continue;
    }
    XFER_CHECK(!found, "features_of: the head '", head, "' of ", model.type_name(), " is not its last child");
    f->add(name, child);
  }
  XFER_CHECK(found, "features_of: ", model.type_name(), " has no child named '", head, "'");
  return f;
}

struct HeadFitOptions {
  bool cosine = false;  // Baseline++ (CosineClassifier) instead of a linear classifier
  double scale = 10.0;  // cosine scale
  int steps = 100;      // full-batch Adam steps on the support features
  double lr = 0.01;
  uint64_t seed = 0;    // initialisation of the new classifier
};

// Fits a new classifier on support features [S, D] (labels 0..ways-1) and evaluates it on query
// features [Q, D]: one meta-test episode of Baseline / Baseline++.
template <class T>
Evaluation fit_head_and_evaluate(const Tensor<T>& support, const nn::Labels& support_y, const Tensor<T>& query,
                                 const nn::Labels& query_y, int64_t ways, const HeadFitOptions& o = {}) {
  XFER_CHECK(support.ndim() == 2 && query.ndim() == 2 && support.dim(1) == query.dim(1), "fit_head_and_evaluate: ",
             "support and query features must be [N, D] with the same D, got ", shape_str(support.shape()), " and ",
             shape_str(query.shape()));
  XFER_CHECK(o.steps >= 0 && ways > 0, "fit_head_and_evaluate: need steps >= 0 and ways > 0, got ", o.steps, ", ", ways);
  Rng rng(o.seed);
  std::unique_ptr<nn::Module<T>> head;
  if (o.cosine)
    head = std::make_unique<CosineClassifier<T>>(CosineClassifierOptions{support.dim(1), ways, o.scale}, rng);
  else
    head = std::make_unique<nn::Linear<T>>(nn::LinearOptions{support.dim(1), ways}, rng);
  optim::Adam<T> opt(head->parameters(), {.lr = static_cast<T>(o.lr)});
  for (int s = 0; s < o.steps; ++s) {
    auto l = nn::cross_entropy(head->forward(support), support_y);
    opt.zero_grad();
    head->backward(l.grad, false);
    opt.step();
  }
  const Tensor<T>& logits = head->forward(query);
  return {static_cast<double>(nn::cross_entropy(logits, query_y).loss), nn::count_correct(logits, query_y), query.dim(0)};
}

}  // namespace xfer::meta
