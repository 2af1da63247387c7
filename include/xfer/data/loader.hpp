// Loader: batches of (NCHW tensor, labels) from a Dataset through a Compose, with seeded per-epoch
// shuffling, parallel sample preparation (OpenMP) and a prefetch thread that prepares the next batch
// while the caller trains on the current one.
// The one thing to know: a batch depends only on (seed, epoch, position) — the epoch's order comes
// from (seed, epoch) and each sample's augmentation Rng from (seed, epoch, dataset index) — so results
// do not depend on threads or prefetching, and state() {epoch, position} is all a checkpoint needs.
// Iterating continues from the current position; finishing an epoch moves to the next one.
// Distributed sampling (rank/world): every process walks the same seeded epoch order in global
// batches of batch_size * world and takes its own contiguous slice of each, so the ranks' shards are
// disjoint and together see exactly what one process with the global batch would see.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "xfer/core/error.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/core/tensor.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/split.hpp"
#include "xfer/data/stack.hpp"
#include "xfer/data/transforms.hpp"
#include "xfer/nn/loss.hpp"

namespace xfer::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = false;
  bool drop_last = false;  // drop the last batch when it is smaller than batch_size
  uint64_t seed = 0;
  bool prefetch = true;    // prepare the next batch on a background thread
  int threads = 0;         // OpenMP threads preparing one batch; 0: 1 when prefetching, all otherwise
  // Distributed sampler: this process is `rank` of `world`; batch_size is the per-rank batch. A last
  // global batch of L < batch_size * world samples is split as evenly as possible (sizes differ by at
  // most one); one with fewer samples than ranks is dropped so that no rank gets an empty batch.
  int rank = 0;
  int world = 1;
};

// Exactly two members, so `for (auto& [x, y] : loader)` works.
template <class T = float>
struct Batch {
  Tensor<T> x;   // [N, C, H, W]
  nn::Labels y;  // [N]
};

struct LoaderState {
  int64_t epoch = 0;
  int64_t position = 0;  // batches of `epoch` already handed out
};

namespace detail {
inline uint64_t shuffle_seed(uint64_t seed, int64_t epoch) {
  return splitmix64(splitmix64(seed ^ 0x5a5a5a5a5a5a5a5aull) ^ static_cast<uint64_t>(epoch));
}
}  // namespace detail

// The seed of sample `index`'s augmentation Rng in `epoch`.
inline uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(index));
}

template <class T = float>
class Loader {
 public:
  Loader(const Dataset& ds, Compose transform, LoaderOptions opt = {})
      : ds_(&ds), transform_(std::move(transform)), opt_(opt) {
    XFER_CHECK(opt_.batch_size > 0, "Loader: batch_size must be > 0, got ", opt_.batch_size);
    XFER_CHECK(opt_.threads >= 0, "Loader: threads must be >= 0, got ", opt_.threads);
    XFER_CHECK(opt_.world >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world, "Loader: rank ", opt_.rank,
               " of world ", opt_.world, " is invalid (expected 0 <= rank < world)");
    XFER_CHECK(ds.size() > 0, "Loader: the dataset is empty");
    XFER_CHECK(num_batches() > 0, "Loader: ", ds.size(), " samples make no full batch of ", opt_.batch_size,
               " with drop_last");
    order_ = make_order(0);
  }
  Loader(const Dataset& ds, LoaderOptions opt) : Loader(ds, Compose(), opt) {}
  // The loader keeps a reference to the dataset: a temporary one would dangle.
  template <class D>
    requires std::is_base_of_v<Dataset, D>
  Loader(D&&, Compose, LoaderOptions = {}) = delete;
  template <class D>
    requires std::is_base_of_v<Dataset, D>
  Loader(D&&, LoaderOptions) = delete;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() { drop_pending(); }

  int64_t num_samples() const { return ds_->size(); }
  int64_t num_batches() const {
    const int64_t n = ds_->size(), g = opt_.batch_size * opt_.world;
    return n / g + (!opt_.drop_last && n % g >= opt_.world ? 1 : 0);
  }
  // Where this rank's part of batch `b` lies in the epoch order: {first position, count}.
  std::pair<int64_t, int64_t> slice(int64_t b) const {
    const int64_t g = opt_.batch_size * opt_.world, first = b * g;
    const int64_t len = std::min(g, ds_->size() - first), base = len / opt_.world, extra = len % opt_.world;
    return {first + opt_.rank * base + std::min<int64_t>(opt_.rank, extra), base + (opt_.rank < extra ? 1 : 0)};
  }
  int64_t size() const { return num_batches(); }
  const LoaderOptions& options() const { return opt_; }
  const Dataset& dataset() const { return *ds_; }

  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  LoaderState state() const { return {epoch_, position_}; }
  // Start of epoch `e` (its own shuffle).
  void set_epoch(int64_t e) { set_state({e, 0}); }
  void set_state(LoaderState s) {
    XFER_CHECK(s.epoch >= 0 && s.position >= 0 && s.position <= num_batches(), "Loader::set_state: epoch ", s.epoch,
               " position ", s.position, " is invalid (positions go from 0 to ", num_batches(), ")");
    if (s.epoch != epoch_) order_ = make_order(s.epoch);
    epoch_ = s.epoch;
    position_ = s.position;
  }

  // The dataset indices of epoch `e` in visiting order.
  std::vector<int64_t> epoch_order(int64_t e) const { return *make_order(e); }

  // Batch `b` of epoch `e`, built now on the calling thread (does not move the loader's position).
  Batch<T> get(int64_t e, int64_t b, int threads = 0) const {
    XFER_CHECK(b >= 0 && b < num_batches(), "Loader::get: batch ", b, " outside [0, ", num_batches(), ")");
    Batch<T> out;
    build(*make_order(e), e, b, out, threads > 0 ? threads : num_threads());
    return out;
  }

  // The next batch of the current epoch, or nullptr when it is over (then the loader moves to the
  // next epoch). The batch stays valid until the next call.
  Batch<T>* next() {
    if (position_ >= num_batches()) {
      set_epoch(epoch_ + 1);
      return nullptr;
    }
    Batch<T> b;
    if (pending_.valid() && pending_epoch_ == epoch_ && pending_pos_ == position_) {
      b = pending_.get();  // rethrows the worker's error, if any
    } else {
      drop_pending();
      b = std::move(spare_);
      build(*order_, epoch_, position_, b, opt_.threads > 0 ? opt_.threads : num_threads());
    }
    spare_ = std::move(current_);
    current_ = std::move(b);
    ++position_;
    if (opt_.prefetch) launch_prefetch();
    return &current_;
  }

  struct Sentinel {};
  class Iterator {
   public:
    Iterator(Loader* l, Batch<T>* b) : l_(l), b_(b) {}
    Batch<T>& operator*() const { return *b_; }
    Batch<T>* operator->() const { return b_; }
    Iterator& operator++() {
      b_ = l_->next();
      return *this;
    }
    bool operator==(Sentinel) const { return b_ == nullptr; }

   private:
    Loader* l_;
    Batch<T>* b_;
  };
  Iterator begin() { return Iterator(this, next()); }
  Sentinel end() { return {}; }

 private:
  std::shared_ptr<const std::vector<int64_t>> make_order(int64_t e) const {
    auto v = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(ds_->size()));
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = static_cast<int64_t>(i);
    if (opt_.shuffle) {
      Rng rng(detail::shuffle_seed(opt_.seed, e));
      data::detail::shuffle(*v, rng);
    }
    return v;
  }

  // Fills `out` with batch `b` of epoch `e` (order given), preparing samples on `threads` OpenMP threads.
  void build(const std::vector<int64_t>& order, int64_t e, int64_t b, Batch<T>& out, int threads) const {
    const auto [start, n] = slice(b);
    const std::span<const int64_t> indices(order.data() + start, static_cast<size_t>(n));
    stack(indices, [&](int64_t idx, Tensor<float>& sample) { prepare(idx, e, sample); }, out.x,
          {.threads = threads,
           .what = "Loader",
           .hint = " after the transforms; resize images to one size (ImageFolderOptions height/width or Resize + CenterCrop)"});
    XFER_CHECK(out.x.ndim() == 4, "Loader: the transform produced samples of shape ",
               shape_str(Shape(out.x.shape().begin() + 1, out.x.shape().end())), ", expected CHW");
    out.y.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out.y[static_cast<size_t>(i)] = ds_->label(indices[static_cast<size_t>(i)]);
  }

  void prepare(int64_t idx, int64_t e, Tensor<float>& out) const {
    Rng rng(sample_seed(opt_.seed, e, idx));
    transform_(ds_->image(idx), rng, out);
  }

  void launch_prefetch() {
    int64_t e = epoch_, p = position_;
    std::shared_ptr<const std::vector<int64_t>> order = order_;
    if (p >= num_batches()) {  // speculatively the first batch of the next epoch
      e = epoch_ + 1;
      p = 0;
      order = make_order(e);
    }
    pending_epoch_ = e;
    pending_pos_ = p;
    const int threads = opt_.threads > 0 ? opt_.threads : 1;
    pending_ = std::async(std::launch::async, [this, order, e, p, threads, buf = std::move(spare_)]() mutable {
#ifdef _OPENMP
      omp_set_num_threads(threads);  // this thread's own setting; the caller's is untouched
#endif
      build(*order, e, p, buf, threads);
      return std::move(buf);
    });
  }

  void drop_pending() {
    if (!pending_.valid()) return;
    try {
      pending_.get();
    } catch (...) {
      // a speculative batch that failed is reported when (if) it is really asked for
    }
  }

  const Dataset* ds_;
  Compose transform_;
  LoaderOptions opt_;
  int64_t epoch_ = 0, position_ = 0;
  std::shared_ptr<const std::vector<int64_t>> order_;
  Batch<T> current_, spare_;
  std::future<Batch<T>> pending_;
  int64_t pending_epoch_ = -1, pending_pos_ = -1;
};

}  // namespace xfer::data
