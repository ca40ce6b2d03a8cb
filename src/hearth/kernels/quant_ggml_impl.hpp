// The quantized-weight kernels (quant_ggml.hpp), written once and compiled three times:
// quant_ggml_scalar.cpp (plain integer loops), quant_ggml.avx2.cpp (HEARTH_QG_AVX2: 256-bit
// maddubs/madd) and quant_ggml.avx512.cpp (HEARTH_QG_AVX2 and HEARTH_QG_VNNI: vpdpbusd). Each
// weight type is a trait: prep() reads a stored block's scales and mins (per half sub-block),
// quants() its 32 integers of sub-block j; the hot types also decode straight into a vector
// (vquants). The integers are non-negative (the type's offset moved into the min) except for
// Q8_0 and IQ4, whose signed products use the sign trick.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(HEARTH_QG_AVX2)
#include <immintrin.h>
#endif

#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;
using u8 = std::uint8_t;

inline float half_at(const u8* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
#if defined(HEARTH_QG_AVX2)
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

// Scale and min of each half sub-block (index 2 j and 2 j + 1 for sub-block j): w = scale q - min.
// Types with kPer16 false have equal halves.
struct Prep {
  float scale[16];
  float min[16];
};

template <DType T>
struct Q;

template <>
struct Q<DType::kQ4_0> {
  static constexpr int kElems = 32, kBytes = 18;
  static constexpr bool kSigned = false, kMin = true, kPer16 = false;
  static void prep(const u8* b, Prep& p) {
    const float d = half_at(b);
    p.scale[0] = p.scale[1] = d;
    p.min[0] = p.min[1] = 8.0f * d;
  }
  static void quants(const u8* b, int, std::int8_t* q) {
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<std::int8_t>(b[2 + j] & 15);
      q[j + 16] = static_cast<std::int8_t>(b[2 + j] >> 4);
    }
  }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
  }
#endif
};

template <>
struct Q<DType::kQ4_1> {
  static constexpr int kElems = 32, kBytes = 20;
  static constexpr bool kSigned = false, kMin = true, kPer16 = false;
  static void prep(const u8* b, Prep& p) {
    p.scale[0] = p.scale[1] = half_at(b);
    p.min[0] = p.min[1] = -half_at(b + 2);
  }
  static void quants(const u8* b, int, std::int8_t* q) {
    for (int j = 0; j < 16; ++j) {
      q[j] = static_cast<std::int8_t>(b[4 + j] & 15);
      q[j + 16] = static_cast<std::int8_t>(b[4 + j] >> 4);
    }
  }
};

// Q5_0 / Q5_1: qh (4 bytes) then qs (16) starting at byte off.
inline void q5_quants(const u8* b, int off, std::int8_t* q) {
  std::uint32_t qh;
  std::memcpy(&qh, b + off, 4);
  const u8* qs = b + off + 4;
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<std::int8_t>((qs[j] & 15) | (((qh >> j) & 1) << 4));
    q[j + 16] = static_cast<std::int8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}

template <>
struct Q<DType::kQ5_0> {
  static constexpr int kElems = 32, kBytes = 22;
  static constexpr bool kSigned = false, kMin = true, kPer16 = false;
  static void prep(const u8* b, Prep& p) {
    const float d = half_at(b);
    p.scale[0] = p.scale[1] = d;
    p.min[0] = p.min[1] = 16.0f * d;
  }
  static void quants(const u8* b, int, std::int8_t* q) { q5_quants(b, 2, q); }
};

template <>
struct Q<DType::kQ5_1> {
  static constexpr int kElems = 32, kBytes = 24;
  static constexpr bool kSigned = false, kMin = true, kPer16 = false;
  static void prep(const u8* b, Prep& p) {
    p.scale[0] = p.scale[1] = half_at(b);
    p.min[0] = p.min[1] = -half_at(b + 2);
  }
  static void quants(const u8* b, int, std::int8_t* q) { q5_quants(b, 4, q); }
};

template <>
struct Q<DType::kQ8_0> {
  static constexpr int kElems = 32, kBytes = 34;
  static constexpr bool kSigned = true, kMin = false, kPer16 = false;
  static void prep(const u8* b, Prep& p) { p.scale[0] = p.scale[1] = half_at(b); }
  static void quants(const u8* b, int, std::int8_t* q) { std::memcpy(q, b + 2, 32); }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
  }
#endif
};

// Q2_K / Q3_K low two bits of elements 32 j .. 32 j + 31.
inline void q2_low(const u8* qs, int j, std::int8_t* q) {
  const u8* src = qs + 32 * (j / 4);
  const int shift = 2 * (j % 4);
  for (int r = 0; r < 32; ++r) q[r] = static_cast<std::int8_t>((src[r] >> shift) & 3);
}

template <>
struct Q<DType::kQ2_K> {
  static constexpr int kElems = 256, kBytes = 84;
  static constexpr bool kSigned = false, kMin = true, kPer16 = true;
  static void prep(const u8* b, Prep& p) {
    const float d = half_at(b + 80), dmin = half_at(b + 82);
    for (int s = 0; s < 16; ++s) {
      p.scale[s] = d * static_cast<float>(b[s] & 15);
      p.min[s] = dmin * static_cast<float>(b[s] >> 4);
    }
  }
  static void quants(const u8* b, int j, std::int8_t* q) { q2_low(b + 16, j, q); }
};

template <>
struct Q<DType::kQ3_K> {
  static constexpr int kElems = 256, kBytes = 110;
  static constexpr bool kSigned = false, kMin = true, kPer16 = true;
  static void prep(const u8* b, Prep& p) {
    const float d = half_at(b + 108);
    std::int8_t sc[16];
    ggml::q3k_scales(b + 96, sc);
    for (int s = 0; s < 16; ++s) {
      p.scale[s] = d * static_cast<float>(sc[s]);
      p.min[s] = 4.0f * p.scale[s];
    }
  }
  static void quants(const u8* b, int j, std::int8_t* q) {
    q2_low(b + 32, j, q);
    for (int r = 0; r < 32; ++r) q[r] = static_cast<std::int8_t>(q[r] | (((b[r] >> j) & 1) << 2));
  }
};

// Q4_K / Q5_K: eight 6-bit scale/min pairs at b + 4.
inline void k4_prep(const u8* b, Prep& p) {
  const float d = half_at(b), dmin = half_at(b + 2);
  for (int s = 0; s < 8; ++s) {
    std::uint8_t sc, mn;
    ggml::scale_min_k4(s, b + 4, sc, mn);
    p.scale[2 * s] = p.scale[2 * s + 1] = d * static_cast<float>(sc);
    p.min[2 * s] = p.min[2 * s + 1] = dmin * static_cast<float>(mn);
  }
}

template <>
struct Q<DType::kQ4_K> {
  static constexpr int kElems = 256, kBytes = 144;
  static constexpr bool kSigned = false, kMin = true, kPer16 = false;
  static void prep(const u8* b, Prep& p) { k4_prep(b, p); }
  static void quants(const u8* b, int j, std::int8_t* q) {
    const u8* qs = b + 16 + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int r = 0; r < 32; ++r) q[r] = static_cast<std::int8_t>((qs[r] >> shift) & 15);
  }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int j) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * (j / 2)));
    return _mm256_and_si256(_mm256_srli_epi16(v, 4 * (j % 2)), _mm256_set1_epi8(15));
  }
#endif
};

template <>
struct Q<DType::kQ5_K> {
  static constexpr int kElems = 256, kBytes = 176;
  static constexpr bool kSigned = false, kMin = true, kPer16 = false;
  static void prep(const u8* b, Prep& p) { k4_prep(b, p); }
  static void quants(const u8* b, int j, std::int8_t* q) {
    const u8* qh = b + 16;
    const u8* qs = b + 48 + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int r = 0; r < 32; ++r) {
      q[r] = static_cast<std::int8_t>(((qs[r] >> shift) & 15) | (((qh[r] >> j) & 1) << 4));
    }
  }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int j) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 48 + 32 * (j / 2)));
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(v, 4 * (j % 2)), _mm256_set1_epi8(15));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16));
    // Bit j of each qh byte to bit 4 (16-bit shifts: the bits crossing bytes are masked off).
    const __m256i moved = j <= 4 ? _mm256_slli_epi16(qh, 4 - j) : _mm256_srli_epi16(qh, j - 4);
    return _mm256_or_si256(low, _mm256_and_si256(moved, _mm256_set1_epi8(16)));
  }
#endif
};

template <>
struct Q<DType::kQ6_K> {
  static constexpr int kElems = 256, kBytes = 210;
  static constexpr bool kSigned = false, kMin = true, kPer16 = true;
  static void prep(const u8* b, Prep& p) {
    const float d = half_at(b + 208);
    const auto* sc = reinterpret_cast<const std::int8_t*>(b + 192);
    for (int s = 0; s < 16; ++s) {
      p.scale[s] = d * static_cast<float>(sc[s]);
      p.min[s] = 32.0f * p.scale[s];
    }
  }
  static void quants(const u8* b, int j, std::int8_t* q) {
    const int n = j / 4, g = j % 4;
    const u8* ql = b + 64 * n + 32 * (g & 1);
    const u8* qh = b + 128 + 32 * n;
    for (int r = 0; r < 32; ++r) {
      const int low = g >= 2 ? ql[r] >> 4 : ql[r] & 15;
      q[r] = static_cast<std::int8_t>(low | (((qh[r] >> (2 * g)) & 3) << 4));
    }
  }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int j) {
    const int n = j / 4, g = j % 4;
    const __m256i ql =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * n + 32 * (g & 1)));
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * n));
    const __m256i low =
        _mm256_and_si256(_mm256_srli_epi16(ql, g >= 2 ? 4 : 0), _mm256_set1_epi8(15));
    // Bits 2g, 2g + 1 of each qh byte to bits 4, 5.
    const __m256i moved =
        2 * g <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * g) : _mm256_srli_epi16(qh, 2 * g - 4);
    return _mm256_or_si256(low, _mm256_and_si256(moved, _mm256_set1_epi8(0x30)));
  }
#endif
};

template <>
struct Q<DType::kIQ4_NL> {
  static constexpr int kElems = 32, kBytes = 18;
  static constexpr bool kSigned = true, kMin = false, kPer16 = false;
  static void prep(const u8* b, Prep& p) { p.scale[0] = p.scale[1] = half_at(b); }
  static void quants(const u8* b, int, std::int8_t* q) {
    for (int j = 0; j < 16; ++j) {
      q[j] = ggml::kIq4Values[b[2 + j] & 15];
      q[j + 16] = ggml::kIq4Values[b[2 + j] >> 4];
    }
  }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int) {
    return iq4_lookup(b + 2);
  }
  static __m256i iq4_lookup(const u8* qs) {
    const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ggml::kIq4Values));
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(v, 4), m)),
                            _mm_shuffle_epi8(table, _mm_and_si128(v, m)));
  }
#endif
};

template <>
struct Q<DType::kIQ4_XS> {
  static constexpr int kElems = 256, kBytes = 136;
  static constexpr bool kSigned = true, kMin = false, kPer16 = false;
  static void prep(const u8* b, Prep& p) {
    const float d = half_at(b);
    std::uint16_t sh;
    std::memcpy(&sh, b + 2, 2);
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
      p.scale[2 * ib] = p.scale[2 * ib + 1] = d * static_cast<float>(ls - 32);
    }
  }
  static void quants(const u8* b, int j, std::int8_t* q) {
    const u8* qs = b + 8 + 16 * j;
    for (int r = 0; r < 16; ++r) {
      q[r] = ggml::kIq4Values[qs[r] & 15];
      q[r + 16] = ggml::kIq4Values[qs[r] >> 4];
    }
  }
#if defined(HEARTH_QG_AVX2)
  static __m256i vquants(const u8* b, int j) {
    return Q<DType::kIQ4_NL>::iq4_lookup(b + 8 + 16 * j);
  }
#endif
};

void quantize_rows(const float* x, i64 rows, i64 ldx, i64 k, Q8Block* out) {
  const i64 nb = k / 32;
  for (i64 r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    for (i64 b = 0; b < nb; ++b) {
      const float* xb = xr + b * 32;
      Q8Block& o = out[r * nb + b];
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = xb[i] > amax ? xb[i] : (-xb[i] > amax ? -xb[i] : amax);
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      int s0 = 0, s1 = 0;
      for (int i = 0; i < 32; ++i) {
        const int q = static_cast<int>(__builtin_lrintf(xb[i] * id));
        o.q[i] = static_cast<std::int8_t>(q);
        (i < 16 ? s0 : s1) += q;
      }
      o.d = d;
      o.sum[0] = d * static_cast<float>(s0);
      o.sum[1] = d * static_cast<float>(s1);
      o.total = d * static_cast<float>(s0 + s1);
    }
  }
}

#if defined(HEARTH_QG_AVX2)

template <DType T>
inline __m256i load_quants(const u8* b, int j) {
  if constexpr (requires { Q<T>::vquants(b, j); }) {
    return Q<T>::vquants(b, j);
  } else {
    alignas(32) std::int8_t q[32];
    Q<T>::quants(b, j, q);
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
  }
}

// Eight int32 partial sums of q . a (lanes 0-3: elements 0-15, lanes 4-7: 16-31).
template <bool Signed>
inline __m256i dot32(__m256i q, __m256i a) {
  __m256i u = q, s = a;
  if constexpr (Signed) {
    u = _mm256_sign_epi8(q, q);
    s = _mm256_sign_epi8(a, q);
  }
#if defined(HEARTH_QG_VNNI)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One or two x rows: two accumulators per row (alternate sub-blocks, or alternate blocks for the
// types of one sub-block) so that the FMA latency does not bound the loop; three or four rows give
// enough independent chains with one each.
template <DType T, int R>
void gemv_rows(const u8* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, const float* bias, float* y,
               i64 ldy) {
  using W = Q<T>;
  constexpr int subs = W::kElems / 32;
  constexpr int kAcc = R <= 2 ? 2 : 1;
  constexpr int kStep = kAcc == 2 && subs == 1 ? 2 : 1;  // blocks per step
  const i64 nb = k / W::kElems;
  const i64 xs = k / 32;
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * nb * W::kBytes;
    __m256 acc[R][kAcc];
    float accm[R][kAcc];
    for (int r = 0; r < R; ++r) {
      for (int a = 0; a < kAcc; ++a) {
        acc[r][a] = _mm256_setzero_ps();
        accm[r][a] = 0.0f;
      }
    }
    // Block b into the accumulators of slot u (with kStep 1, alternate sub-blocks).
    auto block = [&](i64 b, int u) {
      const u8* blk = row + b * W::kBytes;
      if (W::kElems == 256 || (b & 3) == 0) {
        _mm_prefetch(reinterpret_cast<const char*>(blk + 1024), _MM_HINT_T0);
      }
      Prep p;
      W::prep(blk, p);
#pragma GCC unroll 8
      for (int j = 0; j < subs; ++j) {
        const int slot = kStep == 2 ? u : kAcc == 2 ? (j & 1) : 0;
        const __m256i q = load_quants<T>(blk, j);
        __m256 sv = _mm256_setzero_ps();
        if constexpr (W::kPer16) {
          sv = _mm256_set_m128(_mm_set1_ps(p.scale[2 * j + 1]), _mm_set1_ps(p.scale[2 * j]));
        }
        for (int r = 0; r < R; ++r) {
          const Q8Block& a = xq[r * xs + b * subs + j];
          const __m256i ax = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q));
          const __m256 prod = _mm256_cvtepi32_ps(dot32<W::kSigned>(q, ax));
          const __m256 scale = W::kPer16 ? _mm256_mul_ps(sv, _mm256_set1_ps(a.d))
                                         : _mm256_set1_ps(p.scale[2 * j] * a.d);
          acc[r][slot] = _mm256_fmadd_ps(prod, scale, acc[r][slot]);
          if constexpr (W::kMin) {
            accm[r][slot] += W::kPer16 ? p.min[2 * j] * a.sum[0] + p.min[2 * j + 1] * a.sum[1]
                                       : p.min[2 * j] * a.total;
          }
        }
      }
    };
    i64 b = 0;
    for (; b + kStep <= nb; b += kStep) {
      block(b, 0);
      if constexpr (kStep == 2) block(b + 1, 1);
    }
    if (b < nb) block(b, 0);
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) {
      __m256 t = acc[r][0];
      float m = accm[r][0];
      if constexpr (kAcc == 2) {
        t = _mm256_add_ps(t, acc[r][1]);
        m += accm[r][1];
      }
      y[r * ldy + n] = hsum(t) - m + bv;
    }
  }
}

#else

template <DType T, int R>
void gemv_rows(const u8* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, const float* bias, float* y,
               i64 ldy) {
  using W = Q<T>;
  constexpr int subs = W::kElems / 32;
  const i64 nb = k / W::kElems;
  const i64 xs = k / 32;
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * nb * W::kBytes;
    float acc[R] = {};
    for (i64 b = 0; b < nb; ++b) {
      const u8* blk = row + b * W::kBytes;
      Prep p;
      W::prep(blk, p);
      std::int8_t q[32];
      for (int j = 0; j < subs; ++j) {
        W::quants(blk, j, q);
        for (int r = 0; r < R; ++r) {
          const Q8Block& a = xq[r * xs + b * subs + j];
          int s0 = 0, s1 = 0;
          for (int i = 0; i < 16; ++i) s0 += q[i] * a.q[i];
          for (int i = 16; i < 32; ++i) s1 += q[i] * a.q[i];
          acc[r] += a.d * (p.scale[2 * j] * static_cast<float>(s0) +
                           p.scale[2 * j + 1] * static_cast<float>(s1));
          if constexpr (W::kMin) acc[r] -= p.min[2 * j] * a.sum[0] + p.min[2 * j + 1] * a.sum[1];
        }
      }
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) y[r * ldy + n] = acc[r] + bv;
  }
}

#endif

template <DType T>
void gemv_t(const void* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, i64 rows, const float* bias,
            float* y, i64 ldy) {
  const auto* wb = static_cast<const u8*>(w);
  const i64 xs = k / 32;
  for (i64 r = 0; r < rows; r += 4) {
    const Q8Block* xr = xq + r * xs;
    float* yr = y + r * ldy;
    switch (rows - r >= 4 ? 4 : rows - r) {
      case 4:
        gemv_rows<T, 4>(wb, k, n0, n1, xr, bias, yr, ldy);
        break;
      case 3:
        gemv_rows<T, 3>(wb, k, n0, n1, xr, bias, yr, ldy);
        break;
      case 2:
        gemv_rows<T, 2>(wb, k, n0, n1, xr, bias, yr, ldy);
        break;
      default:
        gemv_rows<T, 1>(wb, k, n0, n1, xr, bias, yr, ldy);
        break;
    }
  }
}

void gemv(DType t, const void* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, i64 rows,
          const float* bias, float* y, i64 ldy) {
  switch (t) {
#define HEARTH_QG_CASE(T) \
  case T:                 \
    return gemv_t<T>(w, k, n0, n1, xq, rows, bias, y, ldy);
    HEARTH_QG_CASE(DType::kQ4_0)
    HEARTH_QG_CASE(DType::kQ4_1)
    HEARTH_QG_CASE(DType::kQ5_0)
    HEARTH_QG_CASE(DType::kQ5_1)
    HEARTH_QG_CASE(DType::kQ8_0)
    HEARTH_QG_CASE(DType::kQ2_K)
    HEARTH_QG_CASE(DType::kQ3_K)
    HEARTH_QG_CASE(DType::kQ4_K)
    HEARTH_QG_CASE(DType::kQ5_K)
    HEARTH_QG_CASE(DType::kQ6_K)
    HEARTH_QG_CASE(DType::kIQ4_NL)
    HEARTH_QG_CASE(DType::kIQ4_XS)
#undef HEARTH_QG_CASE
    default:
      return;
  }
}

constexpr QuantKernels make_quant_table(SimdLevel level, bool vnni) {
  return QuantKernels{level, vnni, quantize_rows, gemv};
}

}  // namespace
}  // namespace hearth::kernels
