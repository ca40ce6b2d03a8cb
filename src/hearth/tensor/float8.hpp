// The two 8-bit floats of safetensors' F8_E4M3 and F8_E5M2 (PyTorch float8_e4m3fn and
// float8_e5m2, the OCP FP8 formats), written from their definitions:
//  * e4m3fn: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal
//    (m * 2^-9); no infinities; 0x7F and 0xFF are NaN; the largest value is 448 (0x7E).
//  * e5m2: 1 sign, 5 exponent bits (bias 15), 2 mantissa bits: the upper byte of an IEEE half,
//    with its infinities and NaNs.
// Every value of both converts to f32 exactly.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "hearth/tensor/half.hpp"

namespace hearth {

inline float f8e4m3_to_f32(std::uint8_t b) {
  const std::uint32_t sign = static_cast<std::uint32_t>(b & 0x80) << 24;
  const std::uint32_t e = (b >> 3) & 0xF, m = b & 0x7;
  if (e == 0xF && m == 0x7) return std::bit_cast<float>(sign | 0x7FC00000u);
  if (e == 0) return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(m * 0x1p-9f));
  return std::bit_cast<float>(sign | (e + 120) << 23 | m << 20);
}

inline float f8e5m2_to_f32(std::uint8_t b) {
  return f16_to_f32(static_cast<std::uint16_t>(b << 8));
}

// Round to nearest even, saturating at +-448 (what PyTorch's saturating casts and the FLUX fp8
// converters give; e4m3fn has no infinity); NaN stays NaN.
inline std::uint8_t f32_to_f8e4m3(float f) {
  const std::uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  if (std::isnan(f)) return sign | 0x7F;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7E;
  // The code whose value is nearest, ties to the even code: codes 0..0x7E grow with the value.
  int lo = 0, hi = 0x7E;
  while (lo < hi) {  // first code whose value >= a
    const int mid = (lo + hi) / 2;
    if (f8e4m3_to_f32(static_cast<std::uint8_t>(mid)) < a) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo > 0) {
    const float above = f8e4m3_to_f32(static_cast<std::uint8_t>(lo));
    const float below = f8e4m3_to_f32(static_cast<std::uint8_t>(lo - 1));
    if (a - below < above - a || (a - below == above - a && (lo - 1) % 2 == 0)) --lo;
  }
  return static_cast<std::uint8_t>(sign | lo);
}

// The IEEE half's upper byte, rounded to nearest even on the lower one (past the largest finite
// value, 57344, to infinity, as PyTorch's cast); NaN stays NaN.
inline std::uint8_t f32_to_f8e5m2(float f) {
  const std::uint16_t h = f32_to_f16(f);
  if ((h & 0x7FFFu) > 0x7C00u) return static_cast<std::uint8_t>((h >> 8) | 0x02u);
  const unsigned low = h & 0xFFu, high = h >> 8;
  return static_cast<std::uint8_t>(high + (low > 0x80u || (low == 0x80u && (high & 1u))));
}

}  // namespace hearth
