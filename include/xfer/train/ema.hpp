// ModelEma: an exponential moving average of a model's weights (timm's ModelEmaV2/V3): after each
// optimizer step, ema = decay * ema + (1 - decay) * weights, over every parameter and (by default)
// the BatchNorm running statistics; num_batches_tracked counters are copied.
//
// The one thing to know: the average lives in a buffer with the layout of the model's parameter
// arena, and swap_in() exchanges it with the model's weights (no copy of the model): evaluate or
// save while the returned guard lives, and the training weights come back when it goes out of scope.
// With warmup, the n-th update uses timm's decay 1 - (1 + n / gamma)^-power (clamped to
// [min_decay, decay]), so early averages do not drag the random initialisation along.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/io/state_dict.hpp"
#include "xfer/nn/module.hpp"

namespace xfer::train {

struct EmaOptions {
  double decay = 0.9998;
  bool include_buffers = true;  // also average BatchNorm running mean / var (timm's default)
  // timm ModelEmaV3's warmup: the n-th update (n from 1) uses decay_n = 1 - (1 + k / gamma)^-power
  // with k = n - update_after_step - 1, clamped to [min_decay, decay]; k <= 0 copies the weights.
  bool warmup = false;
  double warmup_gamma = 1.0;
  double warmup_power = 2.0 / 3.0;
  double min_decay = 0.0;
  int64_t update_after_step = 0;
};

// The EMA's state: the update count and the averaged values (arena layout, then the float buffers
// in named_buffers() order, then the counters).
template <class T>
struct EmaState {
  int64_t updates = 0;
  std::vector<T> values;
  std::vector<T> buffers;
  std::vector<int64_t> counters;
};

inline constexpr const char* kEmaUpdatesMetaKey = "xfer.ema.updates";

template <class T>
class ModelEma {
 public:
  // Starts the average at the model's current weights. The model is flattened if it was not.
  ModelEma(nn::Module<T>& model, EmaOptions o = {}) : model_(&model), opt_(o) {
    validate(o);
    auto& arena = model.arena();
    arena_ = &arena;
    values_.assign(arena.values.begin(), arena.values.end());
    for (auto& nb : model.named_buffers()) {
      if (nb.buffer.tensor) {
        buffer_tensors_.push_back(nb.buffer.tensor);
        buffers_.insert(buffers_.end(), nb.buffer.tensor->data(), nb.buffer.tensor->data() + nb.buffer.tensor->numel());
      } else {
        counter_ptrs_.push_back(nb.buffer.counter);
        counters_.push_back(*nb.buffer.counter);
      }
    }
  }
  ModelEma(const ModelEma&) = delete;
  ModelEma& operator=(const ModelEma&) = delete;
  ~ModelEma() {
    if (swapped_) swap();  // never leave the model holding the average
  }

  // The decay the next update() will use.
  double next_decay() const { return decay_for(updates_ + 1); }
  int64_t updates() const { return updates_; }
  const EmaOptions& options() const { return opt_; }

  // Folds the model's current weights into the average (call after optimizer.step()).
  void update() {
    check_layout("update");
    XFER_CHECK(!swapped_, "ModelEma::update: the EMA weights are swapped into the model; end the swap_in() guard first");
    const T d = static_cast<T>(decay_for(++updates_));
    const T w = T(1) - d;
    lerp(values_.data(), arena_->values.data(), static_cast<int64_t>(values_.size()), d, w);
    size_t off = 0;
    for (auto* t : buffer_tensors_) {
      if (opt_.include_buffers) lerp(buffers_.data() + off, t->data(), t->numel(), d, w);
      else std::copy_n(t->data(), t->numel(), buffers_.data() + off);
      off += static_cast<size_t>(t->numel());
    }
    for (size_t i = 0; i < counter_ptrs_.size(); ++i) counters_[i] = *counter_ptrs_[i];
  }

  // Exchanges the averaged and the model's weights (call again to undo).
  void swap() {
    check_layout("swap");
    std::swap_ranges(values_.begin(), values_.end(), arena_->values.begin());
    size_t off = 0;
    for (auto* t : buffer_tensors_) {
      std::swap_ranges(t->data(), t->data() + t->numel(), buffers_.begin() + static_cast<std::ptrdiff_t>(off));
      off += static_cast<size_t>(t->numel());
    }
    for (size_t i = 0; i < counter_ptrs_.size(); ++i) std::swap(*counter_ptrs_[i], counters_[i]);
    swapped_ = !swapped_;
  }
  bool swapped() const { return swapped_; }

  // RAII: the model holds the EMA weights while the guard lives.
  class SwapGuard {
   public:
    explicit SwapGuard(ModelEma& e) : ema_(&e) { ema_->swap(); }
    SwapGuard(const SwapGuard&) = delete;
    SwapGuard& operator=(const SwapGuard&) = delete;
    ~SwapGuard() { ema_->swap(); }

   private:
    ModelEma* ema_;
  };
  [[nodiscard]] SwapGuard swap_in() {
    XFER_CHECK(!swapped_, "ModelEma::swap_in: the EMA weights are already swapped in");
    return SwapGuard(*this);
  }

  // Writes the averaged weights as a model file (torchvision names; loads with io::load_safetensors
  // like any weights) with the update count in the metadata, for resuming the average.
  void save(const std::string& path, std::map<std::string, std::string> metadata = {}) {
    metadata[kEmaUpdatesMetaKey] = std::to_string(updates_);
    auto guard = swap_in();
    io::save_safetensors(*model_, path, std::move(metadata));
  }
  // Restores an average written by save() (strict: every key and shape of this model).
  void load(const std::string& path) {
    io::SafetensorsReader file(path);
    const auto& md = file.metadata();
    auto it = md.find(kEmaUpdatesMetaKey);
    XFER_CHECK(it != md.end(), "ModelEma::load '", path, "': no '", kEmaUpdatesMetaKey,
               "' metadata (not written by ModelEma::save)");
    int64_t n = -1;
    try {
      size_t used = 0;
      n = std::stoll(it->second, &used);
      if (used != it->second.size()) n = -1;
    } catch (const std::exception&) {
    }
    XFER_CHECK(n >= 0, "ModelEma::load '", path, "': '", kEmaUpdatesMetaKey, "' is not a count: '", it->second, "'");
    {
      auto guard = swap_in();  // the load writes into the model's slots: point them at the average
      io::load_state_dict(*model_, file);
    }
    updates_ = n;
  }

  EmaState<T> state() const { return {updates_, values_, buffers_, counters_}; }
  void load_state(const EmaState<T>& s) {
    const char* where = "ModelEma::load_state";
    XFER_CHECK(s.updates >= 0, where, ": negative update count ", s.updates);
    XFER_CHECK(s.values.size() == values_.size() && s.buffers.size() == buffers_.size() &&
                   s.counters.size() == counters_.size(),
               where, ": the state holds ", s.values.size(), " parameter values, ", s.buffers.size(), " buffer values and ",
               s.counters.size(), " counters; this model has ", values_.size(), ", ", buffers_.size(), " and ",
               counters_.size());
    XFER_CHECK(!swapped_, where, ": the EMA weights are swapped into the model");
    updates_ = s.updates;
    values_ = s.values;
    buffers_ = s.buffers;
    counters_ = s.counters;
  }
  // The averaged parameter values in arena layout (read-only view for tests and inspection).
  const std::vector<T>& values() const { return values_; }

  static void validate(const EmaOptions& o) {
    XFER_CHECK(std::isfinite(o.decay) && o.decay >= 0 && o.decay <= 1, "ModelEma: decay must be in [0, 1], got ", o.decay);
    XFER_CHECK(std::isfinite(o.min_decay) && o.min_decay >= 0 && o.min_decay <= o.decay,
               "ModelEma: min_decay must be in [0, decay], got ", o.min_decay);
    XFER_CHECK(std::isfinite(o.warmup_gamma) && o.warmup_gamma > 0, "ModelEma: warmup_gamma must be > 0, got ",
               o.warmup_gamma);
    XFER_CHECK(std::isfinite(o.warmup_power) && o.warmup_power > 0, "ModelEma: warmup_power must be > 0, got ",
               o.warmup_power);
    XFER_CHECK(o.update_after_step >= 0, "ModelEma: update_after_step must be >= 0, got ", o.update_after_step);
  }

 private:
  // timm's get_decay(step) for the n-th update.
  double decay_for(int64_t n) const {
    if (!opt_.warmup && opt_.update_after_step == 0) return opt_.decay;
    const int64_t k = std::max<int64_t>(0, n - opt_.update_after_step - 1);
    if (k <= 0) return 0.0;
    if (!opt_.warmup) return opt_.decay;
    const double d = 1 - std::pow(1 + static_cast<double>(k) / opt_.warmup_gamma, -opt_.warmup_power);
    return std::max(std::min(d, opt_.decay), opt_.min_decay);
  }
  static void lerp(T* ema, const T* x, int64_t n, T d, T w) {
    XFER_OMP_FOR(n * 2)
    for (int64_t i = 0; i < n; ++i) ema[i] = d * ema[i] + w * x[i];
  }
  void check_layout(const char* what) {
    XFER_CHECK(model_->is_flattened() && &model_->arena() == arena_ &&
                   arena_->values.size() == values_.size(),
               "ModelEma::", what,
               ": the model's parameters were re-flattened (replace_head?) after the EMA was created; create the "
               "ModelEma after the model's final structure");
  }

  nn::Module<T>* model_;
  EmaOptions opt_;
  nn::ParameterArena<T>* arena_ = nullptr;
  std::vector<T> values_, buffers_;
  std::vector<Tensor<T>*> buffer_tensors_;
  std::vector<int64_t*> counter_ptrs_;
  std::vector<int64_t> counters_;
  int64_t updates_ = 0;
  bool swapped_ = false;
};

}  // namespace xfer::train
