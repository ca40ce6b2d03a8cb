// Helpers shared by the AVX2 decode kernels (quant_ggml_decode.avx2.cpp,
// quant_mlx_decode.avx2.cpp), and through avx512_util.hpp by the AVX-512 ones. Include it from a
// file compiled with the AVX2 (or wider) flags: everything here is in an unnamed namespace, so
// each file gets its own copy and nothing is shared with the other levels' files.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;
using u8 = std::uint8_t;

constexpr i64 kPrefetch = 1024;  // bytes ahead in the weight stream

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float max_abs32(const float* x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
  for (int i = 8; i < 32; i += 8)
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Four vectors of eight int32 (elements 0-7, 8-15, 16-23, 24-31) as 32 int8 in input order.
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  // packs works per 128-bit lane: the 4-byte groups come out as a0-3 b0-3 c0-3 d0-3 a4-7 b4-7
  // c4-7 d4-7.
  return _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One block of 32 inputs to int8 exactly as quantize_rows rounds it (cvtps rounds to nearest even
// as lrintf does), in input order. Returns d = max|x| / 127.
inline float quantize_q8_block(const float* x, __m256i& q) {
  const float d = max_abs32(x) / 127.0f;
  const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  __m256i v[4];
  for (int i = 0; i < 4; ++i)
    v[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), id));
  q = pack32(v[0], v[1], v[2], v[3]);
  return d;
}

// One block of 32 inputs as AffineActs::fill rounds it: q = round(x * 127 / max|x|) (nearest
// even, as cvtps rounds), clamped to +-127, in input order. Returns d = max|x| / 127.
inline float quantize_affine_block(const float* x, __m256i& q) {
  const float amax = max_abs32(x);
  const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256i v[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), inv);
    v[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, lo), hi));
  }
  q = pack32(v[0], v[1], v[2], v[3]);
  return amax / 127.0f;
}

// The 16-bit value at p, zero-extended.
inline std::uint64_t load16(const u8* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Eight f16 values `stride` bytes apart from p (the scales of eight stored blocks) as floats; the
// gathering runs on the integer units, which the vector kernels leave idle.
inline __m256 gather_halves(const u8* p, i64 stride) {
  const std::uint64_t lo = load16(p) | load16(p + stride) << 16 | load16(p + 2 * stride) << 32 |
                           load16(p + 3 * stride) << 48;
  const u8* q = p + 4 * stride;
  const std::uint64_t hi = load16(q) | load16(q + stride) << 16 | load16(q + 2 * stride) << 32 |
                           load16(q + 3 * stride) << 48;
  return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
}

// Q4_K / Q5_K scales and mins of the eight sub-blocks (times d and dmin).
inline void k4_scales(const u8* b, __m256& sc, __m256& mn) {
  std::uint32_t u[3];
  std::memcpy(u, b + 4, 12);
  constexpr std::uint32_t m1 = 0x3f3f3f3f, m2 = 0x0f0f0f0f, m3 = 0x03030303;
  const std::uint32_t s_lo = u[0] & m1;
  const std::uint32_t s_hi = (u[2] & m2) | (((u[0] >> 6) & m3) << 4);
  const std::uint32_t m_lo = u[1] & m1;
  const std::uint32_t m_hi = ((u[2] >> 4) & m2) | (((u[1] >> 6) & m3) << 4);
  const auto bytes8 = [](std::uint32_t lo, std::uint32_t hi) {
    const __m128i v = _mm_cvtsi64_si128(static_cast<long long>((std::uint64_t{hi} << 32) | lo));
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
  };
  std::uint16_t h[2];
  std::memcpy(h, b, 4);
  sc = _mm256_mul_ps(bytes8(s_lo, s_hi), _mm256_set1_ps(_cvtsh_ss(h[0])));
  mn = _mm256_mul_ps(bytes8(m_lo, m_hi), _mm256_set1_ps(_cvtsh_ss(h[1])));
}

}  // namespace
}  // namespace hearth::kernels
