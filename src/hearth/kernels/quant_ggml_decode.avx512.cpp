// The AVX-512 VNNI decode kernels of quant_ggml.hpp (DecodeKernels): 512-bit steps over several
// stored blocks at once, the activations prepared per call in the order each step reads them.
//
// Every step turns a span of stored blocks into 64 unsigned codes (word permutes gather the
// nibbles or bytes; the sign of Q8_0 and the offsets of Q4_0 / Q6_K are moved into the codes by
// adding 128, 8 or 32) and runs vpdpbusd against 64 int8 activations into 16 int32 lanes, each
// lane four products of one activation block. A lane starts at -offset * (the sum of its four
// activations), precomputed, so the integer sum is exact; it is then scaled once in f32 by the
// weight scale of its (sub-)block times the activation block's d. Types with a min (Q4_K, Q5_K)
// subtract min * d * sum(q) per sub-block from a separate accumulator. The activations are the
// same int8 blocks as quantize_rows makes (d = max|x| / 127, round to nearest): only the f32
// summation order differs from the other levels.
#pragma GCC target("avx512vnni")
#include <cstring>

#include "hearth/kernels/avx512_util.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/row_tiles.hpp"

namespace hearth::kernels {
namespace {

// Activations of 64 inputs (two blocks) in input order, for Q8_0, Q4_K, Q5_K and Q6_K.
struct Step64 {
  std::int8_t q[64];
  std::int32_t bias[16];  // -offset * sum of the lane's four q
  float dl[16];           // the lane's block d: 8 x block 0, 8 x block 1
};
// Q4_0: four blocks; lo holds elements 0-15 of each block (the low nibbles), hi 16-31.
struct Step128 {
  std::int8_t lo[64];
  std::int8_t hi[64];
  std::int32_t bias[16];  // -8 * sum of the lane's eight q
  float dl[16];           // 4 x each block's d
};
static_assert(sizeof(Step64) == 192 && sizeof(Step128) == 256);

i64 blocks32(i64 k) {
  return k / 32;
}

// A prepared row: Q4_0 steps of 128, else steps of 64 then one d * sum(q) per block.
i64 act_row_bytes(DType t, i64 k) {
  if (t == DType::kQ4_0) return (k + 127) / 128 * static_cast<i64>(sizeof(Step128));
  const i64 steps = (k + 63) / 64;
  return (steps * static_cast<i64>(sizeof(Step64)) + steps * 2 * 4 + 63) / 64 * 64;
}

// log2 of the offset added to the codes (Q8_0 128, Q6_K 32, Q4_0 8); -1: none.
int offset_shift(DType t) {
  switch (t) {
    case DType::kQ8_0:
      return 7;
    case DType::kQ6_K:
      return 5;
    case DType::kQ4_0:
      return 3;
    default:
      return -1;
  }
}

// -(sum of each lane's four bytes of q, plus those of q2) << shift.
inline __m512i lane_bias(__m512i q, __m512i q2, int shift) {
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i sums =
      _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q), ones, q2);
  return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_sll_epi32(sums, _mm_cvtsi32_si128(shift)));
}

void prepare(DType t, const float* x, i64 rows, i64 ldx, i64 k, void* out) {
  const i64 rb = act_row_bytes(t, k);
  const i64 nb = blocks32(k);
  const int shift = offset_shift(t);
  for (i64 r = 0; r < rows; ++r) {
    u8* base = static_cast<u8*>(out) + r * rb;
    const float* xr = x + r * ldx;
    if (t == DType::kQ4_0) {
      auto* steps = reinterpret_cast<Step128*>(base);
      for (i64 s = 0; s < (nb + 3) / 4; ++s) {
        Step128& st = steps[s];
        for (int u = 0; u < 4; ++u) {
          __m512i q0 = _mm512_setzero_si512(), q1 = q0;
          const float d = 4 * s + u < nb ? quantize_q8_block(xr + (4 * s + u) * 32, q0, q1) : 0.0f;
          store16(st.lo + 16 * u, q0);
          store16(st.hi + 16 * u, q1);
          _mm_storeu_ps(st.dl + 4 * u, _mm_set1_ps(d));
        }
        _mm512_store_si512(st.bias,
                           lane_bias(_mm512_load_si512(st.lo), _mm512_load_si512(st.hi), shift));
      }
      continue;
    }
    const i64 n_steps = (k + 63) / 64;
    auto* steps = reinterpret_cast<Step64*>(base);
    auto* bsum = reinterpret_cast<float*>(base + n_steps * static_cast<i64>(sizeof(Step64)));
    for (i64 s = 0; s < n_steps; ++s) {
      Step64& st = steps[s];
      for (int h = 0; h < 2; ++h) {
        __m512i q0 = _mm512_setzero_si512(), q1 = q0;
        const i64 b = 2 * s + h;
        const float d = b < nb ? quantize_q8_block(xr + b * 32, q0, q1) : 0.0f;
        store16(st.q + 32 * h, q0);
        store16(st.q + 32 * h + 16, q1);
        _mm256_storeu_ps(st.dl + 8 * h, _mm256_set1_ps(d));
        bsum[b] = d * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
      }
      const __m512i bias = shift < 0
                               ? _mm512_setzero_si512()
                               : lane_bias(_mm512_load_si512(st.q), _mm512_setzero_si512(), shift);
      _mm512_store_si512(st.bias, bias);
    }
  }
}

// 32 bytes of lo, then 32 of hi.
inline __m512i halves8(int lo, int hi) {
  alignas(64) std::int8_t v[64];
  for (int i = 0; i < 64; ++i) v[i] = static_cast<std::int8_t>(i < 32 ? lo : hi);
  return _mm512_load_si512(v);
}
// 16 words of lo, then 16 of hi.
inline __m512i halves16(int lo, int hi) {
  alignas(64) std::int16_t v[32];
  for (int i = 0; i < 32; ++i) v[i] = static_cast<std::int16_t>(i < 16 ? lo : hi);
  return _mm512_load_si512(v);
}

inline float finish(__m512 a, __m512 b) {
  return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

// Q4_0: four blocks (72 bytes) per step.
template <int R>
void gemv_q4_0(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = blocks32(k);
  const i64 rb = nb * 18;
  const i64 steps = (nb + 3) / 4;
  // Words 9u + 1 .. 9u + 8 are block u's nibbles; word 9u its scale.
  const __m512i idx_qs = words({1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
                                19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35});
  const __m512i idx_sc = words({0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27});
  const __m512i m4 = _mm512_set1_epi8(15);
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (i64 s = 0; s < steps; ++s) {
      const u8* blk = row + s * 72;
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch512), _MM_HINT_T0);
      __m512i a, b;
      if (s + 1 < steps || nb % 4 == 0) {
        a = _mm512_loadu_si512(blk);
        b = _mm512_maskz_loadu_epi8(0xFF, blk + 64);
      } else {
        const i64 left = (nb - 4 * s) * 18;
        a = _mm512_maskz_loadu_epi8(first_bytes(left), blk);
        b = _mm512_maskz_loadu_epi8(first_bytes(left - 64 > 0 ? left - 64 : 0), blk + 64);
      }
      const __m512i qs = _mm512_permutex2var_epi16(a, idx_qs, b);
      const __m512 dw =
          _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx_sc, a)));
      const __m512i lo = _mm512_and_si512(qs, m4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qs, 4), m4);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const auto* x = reinterpret_cast<const Step128*>(xp + r * xrb) + s;
        __m512i p = _mm512_dpbusd_epi32(_mm512_load_si512(x->bias), lo, _mm512_load_si512(x->lo));
        p = _mm512_dpbusd_epi32(p, hi, _mm512_load_si512(x->hi));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, _mm512_load_ps(x->dl)),
                                 acc[r]);
      }
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) y[r * ldy + n] = _mm512_reduce_add_ps(acc[r]) + bv;
  }
}

// Q8_0: two blocks (68 bytes) per step, the codes offset by 128.
template <int R>
void gemv_q8_0(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = blocks32(k);
  const i64 rb = nb * 34;
  const i64 steps = (nb + 1) / 2;
  const __m512i idx_qs = words({1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33});
  const __m512i idx_sc = words({0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17});
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (i64 s = 0; s < steps; ++s) {
      const u8* blk = row + s * 68;
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch512), _MM_HINT_T0);
      __m512i a, b;
      if (s + 1 < steps || nb % 2 == 0) {
        a = _mm512_loadu_si512(blk);
        b = _mm512_maskz_loadu_epi8(0xF, blk + 64);
      } else {
        a = _mm512_maskz_loadu_epi8(first_bytes(34), blk);
        b = _mm512_setzero_si512();
      }
      const __m512i qs = _mm512_xor_si512(_mm512_permutex2var_epi16(a, idx_qs, b), flip);
      const __m512 dw =
          _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx_sc, a)));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const auto* x = reinterpret_cast<const Step64*>(xp + r * xrb) + s;
        const __m512i p =
            _mm512_dpbusd_epi32(_mm512_load_si512(x->bias), qs, _mm512_load_si512(x->q));
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, _mm512_load_ps(x->dl)),
                                 acc[r]);
      }
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) y[r * ldy + n] = _mm512_reduce_add_ps(acc[r]) + bv;
  }
}

// [v[j0] x 8, v[j1] x 8] for the pairs (0,1) (2,3) (4,5) (6,7) of eight floats.
inline void pairs(__m256 v, __m512* out) {
  const __m512 z = _mm512_castps256_ps512(v);
  for (int p = 0; p < 4; ++p) {
    const __m512i idx = _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                         2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p,
                                         2 * p, 2 * p, 2 * p, 2 * p, 2 * p);
    out[p] = _mm512_permutexvar_ps(idx, z);
  }
}

// Q4_K (kFifth false) and Q5_K: one super-block of 256 per step; the nibble vectors' 256-bit
// halves regrouped into input order (sub-blocks 2v, 2v + 1 in vector v).
template <int R, bool kFifth>
void gemv_q45_k(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
                float* y, i64 ldy) {
  constexpr i64 kBytes = kFifth ? 176 : 144;
  constexpr i64 kQs = kFifth ? 48 : 16;
  const i64 nb = k / 256;
  const i64 rb = nb * kBytes;
  const i64 bsum_at = k / 64 * static_cast<i64>(sizeof(Step64));
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i sixteen = _mm512_set1_epi8(16);
  __m512i bit[4];
  for (int v = 0; v < 4; ++v) {
    bit[v] = halves8(1 << (2 * v), 1 << (2 * v + 1));
  }
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    __m512 acc[R][2];
    __m256 accm[R];
    for (int r = 0; r < R; ++r) {
      acc[r][0] = acc[r][1] = _mm512_setzero_ps();
      accm[r] = _mm256_setzero_ps();
    }
    for (i64 sb = 0; sb < nb; ++sb) {
      const u8* blk = row + sb * kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch512), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch512 + 64), _MM_HINT_T0);
      if constexpr (kFifth) {
        _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch512 + 128), _MM_HINT_T0);
      }
      const __m512i v0 = _mm512_loadu_si512(blk + kQs);
      const __m512i v1 = _mm512_loadu_si512(blk + kQs + 64);
      const __m512i l0 = _mm512_and_si512(v0, m4);
      const __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
      const __m512i l1 = _mm512_and_si512(v1, m4);
      const __m512i h1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
      __m512i q[4] = {_mm512_shuffle_i64x2(l0, h0, 0x44), _mm512_shuffle_i64x2(l0, h0, 0xEE),
                      _mm512_shuffle_i64x2(l1, h1, 0x44), _mm512_shuffle_i64x2(l1, h1, 0xEE)};
      if constexpr (kFifth) {
        const __m512i qh =
            _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16)));
        for (int v = 0; v < 4; ++v) {
          q[v] = _mm512_mask_add_epi8(q[v], _mm512_test_epi8_mask(qh, bit[v]), q[v], sixteen);
        }
      }
      __m256 sc8, mn8;
      k4_scales(blk, sc8, mn8);
      __m512 sc[4];
      pairs(sc8, sc);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const u8* xr = xp + r * xrb;
        const auto* x = reinterpret_cast<const Step64*>(xr) + 4 * sb;
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const __m512i p =
              _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[v], _mm512_load_si512(x[v].q));
          __m512& t = acc[r][v & 1];
          t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(sc[v], _mm512_load_ps(x[v].dl)),
                              t);
        }
        const auto* bs = reinterpret_cast<const float*>(xr + bsum_at) + 8 * sb;
        accm[r] = _mm256_fmadd_ps(mn8, _mm256_loadu_ps(bs), accm[r]);
      }
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) {
      const __m128 m =
          _mm_add_ps(_mm256_castps256_ps128(accm[r]), _mm256_extractf128_ps(accm[r], 1));
      const __m128 m2 = _mm_add_ps(m, _mm_movehl_ps(m, m));
      const float mins = _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
      y[r * ldy + n] = finish(acc[r][0], acc[r][1]) - mins + bv;
    }
  }
}

// Q6_K: one super-block per step; per half of 128 inputs, the low nibbles of ql are inputs 0-63
// in order and the high nibbles 64-127, each with two bits of qh on top.
template <int R>
void gemv_q6_k(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = k / 256;
  const i64 rb = nb * 210;
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i m30 = _mm512_set1_epi8(0x30);
  // Per 16-bit lane: the low half of a vector is qh bits 0-1 (lo) or 4-5 (hi), the high half
  // bits 2-3 or 6-7, moved to bits 4-5.
  const __m512i shl = halves16(4, 2);
  const __m512i shr = halves16(0, 2);
  __m512i idx[4];
  for (int v = 0; v < 4; ++v) {
    const int b = 4 * v;
    idx[v] = _mm512_set_epi32(b + 3, b + 3, b + 3, b + 3, b + 2, b + 2, b + 2, b + 2, b + 1, b + 1,
                              b + 1, b + 1, b, b, b, b);
  }
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    __m512 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (i64 sb = 0; sb < nb; ++sb) {
      const u8* blk = row + sb * 210;
      for (int c = 0; c < 4; ++c) {
        _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetch512 + 64 * c), _MM_HINT_T0);
      }
      __m512i q[4];
      for (int h = 0; h < 2; ++h) {
        const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h)));
        q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                   _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30));
        q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                       _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30));
      }
      std::uint16_t dh;
      std::memcpy(&dh, blk + 208, 2);
      const __m512 s16 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                           reinterpret_cast<const __m128i*>(blk + 192)))),
                                       _mm512_set1_ps(_cvtsh_ss(dh)));
      __m512 sc[4];
      for (int v = 0; v < 4; ++v) sc[v] = _mm512_permutexvar_ps(idx[v], s16);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const auto* x = reinterpret_cast<const Step64*>(xp + r * xrb) + 4 * sb;
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const __m512i p =
              _mm512_dpbusd_epi32(_mm512_load_si512(x[v].bias), q[v], _mm512_load_si512(x[v].q));
          __m512& t = acc[r][v & 1];
          t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(sc[v], _mm512_load_ps(x[v].dl)),
                              t);
        }
      }
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) y[r * ldy + n] = finish(acc[r][0], acc[r][1]) + bv;
  }
}

#include "hearth/kernels/quant_ggml_decode_dispatch.hpp"

constexpr DecodeKernels kDecodeVnni = {handles, act_row_bytes, prepare, gemv};

}  // namespace

namespace detail {
const DecodeKernels& decode_kernels_avx512() {
  return kDecodeVnni;
}
}  // namespace detail

}  // namespace hearth::kernels
