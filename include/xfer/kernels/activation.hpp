// Float kernels of the exp-based activations (nn::SiLU, nn::Sigmoid): forward and backward over
// contiguous arrays. EfficientNet applies SiLU to every activation map, and a scalar std::exp per
// element costs more than the depthwise convolutions around it, so the AVX2 path evaluates exp with
// 8 lanes (Cephes' expf: range reduction to [-ln2/2, ln2/2], degree-6 polynomial, 2^n through the
// exponent bits; about 2 ulp). AVX-512 CPUs run the AVX2 path; the generic path is std::exp.
#pragma once

#include <cmath>
#include <cstdint>

#include "xfer/core/cpu.hpp"
#include "xfer/core/parallel.hpp"
#include "xfer/kernels/simd.hpp"

namespace xfer::kernels {

enum class ExpActivation { SiLU, Sigmoid };

namespace detail {

template <ExpActivation A>
inline float exp_act_value(float x) {
  const float s = 1.0f / (1.0f + std::exp(-x));
  return A == ExpActivation::SiLU ? x * s : s;
}
template <ExpActivation A>
inline float exp_act_derivative(float x) {
  const float s = 1.0f / (1.0f + std::exp(-x));
  return A == ExpActivation::SiLU ? s * (1.0f + x * (1.0f - s)) : s * (1.0f - s);
}

#if XFER_HAVE_AVX2_KERNELS
// exp(x) for 8 lanes (inputs clamped to [-88.38, 88.38]).
XFER_TARGET_AVX2 inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)), _mm256_set1_ps(88.3762626647949f));
  __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// y = f(x) (dy == nullptr) or y = dy * f'(x) on [0, n).
template <ExpActivation A>
XFER_TARGET_AVX2 inline void exp_act_avx2(const float* x, const float* dy, float* y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), v))));
    __m256 r;
    if (dy == nullptr) {
      r = A == ExpActivation::SiLU ? _mm256_mul_ps(v, s) : s;
    } else {
      const __m256 oms = _mm256_sub_ps(one, s);
      const __m256 d = A == ExpActivation::SiLU ? _mm256_mul_ps(s, _mm256_fmadd_ps(v, oms, one)) : _mm256_mul_ps(s, oms);
      r = _mm256_mul_ps(_mm256_loadu_ps(dy + i), d);
    }
    _mm256_storeu_ps(y + i, r);
  }
  for (; i < n; ++i) y[i] = dy ? dy[i] * exp_act_derivative<A>(x[i]) : exp_act_value<A>(x[i]);
}
#endif

template <ExpActivation A>
void exp_act(const float* x, const float* dy, float* y, int64_t n) {
  constexpr int64_t kChunk = 4096;
  const Isa isa = active_isa();
  note_path(isa >= Isa::avx2 ? Isa::avx2 : Isa::generic);
  XFER_OMP_FOR(n * 16)
  for (int64_t c = 0; c < (n + kChunk - 1) / kChunk; ++c) {
    const int64_t lo = c * kChunk, len = n - lo < kChunk ? n - lo : kChunk;
#if XFER_HAVE_AVX2_KERNELS
    if (isa >= Isa::avx2) {
      exp_act_avx2<A>(x + lo, dy ? dy + lo : nullptr, y + lo, len);
      continue;
    }
#endif
    for (int64_t i = lo; i < lo + len; ++i) y[i] = dy ? dy[i] * exp_act_derivative<A>(x[i]) : exp_act_value<A>(x[i]);
  }
}

}  // namespace detail

// y = silu(x) or sigmoid(x) elementwise (float; y may alias x).
template <ExpActivation A>
void exp_activation_forward(const float* x, float* y, int64_t n) {
  detail::exp_act<A>(x, nullptr, y, n);
}
// dx = dy * f'(x) elementwise.
template <ExpActivation A>
void exp_activation_backward(const float* x, const float* dy, float* dx, int64_t n) {
  detail::exp_act<A>(x, dy, dx, n);
}

}  // namespace xfer::kernels
