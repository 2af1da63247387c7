// dist::DataParallel under mpirun (-np 2 and -np 3): N ranks with their slices of a global batch end
// where one process with the whole batch ends, with the gradient buckets started during backward;
// frozen parameters are not sent; a non-finite loss on one rank stops every rank; meta-gradients
// of a meta-batch split across ranks equal one process's.
#include <catch2/catch.hpp>
#include <xfer/dist.hpp>
#include <xfer/xfer.hpp>

#include <cmath>
#include <cstdio>

using namespace xfer;
using namespace xfer::nn;

namespace {
const dist::Communicator& comm() {
  static dist::Communicator c;
  return c;
}

// conv(-BN)-ReLU-pool, conv(-BN)-ReLU, linear on 3x8x8 images, 5 classes.
template <class T>
std::shared_ptr<Sequential<T>> make_net(bool bn, uint64_t seed) {
  auto s = std::make_shared<Sequential<T>>();
  s->template emplace_back<Conv2d<T>>(Conv2dOptions{.in_channels = 3, .out_channels = 4, .kernel_size = 3, .padding = 1});
  if (bn) s->template emplace_back<BatchNorm2d<T>>(4);
  s->template emplace_back<ReLU<T>>();
  s->template emplace_back<MaxPool2d<T>>(MaxPool2dOptions{.kernel_size = 2});
  s->template emplace_back<Conv2d<T>>(Conv2dOptions{.in_channels = 4, .out_channels = 6, .kernel_size = 3, .padding = 1});
  if (bn) s->template emplace_back<BatchNorm2d<T>>(6);
  s->template emplace_back<ReLU<T>>();
  s->template emplace_back<Flatten<T>>();
  s->template emplace_back<Linear<T>>(LinearOptions{.in_features = 96, .out_features = 5});
  Rng rng(seed);
  s->reset_parameters(rng);
  s->flatten_parameters();
  return s;
}

template <class T>
struct GlobalBatch {
  Tensor<T> x;
  Labels y;
};
// The same global batch of `n` images on every rank (seeded by the step).
template <class T>
GlobalBatch<T> global_batch(int64_t n, int step) {
  Rng rng(1000 + static_cast<uint64_t>(step));
  GlobalBatch<T> b{Tensor<T>({n, 3, 8, 8}), Labels(static_cast<size_t>(n))};
  for (auto& v : b.x) v = static_cast<T>(rng.uniform(-1, 2));
  for (auto& l : b.y) l = static_cast<int32_t>(rng.below(5));
  return b;
}
// Rows [begin, begin + count) of a batch.
template <class T>
GlobalBatch<T> rows(const GlobalBatch<T>& g, int64_t begin, int64_t count) {
  const int64_t per = 3 * 8 * 8;
  GlobalBatch<T> b{Tensor<T>({count, 3, 8, 8}), Labels(g.y.begin() + begin, g.y.begin() + begin + count)};
  std::copy(g.x.data() + begin * per, g.x.data() + (begin + count) * per, b.x.data());
  return b;
}

template <class T>
double max_rel_diff(const AlignedVector<T>& a, const AlignedVector<T>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

struct RunOptions {
  bool bn = false;
  dist::DataParallelOptions dp = {};
  int64_t global = 0;  // images per step (0: 4 per rank)
  const char* freeze = nullptr;
};

// 3 SGD steps (momentum, weight decay) of one process on whole batches vs. DataParallel on slices:
// returns the largest relative difference of the parameters (and BN buffers, if any) after them.
template <class T>
double equivalence(const RunOptions& o, dist::CommStats* stats = nullptr) {
  const int world = comm().size(), rank = comm().rank();
  const int64_t global = o.global > 0 ? o.global : 4 * world;
  const optim::SGDOptions sgd{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3};
  auto ref = make_net<T>(o.bn, 1);
  auto net = make_net<T>(o.bn, 1 + static_cast<uint64_t>(rank));  // rank 0's weights must win the broadcast
  if (o.freeze) ref->freeze(Selector(o.freeze)), net->freeze(Selector(o.freeze));
  optim::SGD<T> ref_opt(ref->parameters(), sgd), opt(net->parameters(), sgd);
  dist::DataParallel<T> dp(*net, &opt, comm(), o.dp);
  if (o.freeze) CHECK(dp.communicated_values() == net->num_trainable_parameters());
  const int64_t base = global / world, extra = global % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra), count = base + (rank < extra ? 1 : 0);
  for (int step = 0; step < 3; ++step) {
    const auto g = global_batch<T>(global, step);
    const Tensor<T>& ly = ref->forward(g.x);
    auto lref = cross_entropy(ly, g.y);
    ref_opt.zero_grad();
    ref->backward(lref.grad);
    ref_opt.step();

    const auto mine = rows(g, begin, count);
    const Tensor<T>& y = net->forward(mine.x);
    auto l = cross_entropy(y, mine.y);
    CHECK(dp.begin_step(l.loss, count) == -1);
    opt.zero_grad();
    net->backward(l.grad, false);
    dp.end_step();
    opt.step();
  }
  if (stats) *stats = dp.stats();
  double d = max_rel_diff(net->arena().values, ref->arena().values);
  auto nb = net->named_buffers(), rb = ref->named_buffers();
  for (size_t i = 0; i < nb.size(); ++i)
    if (nb[i].buffer.tensor) {
      AlignedVector<T> a(nb[i].buffer.tensor->begin(), nb[i].buffer.tensor->end());
      AlignedVector<T> b(rb[i].buffer.tensor->begin(), rb[i].buffer.tensor->end());
      d = std::max(d, max_rel_diff(a, b));
    }
  return d;
}

// The same value on every rank? (max - min over ranks)
double spread(double v) { return comm().allreduce_max(v) - comm().allreduce_min(v); }
}  // namespace

TEST_CASE("N ranks with batch B each match one process with batch N*B after 3 SGD steps (double, no BN)") {
  const double d = equivalence<double>({});
  INFO("rank " << comm().rank() << " of " << comm().size() << ": max relative difference " << d);
  CHECK(d <= 1e-10);
}

TEST_CASE("Uneven slices of the global batch are weighted by their share (double, no BN)") {
  const double d = equivalence<double>({.global = 2 * comm().size() + 1});
  INFO("max relative difference " << d);
  CHECK(d <= 1e-10);
}

TEST_CASE("Synchronized BatchNorm matches one process with the whole batch (double), local BN does not") {
  const double synced = equivalence<double>({.bn = true, .dp = {.sync_batchnorm = true}, .global = 3 * comm().size() + 1});
  const double local = equivalence<double>({.bn = true});
  if (comm().is_root())
    std::printf("[dist] double BN, %d ranks: sync BN max rel diff %.3g, local BN %.3g\n", comm().size(), synced, local);
  CHECK(synced <= 1e-10);
  CHECK(local > 1e-4);  // local statistics are another computation, not rounding
}

TEST_CASE("Float with local BatchNorm: the documented difference from one process") {
  const double local = equivalence<float>({.bn = true});
  const double synced = equivalence<float>({.bn = true, .dp = {.sync_batchnorm = true}});
  const double plain = equivalence<float>({});
  if (comm().is_root())
    std::printf("[dist] float, %d ranks, 3 steps: no BN %.3g, sync BN %.3g, local BN %.3g (max rel diff)\n",
                comm().size(), plain, synced, local);
  CHECK(plain <= 1e-5);
  CHECK(synced <= 1e-5);
  CHECK(local < 0.2);
}

TEST_CASE("Frozen parameters are not communicated and stay at rank 0's values") {
  const double d = equivalence<double>({.freeze = "0"});  // the first convolution
  CHECK(d <= 1e-10);
}

TEST_CASE("Buckets start during backward; with overlap off they all start after it") {
  dist::CommStats on, off;
  const double d1 = equivalence<double>({.dp = {.bucket_mb = 1e-9}}, &on);
  const double d2 = equivalence<double>({.dp = {.bucket_mb = 1e-9, .overlap = false}}, &off);
  CHECK(d1 <= 1e-10);
  CHECK(d2 <= 1e-10);
  // One bucket per trainable parameter tensor (6), 3 steps; all but the last few start before
  // backward returns (the hook of the root module fires last).
  CHECK(on.buckets == 3 * 6);
  CHECK(on.launched_in_backward > 0.5);
  CHECK(off.launched_in_backward == 0.0);
  auto net = make_net<double>(false, 1);
  optim::SGD<double> opt(net->parameters(), {.lr = 0.1});
  dist::DataParallel<double> big(*net, &opt, comm(), {});
  CHECK(big.num_buckets() == 1);
  CHECK(big.communicated_values() == net->num_parameters());
}

TEST_CASE("A non-finite loss on one rank stops every rank with the same error") {
  const int world = comm().size(), rank = comm().rank();
  auto net = make_net<float>(true, 7);
  optim::SGD<float> opt(net->parameters(), {.lr = 0.1});
  dist::DataParallel<float> dp(*net, &opt, comm());
  CHECK(dp.begin_step(rank == world - 1 ? NAN : 1.0, 4) == world - 1);
  CHECK(dp.begin_step(1.0, 4) == -1);  // a refused step left no state behind
  dp.end_step();

  // Through train_epoch: the last rank's weights turn NaN after the broadcast.
  Tensor<float> x({8 * world, 3, 8, 8});
  Rng rng(3);
  for (auto& v : x) v = static_cast<float>(rng.uniform());
  std::vector<int32_t> labels(static_cast<size_t>(8 * world));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i % 5);
  auto ds = data::InMemoryDataset::from_tensor(x, labels, {"a", "b", "c", "d", "e"});
  data::Loader<float> loader(ds, {.batch_size = 4, .shuffle = true, .rank = rank, .world = world});
  if (rank == world - 1) net->arena().values.back() = NAN;  // the last bias of the head
  std::string msg;
  try {
    train::train_epoch(*net, opt, loader, {.progress = false, .replicas = &dp});
  } catch (const train::AgreedError& e) {
    msg = e.what();
  }
  INFO("rank " << rank << ": " << msg);
  CHECK(msg.find("not finite on rank " + std::to_string(world - 1) + " of " + std::to_string(world)) != std::string::npos);
  CHECK(msg.find("batch 1 of 2") != std::string::npos);
}

TEST_CASE("train_epoch with DataParallel reports totals over all ranks") {
  const int world = comm().size(), rank = comm().rank();
  auto net = make_net<float>(false, 9);
  optim::SGD<float> opt(net->parameters(), {.lr = 0.05});
  dist::DataParallel<float> dp(*net, &opt, comm());
  Tensor<float> x({13, 3, 8, 8});
  Rng rng(4);
  for (auto& v : x) v = static_cast<float>(rng.uniform());
  std::vector<int32_t> labels(13);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>(i % 5);
  auto ds = data::InMemoryDataset::from_tensor(x, labels, {"a", "b", "c", "d", "e"});
  data::Loader<float> loader(ds, {.batch_size = 2, .shuffle = true, .rank = rank, .world = world});
  auto r = train::train_epoch(*net, opt, loader, {.progress = false, .replicas = &dp});
  // Every sample of the epoch once, over all ranks: the last global batch is dropped only when it
  // has fewer samples than ranks.
  const int64_t g = 2 * world, expect = 13 - (13 % g < world ? 13 % g : 0);
  CHECK(r.samples == expect);
  CHECK(spread(r.loss) == 0.0);
  CHECK(spread(net->arena().values[5]) == 0.0);
}

TEST_CASE("A meta-batch split across ranks gives one process's meta-gradient") {
  const int world = comm().size(), rank = comm().rank();
  auto make = [] {
    auto s = std::make_shared<Sequential<double>>();
    s->emplace_back<Conv2d<double>>(Conv2dOptions{.in_channels = 1, .out_channels = 3, .kernel_size = 3, .padding = 1});
    s->emplace_back<ReLU<double>>();
    s->emplace_back<Flatten<double>>();
    s->emplace_back<Linear<double>>(LinearOptions{.in_features = 3 * 36, .out_features = 3});
    Rng rng(11);
    s->reset_parameters(rng);
    s->flatten_parameters();
    return s;
  };
  struct Task {
    Tensor<double> sx, qx;
    Labels sy, qy;
  };
  const int64_t meta_batch = 5;
  std::vector<Task> tasks;
  Rng rng(12);
  for (int t = 0; t < meta_batch; ++t) {
    Task k{Tensor<double>({6, 1, 6, 6}), Tensor<double>({9, 1, 6, 6}), Labels(6), Labels(9)};
    for (auto& v : k.sx) v = rng.uniform(-1, 1);
    for (auto& v : k.qx) v = rng.uniform(-1, 1);
    for (auto& l : k.sy) l = static_cast<int32_t>(rng.below(3));
    for (auto& l : k.qy) l = static_cast<int32_t>(rng.below(3));
    tasks.push_back(std::move(k));
  }
  auto one = make(), many = make();
  meta::MAML<double> m1(*one, {.inner_lr = 0.1, .inner_steps = 2}), mn(*many, {.inner_lr = 0.1, .inner_steps = 2});
  m1.zero_grad();
  for (const auto& k : tasks) m1.accumulate(k.sx, k.sy, k.qx, k.qy, 1.0 / meta_batch);
  const auto mine = dist::split_tasks(meta_batch, rank, world);
  CHECK(comm().allreduce_max(static_cast<double>(mine.size())) - comm().allreduce_min(static_cast<double>(mine.size())) <= 1);
  mn.zero_grad();
  for (int64_t t = mine.begin; t < mine.end; ++t) {
    const auto& k = tasks[static_cast<size_t>(t)];
    mn.accumulate(k.sx, k.sy, k.qx, k.qy, 1.0 / meta_batch);
  }
  dist::allreduce_gradients(comm(), mn.parameters());
  const double d = max_rel_diff(many->arena().grads, one->arena().grads);
  INFO("meta-gradient max relative difference " << d);
  CHECK(d <= 1e-12);
  // The split covers every task once.
  int64_t covered = mine.size();
  comm().allreduce_sum(&covered, 1);
  CHECK(covered == meta_batch);
  CHECK(dist::split_tasks(2, 2, 3).size() == 0);
}
