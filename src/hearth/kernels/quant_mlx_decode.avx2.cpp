// The AVX2 decode kernels of quant_mlx.hpp (AffineDecode) for 4- and 8-bit codes with f16 or bf16
// scales and groups of 32, 64 or 128: x prepared per call (int8 blocks of 32 rounded as
// AffineActs::fill rounds them, in the order the steps read them, plus the exact f32 sum of x
// over each weight group), then per weight row steps of 64 inputs, each step's codes loaded and
// unpacked once for up to four x rows: vpmaddubsw of the unsigned codes against the int8
// activations, vpmaddwd to eight int32 lanes (each within one block), converted and scaled by
// d_block * s_group into f32 accumulators. The bias term is sum_g b_g * sum(x over g) with the
// exact sums, eight groups per fma. 8-bit codes go through the sign trick of quant_mlx.avx2.cpp
// (q - 128 as a signed byte, vpmaddubsw of |q - 128| against sign(xq, q - 128), which cannot
// saturate: 2 * 128 * 127 < 2^15); the 128 * s_g * sum_b d_b * sum(xq_b) it leaves out is added
// with the bias term from per-group sums that prepare() forms.
#include "hearth/kernels/avx2_util.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/kernels/row_tiles.hpp"

namespace hearth::kernels {
namespace {

// 4 bits: 64 inputs (two blocks, 32 packed bytes; byte j holds inputs 2j (low nibble) and 2j + 1
// (high)). even/odd: block 0's even (odd) inputs, then block 1's, matching the low and high
// 128-bit lanes of the codes' nibbles.
struct Step4 {
  std::int8_t even[32];
  std::int8_t odd[32];
  float dl[8];  // 4 x block 0's d, 4 x block 1's
};
// 8 bits: 64 inputs (two blocks) in order, padded so that every step's q is 32-byte aligned.
struct alignas(32) Step8 {
  std::int8_t q[64];
  float d[2];
};
static_assert(sizeof(Step4) == 96 && sizeof(Step8) == 96);
constexpr i64 kStepBytes = 96;
constexpr i64 kStepInputs = 64;

i64 steps_of(const AffineMatrix& w) {
  return (w.cols + kStepInputs - 1) / kStepInputs;
}
// Floats per group table (group sums, and for 8 bits the 128 * d * sum(xq) sums): whole vectors.
i64 table_floats(const AffineMatrix& w) {
  return (w.groups() + 7) / 8 * 8;
}

bool handles(const AffineMatrix& w) {
  return (w.bits == 4 || w.bits == 8) &&
         (w.scale_dtype == DType::kF16 || w.scale_dtype == DType::kBF16) &&
         (w.group_size == 32 || w.group_size == 64 || w.group_size == 128) && w.cols % 32 == 0 &&
         w.cols > 0;
}

// Steps, the group sums, then (8 bits) the offset sums, to whole cache lines.
i64 act_row_bytes(const AffineMatrix& w) {
  const i64 tables = (w.bits == 8 ? 2 : 1) * table_floats(w) * 4;
  return (steps_of(w) * kStepBytes + tables + 63) / 64 * 64;
}

void prepare(const AffineMatrix& w, const float* x, i64 rows, i64 ldx, void* out) {
  const i64 rb = act_row_bytes(w);
  const i64 nb = w.cols / 32, groups = w.groups(), gs = w.group_size;
  const i64 sums_at = steps_of(w) * kStepBytes;
  // Even (odd) bytes of each 128-bit lane to its first (second) 8.
  const __m256i deal = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2,
                                        4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (i64 r = 0; r < rows; ++r) {
    u8* base = static_cast<u8*>(out) + r * rb;
    std::memset(base, 0, static_cast<std::size_t>(rb));
    const float* xr = x + r * ldx;
    auto* sums = reinterpret_cast<float*>(base + sums_at);
    float* offsets = sums + table_floats(w);  // 8 bits
    for (i64 b = 0; b < nb; ++b) {
      __m256i q;
      const float d = quantize_affine_block(xr + b * 32, q);
      const int h = static_cast<int>(b % 2);
      if (w.bits == 4) {
        Step4& s = reinterpret_cast<Step4*>(base)[b / 2];
        // Lane 0 holds inputs 0-15, lane 1 16-31: after the deal, qwords 0 and 2 are the evens.
        const __m256i dealt = _mm256_shuffle_epi8(q, deal);
        const __m256i ev = _mm256_permute4x64_epi64(dealt, 0x08);
        const __m256i od = _mm256_permute4x64_epi64(dealt, 0x0D);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s.even + 16 * h), _mm256_castsi256_si128(ev));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s.odd + 16 * h), _mm256_castsi256_si128(od));
        _mm_storeu_ps(s.dl + 4 * h, _mm_set1_ps(d));
      } else {
        Step8& s = reinterpret_cast<Step8*>(base)[b / 2];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.q + 32 * h), q);
        s.d[h] = d;
        alignas(32) std::int8_t v[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(v), q);
        int sum = 0;
        for (const std::int8_t t : v) sum += t;
        // As AffineActs::fill forms qd (d * sum per block, added in block order), times 128.
        offsets[b * 32 / gs] += d * static_cast<float>(sum);
      }
    }
    for (i64 g = 0; g < groups; ++g) {
      __m256 acc = _mm256_setzero_ps();
      for (i64 i = 0; i < gs; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(xr + g * gs + i));
      sums[g] = hsum(acc);
      if (w.bits == 8) offsets[g] *= 128.0f;
    }
  }
}

// Scales (f16 or bf16) g0..g0 + 7 of a row with `left` groups from g0 as floats; zeros past the
// row's end, which is never read past.
template <bool kBf16>
inline __m256 load8(const u8* p, i64 left) {
  __m128i h;
  if (left >= 8) {
    h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else {
    alignas(16) std::uint16_t t[8] = {};
    std::memcpy(t, p, static_cast<std::size_t>(left * 2));
    h = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
  }
  if constexpr (kBf16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(h);
  }
}

// The eight int32 lanes of a 4-bit step against one x row (lanes 0-3 block 0, 4-7 block 1), as
// floats: each int16 of the two vpmaddubsw sums is at most 4 * 15 * 127 in magnitude.
inline __m256 dot4(__m256i lo, __m256i hi, const Step4* x, __m256i ones) {
  const __m256i s16 = _mm256_add_epi16(
      _mm256_maddubs_epi16(lo, _mm256_load_si256(reinterpret_cast<const __m256i*>(x->even))),
      _mm256_maddubs_epi16(hi, _mm256_load_si256(reinterpret_cast<const __m256i*>(x->odd))));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
}

// One 8-bit block (ws = q - 128 as signed bytes, wa = |ws|) against 32 int8 activations at x.
inline __m256 dot8(__m256i wa, __m256i ws, const std::int8_t* x, __m256i ones) {
  const __m256i xs = _mm256_sign_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(x)), ws);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wa, xs), ones));
}

// R x rows (prepared, xrb bytes apart) against weight rows n0..n1. Per row, chunks of eight
// groups: their scales and biases converted once (the bias terms added then), then the chunk's
// steps (fully unrolled in whole chunks, so that each step's scale is a constant offset). One x
// row gets two accumulator chains (steps alternate), more rows one each.
template <int R, int kBits, int kGroup, bool kBf16>
void gemv_rows(const AffineMatrix& w, const u8* xp, i64 xrb, i64 n0, i64 n1, const float* bias,
               float* y, i64 ldy) {
  constexpr int C = R == 1 ? 2 : 1;
  constexpr i64 kCodeBytes = kStepInputs * kBits / 8;  // per step
  constexpr int kChunkSteps = 8 * kGroup / kStepInputs;
  const i64 k = w.cols, groups = w.groups();
  const i64 rb = w.row_bytes();
  const i64 sums_at = steps_of(w) * kStepBytes;
  const i64 offsets_at = sums_at + table_floats(w) * 4;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (i64 n = n0; n < n1; ++n) {
    const u8* codes = w.codes + n * rb;
    const u8* sc = static_cast<const u8*>(w.scales) + n * groups * 2;
    const u8* bi = static_cast<const u8*>(w.biases) + n * groups * 2;
    __m256 acc[R][C], accb[R];
    for (int r = 0; r < R; ++r) {
      accb[r] = _mm256_setzero_ps();
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    }
    alignas(32) float sf[8];
    __m256 sv;
    // Step j of the chunk: codes at cp (its first 16 bytes alone at 4 bits, 32 at 8, where
    // `whole` is false: the last step of a row of 64 m + 32 inputs), prepared x at xs (row 0).
    auto step = [&](const u8* cp, const u8* xs, int j, int c, bool whole) {
      if constexpr (kBits == 4) {
        const __m256i v =
            whole ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cp))
                  : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(cp)));
        const __m256i lo = _mm256_and_si256(v, m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        __m256 sg;
        if constexpr (kGroup == 32) {  // the step's two groups, 4 lanes each
          sg = _mm256_permutevar8x32_ps(sv, _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1,
                                                              2 * j + 1, 2 * j + 1, 2 * j + 1));
        } else {
          sg = _mm256_broadcast_ss(&sf[j * kStepInputs / kGroup]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const auto* x = reinterpret_cast<const Step4*>(xs + r * xrb);
          acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dot4(lo, hi, x, ones), _mm256_load_ps(x->dl)),
                                      sg, acc[r][c]);
        }
      } else {
        const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cp));
        const __m256i ws0 = _mm256_xor_si256(v0, flip);
        const __m256i wa0 = _mm256_abs_epi8(ws0);
        const __m256 s0 = _mm256_broadcast_ss(&sf[j * kStepInputs / kGroup]);
        if (!whole) {
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r) {
            const auto* x = reinterpret_cast<const Step8*>(xs + r * xrb);
            acc[r][c] = _mm256_fmadd_ps(
                _mm256_mul_ps(dot8(wa0, ws0, x->q, ones), _mm256_broadcast_ss(&x->d[0])), s0,
                acc[r][c]);
          }
          return;
        }
        const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cp + 32));
        const __m256i ws1 = _mm256_xor_si256(v1, flip);
        const __m256i wa1 = _mm256_abs_epi8(ws1);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const auto* x = reinterpret_cast<const Step8*>(xs + r * xrb);
          const __m256 p0 =
              _mm256_mul_ps(dot8(wa0, ws0, x->q, ones), _mm256_broadcast_ss(&x->d[0]));
          const __m256 p1 = dot8(wa1, ws1, x->q + 32, ones);
          if constexpr (kGroup == 32) {  // the blocks' own groups
            acc[r][c] = _mm256_fmadd_ps(p0, s0, acc[r][c]);
            acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(p1, _mm256_broadcast_ss(&x->d[1])),
                                        _mm256_broadcast_ss(&sf[2 * j + 1]), acc[r][c]);
          } else {
            acc[r][c] = _mm256_fmadd_ps(_mm256_fmadd_ps(p1, _mm256_broadcast_ss(&x->d[1]), p0), s0,
                                        acc[r][c]);
          }
        }
      }
    };
    const u8* cp = codes;
    const u8* xs = xp;
    for (i64 g0 = 0; g0 < groups; g0 += 8) {
      sv = load8<kBf16>(sc + 2 * g0, groups - g0);
      const __m256 bv = load8<kBf16>(bi + 2 * g0, groups - g0);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const u8* xr = xp + r * xrb;
        accb[r] = _mm256_fmadd_ps(
            bv, _mm256_load_ps(reinterpret_cast<const float*>(xr + sums_at) + g0), accb[r]);
        if constexpr (kBits == 8) {
          accb[r] = _mm256_fmadd_ps(
              sv, _mm256_load_ps(reinterpret_cast<const float*>(xr + offsets_at) + g0), accb[r]);
        }
      }
      _mm256_store_ps(sf, sv);
      if (groups - g0 >= 8) {
        // Pairs of steps: one prefetch per 64 code bytes.
#pragma GCC unroll 16
        for (int j = 0; j < kChunkSteps; j += 2) {
          for (i64 b = 0; b < 2 * kCodeBytes; b += 64) {
            _mm_prefetch(reinterpret_cast<const char*>(cp + b + kPrefetch), _MM_HINT_T0);
          }
          step(cp, xs, j, 0, true);
          step(cp + kCodeBytes, xs + kStepBytes, j + 1, C - 1, true);
          cp += 2 * kCodeBytes;
          xs += 2 * kStepBytes;
        }
        continue;
      }
      // The row's last, partial chunk.
      const i64 left = k - g0 * kGroup;
      int j = 0;
      for (; j < left / kStepInputs; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(cp + kPrefetch), _MM_HINT_T0);
        step(cp, xs, j, 0, true);
        cp += kCodeBytes;
        xs += kStepBytes;
      }
      if (left % kStepInputs != 0) step(cp, xs, j, 0, false);
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) {
      __m256 t = accb[r];
      for (int c = 0; c < C; ++c) t = _mm256_add_ps(t, acc[r][c]);
      y[r * ldy + n] = hsum(t) + bv;
    }
  }
}

using Rows = void (*)(const AffineMatrix&, const u8*, i64, i64, i64, const float*, float*, i64);

template <int R, int kBits, int kGroup>
Rows pick_dtype(const AffineMatrix& w) {
  return w.scale_dtype == DType::kBF16 ? gemv_rows<R, kBits, kGroup, true>
                                       : gemv_rows<R, kBits, kGroup, false>;
}

template <int R, int kBits>
Rows pick_group(const AffineMatrix& w) {
  switch (w.group_size) {
    case 32:
      return pick_dtype<R, kBits, 32>(w);
    case 64:
      return pick_dtype<R, kBits, 64>(w);
    default:
      return pick_dtype<R, kBits, 128>(w);
  }
}

template <int R>
Rows pick(const AffineMatrix& w) {
  return w.bits == 4 ? pick_group<R, 4>(w) : pick_group<R, 8>(w);
}

void gemv(const AffineMatrix& w, const void* xp, i64 rows, i64 n0, i64 n1, const float* bias,
          float* y, i64 ldy) {
  const auto* xb = static_cast<const u8*>(xp);
  const i64 xrb = act_row_bytes(w);
  for_row_tiles(rows, [&](i64 r, auto tile) {
    pick<decltype(tile)::value>(w)(w, xb + r * xrb, xrb, n0, n1, bias, y + r * ldy, ldy);
  });
}

constexpr AffineDecode kDecode = {handles, act_row_bytes, prepare, gemv};

}  // namespace

namespace detail {
const AffineDecode& affine_decode_avx2() {
  return kDecode;
}
}  // namespace detail

}  // namespace hearth::kernels
