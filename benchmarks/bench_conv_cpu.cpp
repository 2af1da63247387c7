// bench_conv_cpu: GFLOP/s of the convolution kernels per second of *thread CPU time* (1 thread,
// batch 16, best of 3), on ten ResNet-18 shapes. Unlike bench_conv's wall-clock numbers these hold
// on a machine shared with other work (time slices lost to other processes are not counted), which
// is how the before/after kernel table of issue 11 in benchmarks/RESULTS.md was measured.
//
//   bench_conv_cpu                 (XFER_ISA=generic|avx2|avx512 to pick the kernels)
#include <time.h>
#include <cstdio>
#include <vector>
#include <algorithm>
#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/kernels/conv2d.hpp"
using namespace xfer;
static double cpu_now() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
template <class F> double best_of(F&& f, int reps) { f(); double b = 1e9; for (int r = 0; r < reps; ++r) { double t0 = cpu_now(); f(); b = std::min(b, cpu_now() - t0); } return b; }
int main() {
  set_num_threads(1);
  struct S { const char* name; int64_t c, o, hw, k, s, p; };
  S shapes[] = {{"cifar l1 64x64 32", 64, 64, 32, 3, 1, 1}, {"cifar l2c2 128 16", 128, 128, 16, 3, 1, 1}, {"cifar l3c2 256 8", 256, 256, 8, 3, 1, 1},
                {"cifar l4c2 512 4", 512, 512, 4, 3, 1, 1}, {"r18 l1 64 8x8", 64, 64, 8, 3, 1, 1}, {"r18 l2c2 128 4", 128, 128, 4, 3, 1, 1},
                {"r18 l3c2 256 2", 256, 256, 2, 3, 1, 1}, {"r18 l4c2 512 1", 512, 512, 1, 3, 1, 1}, {"r18 stem 7x7/2", 3, 64, 32, 7, 2, 3},
                {"cifar l2c1 s2", 64, 128, 32, 3, 2, 1}};
  Rng rng(1);
  double tot[3] = {0, 0, 0};
  for (auto& s : shapes) {
    kernels::Conv2dGeometry g{.n = 16, .c = s.c, .h = s.hw, .w = s.hw, .o = s.o, .kh = s.k, .kw = s.k, .sh = s.s, .sw = s.s, .ph = s.p, .pw = s.p};
    g.finish();
    Tensor<float> x({g.n, g.c, g.h, g.w}), w({g.o, g.c, g.kh, g.kw}), y({g.n, g.o, g.oh, g.ow}), dx(x.shape()), dw(w.shape());
    for (auto* t : {&x, &w, &y}) for (auto& v : *t) v = static_cast<float>(rng.normal());
    const int reps = 3;
    double tf = best_of([&] { kernels::conv2d_forward(g, x.data(), w.data(), static_cast<const float*>(nullptr), y.data()); }, reps);
    double td = best_of([&] { kernels::conv2d_backward_data(g, y.data(), w.data(), dx.data()); }, reps);
    double tw = best_of([&] { kernels::conv2d_backward_weights(g, x.data(), y.data(), dw.data(), static_cast<float*>(nullptr)); }, reps);
    const double gf = g.flops() * 1e-9;
    tot[0] += tf; tot[1] += td; tot[2] += tw;
    std::printf("%-20s fwd %6.1f  bwd-data %6.1f  bwd-w %6.1f GFLOP/s (cpu time)\n", s.name, gf / tf, gf / td, gf / tw);
  }
  std::printf("total cpu s: fwd %.3f bwd-data %.3f bwd-w %.3f (isa %s)\n", tot[0], tot[1], tot[2], isa_summary().c_str());
}
