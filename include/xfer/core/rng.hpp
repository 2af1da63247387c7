// Rng: the one seedable random source. The same seed and thread count give the same run.
// Distributions are implemented here (not std::normal_distribution) so streams are identical
// across standard libraries.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <algorithm>
#include <limits>

#include <Eigen/Core>

#include "xfer/core/error.hpp"

namespace xfer {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : engine_(seed) {}
  void seed(uint64_t s) { engine_.seed(s); }

  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) {
    // Lemire's method would be faster; rejection keeps it exactly uniform and simple.
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = engine_(); while (r >= limit);
    return r % n;
  }
  bool bernoulli(double p) { return uniform() < p; }
  // Standard normal by Box-Muller (the cached second value keeps it cheap).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do u1 = uniform(); while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * M_PI * u2);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  // Bulk draws for parameter initialisation: the logarithm and square root of Box-Muller run
  // vectorised in Eigen, so initialising a 100M-parameter VGG takes well under a second.
  template <class T>
  void fill_uniform(T* out, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(uniform(lo, hi));
  }
  template <class T>
  void fill_normal(T* out, int64_t n, double mean, double stddev) {
    constexpr int64_t kBlock = 4096;
    Eigen::Array<T, Eigen::Dynamic, 1> u1(kBlock / 2), u2(kBlock / 2), r(kBlock / 2);
    for (int64_t start = 0; start < n; start += kBlock) {
      const int64_t len = std::min(kBlock, n - start), pairs = (len + 1) / 2;
      for (int64_t i = 0; i < pairs; ++i) {
        double a;
        do a = uniform(); while (a <= 0.0);
        u1[i] = static_cast<T>(a);
        u2[i] = static_cast<T>(2.0 * M_PI * uniform());
      }
      auto h1 = u1.head(pairs), h2 = u2.head(pairs);
      r.head(pairs) = (T(-2) * h1.max(std::numeric_limits<T>::min()).log()).sqrt();
      // sin/cos stay scalar: GCC 12 warns (falsely) inside Eigen's AVX-512 sincos in every user build.
      for (int64_t i = 0; i < pairs; ++i) {
        out[start + 2 * i] = static_cast<T>(mean + stddev * r[i] * std::cos(h2[i]));
        if (2 * i + 1 < len) out[start + 2 * i + 1] = static_cast<T>(mean + stddev * r[i] * std::sin(h2[i]));
      }
    }
  }

  // Full state, for checkpoints (resume must continue the same stream).
  std::mt19937_64& engine() { return engine_; }
  bool has_spare() const { return has_spare_; }
  double spare() const { return spare_; }
  void set_spare(bool has, double v) { has_spare_ = has; spare_ = v; }
  // The complete state as text (engine words + Box-Muller spare), for checkpoints.
  std::string state_string() const {
    std::ostringstream os;
    os << engine_ << ' ' << (has_spare_ ? 1 : 0) << ' ' << std::hexfloat << spare_;
    return os.str();
  }
  void set_state_string(const std::string& s) {
    std::istringstream is(s);
    std::mt19937_64 e;
    int has = 0;
    std::string spare;
    is >> e >> has >> spare;
    if (is.fail()) throw Error("Rng::set_state_string: not an Rng state (" + std::to_string(s.size()) + " characters)");
    engine_ = e;
    has_spare_ = has != 0;
    spare_ = std::strtod(spare.c_str(), nullptr);
  }

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// splitmix64's finaliser: turns nearby seeds (seed, epoch, index, episode id) into unrelated ones.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Source for layers constructed without an explicit Rng (like torch.manual_seed).
inline Rng& global_rng() {
  static Rng rng(0x5eedu);
  return rng;
}
inline void manual_seed(uint64_t seed) { global_rng() = Rng(seed); }

}  // namespace xfer
