// meta::MAML: model-agnostic meta-learning (Finn et al. 2017) over any xfer module, second or first
// order, with ANIL (adapt a parameter group only), per-group inner learning rates, Meta-SGD
// (learned per-parameter inner learning rates) and the MAML++ options (Antoniou et al. 2019):
// multi-step loss with annealed weights, learned per-layer per-step inner learning rates (LSLR),
// per-step BatchNorm statistics and derivative-order annealing (set_iteration()).
//
// The one thing to know: fast weights are buffers with the layout of the model's parameter arena,
// bound into the model for the duration of a call (arena.bind) — the model is never cloned, and all
// scratch buffers are allocated on the first task and reused, so memory does not grow with the
// number of tasks in a meta-batch. accumulate() ADDS weight * d(query loss)/d(theta) into the
// model's arena gradients; run any xfer optimizer on maml.parameters() afterwards.
//
// Second order uses Hessian-vector products by central differences of gradients (hvp.hpp): 2 extra
// forward+backward passes on the support batch per inner step; exact to ~1e-10 relative in double
// against PyTorch's create_graph=True, ~1e-4 in float (use double for exact second order).

// BatchNorm layers in training mode normalise with the batch statistics of each support/query batch
// (as in the MAML paper). adapt(), accumulate(), predict() and evaluate() leave the model's running
// statistics as they found them unless update_bn_stats is set; with per_step_bn_stats every inner
// step j has its own running statistics (updated by the forwards at the weights after j steps, and
// used by them when the model is in eval mode), kept in the MAML object.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/meta/bn_statistics.hpp"
#include "xfer/meta/hvp.hpp"
#include "xfer/meta/maml_options.hpp"
#include "xfer/meta/step_weights.hpp"
#include "xfer/meta/task.hpp"
#include "xfer/nn/loss.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/nn/selector.hpp"

namespace xfer::meta {

template <class T>
class MAML {
 public:
  explicit MAML(nn::Module<T>& model, MAMLOptions<T> opt = {})
      : model_(model), opt_(std::move(opt)), alpha_("inner_lr", {model.arena().size()}),
        bn_(model, opt_.per_step_bn_stats, opt_.update_bn_stats) {
    XFER_CHECK(opt_.inner_steps >= 0, "MAML: inner_steps must be >= 0, got ", opt_.inner_steps);
    XFER_CHECK(std::isfinite(opt_.inner_lr), "MAML: inner_lr must be finite, got ", opt_.inner_lr);
    XFER_CHECK(!(opt_.learn_inner_lr && opt_.learn_step_lrs), "MAML: learn_inner_lr (Meta-SGD, per element) and ",
               "learn_step_lrs (LSLR, per tensor and step) exclude each other");
    XFER_CHECK(!opt_.learn_step_lrs || opt_.inner_steps > 0, "MAML: learn_step_lrs needs inner_steps > 0");
    XFER_CHECK(!(opt_.per_step_bn_stats && opt_.update_bn_stats), "MAML: per_step_bn_stats keeps the model's own ",
               "BatchNorm statistics untouched; it cannot be combined with update_bn_stats");
    XFER_CHECK(opt_.msl_anneal_iterations >= 0 && opt_.first_order_iterations >= 0, "MAML: msl_anneal_iterations and ",
               "first_order_iterations must be >= 0, got ", opt_.msl_anneal_iterations, " and ", opt_.first_order_iterations);
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
    if (opt_.learn_step_lrs) {
      const int64_t P = static_cast<int64_t>(arena.params.size());
      step_lrs_ = std::make_unique<nn::Parameter<T>>("step_lrs", Shape{opt_.inner_steps, P});
      for (int64_t j = 0; j < opt_.inner_steps; ++j)
        for (int64_t p = 0; p < P; ++p) step_lrs_->value[j * P + p] = alpha_.value[arena.params[static_cast<size_t>(p)].param->offset];
    }
    h_ = opt_.hvp_step > 0 ? opt_.hvp_step : (sizeof(T) >= 8 ? 3e-7 : 1e-4);
    set_iteration(0);
  }

  MAML(const MAML&) = delete;
  MAML& operator=(const MAML&) = delete;

  const MAMLOptions<T>& options() const { return opt_; }
  nn::Module<T>& model() { return model_; }

  // What the outer optimizer trains: the model's parameters, plus the inner learning rates with
  // learn_inner_lr (Meta-SGD) or learn_step_lrs (LSLR).
  std::vector<nn::Parameter<T>*> parameters() {
    auto ps = model_.parameters();
    if (opt_.learn_inner_lr) ps.push_back(&alpha_);
    if (step_lrs_) ps.push_back(step_lrs_.get());
    return ps;
  }
  // Per-element inner learning rates in arena layout (0 for parameters the inner loop does not move).
  nn::Parameter<T>& inner_lrs() { return alpha_; }
  // LSLR's learned rates, [inner_steps, arena.params.size()] (step j, parameter tensor p).
  nn::Parameter<T>& step_lrs() {
    XFER_CHECK(step_lrs_ != nullptr, "MAML: step_lrs() needs the learn_step_lrs option");
    return *step_lrs_;
  }

  // MAML++ schedules at meta-iteration `iteration`: the multi-step loss weights and the derivative
  // order (first order while iteration < first_order_iterations). Call once per meta-update.
  void set_iteration(int64_t iteration) {
    XFER_CHECK(iteration >= 0, "MAML::set_iteration: iteration must be >= 0, got ", iteration);
    iteration_ = iteration;
    step_weights_ = msl_weights(opt_.inner_steps, iteration, opt_.multi_step_loss ? opt_.msl_anneal_iterations : 0);
  }
  // Explicit multi-step loss weights of the query losses after 1..k steps (until the next set_iteration).
  void set_step_loss_weights(std::vector<double> w) {
    XFER_CHECK(static_cast<int>(w.size()) == opt_.inner_steps, "MAML: ", w.size(), " step loss weights for ",
               opt_.inner_steps, " inner steps");
    for (double x : w) XFER_CHECK(std::isfinite(x), "MAML: step loss weights must be finite, got ", x);
    step_weights_ = std::move(w);
  }
  const std::vector<double>& step_loss_weights() const { return step_weights_; }
  // Sets msl_anneal_iterations and first_order_iterations (e.g. once the run's length is known).
  void set_schedule(int64_t msl_anneal_iterations, int64_t first_order_iterations) {
    XFER_CHECK(msl_anneal_iterations >= 0 && first_order_iterations >= 0, "MAML::set_schedule: iterations must be ",
               ">= 0, got ", msl_anneal_iterations, " and ", first_order_iterations);
    opt_.msl_anneal_iterations = msl_anneal_iterations;
    opt_.first_order_iterations = first_order_iterations;
    set_iteration(iteration_);
  }
  bool first_order_now() const { return opt_.first_order || iteration_ < opt_.first_order_iterations; }
  // Per-step BatchNorm statistics of inner step j (per_step_bn_stats; empty before the first use).
  const typename BnStatistics<T>::Snapshot& step_bn_statistics(int j) const { return bn_.step(j); }

  // Zeroes the model's gradients and those of the inner learning rates.
  void zero_grad() {
    model_.arena().zero_grad();
    alpha_.zero_grad();
    if (step_lrs_) step_lrs_->zero_grad();
  }

  // k inner SGD steps (steps < 0: options().inner_steps) on the support set from the model's current
  // weights. The result stays in fast_weights() for evaluate()/predict(); the model is unchanged.
  std::vector<double> adapt(const Tensor<T>& support_x, const Target<T>& support_y, int steps = -1) {
    if (steps < 0) steps = opt_.inner_steps;
    FlushDenormals flush([&] { return model_.arena().size() * support_x.numel(); });  // core/float_env.hpp
    check_layout();
    prepare_lrs();
    typename InnerLoopBn<T>::Scope bn(bn_);
    ensure(theta_a_);
    ensure(theta_b_);
    ensure(g_);
    std::copy(model_.arena().values.begin(), model_.arena().values.end(), theta_a_.begin());
    std::vector<double> losses;
    AlignedVector<T>* cur = &theta_a_;
    AlignedVector<T>* nxt = &theta_b_;
    {
      Restore guard(*this, /*inner=*/true);
      for (int j = 0; j < steps; ++j) {
        bn_.enter_step(j);
        losses.push_back(gradient(*cur, support_x, support_y, g_, "support"));
        bn_.leave_step(j);
        sgd_step(*cur, g_, *nxt, alpha_at(j));
        std::swap(cur, nxt);
      }
    }
    fast_ = cur;
    fast_steps_ = steps;
    return losses;
  }

  // The adapted weights of the last adapt() in arena layout (the model's own weights before any).
  const AlignedVector<T>& fast_weights() {
    return fast_ ? *fast_ : model_.arena().values;
  }

  // Forward with the fast weights of the last adapt(); the reference is the model's output buffer.
  const Tensor<T>& predict(const Tensor<T>& x) {
    check_layout();
    typename InnerLoopBn<T>::Scope bn(bn_);
    bn_.enter_step(fast_steps_);
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
  // weight * d(objective)/d(theta) to the model's arena gradients (and to the gradients of the
  // learned inner learning rates). The objective is the query loss after k steps, or with
  // multi_step_loss sum_j w_j * (query loss after j steps). Nothing is stored per task.
  //
  // (Data-parallel meta-training: after the meta-batch's accumulate() calls, all-reduce the
  // gradients of parameters() across processes, then step the optimizer.)
  TaskResult accumulate(const Tensor<T>& support_x, const Target<T>& support_y, const Tensor<T>& query_x,
                        const Target<T>& query_y, double weight = 1.0) {
    FlushDenormals flush([&] { return model_.arena().size() * (support_x.numel() + query_x.numel()); });
    TaskResult res = run_task(support_x, support_y, query_x, query_y, /*gradients=*/true);
    // Accumulate into the model's gradients (trainable entries only) and the learning rates'.
    auto& arena = model_.arena();
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
    if (step_lrs_)
      for (int64_t i = 0; i < step_lrs_->numel; ++i) step_lrs_->grad[i] += w * step_scratch_[static_cast<size_t>(i)];
    return res;
  }

  // The objective accumulate() differentiates (no gradients; for checks by finite differences).
  double objective(const Tensor<T>& support_x, const Target<T>& support_y, const Tensor<T>& query_x,
                   const Target<T>& query_y) {
    return run_task(support_x, support_y, query_x, query_y, /*gradients=*/false).objective;
  }

  // How many Hessian-vector products fell back to a one-sided difference (kink guard, see hvp()).
  int64_t kink_fallbacks() const { return kink_fallbacks_; }

  // Bytes held by the scratch buffers (constant after the first task of a given configuration).
  size_t workspace_bytes() const {
    size_t b = 0;
    auto add = [&](const AlignedVector<T>& v) { b += v.capacity() * sizeof(T); };
    for (const auto& t : thetas_) add(t);
    for (const auto& t : gs_) add(t);
    for (const auto& t : step_alpha_) add(t);
    for (const auto* v : {&theta_a_, &theta_b_, &g_, &v_, &u_, &qg_, &probe_, &gp_, &gm_, &g0_, &alpha_.scratch}) add(*v);
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

  // Unbinds the arena when a call ends (also on exceptions); for the inner steps it also masks the
  // gradients of the parameters the inner loop does not adapt (Parameter::masked), so backward
  // stops early (ANIL skips the backbone's backward). The user's trainable flags are never touched.
  struct Restore {
    MAML& m;
    bool masking = false;
    Restore(MAML& maml, bool inner) : m(maml), masking(inner) {
      if (!inner) return;
      for (auto& np : m.model_.arena().params)
        np.param->masked = !m.adapted_[static_cast<size_t>(np.param->offset)];
    }
    ~Restore() {
      auto& arena = m.model_.arena();
      if (masking)
        for (auto& np : arena.params) np.param->masked = false;
      arena.unbind();
    }
  };

  // Query loss after k steps (and the multi-step terms); with `gradients`, v_ = d objective / d theta
  // and the per-task learning-rate gradients in alpha_.scratch / step_scratch_.
  TaskResult run_task(const Tensor<T>& support_x, const Target<T>& support_y, const Tensor<T>& query_x,
                      const Target<T>& query_y, bool gradients) {
    check_layout();
    prepare_lrs();
    typename InnerLoopBn<T>::Scope bn(bn_);
    auto& arena = model_.arena();
    const int k = opt_.inner_steps;
    const bool second = gradients && !first_order_now();
    const bool msl = k > 1 && std::any_of(step_weights_.begin(), step_weights_.end() - 1, [](double w) { return w != 0; });
    const bool learn_lrs = gradients && (opt_.learn_inner_lr || step_lrs_);
    const bool history = second || msl;
    const size_t nthetas = history ? static_cast<size_t>(k) + 1 : 2;
    if (thetas_.size() < nthetas) thetas_.resize(nthetas);
    for (size_t i = 0; i < nthetas; ++i) ensure(thetas_[i]);
    // Inner gradients are kept for the learning rates' gradients and as the centre of the HVP kink check.
    const bool keep_g = learn_lrs || second;
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
        bn_.enter_step(j);
        res.support_losses.push_back(gradient(theta(j), support_x, support_y, g, "support"));
        bn_.leave_step(j);
        sgd_step(theta(j), g, theta(j + 1), alpha_at(j));
      }
    }
    // v = w_k dL_q/d theta_k, on every trainable parameter.
    const double wk = k > 0 ? step_weights_.back() : 1.0;
    {
      Restore guard(*this, false);
      bn_.enter_step(k);
      res.query = gradient_eval(theta(k), query_x, query_y, v_, gradients);
      bn_.leave_step(k);
    }
    res.objective = wk * res.query.loss;
    for (auto& x : v_) x *= static_cast<T>(wk);
    if (opt_.learn_inner_lr) std::fill(alpha_.grad_scratch().begin(), alpha_.grad_scratch().end(), T(0));
    if (step_lrs_) step_scratch_.assign(static_cast<size_t>(step_lrs_->numel), T(0));
    if (k > 0 && (history || learn_lrs)) {
      ensure(u_);
      if (second) {
        ensure(probe_);
        ensure(gp_);
        ensure(gm_);
        if (!inner_full) ensure(g0_);
      }
      if (msl) ensure(qg_);
      const std::vector<char> mask = effective_adapted();
      for (int j = k - 1; j >= 0; --j) {
        // theta_{j+1} = theta_j - alpha_j . g_j(theta_j), v = dL/d theta_{j+1}:
        //   dL/d alpha_j += -g_j . v;  v <- v - H_j (alpha_j . v) + w_j dL_q/d theta_j.
        if (learn_lrs) accumulate_lr_gradient(j, gs_[static_cast<size_t>(j)], mask);
        if (second) {
          const T* a = alpha_at(j);
          for (int64_t i = 0; i < n_; ++i)
            u_[static_cast<size_t>(i)] = mask[static_cast<size_t>(i)] ? a[i] * v_[static_cast<size_t>(i)] : T(0);
          bn_.enter_step(j);
          hvp(theta(j), support_x, support_y, u_, v_, inner_full ? &gs_[static_cast<size_t>(j)] : nullptr);
        }
        const double wj = j >= 1 ? step_weights_[static_cast<size_t>(j - 1)] : 0.0;
        if (msl && wj != 0) {
          Restore guard(*this, false);
          bn_.enter_step(j);
          res.objective += wj * gradient_eval(theta(j), query_x, query_y, qg_, gradients).loss;
          for (int64_t i = 0; i < n_; ++i) v_[static_cast<size_t>(i)] += static_cast<T>(wj) * qg_[static_cast<size_t>(i)];
        }
      }
    }
    fast_ = &theta(k);
    fast_steps_ = k;
    return res;
  }

  // dL/d alpha_j = -g_j . v on adapted entries: per element (Meta-SGD) or summed per tensor (LSLR).
  void accumulate_lr_gradient(int j, const AlignedVector<T>& g, const std::vector<char>& mask) {
    if (opt_.learn_inner_lr) {
      T* da = alpha_.grad_scratch().data();
      for (int64_t i = 0; i < n_; ++i)
        if (mask[static_cast<size_t>(i)]) da[i] -= g[static_cast<size_t>(i)] * v_[static_cast<size_t>(i)];
      return;
    }
    const auto& params = model_.arena().params;
    const size_t P = params.size();
    for (size_t p = 0; p < P; ++p) {
      const int64_t off = params[p].param->offset, cnt = params[p].param->numel;
      if (!mask[static_cast<size_t>(off)]) continue;
      double s = 0;
      for (int64_t i = off; i < off + cnt; ++i) s += static_cast<double>(g[static_cast<size_t>(i)]) * v_[static_cast<size_t>(i)];
      step_scratch_[static_cast<size_t>(j) * P + p] -= static_cast<T>(s);
    }
  }

  // LSLR: expands the [k, tensors] rates into per-element buffers, one per step.
  void prepare_lrs() {
    if (!step_lrs_) return;
    const auto& params = model_.arena().params;
    const size_t P = params.size();
    step_alpha_.resize(static_cast<size_t>(opt_.inner_steps));
    for (size_t j = 0; j < step_alpha_.size(); ++j) {
      ensure(step_alpha_[j]);
      for (size_t p = 0; p < P; ++p) {
        const int64_t off = params[p].param->offset;
        const T a = adapted_[static_cast<size_t>(off)] ? step_lrs_->value[j * P + p] : T(0);
        std::fill(step_alpha_[j].begin() + off, step_alpha_[j].begin() + off + params[p].param->numel, a);
      }
    }
  }
  const T* alpha_at(int j) const {
    if (!step_lrs_) return alpha_.value;
    return step_alpha_[static_cast<size_t>(std::min(j, opt_.inner_steps - 1))].data();
  }

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
  void sgd_step(const AlignedVector<T>& theta, const AlignedVector<T>& g, AlignedVector<T>& out, const T* alpha) {
    for (int64_t i = 0; i < n_; ++i) {
      const size_t s = static_cast<size_t>(i);
      out[s] = theta[s] - alpha[i] * g[s];
    }
  }

  nn::LossResult<T> task_loss(const Tensor<T>& pred, const Target<T>& y, const char* which) {
    return meta::task_loss(opt_.loss, pred, y, "MAML", which);
  }
  Evaluation evaluation(const Tensor<T>& pred, const Target<T>& y, const char* which) {
    return meta::evaluate_task(opt_.loss, pred, y, "MAML", which);
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
  // Evaluation at theta, and (with backward) g = d loss / d theta.
  Evaluation gradient_eval(AlignedVector<T>& theta, const Tensor<T>& x, const Target<T>& y, AlignedVector<T>& g,
                           bool backward = true) {
    std::fill(g.begin(), g.end(), T(0));
    bind(theta.data(), g.data());
    const Tensor<T>& pred = model_.forward(x);
    Evaluation e = evaluation(pred, y, "query");
    if (!backward) return e;
    auto lr = task_loss(pred, y, "query");
    model_.backward(lr.grad, false);
    return e;
  }

  // v -= H(theta) u by central differences of support gradients (see hvp.hpp).
  void hvp(AlignedVector<T>& theta, const Tensor<T>& x, const Target<T>& y, const AlignedVector<T>& u,
           AlignedVector<T>& v, const AlignedVector<T>* g0) {
    Restore guard(*this, false);
    auto grad = [&](AlignedVector<T>& at, AlignedVector<T>& g) { gradient(at, x, y, g, "support"); };
    if (!g0) ensure(g0_);
    if (central_difference_hvp(theta, u, v, h_, g0, {probe_, gp_, gm_, g0_}, grad)) ++kink_fallbacks_;
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
  int fast_steps_ = 0;
  // MAML++ state.
  std::unique_ptr<nn::Parameter<T>> step_lrs_;
  std::vector<AlignedVector<T>> step_alpha_;
  AlignedVector<T> step_scratch_, qg_;
  std::vector<double> step_weights_;
  int64_t iteration_ = 0;
  InnerLoopBn<T> bn_;
};

}  // namespace xfer::meta
