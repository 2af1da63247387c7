// bench_dist_allreduce: what data parallelism costs between the ranks of this job.
//  1. MPI_Allreduce (float sum) latency and bandwidth over message sizes: median time per call,
//     algorithm bandwidth (bytes / time) and ring "bus" bandwidth (2 (N-1) / N * bytes / time).
//  2. One training step of a zoo model per rank (forward + backward + SGD), alone (no
//     communication), and under dist::DataParallel with the allreduce overlapping backward and
//     without overlap; the gradient size and the time each rank waited for the allreduce.
//
//   mpirun --allow-run-as-root -np 2 bench_dist_allreduce --threads 1 --batch 32 --json
//
// RESULTS.md's scaling model takes the step time, gradient size and fitted latency from here.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include <xfer/dist.hpp>
#include <xfer/xfer.hpp>

using namespace xfer;
using Clock = std::chrono::steady_clock;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  CLI::App app{"allreduce latency/bandwidth and data-parallel step time between the ranks of this job"};
  std::string model = "resnet18";
  int64_t batch = 32, image = 32, max_mb = 64;
  int threads = 1, steps = 6;
  bool json = false;
  app.add_option("--model", model, "zoo model for the step measurement");
  app.add_option("--batch", batch, "images per rank per step")->check(CLI::PositiveNumber);
  app.add_option("--image", image, "input height = width")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "OpenMP threads per rank")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "timed steps per mode (after 2 warm-up steps)")->check(CLI::PositiveNumber);
  app.add_option("--max-mb", max_mb, "largest allreduce message (MB)")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "print one JSON line at the end (rank 0)");
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    dist::Communicator comm;
    const int world = comm.size();
    const bool root = comm.is_root();
    nlohmann::json out = {{"world", world}, {"threads_per_rank", threads}, {"allreduce", nlohmann::json::array()}};

    // ---- 1. allreduce sweep ----------------------------------------------------------------------
    if (root) std::printf("MPI_Allreduce float sum, %d ranks\n%12s %12s %12s %12s\n", world, "bytes", "median us", "alg GB/s", "bus GB/s");
    for (int64_t bytes = 4; bytes <= max_mb * 1000000; bytes *= 4) {
      std::vector<float> buf(static_cast<size_t>(bytes / 4), 1.0f);
      const int reps = static_cast<int>(std::clamp<int64_t>(200000000 / (bytes + 100000), 5, 2000));
      std::vector<double> t;
      for (int r = 0; r < reps + 2; ++r) {
        comm.barrier();
        const auto t0 = Clock::now();
        comm.allreduce_sum(buf.data(), static_cast<int64_t>(buf.size()));
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        if (r >= 2) t.push_back(comm.allreduce_max(s));  // the slowest rank's time
      }
      const double m = median(t), alg = static_cast<double>(bytes) / m / 1e9;
      const double bus = alg * 2.0 * (world - 1) / world;
      if (root) std::printf("%12lld %12.1f %12.3f %12.3f\n", static_cast<long long>(bytes), m * 1e6, alg, bus);
      out["allreduce"].push_back({{"bytes", bytes}, {"median_s", m}, {"alg_GBps", alg}, {"bus_GBps", bus}});
    }

    // ---- 2. training step ------------------------------------------------------------------------
    auto net = models::create<float>(model, {.num_classes = 10, .seed = 1});
    optim::SGD<float> opt(net->parameters(), {.lr = 0.01, .momentum = 0.9});
    Tensor<float> x({batch, 3, image, image});
    Rng rng(static_cast<uint64_t>(comm.rank()) + 5);
    for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
    nn::Labels y(static_cast<size_t>(batch));
    for (auto& l : y) l = static_cast<int32_t>(rng.below(10));
    const double grad_mb = static_cast<double>(net->num_trainable_parameters()) * 4 / 1e6;
    auto run = [&](train::Replicas* rep, const char* name) {
      std::vector<double> t;
      for (int s = 0; s < steps + 2; ++s) {
        comm.barrier();
        const auto t0 = Clock::now();
        const Tensor<float>& logits = net->forward(x);
        auto l = nn::cross_entropy(logits, y);
        if (rep) rep->begin_step(l.loss, batch);
        opt.zero_grad();
        net->backward(l.grad, false);
        if (rep) rep->end_step();
        opt.step();
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        if (s >= 2) t.push_back(comm.allreduce_max(sec));
      }
      const double m = median(t);
      if (root) std::printf("%-22s step %8.1f ms  %8.1f img/s per rank\n", name, m * 1e3, batch / m);
      return m;
    };
    if (root) std::printf("\n%s, batch %lld per rank at %lldx%lld, %d thread(s) per rank, gradient %.1f MB\n", model.c_str(),
                          static_cast<long long>(batch), static_cast<long long>(image), static_cast<long long>(image), threads, grad_mb);
    const double alone = run(nullptr, "no communication");
    double overlap = 0, blocking = 0, wait_on = 0, wait_off = 0, in_bw = 0;
    int buckets = 0;
    {
      dist::DataParallel<float> dp(*net, &opt, comm, {.overlap = true});
      overlap = run(&dp, "DataParallel overlap");
      wait_on = dp.stats().wait_seconds / dp.stats().steps;
      in_bw = dp.stats().launched_in_backward;
      buckets = dp.num_buckets();
    }
    {
      dist::DataParallel<float> dp(*net, &opt, comm, {.overlap = false});
      blocking = run(&dp, "DataParallel blocking");
      wait_off = dp.stats().wait_seconds / dp.stats().steps;
    }
    if (root)
      std::printf("waited for the allreduce: %.1f ms per step with overlap (%.0f%% of %d buckets started in backward), %.1f ms without\n",
                  wait_on * 1e3, in_bw * 100, buckets, wait_off * 1e3);
    out["step"] = {{"model", model}, {"batch_per_rank", batch}, {"image", image}, {"gradient_MB", grad_mb},
                   {"buckets", buckets}, {"alone_s", alone}, {"overlap_s", overlap}, {"blocking_s", blocking},
                   {"wait_overlap_s", wait_on}, {"wait_blocking_s", wait_off}, {"launched_in_backward", in_bw}};
    if (root && json) std::cout << out.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dist_allreduce: error: %s\n", e.what());
    dist::Environment::abort(1);
  }
}
