// meta::MAML: model-agnostic meta-learning (Finn et al. 2017) over any xfer module, second or first
// order, with ANIL (adapt a parameter group only), per-group inner learning rates and Meta-SGD
// (learned per-parameter inner learning rates).
//
// The one thing to know: fast weights are buffers with the layout of the model's parameter arena,
// bound into the model for the duration of a call (arena.bind) — the model is never cloned, and all
// scratch buffers are allocated on the first task and reused, so memory does not grow with the
// number of tasks in a meta-batch. accumulate() ADDS weight * d(query loss)/d(theta) into the
// model's arena gradients; run any xfer optimizer on maml.parameters() afterwards.
//
// Second order uses Hessian-vector products by central differences of gradients,
//   H u ~ (g(theta + eps u) - g(theta - eps u)) / (2 eps),  eps = h (1 + rms(theta)) / rms(u),
// i.e. 2 extra forward+backward passes on the support batch per inner step (a k-step task costs
// 3k + 1 passes instead of k + 1 for first order); memory is k + 5 parameter-sized buffers.
// The error is O(h^2) truncation plus O(machine eps / h) rounding, plus ReLU/max-pool kinks: a unit
// that changes sign inside the +-eps probe adds an O(1/h) error that autograd does not see, so h is
// small. In double (h = 3e-7) the meta-gradient matches PyTorch's create_graph=True to ~1e-10
// relative on the test net (tests/unit-maml.cpp). In float (h = 1e-4) it is ~1e-4 relative on the
// same net; large float ReLU nets will see kink crossings, so use double for exact second order and
// first order (the usual choice on CPU) for large float models.
//
// BatchNorm layers in training mode normalise with the batch statistics of each support/query batch
// (as in the MAML paper); their running statistics are updated by every forward of the inner loop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/selector.hpp"

namespace xfer::meta {

// What a task's targets are: class labels (classification) or a tensor shaped like the prediction.
template <class T>
using Target = std::variant<nn::Labels, Tensor<T>>;

// A task loss: mean loss and its gradient with respect to the prediction.
template <class T>
using TaskLoss = std::function<nn::LossResult<T>(const Tensor<T>& prediction, const Target<T>& target)>;

// Inner learning rate of the parameters a selector matches (first matching group wins).
struct InnerLrGroup {
  nn::Selector select;
  double lr = 0.01;
};

template <class T>
struct MAMLOptions {
  double inner_lr = 0.01;  // alpha for adapted parameters no group matches
  int inner_steps = 1;     // k inner SGD steps in adapt() and accumulate()
  bool first_order = false;
  // Meta-SGD: alpha becomes a per-element parameter (inner_lrs()) trained by the outer optimizer.
  bool learn_inner_lr = false;
  // Which parameters the inner loop moves; nn::Selector("fc") gives ANIL. The meta-gradient still
  // flows to every trainable parameter.
  nn::Selector adapt = nn::all();
  std::vector<InnerLrGroup> inner_lr_groups = {};
  // Empty: cross-entropy for label targets, mean squared error for tensor targets.
  TaskLoss<T> loss = {};
  // Relative step h of the Hessian-vector differences; 0 picks 3e-7 for double, 1e-4 for float.
  double hvp_step = 0;
};

// Loss and, for label targets, the number of correct argmax predictions.
struct Evaluation {
  double loss = 0;
  int64_t correct = -1;  // -1 for tensor targets
  int64_t count = 0;
  double accuracy() const { return count > 0 && correct >= 0 ? static_cast<double>(correct) / count : 0.0; }
};

struct TaskResult {
  std::vector<double> support_losses;  // before each inner step
  Evaluation query;                    // after adaptation
};

template <class T>
class MAML {
 public:
  explicit MAML(nn::Module<T>& model, MAMLOptions<T> opt = {})
      : model_(model), opt_(std::move(opt)), alpha_("inner_lr", {model.arena().size()}) {
    XFER_CHECK(opt_.inner_steps >= 0, "MAML: inner_steps must be >= 0, got ", opt_.inner_steps);
    XFER_CHECK(std::isfinite(opt_.inner_lr), "MAML: inner_lr must be finite, got ", opt_.inner_lr);
    auto& arena = model_.arena();
    n_ = arena.size();
    XFER_CHECK(n_ > 0, "MAML: the model ", model_.type_name(), " has no parameters");
    adapted_.assign(static_cast<size_t>(n_), 0);
    std::fill(alpha_.value, alpha_.value + n_, T(0));
    std::fill(alpha_.grad, alpha_.grad + n_, T(0));
    int matched = 0;
    for (auto& np : arena.params) {
      if (!opt_.adapt(np.name)) continue;
      ++matched;
      double lr = opt_.inner_lr;
      for (const auto& g : opt_.inner_lr_groups)
        if (g.select(np.name)) {
          lr = g.lr;
          break;
        }
      XFER_CHECK(std::isfinite(lr), "MAML: inner learning rate of '", np.name, "' must be finite, got ", lr);
      const int64_t off = np.param->offset;
      std::fill(adapted_.begin() + off, adapted_.begin() + off + np.param->numel, char(1));
      std::fill(alpha_.value + off, alpha_.value + off + np.param->numel, static_cast<T>(lr));
    }
    XFER_CHECK(matched > 0, "MAML: the adapt selector ", opt_.adapt.description(), " matches no parameter of ",
               model_.type_name());
    alpha_.trainable = opt_.learn_inner_lr;
    h_ = opt_.hvp_step > 0 ? opt_.hvp_step : (sizeof(T) >= 8 ? 3e-7 : 1e-4);
  }

  MAML(const MAML&) = delete;
  MAML& operator=(const MAML&) = delete;

  const MAMLOptions<T>& options() const { return opt_; }
  nn::Module<T>& model() { return model_; }

  // What the outer optimizer trains: the model's parameters, plus the inner learning rates with
  // learn_inner_lr (Meta-SGD).
  std::vector<nn::Parameter<T>*> parameters() {
    auto ps = model_.parameters();
    if (opt_.learn_inner_lr) ps.push_back(&alpha_);
    return ps;
  }
  // Per-element inner learning rates in arena layout (0 for parameters the inner loop does not move).
  nn::Parameter<T>& inner_lrs() { return alpha_; }

  // Zeroes the model's gradients and those of the inner learning rates.
  void zero_grad() {
    model_.arena().zero_grad();
    alpha_.zero_grad();
  }

  // k inner SGD steps (steps < 0: options().inner_steps) on the support set from the model's current
  // weights. The result stays in fast_weights() for evaluate()/predict(); the model is unchanged.
  std::vector<double> adapt(const Tensor<T>& support_x, const Target<T>& support_y, int steps = -1) {
    if (steps < 0) steps = opt_.inner_steps;
    FlushDenormals flush([&] { return model_.arena().size() * support_x.numel(); });  // core/float_env.hpp
    check_layout();
    auto& arena = model_.arena();
    ensure(theta_a_);
    ensure(theta_b_);
    ensure(g_);
    std::copy(arena.values.begin(), arena.values.end(), theta_a_.begin());
    std::vector<double> losses;
    AlignedVector<T>* cur = &theta_a_;
    AlignedVector<T>* nxt = &theta_b_;
    {
      Restore guard(*this, /*inner=*/true);
      for (int j = 0; j < steps; ++j) {
        losses.push_back(gradient(*cur, support_x, support_y, g_, "support"));
        sgd_step(*cur, g_, *nxt);
        std::swap(cur, nxt);
      }
    }
    fast_ = cur;
    return losses;
  }

  // The adapted weights of the last adapt() in arena layout (the model's own weights before any).
  const AlignedVector<T>& fast_weights() {
    return fast_ ? *fast_ : model_.arena().values;
  }

  // Forward with the fast weights of the last adapt(); the reference is the model's output buffer.
  const Tensor<T>& predict(const Tensor<T>& x) {
    check_layout();
    Restore guard(*this, false);
    bind(const_cast<T*>(fast_weights().data()), nullptr);
    return model_.forward(x);
  }

  // Loss (and accuracy for labels) of the fast weights of the last adapt() on a batch.
  Evaluation evaluate(const Tensor<T>& x, const Target<T>& y) {
    const Tensor<T>& pred = predict(x);
    return evaluation(pred, y, "query");
  }

  // One task of a meta-batch: adapts on the support set, evaluates the query set, and adds
  // weight * d(query loss after adaptation)/d(theta) to the model's arena gradients (and to the
  // gradients of inner_lrs() with learn_inner_lr). Nothing is stored per task.
  TaskResult accumulate(const Tensor<T>& support_x, const Target<T>& support_y, const Tensor<T>& query_x,
                        const Target<T>& query_y, double weight = 1.0) {
    FlushDenormals flush([&] { return model_.arena().size() * (support_x.numel() + query_x.numel()); });
    check_layout();
    auto& arena = model_.arena();
    const int k = opt_.inner_steps;
    const bool history = !opt_.first_order;
    const size_t nthetas = history ? static_cast<size_t>(k) + 1 : 2;
    if (thetas_.size() < nthetas) thetas_.resize(nthetas);
    for (size_t i = 0; i < nthetas; ++i) ensure(thetas_[i]);
    // Inner gradients are kept for Meta-SGD's alpha gradient and as the centre of the HVP kink check.
    const bool keep_g = opt_.learn_inner_lr || history;
    if (keep_g && gs_.size() < static_cast<size_t>(k)) gs_.resize(static_cast<size_t>(k));
    for (size_t i = 0; keep_g && i < static_cast<size_t>(k); ++i) ensure(gs_[i]);
    // The inner gradients cover every trainable parameter unless some trainable ones are not adapted.
    bool inner_full = true;
    for (auto& np : arena.params)
      inner_full = inner_full && (!np.param->trainable || adapted_[static_cast<size_t>(np.param->offset)]);
    ensure(g_);
    ensure(v_);
    TaskResult res;
    auto theta = [&](int j) -> AlignedVector<T>& { return thetas_[history ? static_cast<size_t>(j) : (j & 1)]; };
    std::copy(arena.values.begin(), arena.values.end(), theta(0).begin());
    {
      Restore guard(*this, /*inner=*/true);
      for (int j = 0; j < k; ++j) {
        AlignedVector<T>& g = keep_g ? gs_[static_cast<size_t>(j)] : g_;
        res.support_losses.push_back(gradient(theta(j), support_x, support_y, g, "support"));
        sgd_step(theta(j), g, theta(j + 1));
      }
    }
    // v = dL_q/d theta_k, on every trainable parameter.
    {
      Restore guard(*this, false);
      res.query = gradient_eval(theta(k), query_x, query_y, v_);
    }
    if (opt_.learn_inner_lr) std::fill(alpha_.grad_scratch().begin(), alpha_.grad_scratch().end(), T(0));
    if (k > 0 && (history || opt_.learn_inner_lr)) {
      ensure(u_);
      if (history) {
        ensure(probe_);
        ensure(gp_);
        ensure(gm_);
        if (!inner_full) ensure(g0_);
      }
      const std::vector<char> mask = effective_adapted();
      for (int j = k - 1; j >= 0; --j) {
        // theta_{j+1} = theta_j - alpha . g_j(theta_j):
        //   dL/d alpha += -g_j . v_{j+1};  v_j = v_{j+1} - H_j (alpha . v_{j+1}).
        if (opt_.learn_inner_lr) {
          const AlignedVector<T>& g = gs_[static_cast<size_t>(j)];
          T* da = alpha_.grad_scratch().data();
          for (int64_t i = 0; i < n_; ++i)
            if (mask[static_cast<size_t>(i)]) da[i] -= g[static_cast<size_t>(i)] * v_[static_cast<size_t>(i)];
        }
        if (!history) continue;
        for (int64_t i = 0; i < n_; ++i)
          u_[static_cast<size_t>(i)] = mask[static_cast<size_t>(i)] ? alpha_.value[i] * v_[static_cast<size_t>(i)] : T(0);
        hvp(theta(j), support_x, support_y, u_, v_, inner_full ? &gs_[static_cast<size_t>(j)] : nullptr);
      }
    }
    // Accumulate into the model's gradients (trainable entries only) and alpha's.
    const T w = static_cast<T>(weight);
    for (auto& np : arena.params) {
      if (!np.param->trainable) continue;
      T* gd = arena.grads.data() + np.param->offset;
      const T* vd = v_.data() + np.param->offset;
      for (int64_t i = 0; i < np.param->numel; ++i) gd[i] += w * vd[i];
    }
    if (opt_.learn_inner_lr) {
      const T* da = alpha_.grad_scratch().data();
      for (int64_t i = 0; i < n_; ++i) alpha_.grad[i] += w * da[i];
    }
    fast_ = &theta(k);
    return res;
  }

  // Query loss after adapting on the support set (the MAML objective of one task; no gradients).
  double objective(const Tensor<T>& support_x, const Target<T>& support_y, const Tensor<T>& query_x,
                   const Target<T>& query_y) {
    adapt(support_x, support_y);
    return evaluate(query_x, query_y).loss;
  }

  // How many Hessian-vector products fell back to a one-sided difference (kink guard, see hvp()).
  int64_t kink_fallbacks() const { return kink_fallbacks_; }

  // Bytes held by the scratch buffers (constant after the first task of a given configuration).
  size_t workspace_bytes() const {
    size_t b = 0;
    auto add = [&](const AlignedVector<T>& v) { b += v.capacity() * sizeof(T); };
    for (const auto& t : thetas_) add(t);
    for (const auto& t : gs_) add(t);
    for (const auto* v : {&theta_a_, &theta_b_, &g_, &v_, &u_, &probe_, &gp_, &gm_, &g0_, &alpha_.scratch}) add(*v);
    return b;
  }

 private:
  // The inner learning rates as a parameter with a scratch gradient for one task.
  struct AlphaParam : nn::Parameter<T> {
    using nn::Parameter<T>::Parameter;
    AlignedVector<T> scratch;
    AlignedVector<T>& grad_scratch() {
      if (static_cast<int64_t>(scratch.size()) != this->numel) scratch.assign(static_cast<size_t>(this->numel), T(0));
      return scratch;
    }
  };

  // Unbinds the arena and restores trainable flags when a call ends (also on exceptions).
  struct Restore {
    MAML& m;
    std::vector<char> saved;
    Restore(MAML& maml, bool inner) : m(maml) {
      if (!inner) return;
      // Inner steps only need gradients of adapted parameters: freeze the rest meanwhile, so
      // backward stops early (ANIL skips the backbone's backward).
      auto& arena = m.model_.arena();
      for (auto& np : arena.params) {
        saved.push_back(np.param->trainable);
        if (!m.adapted_[static_cast<size_t>(np.param->offset)]) np.param->trainable = false;
      }
    }
    ~Restore() {
      auto& arena = m.model_.arena();
      for (size_t i = 0; i < saved.size(); ++i) arena.params[i].param->trainable = saved[i];
      arena.unbind();
    }
  };

  void check_layout() {
    XFER_CHECK(model_.arena().size() == n_, "MAML: the model's parameter layout changed (", n_, " -> ",
               model_.arena().size(), " values, e.g. after replace_head); construct a new MAML");
  }
  void ensure(AlignedVector<T>& v) {
    if (static_cast<int64_t>(v.size()) != n_) v.assign(static_cast<size_t>(n_), T(0));
  }
  void bind(T* values, T* grads) { model_.arena().bind(values, grads); }

  std::vector<char> effective_adapted() {
    std::vector<char> m(adapted_);
    for (auto& np : model_.arena().params)
      if (!np.param->trainable)
        std::fill(m.begin() + np.param->offset, m.begin() + np.param->offset + np.param->numel, char(0));
    return m;
  }

  // out = theta - alpha . g (g is zero where no gradient was computed; alpha is zero where not adapted).
  void sgd_step(const AlignedVector<T>& theta, const AlignedVector<T>& g, AlignedVector<T>& out) {
    for (int64_t i = 0; i < n_; ++i) {
      const size_t s = static_cast<size_t>(i);
      out[s] = theta[s] - alpha_.value[i] * g[s];
    }
  }

  nn::LossResult<T> task_loss(const Tensor<T>& pred, const Target<T>& y, const char* which) {
    if (opt_.loss) return opt_.loss(pred, y);
    if (const auto* labels = std::get_if<nn::Labels>(&y)) {
      XFER_CHECK(pred.ndim() == 2, "MAML: ", which, " predictions must be [N, classes] logits for label targets, got ",
                 shape_str(pred.shape()));
      const int64_t N = pred.dim(0), C = pred.dim(1);
      XFER_CHECK(static_cast<int64_t>(labels->size()) == N, "MAML: ", labels->size(), " ", which,
                 " labels for a batch of ", N);
      for (int64_t i = 0; i < N; ++i) {
        const int32_t l = (*labels)[static_cast<size_t>(i)];
        XFER_CHECK(l >= 0 && l < C, "MAML: ", which, " label ", l, " of sample ", i, " is outside [0, ", C,
                   ") (the model has ", C, " outputs; remap episode labels to 0..N-1)");
      }
      return nn::cross_entropy(pred, *labels);
    }
    return nn::mse_loss(pred, std::get<Tensor<T>>(y));
  }

  Evaluation evaluation(const Tensor<T>& pred, const Target<T>& y, const char* which) {
    Evaluation e;
    e.loss = static_cast<double>(task_loss(pred, y, which).loss);
    e.count = pred.ndim() >= 1 ? pred.dim(0) : 0;
    if (const auto* labels = std::get_if<nn::Labels>(&y)) e.correct = nn::count_correct(pred, *labels);
    return e;
  }

  // g = d loss / d theta at theta (only for trainable parameters); returns the loss.
  double gradient(AlignedVector<T>& theta, const Tensor<T>& x, const Target<T>& y, AlignedVector<T>& g,
                  const char* which) {
    std::fill(g.begin(), g.end(), T(0));
    bind(theta.data(), g.data());
    const Tensor<T>& pred = model_.forward(x);
    auto lr = task_loss(pred, y, which);
    model_.backward(lr.grad, false);
    return static_cast<double>(lr.loss);
  }
  Evaluation gradient_eval(AlignedVector<T>& theta, const Tensor<T>& x, const Target<T>& y, AlignedVector<T>& g) {
    std::fill(g.begin(), g.end(), T(0));
    bind(theta.data(), g.data());
    const Tensor<T>& pred = model_.forward(x);
    Evaluation e = evaluation(pred, y, "query");
    auto lr = task_loss(pred, y, "query");
    model_.backward(lr.grad, false);
    return e;
  }

  // v -= H(theta) u by central differences of support gradients (2 forward+backward passes; a third
  // for g(theta) when the inner loop did not compute it on every trainable parameter).
  // Kink guard: the one-sided differences D+ = (g+ - g0)/eps and D- = (g0 - g-)/eps agree to O(h)
  // where the loss is smooth; a ReLU/max-pool switch inside one side makes that side's difference
  // O(1/eps). When they disagree by more than 10% the side with the smaller norm is used alone.
  void hvp(AlignedVector<T>& theta, const Tensor<T>& x, const Target<T>& y, const AlignedVector<T>& u,
           AlignedVector<T>& v, const AlignedVector<T>* g0) {
    double tt = 0, uu = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < n_; ++i) {
      const size_t s = static_cast<size_t>(i);
      tt += static_cast<double>(theta[s]) * theta[s];
      if (u[s] != T(0)) {
        uu += static_cast<double>(u[s]) * u[s];
        ++m;
      }
    }
    if (uu == 0) return;
    const double rms_t = std::sqrt(tt / static_cast<double>(n_)), rms_u = std::sqrt(uu / static_cast<double>(m));
    const T eps = static_cast<T>(h_ * (1.0 + rms_t) / rms_u);
    Restore guard(*this, false);
    for (int64_t i = 0; i < n_; ++i) probe_[static_cast<size_t>(i)] = theta[static_cast<size_t>(i)] + eps * u[static_cast<size_t>(i)];
    gradient(probe_, x, y, gp_, "support");
    for (int64_t i = 0; i < n_; ++i) probe_[static_cast<size_t>(i)] = theta[static_cast<size_t>(i)] - eps * u[static_cast<size_t>(i)];
    gradient(probe_, x, y, gm_, "support");
    if (!g0) {
      gradient(theta, x, y, g0_, "support");
      g0 = &g0_;
    }
    const AlignedVector<T>& c = *g0;
    double pp = 0, mm = 0, dd = 0;
    for (int64_t i = 0; i < n_; ++i) {
      const size_t s = static_cast<size_t>(i);
      const double dp = static_cast<double>(gp_[s]) - c[s], dm = static_cast<double>(c[s]) - gm_[s];
      pp += dp * dp, mm += dm * dm, dd += (dp - dm) * (dp - dm);
    }
    if (dd > 0.01 * std::max(pp, mm)) {
      ++kink_fallbacks_;
      const bool plus = pp <= mm;
      const T inv = T(1) / eps;
      for (int64_t i = 0; i < n_; ++i) {
        const size_t s = static_cast<size_t>(i);
        v[s] -= (plus ? gp_[s] - c[s] : c[s] - gm_[s]) * inv;
      }
      return;
    }
    const T inv = T(1) / (T(2) * eps);
    for (int64_t i = 0; i < n_; ++i) {
      const size_t s = static_cast<size_t>(i);
      v[s] -= (gp_[s] - gm_[s]) * inv;
    }
  }

  nn::Module<T>& model_;
  MAMLOptions<T> opt_;
  AlphaParam alpha_;
  int64_t n_ = 0;
  double h_ = 1e-5;
  std::vector<char> adapted_;
  std::vector<AlignedVector<T>> thetas_, gs_;
  AlignedVector<T> theta_a_, theta_b_, g_, v_, u_, probe_, gp_, gm_, g0_;
  int64_t kink_fallbacks_ = 0;
  AlignedVector<T>* fast_ = nullptr;
};

}  // namespace xfer::meta
