// Bit-exact conversions between the reduced float formats that appear in safetensors files
// (IEEE half, bfloat16, float8 e4m3fn / e5m2) and float. The one thing to know: these only ever
// widen (file -> float); writing reduced formats is left to the producer, so no rounding mode is
// chosen here. Subnormals, infinities and NaN follow the formats exactly (as torch's .float()).
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace xfer::io::detail {

// IEEE 754 binary16 -> float (exact: every half is representable as a float).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf or NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: value = mant * 2^-24, normal as a float.
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  return std::bit_cast<float>(bits);
}

// bfloat16 is the upper half of a float.
inline float bf16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// float8 e5m2 is the upper byte of a half.
inline float f8e5m2_to_float(uint8_t b) { return half_to_float(static_cast<uint16_t>(b) << 8); }

// float8 e4m3fn: bias 7, no infinities, S.1111.111 is NaN, subnormals mant * 2^-9.
inline float f8e4m3fn_to_float(uint8_t b) {
  const bool neg = (b & 0x80u) != 0;
  const uint32_t exp = (b >> 3) & 0xFu;
  const uint32_t mant = b & 0x7u;
  float v;
  if (exp == 0xF && mant == 0x7) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (exp == 0) {
    v = static_cast<float>(mant) * 0x1p-9f;
  } else {
    v = std::bit_cast<float>(((exp + 120u) << 23) | (mant << 20));  // rebias 7 -> 127
  }
  return neg ? -v : v;
}

// float -> bfloat16 with round-to-nearest-even (NaN stays NaN); used by tests and writers that
// want to store bf16 the way torch's .bfloat16() does.
inline uint16_t float_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

}  // namespace xfer::io::detail
