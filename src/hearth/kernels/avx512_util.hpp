// Helpers shared by the AVX-512 VNNI decode kernels (quant_ggml_decode.avx512.cpp,
// quant_mlx_decode.avx512.cpp) and their batched forms (quant_ggml_batch.avx512.cpp,
// quant_mlx_batch.avx512.cpp). Include it after the file's `#pragma GCC target("avx512vnni")`:
// everything here is in an unnamed namespace, so each file gets its own copy compiled for that
// target and nothing is shared with the other levels' files.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <initializer_list>

#include "hearth/kernels/avx2_util.hpp"

namespace hearth::kernels {
namespace {

constexpr i64 kPrefetch512 = 1536;  // bytes ahead in the weight stream

// A mask of the first n (clamped to 64) bytes, or of the first n (clamped to 16) 32-bit lanes.
inline __mmask64 first_bytes(i64 n) {
  return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
}
inline __mmask16 first_lanes(i64 n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// 32 16-bit words (a permute's indices); the rest zero.
inline __m512i words(std::initializer_list<int> w) {
  alignas(64) std::int16_t v[32] = {};
  int i = 0;
  for (const int x : w) v[i++] = static_cast<std::int16_t>(x);
  return _mm512_load_si512(v);
}

// Up to 16 scales (f16 or bf16) from p as floats; the rest zero.
template <bool kBf16>
inline __m512 load_scales(const u8* p, i64 n) {
  const __m256i h = _mm256_maskz_loadu_epi16(first_lanes(n), p);
  if constexpr (kBf16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_cvtph_ps(h);
  }
}

// The 16 low int32 lanes of q as int8 at p.
inline void store16(std::int8_t* p, __m512i q) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(q));
}

// One block of 32 inputs to int8 exactly as quantize_rows rounds it (cvtps rounds to nearest even
// as lrintf does): elements 0-15 in q0, 16-31 in q1, as int32. Returns d = max|x| / 127.
inline float quantize_q8_block(const float* x, __m512i& q0, __m512i& q1) {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const float d = amax / 127.0f;
  const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id));
  q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
  return d;
}

// One block of 32 inputs as AffineActs::fill rounds it: q = round(x * 127 / max|x|) (nearest
// even, as cvtps rounds), clamped to +-127; elements 0-15 in q0, 16-31 in q1, as int32. Returns d.
inline float quantize_affine_block(const float* x, __m512i& q0, __m512i& q1) {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  const __m512 lim = _mm512_set1_ps(127.0f);
  const auto round = [&](__m512 v) {
    return _mm512_cvtps_epi32(_mm512_min_ps(
        _mm512_max_ps(_mm512_mul_ps(v, inv), _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim));
  };
  q0 = round(x0);
  q1 = round(x1);
  return amax / 127.0f;
}

// The exact f32 sums of x over each of `groups` weight groups of group_size (a multiple of 16).
inline void group_sums(const float* x, i64 groups, i64 group_size, float* sums) {
  for (i64 g = 0; g < groups; ++g) {
    __m512 acc = _mm512_setzero_ps();
    for (i64 i = 0; i < group_size; i += 16) {
      acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + g * group_size + i));
    }
    sums[g] = _mm512_reduce_add_ps(acc);
  }
}

// The affine bias term of one weight row for R prepared x rows: accb[r] += b_g * sum(x_r over g)
// for the row's `groups` biases at bi (f16 or bf16), the sums at sums_at in each x row of xrb.
template <int R, bool kBf16>
inline void add_bias_terms(const u8* bi, i64 groups, const u8* xp, i64 xrb, i64 sums_at,
                           __m512* accb) {
  for (i64 g = 0; g < groups; g += 16) {
    const __m512 b = load_scales<kBf16>(bi + 2 * g, groups - g);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const auto* sums = reinterpret_cast<const float*>(xp + r * xrb + sums_at);
      accb[r] = _mm512_fmadd_ps(b, _mm512_loadu_ps(sums + g), accb[r]);
    }
  }
}

// The batched kernels' groups of 16 blocks: block 4s + u (step s of four blocks, block u within
// the step) sits in lane 4u + s.
constexpr int lane_of(i64 block_in_group) {
  return static_cast<int>(4 * (block_in_group % 4) + block_in_group / 4);
}

// The four steps' vectors of a group transposed by 4-byte lanes (a 4 x 4 transpose within each
// 128-bit lane), so that lane 4u + s of every vector holds block 4s + u, split into low and high
// nibbles.
inline void transposed_nibbles(const __m512i* qs, __m512i* lo, __m512i* hi) {
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i t0 = _mm512_unpacklo_epi32(qs[0], qs[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(qs[0], qs[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(qs[2], qs[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(qs[2], qs[3]);
  const __m512i v[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                        _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
  for (int j = 0; j < 4; ++j) {
    lo[j] = _mm512_and_si512(v[j], m4);
    hi[j] = _mm512_and_si512(_mm512_srli_epi16(v[j], 4), m4);
  }
}

// The 16 blocks' integer sums of one x row's group (a batched kernel's Group, q[8][64]: q[j]
// against lo[j], q[4 + j] against hi[j]) from p: two dependency chains for one or two rows, one
// each from three rows on (enough chains already, one add less).
template <int R, class Group>
inline __m512i block_sums(__m512i p, const __m512i* lo, const __m512i* hi, const Group* x) {
  if constexpr (R <= 2) {
    __m512i p2 = _mm512_setzero_si512();
    for (int j = 0; j < 4; j += 2) {
      p = _mm512_dpbusd_epi32(p, lo[j], _mm512_load_si512(x->q[j]));
      p2 = _mm512_dpbusd_epi32(p2, lo[j + 1], _mm512_load_si512(x->q[j + 1]));
      p = _mm512_dpbusd_epi32(p, hi[j], _mm512_load_si512(x->q[4 + j]));
      p2 = _mm512_dpbusd_epi32(p2, hi[j + 1], _mm512_load_si512(x->q[5 + j]));
    }
    return _mm512_add_epi32(p, p2);
  } else {
    for (int j = 0; j < 4; ++j) {
      p = _mm512_dpbusd_epi32(p, lo[j], _mm512_load_si512(x->q[j]));
      p = _mm512_dpbusd_epi32(p, hi[j], _mm512_load_si512(x->q[4 + j]));
    }
    return p;
  }
}

}  // namespace
}  // namespace hearth::kernels
