// IEEE half (f16) and bfloat16 <-> f32 conversion: exact scalar forms plus bulk converters that
// use F16C / AVX-512 when the CPU has them.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace hearth {

float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);  // round to nearest even; overflow gives inf, NaN stays NaN

inline float bf16_to_f32(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

inline std::uint16_t f32_to_bf16(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN
  const std::uint32_t rounding = 0x7FFFu + ((u >> 16) & 1u);  // to nearest even
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

void f16_to_f32(const std::uint16_t* src, float* dst, std::size_t n);
void f32_to_f16(const float* src, std::uint16_t* dst, std::size_t n);
void bf16_to_f32(const std::uint16_t* src, float* dst, std::size_t n);
void f32_to_bf16(const float* src, std::uint16_t* dst, std::size_t n);

namespace detail {
// ISA-specific bulk kernels (half.avx2.cpp, half.avx512.cpp).
void f16_to_f32_avx2(const std::uint16_t* src, float* dst, std::size_t n);
void f32_to_f16_avx2(const float* src, std::uint16_t* dst, std::size_t n);
void bf16_to_f32_avx512(const std::uint16_t* src, float* dst, std::size_t n);
}  // namespace detail

}  // namespace hearth
