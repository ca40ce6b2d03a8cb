// One float SIMD vector type per instruction set, chosen by the flags of the translation unit that
// includes this header: 16 lanes (AVX-512), 8 lanes (AVX2 + FMA) or 1 lane (portable scalar).
// Included only by the kernel files (kernels_scalar.cpp, kernels.avx2.cpp, kernels.avx512.cpp);
// everything sits in an unnamed namespace so the three builds never collide at link time.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "hearth/tensor/float8.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::kernels {
namespace {

#if defined(__AVX512F__)

// gcc 12's AVX-512 intrinsics pass _mm*_undefined_*() as masked-off sources and then trip
// -Wuninitialized where they are inlined. The same kernel source is checked by the AVX2 and
// scalar builds, which keep the warning.
#pragma GCC diagnostic ignored "-Wuninitialized"

struct Vec {
  static constexpr int kLanes = 16;
  __m512 v;
  static Vec zero() { return {_mm512_setzero_ps()}; }
  static Vec set1(float x) { return {_mm512_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Vec load_partial(const float* p, int n) {
    return {_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p)};
  }
  // kLanes elements at any byte address: f32, IEEE half, bfloat16.
  static Vec load_f32u(const void* p) { return {_mm512_loadu_ps(p)}; }
  static Vec load_f16(const void* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p)))};
  }
  static Vec load_bf16(const void* p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
  }
  // float8 (tensor/float8.hpp) through IEEE half: e5m2 is a half's upper byte; e4m3fn's
  // exponent and mantissa bits, placed in a half's, give its value / 2^8 (subnormals too), and
  // 0x7F / 0xFF (480 after the scaling) are its NaNs.
  static Vec load_f8e5m2(const void* p) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(static_cast<const __m128i*>(p)));
    return {_mm512_cvtph_ps(_mm256_slli_epi16(b, 8))};
  }
  static Vec load_f8e4m3(const void* p) {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(static_cast<const __m128i*>(p)));
    const __m256i h =
        _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8),
                        _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7F)), 7));
    const __m512 v = _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
    const __mmask16 nan = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(480.0f), _CMP_EQ_OQ);
    return {_mm512_mask_blend_ps(nan, v, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()))};
  }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  void store_partial(float* p, int n) const {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
  // Halves folded by lane shuffles (gcc 12's _mm512_reduce_* trip -Werror=uninitialized).
  float reduce_add() const {
    __m512 t = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
    t = _mm512_add_ps(t, _mm512_shuffle_f32x4(t, t, 0xB1));
    __m128 s = _mm512_castps512_ps128(t);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  float reduce_max() const {
    __m512 t = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
    t = _mm512_max_ps(t, _mm512_shuffle_f32x4(t, t, 0xB1));
    __m128 s = _mm512_castps512_ps128(t);
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
inline Vec operator+(Vec a, Vec b) {
  return {_mm512_add_ps(a.v, b.v)};
}
inline Vec operator-(Vec a, Vec b) {
  return {_mm512_sub_ps(a.v, b.v)};
}
inline Vec operator*(Vec a, Vec b) {
  return {_mm512_mul_ps(a.v, b.v)};
}
inline Vec operator/(Vec a, Vec b) {
  return {_mm512_div_ps(a.v, b.v)};
}
inline Vec fmadd(Vec a, Vec b, Vec c) {
  return {_mm512_fmadd_ps(a.v, b.v, c.v)};
}
inline Vec max(Vec a, Vec b) {
  return {_mm512_max_ps(a.v, b.v)};
}
inline Vec min(Vec a, Vec b) {
  return {_mm512_min_ps(a.v, b.v)};
}
inline Vec abs(Vec a) {
  return {_mm512_abs_ps(a.v)};
}
inline Vec round_nearest(Vec a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vec scale_pow2(Vec a, Vec n) {
  return {_mm512_scalef_ps(a.v, n.v)};
}  // a * 2^n
inline Vec copysign(Vec magnitude, Vec sign) {
  const __m512i m = _mm512_set1_epi32(0x7FFFFFFF);
  return {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(magnitude.v), m,
                                                        _mm512_castps_si512(sign.v), 0xE2))};
}

#elif defined(__AVX2__)

struct Vec {
  static constexpr int kLanes = 8;
  __m256 v;
  static Vec zero() { return {_mm256_setzero_ps()}; }
  static Vec set1(float x) { return {_mm256_set1_ps(x)}; }
  static Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec load_partial(const float* p, int n) { return {_mm256_maskload_ps(p, tail_mask(n))}; }
  static Vec load_f32u(const void* p) { return {_mm256_loadu_ps(static_cast<const float*>(p))}; }
  static Vec load_f16(const void* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p)))};
  }
  static Vec load_bf16(const void* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
  }
  static Vec load_f8e5m2(const void* p) {
    const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(static_cast<const __m128i*>(p)));
    return {_mm256_cvtph_ps(_mm_slli_epi16(b, 8))};
  }
  static Vec load_f8e4m3(const void* p) {
    const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(static_cast<const __m128i*>(p)));
    const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8),
                                   _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7F)), 7));
    const __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    const __m256 nan = _mm256_cmp_ps(a, _mm256_set1_ps(480.0f), _CMP_EQ_OQ);
    return {_mm256_blendv_ps(v, _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()), nan)};
  }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, tail_mask(n), v); }
  float reduce_add() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  float reduce_max() const {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
inline Vec operator+(Vec a, Vec b) {
  return {_mm256_add_ps(a.v, b.v)};
}
inline Vec operator-(Vec a, Vec b) {
  return {_mm256_sub_ps(a.v, b.v)};
}
inline Vec operator*(Vec a, Vec b) {
  return {_mm256_mul_ps(a.v, b.v)};
}
inline Vec operator/(Vec a, Vec b) {
  return {_mm256_div_ps(a.v, b.v)};
}
inline Vec fmadd(Vec a, Vec b, Vec c) {
  return {_mm256_fmadd_ps(a.v, b.v, c.v)};
}
inline Vec max(Vec a, Vec b) {
  return {_mm256_max_ps(a.v, b.v)};
}
inline Vec min(Vec a, Vec b) {
  return {_mm256_min_ps(a.v, b.v)};
}
inline Vec abs(Vec a) {
  return {_mm256_and_ps(a.v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)))};
}
inline Vec round_nearest(Vec a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
inline Vec scale_pow2(Vec a, Vec n) {  // a * 2^n for integral n in [-126, 127]
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_mul_ps(a.v, _mm256_castsi256_ps(e))};
}
inline Vec copysign(Vec magnitude, Vec sign) {
  const __m256 m = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  return {_mm256_or_ps(_mm256_and_ps(magnitude.v, m), _mm256_andnot_ps(m, sign.v))};
}

#else

struct Vec {
  static constexpr int kLanes = 1;
  float v;
  static Vec zero() { return {0.0f}; }
  static Vec set1(float x) { return {x}; }
  static Vec load(const float* p) { return {*p}; }
  static Vec load_partial(const float* p, int n) { return {n > 0 ? *p : 0.0f}; }
  static Vec load_f32u(const void* p) {
    float x;
    std::memcpy(&x, p, sizeof x);
    return {x};
  }
  static Vec load_f16(const void* p);
  static Vec load_bf16(const void* p) {
    std::uint16_t h;
    std::memcpy(&h, p, sizeof h);
    const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return {x};
  }
  static Vec load_f8e4m3(const void* p) {
    return {f8e4m3_to_f32(*static_cast<const std::uint8_t*>(p))};
  }
  static Vec load_f8e5m2(const void* p) {
    return {f8e5m2_to_f32(*static_cast<const std::uint8_t*>(p))};
  }
  void store(float* p) const { *p = v; }
  void store_partial(float* p, int n) const {
    if (n > 0) *p = v;
  }
  float reduce_add() const { return v; }
  float reduce_max() const { return v; }
};
inline Vec operator+(Vec a, Vec b) {
  return {a.v + b.v};
}
inline Vec operator-(Vec a, Vec b) {
  return {a.v - b.v};
}
inline Vec operator*(Vec a, Vec b) {
  return {a.v * b.v};
}
inline Vec operator/(Vec a, Vec b) {
  return {a.v / b.v};
}
inline Vec fmadd(Vec a, Vec b, Vec c) {
  return {std::fma(a.v, b.v, c.v)};
}
inline Vec max(Vec a, Vec b) {
  return {a.v > b.v ? a.v : b.v};
}
inline Vec min(Vec a, Vec b) {
  return {a.v < b.v ? a.v : b.v};
}
inline Vec abs(Vec a) {
  return {std::fabs(a.v)};
}
inline Vec round_nearest(Vec a) {
  return {std::nearbyint(a.v)};
}
inline Vec scale_pow2(Vec a, Vec n) {
  return {std::ldexp(a.v, static_cast<int>(n.v))};
}
inline Vec copysign(Vec magnitude, Vec sign) {
  return {std::copysign(magnitude.v, sign.v)};
}

#endif

#if !defined(__AVX512F__) && !defined(__AVX2__)
inline Vec Vec::load_f16(const void* p) {
  std::uint16_t h;
  std::memcpy(&h, p, sizeof h);
  return {f16_to_f32(h)};  // tensor/half, compiled at the baseline level
}
#endif

// e^x to a few ulp: x = n ln2 + r, |r| <= ln2/2, e^r by a degree-7 Taylor polynomial (error
// below 3e-9 on that interval), times 2^n. Inputs are clamped to [-87.3, 88] (2^n stays normal).
inline Vec exp(Vec x) {
  x = min(max(x, Vec::set1(-87.33654f)), Vec::set1(88.0f));
  const Vec n = round_nearest(x * Vec::set1(1.44269504088896341f));
  Vec r = fmadd(n, Vec::set1(-0.693359375f), x);
  r = fmadd(n, Vec::set1(2.12194440e-4f), r);
  Vec p = Vec::set1(1.0f / 5040.0f);
  p = fmadd(p, r, Vec::set1(1.0f / 720.0f));
  p = fmadd(p, r, Vec::set1(1.0f / 120.0f));
  p = fmadd(p, r, Vec::set1(1.0f / 24.0f));
  p = fmadd(p, r, Vec::set1(1.0f / 6.0f));
  p = fmadd(p, r, Vec::set1(0.5f));
  p = fmadd(p, r, Vec::set1(1.0f));
  p = fmadd(p, r, Vec::set1(1.0f));
  return scale_pow2(p, n);
}

// tanh(x) = sign(x) (1 - 2 / (e^{2|x|} + 1)); absolute error about 1e-7.
inline Vec tanh(Vec x) {
  const Vec e = exp(min(abs(x) * Vec::set1(2.0f), Vec::set1(40.0f)));
  const Vec t = Vec::set1(1.0f) - Vec::set1(2.0f) / (e + Vec::set1(1.0f));
  return copysign(t, x);
}

// erf(x) by Abramowitz & Stegun 7.1.26: erf(|x|) = 1 - t P(t) e^{-x^2}, t = 1/(1 + p|x|).
// Absolute error below 1.5e-7.
inline Vec erf(Vec x) {
  const Vec ax = abs(x);
  const Vec t = Vec::set1(1.0f) / fmadd(ax, Vec::set1(0.3275911f), Vec::set1(1.0f));
  Vec p = Vec::set1(1.061405429f);
  p = fmadd(p, t, Vec::set1(-1.453152027f));
  p = fmadd(p, t, Vec::set1(1.421413741f));
  p = fmadd(p, t, Vec::set1(-0.284496736f));
  p = fmadd(p, t, Vec::set1(0.254829592f));
  p = p * t;
  const Vec y = Vec::set1(1.0f) - p * exp(Vec::zero() - ax * ax);
  return copysign(y, x);
}

}  // namespace
}  // namespace hearth::kernels
