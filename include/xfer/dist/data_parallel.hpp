// DataParallel<T>: synchronous data-parallel training over MPI (Horovod / PyTorch DDP style).
// Every rank holds a full replica; rank 0's weights, BatchNorm buffers and optimizer state are
// broadcast at construction (and by broadcast_state() after a resume); each rank trains on its own
// shard (LoaderOptions{.rank, .world}); gradients are averaged by allreduce before every step.
//
//   dist::Environment env(argc, argv);
//   dist::Communicator comm;
//   dist::DataParallel dp(net, &opt, comm);
//   train::train_epoch(net, opt, loader, {.replicas = &dp});
//
// The one thing to know: the allreduce overlaps backward. The trainable part of the model's flat
// gradient arena is cut into buckets (contiguous ranges, about bucket_mb each, in backward order);
// a hook at the end of each module's backward marks its parameters ready, and a bucket whose
// parameters are all ready is scaled by this rank's share of the global batch (n_r / n) and handed
// to MPI_Iallreduce at once, while the layers below are still differentiating. Frozen parameters
// are never sent. Each rank's loss must be the mean over its own batch (nn::cross_entropy's).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "xfer/dist/communicator.hpp"
#include "xfer/dist/sync_batchnorm.hpp"
#include "xfer/io/state_json.hpp"
#include "xfer/nn/module.hpp"
#include "xfer/optim/optimizer.hpp"
#include "xfer/train/replicas.hpp"

namespace xfer::dist {

struct DataParallelOptions {
  double bucket_mb = 4.0;         // gradient megabytes per allreduce bucket
  bool overlap = true;            // false: every bucket starts after backward (to measure the overlap)
  bool sync_batchnorm = false;    // batch statistics over all ranks (default: each rank's own batch)
  bool broadcast_buffers = true;  // end_epoch(): BatchNorm running statistics from rank 0
};

// What the communication cost: totals since construction (or reset_stats()).
struct CommStats {
  int64_t steps = 0;
  int64_t buckets = 0;        // allreduces started
  double bytes = 0;           // gradient bytes reduced (per rank)
  double wait_seconds = 0;    // blocked in end_step() waiting for allreduces (not hidden by backward)
  double launched_in_backward = 0;  // fraction of buckets started before backward had finished
};

template <class T>
class DataParallel : public train::Replicas {
 public:
  DataParallel(nn::Module<T>& model, optim::Optimizer<T>* opt, const Communicator& comm, DataParallelOptions o = {})
      : model_(model), opt_(opt), comm_(comm), o_(o) {
    XFER_CHECK(o.bucket_mb > 0, "DataParallel: bucket_mb must be > 0, got ", o.bucket_mb);
    layout();
    broadcast_state();
    if (o_.sync_batchnorm) {
      bn_comm_ = std::make_unique<Communicator>(comm_.handle());  // BN's blocking sums apart from the buckets
      enable_sync_batchnorm(model_, *bn_comm_);
    }
  }
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() override {
    for (auto& [name, m] : model_.named_modules()) m->set_backward_hook({});
    if (bn_comm_) enable_sync_batchnorm(model_, *bn_comm_, false);
  }

  int rank() const override { return comm_.rank(); }
  int world() const override { return comm_.size(); }
  bool is_root() const { return comm_.rank() == 0; }
  const Communicator& comm() const { return comm_; }
  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Values of the trainable parameters (what one step communicates).
  int64_t communicated_values() const {
    int64_t n = 0;
    for (const auto& b : buckets_) n += b.end - b.begin;
    return n;
  }

  // Rank 0's parameter values (all of them, frozen too), BatchNorm buffers and optimizer state on
  // every rank. Call after loading a checkpoint on rank 0 (or on all ranks) to make them equal.
  void broadcast_state() {
    auto& arena = model_.arena();
    comm_.broadcast(arena.values.data(), arena.size());
    broadcast_buffers();
    if (!opt_) return;
    std::string head;
    optim::OptimizerState<T> st;
    if (is_root()) {
      st = opt_->state_dict();
      nlohmann::json shapes = nlohmann::json::array();
      for (const auto& [name, t] : st.tensors) shapes.push_back({name, t.shape()});
      head = nlohmann::json{{"meta", st}, {"tensors", shapes}}.dump();  // io/state_json.hpp
    }
    head = comm_.broadcast(head);
    if (!is_root()) {
      const auto j = nlohmann::json::parse(head);
      optim::from_json(j.at("meta"), st);
      for (const auto& e : j.at("tensors")) st.tensors.emplace_back(e.at(0).get<std::string>(), Tensor<T>(e.at(1).get<Shape>()));
    }
    for (auto& [name, t] : st.tensors) comm_.broadcast(t.data(), t.numel());
    if (!is_root()) opt_->load_state_dict(st);
  }
  // Rank 0's BatchNorm running statistics (and every other registered buffer) on every rank.
  void broadcast_buffers() {
    for (auto& nb : model_.named_buffers()) {
      if (nb.buffer.tensor) comm_.broadcast(nb.buffer.tensor->data(), nb.buffer.tensor->numel());
      if (nb.buffer.counter) comm_.broadcast(nb.buffer.counter, 1);
    }
  }

  // ---- train::Replicas --------------------------------------------------------------------------
  int begin_step(double loss, int64_t batch) override {
    XFER_CHECK(!in_step_, "DataParallel: begin_step twice without end_step");
    XFER_CHECK(batch > 0, "DataParallel: rank ", rank(), " has an empty batch");
    test_fault_injection();
    // One small allreduce: the global batch and which ranks' losses are not finite.
    std::vector<double> v(static_cast<size_t>(world() + 1), 0.0);
    v[0] = static_cast<double>(batch);
    v[static_cast<size_t>(rank() + 1)] = std::isfinite(loss) ? 0.0 : 1.0;
    comm_.allreduce_sum(v.data(), static_cast<int64_t>(v.size()));
    for (int r = 0; r < world(); ++r)
      if (v[static_cast<size_t>(r + 1)] != 0) return r;
    if (layout_changed()) layout();
    share_ = static_cast<T>(static_cast<double>(batch) / v[0]);
    std::fill(ready_.begin(), ready_.end(), 0);
    for (auto& b : buckets_) b.pending = b.params;
    next_ = 0;
    in_step_ = true;
    in_backward_ = true;
    return -1;
  }
  void end_step() override {
    XFER_CHECK(in_step_, "DataParallel: end_step without begin_step");
    in_backward_ = false;
    launched_in_backward_ = next_;
    for (auto& b : buckets_) b.pending = 0;
    launch_ready();
    const auto t0 = std::chrono::steady_clock::now();
    comm_.wait_all(requests_);
    requests_.clear();
    stats_.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double in_bw = buckets_.empty() ? 1.0 : static_cast<double>(launched_in_backward_) / buckets_.size();
    stats_.launched_in_backward = (stats_.launched_in_backward * stats_.steps + in_bw) / (stats_.steps + 1);
    ++stats_.steps;
    in_step_ = false;
  }
  void sum(double* values, int n) override { comm_.allreduce_sum(values, n); }
  void end_epoch() override {
    if (o_.broadcast_buffers) broadcast_buffers();
  }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;  // range of the arena
    int params = 0, pending = 0;
  };

  // Buckets over the trainable parameters, in backward (reverse arena) order, and which arena
  // parameters each module's subtree holds.
  void layout() {
    auto& arena = model_.arena();
    values_ = arena.values.data();
    const auto& ps = arena.params;
    index_.clear();
    for (size_t i = 0; i < ps.size(); ++i) index_[ps[i].param] = static_cast<int>(i);
    bucket_of_.assign(ps.size(), -1);
    ready_.assign(ps.size(), 0);
    trainable_.assign(ps.size(), 0);
    buckets_.clear();
    const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(o_.bucket_mb * 1e6 / sizeof(T)));
    for (size_t k = ps.size(); k-- > 0;) {
      const auto* p = ps[k].param;
      trainable_[k] = p->trainable;
      if (!p->trainable || p->numel == 0) continue;
      const bool joins = !buckets_.empty() && buckets_.back().begin == p->offset + p->numel &&
                         buckets_.back().end - p->offset <= cap;
      if (!joins) buckets_.push_back({p->offset + p->numel, p->offset + p->numel, 0, 0});
      buckets_.back().begin = p->offset;
      ++buckets_.back().params;
      bucket_of_[k] = static_cast<int>(buckets_.size()) - 1;
    }
    subtree_.clear();
    for (auto& [name, m] : model_.named_modules()) {
      std::vector<int> idx;
      for (auto& np : m->named_parameters()) idx.push_back(index_.at(np.param));
      subtree_[m] = std::move(idx);
      m->set_backward_hook([this](nn::Module<T>& mod) { on_backward(mod); });
    }
  }
  bool layout_changed() {
    auto& arena = model_.arena();
    if (arena.values.data() != values_ || arena.params.size() != trainable_.size()) return true;
    for (size_t k = 0; k < arena.params.size(); ++k)
      if (static_cast<char>(arena.params[k].param->trainable) != trainable_[k]) return true;
    return false;
  }

  void on_backward(nn::Module<T>& m) {
    if (!in_backward_) return;
    auto it = subtree_.find(&m);
    if (it == subtree_.end()) return;
    for (int k : it->second) {
      if (ready_[static_cast<size_t>(k)]) continue;
      ready_[static_cast<size_t>(k)] = 1;
      if (const int b = bucket_of_[static_cast<size_t>(k)]; b >= 0) --buckets_[static_cast<size_t>(b)].pending;
    }
    if (o_.overlap) launch_ready();
    comm_.test_all(requests_);  // progress for what is in flight
  }
  // Starts the buckets whose parameters are all ready, in bucket order (the same on every rank).
  void launch_ready() {
    T* g = model_.arena().grads.data();
    while (next_ < static_cast<int>(buckets_.size()) && buckets_[static_cast<size_t>(next_)].pending == 0) {
      const Bucket& b = buckets_[static_cast<size_t>(next_)];
      const int64_t n = b.end - b.begin;
      T* d = g + b.begin;
      if (share_ != T(1))
        for (int64_t i = 0; i < n; ++i) d[i] *= share_;
      requests_.push_back(comm_.iallreduce_sum(d, n));
      ++stats_.buckets;
      stats_.bytes += static_cast<double>(n) * sizeof(T);
      ++next_;
    }
  }

  // Test hook: XFER_DIST_TEST_DIE="<rank>:<step>" kills that rank (SIGKILL, as the OOM killer or a
  // lost node would) at that step of this process; the fault test checks that mpirun ends the job.
  void test_fault_injection() {
    ++global_step_;
    static const char* spec = std::getenv("XFER_DIST_TEST_DIE");
    if (!spec) return;
    int r = -1;
    long s = -1;
    if (std::sscanf(spec, "%d:%ld", &r, &s) == 2 && r == rank() && s == global_step_) std::raise(SIGKILL);
  }

  nn::Module<T>& model_;
  optim::Optimizer<T>* opt_;
  const Communicator& comm_;
  DataParallelOptions o_;
  std::unique_ptr<Communicator> bn_comm_;
  CommStats stats_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_;
  std::vector<char> ready_, trainable_;
  std::unordered_map<const nn::Parameter<T>*, int> index_;
  std::unordered_map<const nn::Module<T>*, std::vector<int>> subtree_;
  std::vector<MPI_Request> requests_;
  const T* values_ = nullptr;
  T share_ = T(1);
  int next_ = 0, launched_in_backward_ = 0;
  long global_step_ = 0;
  bool in_step_ = false, in_backward_ = false;
};

}  // namespace xfer::dist
