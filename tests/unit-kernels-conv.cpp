// Convolution kernels against the naive references, on randomized shapes: odd sizes, stride 2,
// padding, batch 1, 1x1 and 7x7/2. Float runs on every ISA this CPU has (generic = Eigen, avx2 and
// avx512 = packed GEMM with that ISA's micro-kernel and packers); each test asserts that every one
// of those paths really served kernel calls.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "xfer/core/parallel.hpp"
#include "xfer/core/rng.hpp"
#include "xfer/kernels/conv2d.hpp"
#include "xfer/kernels/gemm.hpp"
#include "isa_loop.hpp"
#include "reference_kernels.hpp"

// Unity-built with other unit tests (tests/CMakeLists.txt): this file's names stay in its namespace.
namespace unit_kernels_conv {

using namespace xfer;
using kernels::Conv2dGeometry;
using kernels::describe;
using kernels::max_rel_diff;
using kernels::random_values;

namespace {

template <class T>
void check_all_kernels(Conv2dGeometry g, Rng& rng, double tol) {
  g.finish();
  INFO(describe(g));
  REQUIRE(g.oh > 0);
  REQUIRE(g.ow > 0);
  const int64_t nx = g.n * g.c * g.h * g.w, nw = g.o * g.c * g.kh * g.kw, ny = g.n * g.o * g.oh * g.ow;
  auto x = random_values<T>(nx, rng), w = random_values<T>(nw, rng), b = random_values<T>(g.o, rng);
  auto dy = random_values<T>(ny, rng);

  std::vector<T> y(ny, T(7)), y_ref(ny);
  kernels::conv2d_forward(g, x.data(), w.data(), b.data(), y.data());
  kernels::conv2d_forward_reference(g, x.data(), w.data(), b.data(), y_ref.data());
  CHECK(max_rel_diff(y, y_ref) < tol);

  std::vector<T> y0(ny, T(7));
  kernels::conv2d_forward(g, x.data(), w.data(), static_cast<const T*>(nullptr), y0.data());
  kernels::conv2d_forward_reference(g, x.data(), w.data(), static_cast<const T*>(nullptr), y_ref.data());
  CHECK(max_rel_diff(y0, y_ref) < tol);

  // Fused epilogue (BN folded + residual + ReLU): relu(scale * conv + shift + residual).
  auto scale = random_values<T>(g.o, rng), res = random_values<T>(ny, rng);
  std::vector<T> yf(ny, T(7)), yf_ref(ny);
  kernels::conv2d_forward(g, x.data(), w.data(), yf.data(),
                          kernels::ConvEpilogue<T>{.scale = scale.data(), .shift = b.data(), .residual = res.data(), .relu = true});
  for (int64_t i = 0; i < ny; ++i) {
    const int64_t o = (i / (g.oh * g.ow)) % g.o;
    const T v = y_ref[static_cast<size_t>(i)] * scale[static_cast<size_t>(o)] + b[static_cast<size_t>(o)] +
                res[static_cast<size_t>(i)];
    yf_ref[static_cast<size_t>(i)] = v > T(0) ? v : T(0);
  }
  CHECK(max_rel_diff(yf, yf_ref) < tol);

  std::vector<T> dx(nx, T(7)), dx_ref(nx);
  kernels::conv2d_backward_data(g, dy.data(), w.data(), dx.data());
  kernels::conv2d_backward_data_reference(g, dy.data(), w.data(), dx_ref.data());
  CHECK(max_rel_diff(dx, dx_ref) < tol);

  // Weight gradients accumulate: start both from the same non-zero values.
  auto dw = random_values<T>(nw, rng);
  auto db = random_values<T>(g.o, rng);
  auto dw_ref = dw, db_ref = db;
  kernels::conv2d_backward_weights(g, x.data(), dy.data(), dw.data(), db.data());
  kernels::conv2d_backward_weights_reference(g, x.data(), dy.data(), dw_ref.data(), db_ref.data());
  CHECK(max_rel_diff(dw, dw_ref) < tol);
  CHECK(max_rel_diff(db, db_ref) < tol);
}

std::vector<Conv2dGeometry> fixed_shapes() {
  return {
      {.n = 1, .c = 3, .h = 9, .w = 7, .o = 5, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
      {.n = 3, .c = 5, .h = 11, .w = 13, .o = 9, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1},
      {.n = 2, .c = 3, .h = 19, .w = 17, .o = 8, .kh = 7, .kw = 7, .sh = 2, .sw = 2, .ph = 3, .pw = 3},  // ResNet stem
      {.n = 4, .c = 16, .h = 6, .w = 6, .o = 24, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0},  // pointwise
      {.n = 1, .c = 16, .h = 6, .w = 6, .o = 24, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0},
      {.n = 5, .c = 12, .h = 7, .w = 7, .o = 20, .kh = 1, .kw = 1, .sh = 2, .sw = 2, .ph = 0, .pw = 0},  // downsample
      {.n = 6, .c = 32, .h = 1, .w = 1, .o = 40, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},  // 1x1 map
      {.n = 2, .c = 4, .h = 8, .w = 5, .o = 3, .kh = 2, .kw = 4, .sh = 1, .sw = 3, .ph = 0, .pw = 2},    // rectangular
      // Maps so small that some taps only see padding (the kernels crop them away).
      {.n = 4, .c = 24, .h = 2, .w = 2, .o = 40, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1},  // 2x2 -> 1x1
      {.n = 3, .c = 8, .h = 1, .w = 3, .o = 5, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .ph = 2, .pw = 2},
      {.n = 2, .c = 6, .h = 2, .w = 1, .o = 7, .kh = 3, .kw = 3, .sh = 1, .sw = 2, .ph = 1, .pw = 1},
      {.n = 2, .c = 3, .h = 1, .w = 1, .o = 4, .kh = 1, .kw = 1, .sh = 3, .sw = 3, .ph = 2, .pw = 2},    // no tap in the image
      // Output rows of 8, 16 and 32 pixels (the weight gradient's transposing pack), with and without padding.
      {.n = 4, .c = 6, .h = 8, .w = 8, .o = 10, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
      {.n = 2, .c = 4, .h = 3, .w = 26, .o = 5, .kh = 2, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 0},
      {.n = 3, .c = 5, .h = 6, .w = 16, .o = 20, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
      {.n = 2, .c = 7, .h = 5, .w = 34, .o = 9, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 0},
      {.n = 2, .c = 3, .h = 4, .w = 32, .o = 8, .kh = 5, .kw = 5, .sh = 1, .sw = 1, .ph = 2, .pw = 2},
      // Vertical stride 2 with horizontal stride 1 and rows of 16 pixels (the transposing packs).
      {.n = 2, .c = 3, .h = 9, .w = 16, .o = 5, .kh = 3, .kw = 3, .sh = 2, .sw = 1, .ph = 1, .pw = 1},
      // Full 8x32-aligned GEMM tiles everywhere (computed straight into the output / dw).
      {.n = 2, .c = 32, .h = 8, .w = 8, .o = 16, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
      // Big enough for several GEMM tiles, K blocks (> 256) and both threads.
      {.n = 3, .c = 40, .h = 13, .w = 11, .o = 150, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
      {.n = 9, .c = 64, .h = 4, .w = 4, .o = 72, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1},
  };
}

}  // namespace

TEST_CASE("float conv kernels match the naive reference on fixed edge-case shapes") {
  Rng rng(11);
  test::for_each_isa([&] {
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      for (auto g : fixed_shapes()) check_all_kernels<float>(g, rng, 2e-5);
    }
  });
}

TEST_CASE("double conv kernels match the naive reference on fixed edge-case shapes") {
  Rng rng(12);
  set_num_threads(2);
  for (auto g : fixed_shapes()) check_all_kernels<double>(g, rng, 1e-12);
}

TEST_CASE("float conv kernels match the naive reference on 40 random shapes") {
  Rng rng(13);
  set_num_threads(2);
  test::for_each_isa([&] {
  for (int trial = 0; trial < 40; ++trial) {
    Conv2dGeometry g;
    g.n = 1 + static_cast<int64_t>(rng.below(4));
    g.c = 1 + static_cast<int64_t>(rng.below(20));
    g.o = 1 + static_cast<int64_t>(rng.below(40));
    g.kh = 1 + static_cast<int64_t>(rng.below(5));
    g.kw = rng.bernoulli(0.7) ? g.kh : 1 + static_cast<int64_t>(rng.below(5));
    g.sh = 1 + static_cast<int64_t>(rng.below(2));
    g.sw = rng.bernoulli(0.7) ? g.sh : 1 + static_cast<int64_t>(rng.below(3));
    g.ph = static_cast<int64_t>(rng.below(static_cast<uint64_t>(g.kh / 2 + 1)));
    g.pw = static_cast<int64_t>(rng.below(static_cast<uint64_t>(g.kw / 2 + 1)));
    // A third of the shapes on tiny maps, where padding-only taps get cropped.
    const uint64_t max_side = rng.bernoulli(0.33) ? 3 : 14;
    g.h = std::max<int64_t>(g.kh - 2 * g.ph, 1 + static_cast<int64_t>(rng.below(max_side)));
    g.w = std::max<int64_t>(g.kw - 2 * g.pw, 1 + static_cast<int64_t>(rng.below(max_side)));
    check_all_kernels<float>(g, rng, 2e-5);
  }
  });
}

TEST_CASE("taps that only ever see padding are cropped, the rest kept") {
  auto crop = [](Conv2dGeometry g) {
    g.finish();
    return kernels::detail::crop_taps(g);
  };
  // layer4 of ResNet-18 on 32x32 images: 3x3/1 on a 1x1 map is the centre tap, a pointwise conv.
  auto c = crop({.n = 2, .c = 512, .h = 1, .w = 1, .o = 512, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1});
  CHECK(c.cropped);
  CHECK((c.i0 == 1 && c.j0 == 1 && c.g.kh == 1 && c.g.kw == 1 && c.g.ph == 0 && c.g.pw == 0));
  CHECK(c.g.pointwise());
  // 3x3/2 on a 2x2 map: one output pixel that sees taps 1..2 in each direction.
  c = crop({.n = 2, .c = 256, .h = 2, .w = 2, .o = 512, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1});
  CHECK((c.cropped && c.i0 == 1 && c.g.kh == 2 && c.g.ph == 0 && c.g.oh == 1));
  // 3x3/1 on a 2x2 map uses every tap somewhere: nothing to crop.
  CHECK_FALSE(crop({.n = 1, .c = 4, .h = 2, .w = 2, .o = 4, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1}).cropped);
  CHECK(crop({.n = 1, .c = 3, .h = 1, .w = 1, .o = 4, .kh = 1, .kw = 1, .sh = 3, .sw = 3, .ph = 2, .pw = 2}).empty);
}

TEST_CASE("packed GEMM honours strided, transposed and batch-folded views and the epilogue") {
  Rng rng(14);
  set_num_threads(2);
  test::for_each_isa([&] {
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 33, 5}, {130, 70, 300}, {64, 1100, 40}}) {
    INFO("M=" << M << " N=" << N << " K=" << K);
    auto a = random_values<float>(M * K, rng), bsrc = random_values<float>(K * N, rng), bias = random_values<float>(M, rng);
    // A stored transposed (K x M), B stored batch-folded with period 5 as an NCHW tensor.
    const int64_t Pd = 5, imgs = (N + Pd - 1) / Pd;
    std::vector<float> b_nchw(static_cast<size_t>(imgs * K * Pd), 0.0f);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) b_nchw[static_cast<size_t>((j / Pd) * K * Pd + k * Pd + j % Pd)] = bsrc[k * N + j];
    std::vector<float> c(static_cast<size_t>(M * N)), expect(static_cast<size_t>(M * N));
    auto c0 = random_values<float>(M * N, rng);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += static_cast<double>(a[k * M + i]) * bsrc[k * N + j];
        const double v = c0[i * N + j] + s + bias[i];
        expect[i * N + j] = static_cast<float>(v > 0 ? v : 0);
      }
    c = c0;
    kernels::gemm(M, N, K, kernels::transposed(a.data(), M),
                  kernels::batch_folded(static_cast<const float*>(b_nchw.data()), K, Pd), kernels::View<float>{c.data(), {N}, {1}},
                  {.accumulate = true, .row_bias = bias.data(), .relu = true});
    CHECK(max_rel_diff(c, expect) < 1e-5);
  }
  });
}

TEST_CASE("ISA selection: XFER_ISA values, limits and overrides") {
  const Isa best = cpu_info().best;
  CHECK(xfer::detail::isa_from_env(nullptr, best) == best);
  CHECK(xfer::detail::isa_from_env("", best) == best);
  CHECK(xfer::detail::isa_from_env("generic", best) == Isa::generic);
  CHECK(xfer::detail::isa_from_env("avx2", Isa::avx512) == Isa::avx2);
  CHECK_THROWS_WITH(xfer::detail::isa_from_env("avx512", Isa::avx2), Catch::Contains("does not support"));
  CHECK_THROWS_WITH(xfer::detail::isa_from_env("sse9", best), Catch::Contains("expected generic, avx2 or avx512"));
  CHECK(available_isas().size() == static_cast<size_t>(best) + 1);
  set_isa(Isa::generic);
  CHECK(active_isa() == Isa::generic);
  reset_isa();
  if (best != Isa::avx512) CHECK_THROWS_AS(set_isa(Isa::avx512), Error);
  // Detection agrees with the features it is built from.
  const CpuInfo& c = cpu_info();
  CHECK((best >= Isa::avx2) == (c.avx2 && c.fma && c.os_ymm));
}

}  // namespace unit_kernels_conv
