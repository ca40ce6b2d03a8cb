// The AVX2 decode kernels of quant_ggml.hpp (DecodeKernels) for Q4_0, Q8_0, Q4_K, Q5_K and Q6_K:
// the activations prepared per call in groups of 256 inputs (eight int8 blocks of 32, rounded as
// quantize_rows rounds them, with each block's d and its offset sums), then per weight row steps
// of eight stored blocks (or one K super-block) whose scales are read once per step.
//
// The products are vpmaddubsw of unsigned weight codes (the offsets of Q4_0 and Q6_K and the mins
// of Q4_K / Q5_K are moved into a separate f32 term: offset * d_w * d_x * sum(q_x), from sums
// prepared with the activations) against signed int8 activations, then vpmaddwd to int32 and one
// f32 multiply-add by d_w * d_x. Q8_0's signed codes go through the sign trick (|q| x sign(x, q)).
// Q4_0 takes blocks u and u + 4 of a step into one 256-bit vector (their 16 code bytes side by
// side, the activations prepared in that order), so that its low and high nibbles meet their
// activations without a shuffle and one int16 add joins the two halves of both blocks. Q6_K's
// sixteen scales per super-block are applied in the integer multiply (vpmaddwd by the scale of
// each 16 inputs), and Q6_K's offset of 32 by the prepared half-block sums.
//
// No partial sum saturates: vpmaddubsw pairs are at most 2 * 63 * 127 (Q6_K), 4 * 15 * 127 after
// Q4_0's int16 add, or 2 * 128 * 127 (Q8_0's |q| <= 128); so every integer sum is exact and the
// results differ from quantize_rows + gemv (the other levels) by f32 summation order only.
#include "hearth/kernels/avx2_util.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/row_tiles.hpp"

#include <utility>

namespace hearth::kernels {
namespace {

// 256 inputs of one x row. Q4_0 keeps blocks u and u + 4 side by side: q[j] holds elements 0-15
// of blocks j and j + 4, q[4 + j] elements 16-31 of both; the other types keep q[u] = block u.
struct alignas(64) Group {
  std::int8_t q[8][32];
  float d[8];   // each block's d
  float s[16];  // offset sums: Q4_0 8 d sum(q), Q4_K / Q5_K d sum(q) (per block); Q6_K 32 d
                // sum(q) per 16 inputs; Q8_0 none
};
static_assert(sizeof(Group) == 384);

i64 groups_of(i64 k) {
  return (k + 255) / 256;
}

i64 act_row_bytes(DType, i64 k) {
  return groups_of(k) * static_cast<i64>(sizeof(Group));
}

// Sums of the int8 q over lanes 0-15 and 16-31.
inline void half_sums(__m256i q, int& lo, int& hi) {
  const __m256i s =
      _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
  alignas(32) std::int32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), s);
  lo = v[0] + v[1] + v[2] + v[3];
  hi = v[4] + v[5] + v[6] + v[7];
}

void prepare(DType t, const float* x, i64 rows, i64 ldx, i64 k, void* out) {
  const i64 rb = act_row_bytes(t, k);
  const i64 nb = k / 32;
  for (i64 r = 0; r < rows; ++r) {
    auto* groups = reinterpret_cast<Group*>(static_cast<u8*>(out) + r * rb);
    std::memset(static_cast<void*>(groups), 0, static_cast<std::size_t>(rb));
    const float* xr = x + r * ldx;
    for (i64 b = 0; b < nb; ++b) {
      Group& g = groups[b / 8];
      const int u = static_cast<int>(b % 8);
      __m256i q;
      const float d = quantize_q8_block(xr + 32 * b, q);
      int lo = 0, hi = 0;
      half_sums(q, lo, hi);
      g.d[u] = d;
      if (t == DType::kQ4_0) {
        const int j = u % 4, h = u / 4;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(g.q[j] + 16 * h), _mm256_castsi256_si128(q));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(g.q[4 + j] + 16 * h),
                         _mm256_extracti128_si256(q, 1));
        g.s[u] = 8.0f * d * static_cast<float>(lo + hi);
        continue;
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(g.q[u]), q);
      if (t == DType::kQ6_K) {
        g.s[2 * u] = 32.0f * d * static_cast<float>(lo);
        g.s[2 * u + 1] = 32.0f * d * static_cast<float>(hi);
      } else {
        g.s[u] = d * static_cast<float>(lo + hi);
      }
    }
  }
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline __m128i load128(const void* p) {
  return _mm_loadu_si128(static_cast<const __m128i*>(p));
}
inline void prefetch_lines(const u8* p, int lines) {
  for (int c = 0; c < lines; ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch + 64 * c), _MM_HINT_T0);
  }
}

// Eight int32 sums of four products each of unsigned q by signed a.
inline __m256i dot_u8(__m256i q, __m256i a) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1));
}

// f(integral_constant<int, 0>) ... f(integral_constant<int, N - 1>).
template <int N, class F>
inline void unrolled(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (f(std::integral_constant<int, I>{}), ...);
  }
  (std::make_integer_sequence<int, N>{});
}

// Accumulator chains per x row: two for one or two rows (FMA latency), one from three rows on.
template <int R>
constexpr int kChains = R <= 2 ? 2 : 1;

template <int R>
struct Acc {
  __m256 v[R][kChains<R>];
  __m256 off[R];  // the offset / min term, subtracted at the end
  float tail[R];  // blocks past the last whole group (Q4_0, Q8_0)
  Acc() {
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < kChains<R>; ++c) v[r][c] = _mm256_setzero_ps();
      off[r] = _mm256_setzero_ps();
      tail[r] = 0.0f;
    }
  }
  void add(int r, int chain, __m256 p, __m256 scale) {
    __m256& a = v[r][chain % kChains<R>];
    a = _mm256_fmadd_ps(p, scale, a);
  }
  void store(const float* bias, i64 n, float* y, i64 ldy) const {
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) {
      __m256 t = v[r][0];
      for (int c = 1; c < kChains<R>; ++c) t = _mm256_add_ps(t, v[r][c]);
      y[r * ldy + n] = hsum(_mm256_sub_ps(t, off[r])) + tail[r] + bv;
    }
  }
};

inline const Group* group_of(const u8* xp, i64 xrb, int r, i64 g) {
  return reinterpret_cast<const Group*>(xp + r * xrb) + g;
}

// Q4_0: eight blocks (144 bytes) per step.
template <int R>
void gemv_q4_0(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = k / 32, whole = nb / 8;
  const i64 rb = nb * 18;
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m128i m4h = _mm_set1_epi8(15);
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    Acc<R> acc;
    for (i64 g = 0; g < whole; ++g) {
      const u8* base = row + g * 144;
      prefetch_lines(base, 3);
      const __m256 dw = gather_halves(base, 18);
      __m256 sc[R];
      for (int r = 0; r < R; ++r) {
        const Group* x = group_of(xp, xrb, r, g);
        acc.off[r] = _mm256_fmadd_ps(dw, _mm256_load_ps(x->s), acc.off[r]);
        sc[r] = _mm256_mul_ps(dw, _mm256_load_ps(x->d));
      }
      unrolled<4>([&](auto jc) {
        constexpr int j = decltype(jc)::value;
        const __m256i v =
            _mm256_inserti128_si256(_mm256_castsi128_si256(load128(base + 18 * j + 2)),
                                    load128(base + 18 * (j + 4) + 2), 1);
        const __m256i lo = _mm256_and_si256(v, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        for (int r = 0; r < R; ++r) {
          const Group* x = group_of(xp, xrb, r, g);
          const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, load256(x->q[j])),
                                               _mm256_maddubs_epi16(hi, load256(x->q[4 + j])));
          const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
          acc.add(r, j, p, _mm256_shuffle_ps(sc[r], sc[r], j * 0x55));
        }
      });
    }
    // Blocks past the last whole step: one at a time, 128 bits wide.
    for (i64 b = whole * 8; b < nb; ++b) {
      const u8* blk = row + b * 18;
      const int u = static_cast<int>(b % 8), j = u % 4, h = u / 4;
      const __m128i v = load128(blk + 2);
      const __m128i lo = _mm_and_si128(v, m4h);
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4h);
      const float dw = _cvtsh_ss(static_cast<std::uint16_t>(load16(blk)));
      for (int r = 0; r < R; ++r) {
        const Group* x = group_of(xp, xrb, r, whole);
        const __m128i s16 = _mm_add_epi16(_mm_maddubs_epi16(lo, load128(x->q[j] + 16 * h)),
                                          _mm_maddubs_epi16(hi, load128(x->q[4 + j] + 16 * h)));
        const __m128i s = _mm_madd_epi16(s16, _mm_set1_epi16(1));
        alignas(16) std::int32_t l[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(l), s);
        acc.tail[r] += dw * (x->d[u] * static_cast<float>(l[0] + l[1] + l[2] + l[3]) - x->s[u]);
      }
    }
    acc.store(bias, n, y, ldy);
  }
}

// Q8_0: eight blocks (272 bytes) per step, a block at a time.
template <int R>
void gemv_q8_0(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = k / 32, whole = nb / 8;
  const i64 rb = nb * 34;
  // Block u of group g against x rows, scaled by sc (one float per row).
  const auto block = [&](const u8* blk, i64 g, int u, const float* sc, Acc<R>& acc) {
    const __m256i q = load256(blk + 2);
    const __m256i uq = _mm256_sign_epi8(q, q);
    for (int r = 0; r < R; ++r) {
      const __m256i a =
          _mm256_load_si256(reinterpret_cast<const __m256i*>(group_of(xp, xrb, r, g)->q[u]));
      const __m256 p = _mm256_cvtepi32_ps(dot_u8(uq, _mm256_sign_epi8(a, q)));
      acc.add(r, u, p, _mm256_broadcast_ss(sc + 8 * r));
    }
  };
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    Acc<R> acc;
    alignas(32) float sc[R * 8];
    for (i64 g = 0; g < whole; ++g) {
      const u8* base = row + g * 272;
      prefetch_lines(base, 5);
      const __m256 dw = gather_halves(base, 34);
      for (int r = 0; r < R; ++r) {
        _mm256_store_ps(sc + 8 * r, _mm256_mul_ps(dw, _mm256_load_ps(group_of(xp, xrb, r, g)->d)));
      }
#pragma GCC unroll 8
      for (int u = 0; u < 8; ++u) block(base + 34 * u, g, u, sc + u, acc);
    }
    for (i64 b = whole * 8; b < nb; ++b) {
      const u8* blk = row + b * 34;
      const int u = static_cast<int>(b % 8);
      const float dw = _cvtsh_ss(static_cast<std::uint16_t>(load16(blk)));
      for (int r = 0; r < R; ++r) sc[8 * r] = dw * group_of(xp, xrb, r, whole)->d[u];
      block(blk, whole, u, sc, acc);
    }
    acc.store(bias, n, y, ldy);
  }
}

// Q4_K (kFifth false) and Q5_K: one super-block of 256 per step; the 32 bytes of code chunk c
// hold sub-block 2c in their low nibbles and 2c + 1 in their high ones (Q5_K: bit 2c and 2c + 1
// of each qh byte on top).
template <int R, bool kFifth>
void gemv_q45_k(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
                float* y, i64 ldy) {
  constexpr i64 kBytes = kFifth ? 176 : 144;
  constexpr i64 kQs = kFifth ? 48 : 16;
  const i64 nb = k / 256;
  const i64 rb = nb * kBytes;
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i bit4 = _mm256_set1_epi8(16);
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    Acc<R> acc;
    for (i64 g = 0; g < nb; ++g) {
      const u8* blk = row + g * kBytes;
      prefetch_lines(blk, 3);
      __m256 sc8, mn8;
      k4_scales(blk, sc8, mn8);
      alignas(32) float sc[R][8];
      for (int r = 0; r < R; ++r) {
        const Group* x = group_of(xp, xrb, r, g);
        acc.off[r] = _mm256_fmadd_ps(mn8, _mm256_load_ps(x->s), acc.off[r]);
        _mm256_store_ps(sc[r], _mm256_mul_ps(sc8, _mm256_load_ps(x->d)));
      }
      __m256i qh = _mm256_setzero_si256();
      if constexpr (kFifth) qh = load256(blk + 16);
      unrolled<4>([&](auto cc) {
        constexpr int c = decltype(cc)::value;
        const __m256i v = load256(blk + kQs + 32 * c);
        __m256i lo = _mm256_and_si256(v, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if constexpr (kFifth) {
          // Bits 2c and 2c + 1 of each qh byte to bit 4 (16-bit shifts; crossings masked off).
          const auto to_bit4 = [&](auto sh) {
            constexpr int s = decltype(sh)::value;
            const __m256i m = s <= 4 ? _mm256_slli_epi16(qh, 4 - s) : _mm256_srli_epi16(qh, s - 4);
            return _mm256_and_si256(m, bit4);
          };
          lo = _mm256_or_si256(lo, to_bit4(std::integral_constant<int, 2 * c>{}));
          hi = _mm256_or_si256(hi, to_bit4(std::integral_constant<int, 2 * c + 1>{}));
        }
        for (int r = 0; r < R; ++r) {
          const Group* x = group_of(xp, xrb, r, g);
          acc.add(r, 0, _mm256_cvtepi32_ps(dot_u8(lo, load256(x->q[2 * c]))),
                  _mm256_broadcast_ss(&sc[r][2 * c]));
          acc.add(r, 1, _mm256_cvtepi32_ps(dot_u8(hi, load256(x->q[2 * c + 1]))),
                  _mm256_broadcast_ss(&sc[r][2 * c + 1]));
        }
      });
    }
    acc.store(bias, n, y, ldy);
  }
}

// Q6_K: one super-block per step. Half h (128 inputs) has 64 bytes of ql and 32 of qh: sub-block
// 4h + g takes the low (g < 2) or high nibbles of ql[32 (g & 1) ...] and bits 2g, 2g + 1 of qh as
// bits 4-5. Sub-block j's two scales (inputs 0-15, 16-31) go into vpmaddwd as 16-bit words: the
// low 128-bit lane (inputs 0-15) by scale 2j, the high lane by 2j + 1.
template <int R>
void gemv_q6_k(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = k / 256;
  const i64 rb = nb * 210;
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  // Byte shuffles that spread word 2m (low lane) and word 2m + 1 (high lane) of a vector whose
  // two lanes both hold eight scales.
  __m256i spread[4];
  for (int m = 0; m < 4; ++m) {
    alignas(32) std::int8_t c[32];
    for (int i = 0; i < 16; ++i) {
      c[i] = static_cast<std::int8_t>(4 * m + (i & 1));
      c[16 + i] = static_cast<std::int8_t>(4 * m + 2 + (i & 1));
    }
    spread[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
  }
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    Acc<R> acc;
    for (i64 g = 0; g < nb; ++g) {
      const u8* blk = row + g * 210;
      prefetch_lines(blk, 4);
      const float d = _cvtsh_ss(static_cast<std::uint16_t>(load16(blk + 208)));
      const __m128i sc16 = load128(blk + 192);
      const __m256i words = _mm256_cvtepi8_epi16(sc16);
      const __m256i half_words[2] = {_mm256_permute4x64_epi64(words, 0x44),
                                     _mm256_permute4x64_epi64(words, 0xEE)};
      const __m256 dv = _mm256_set1_ps(d);
      const __m256 sf0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc16)), dv);
      const __m256 sf1 = _mm256_mul_ps(
          _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(sc16, sc16))), dv);
      alignas(32) float f[R][8];
      for (int r = 0; r < R; ++r) {
        const Group* x = group_of(xp, xrb, r, g);
        acc.off[r] = _mm256_fmadd_ps(sf0, _mm256_load_ps(x->s), acc.off[r]);
        acc.off[r] = _mm256_fmadd_ps(sf1, _mm256_load_ps(x->s + 8), acc.off[r]);
        _mm256_store_ps(f[r], _mm256_mul_ps(dv, _mm256_load_ps(x->d)));
      }
      unrolled<2>([&](auto hc) {
        constexpr int h = decltype(hc)::value;
        const __m256i ql0 = load256(blk + 64 * h);
        const __m256i ql1 = load256(blk + 64 * h + 32);
        const __m256i qh = load256(blk + 128 + 32 * h);
        const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(ql0, m4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
                              _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                              _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                              _mm256_and_si256(qh, m30)),
                              _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30))};
        unrolled<4>([&](auto gc) {
          constexpr int gq = decltype(gc)::value;
          constexpr int j = 4 * h + gq;
          const __m256i sw = _mm256_shuffle_epi8(half_words[h], spread[gq]);
          for (int r = 0; r < R; ++r) {
            const Group* x = group_of(xp, xrb, r, g);
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[gq], load256(x->q[j])), sw);
            acc.add(r, j, _mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&f[r][j]));
          }
        });
      });
    }
    acc.store(bias, n, y, ldy);
  }
}

#include "hearth/kernels/quant_ggml_decode_dispatch.hpp"

constexpr DecodeKernels kDecodeAvx2 = {handles, act_row_bytes, prepare, gemv};

}  // namespace

namespace detail {
const DecodeKernels& decode_kernels_avx2() {
  return kDecodeAvx2;
}
}  // namespace detail

}  // namespace hearth::kernels
