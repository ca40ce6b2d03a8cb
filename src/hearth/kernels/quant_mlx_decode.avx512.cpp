// The AVX-512 VNNI decode kernels of quant_mlx.hpp (AffineDecode) for 4- and 8-bit codes with
// f16 or bf16 scales: x prepared per call (int8 blocks of 32, d = max|x| / 127, in the order the
// steps read them, plus the exact f32 sum of x over each weight group), then per weight row
// steps of 64 packed bytes: vpdpbusd of the unsigned codes against the int8 activations into 16
// int32 lanes (each lane within one block and one group), scaled by s_group * d_block and summed
// in f32; the bias term is sum_g b_g * sum(x over g) with the exact sums.
#pragma GCC target("avx512vnni")
#include <cstring>

#include "hearth/kernels/avx512_util.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/kernels/row_tiles.hpp"

namespace hearth::kernels {
namespace {

// 4 bits: 128 inputs (four blocks, 64 packed bytes): byte j of a block holds inputs 2j (low
// nibble) and 2j + 1 (high).
struct Step4 {
  std::int8_t even[64];  // block t's even inputs at 16 t
  std::int8_t odd[64];
  float dl[16];  // 4 x each block's d
};
// 8 bits: 64 inputs (two blocks) in order.
struct Step8 {
  std::int8_t q[64];
  float dl[16];  // 8 x each block's d
};
static_assert(sizeof(Step4) == 192 && sizeof(Step8) == 128);

i64 step_inputs(int bits) {
  return bits == 4 ? 128 : 64;
}
i64 step_bytes(int bits) {
  return bits == 4 ? 192 : 128;
}
i64 steps_of(const AffineMatrix& w) {
  return (w.cols + step_inputs(w.bits) - 1) / step_inputs(w.bits);
}

bool handles(const AffineMatrix& w) {
  return (w.bits == 4 || w.bits == 8) &&
         (w.scale_dtype == DType::kF16 || w.scale_dtype == DType::kBF16) && w.cols % 32 == 0;
}

// Steps, then the group sums (padded to 16 floats), to whole cache lines.
i64 act_row_bytes(const AffineMatrix& w) {
  const i64 sums = (w.groups() + 15) / 16 * 16 * 4;
  return (steps_of(w) * step_bytes(w.bits) + sums + 63) / 64 * 64;
}

void prepare(const AffineMatrix& w, const float* x, i64 rows, i64 ldx, void* out) {
  const i64 rb = act_row_bytes(w);
  const i64 k = w.cols, nb = k / 32, steps = steps_of(w), groups = w.groups();
  // Even (odd) bytes of 32 to the first (second) 16.
  const __m256i deal = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2,
                                        4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  for (i64 r = 0; r < rows; ++r) {
    u8* base = static_cast<u8*>(out) + r * rb;
    std::memset(base, 0, static_cast<std::size_t>(rb));
    const float* xr = x + r * ldx;
    for (i64 b = 0; b < nb; ++b) {
      __m512i q0, q1;
      const float d = quantize_affine_block(xr + b * 32, q0, q1);
      const __m256i q = _mm256_set_m128i(_mm512_cvtepi32_epi8(q1), _mm512_cvtepi32_epi8(q0));
      if (w.bits == 4) {
        Step4& s = reinterpret_cast<Step4*>(base)[b / 4];
        const int t = static_cast<int>(b % 4);
        // Within each 128-bit lane: evens then odds; lane 0 holds inputs 0-15, lane 1 16-31.
        const __m256i dealt = _mm256_shuffle_epi8(q, deal);
        const __m256i ev = _mm256_permute4x64_epi64(dealt, 0x08);  // qwords 0, 2
        const __m256i od = _mm256_permute4x64_epi64(dealt, 0x0D);  // qwords 1, 3
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s.even + 16 * t), _mm256_castsi256_si128(ev));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(s.odd + 16 * t), _mm256_castsi256_si128(od));
        _mm_storeu_ps(s.dl + 4 * t, _mm_set1_ps(d));
      } else {
        Step8& s = reinterpret_cast<Step8*>(base)[b / 2];
        const int h = static_cast<int>(b % 2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(s.q + 32 * h), q);
        _mm256_storeu_ps(s.dl + 8 * h, _mm256_set1_ps(d));
      }
    }
    auto* sums = reinterpret_cast<float*>(base + steps * step_bytes(w.bits));
    group_sums(xr, groups, w.group_size, sums);
  }
}

template <int R, int kBits, bool kBf16>
void gemv_rows(const AffineMatrix& w, const u8* xp, i64 xrb, i64 n0, i64 n1, const float* bias,
               float* y, i64 ldy) {
  constexpr i64 kIn = kBits == 4 ? 128 : 64;  // inputs per step
  constexpr i64 kStep = kBits == 4 ? 192 : 128;
  const i64 k = w.cols, gs = w.group_size, groups = w.groups();
  const i64 steps = (k + kIn - 1) / kIn;
  const i64 rb = w.row_bytes();
  const i64 sums_at = steps * kStep;
  // Lane l of a step covers inputs kIn * l / 16 ... : its group within the step's first group.
  const int lane_inputs = static_cast<int>(kIn / 16);
  alignas(64) std::int32_t lane_group[16];
  for (int l = 0; l < 16; ++l) lane_group[l] = static_cast<int>(l * lane_inputs / gs);
  const __m512i idx = _mm512_load_si512(lane_group);
  const __m512i m4 = _mm512_set1_epi8(15);
  for (i64 n = n0; n < n1; ++n) {
    const u8* codes = w.codes + n * rb;
    const u8* sc = static_cast<const u8*>(w.scales) + n * groups * 2;
    const u8* bi = static_cast<const u8*>(w.biases) + n * groups * 2;
    __m512 acc[R], accb[R];
    for (int r = 0; r < R; ++r) acc[r] = accb[r] = _mm512_setzero_ps();
    for (i64 s = 0; s < steps; ++s) {
      const u8* c = codes + s * 64;
      _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetch512), _MM_HINT_T0);
      const i64 left = (k - s * kIn) * kBits / 8;
      const __m512i v =
          left >= 64 ? _mm512_loadu_si512(c) : _mm512_maskz_loadu_epi8(first_bytes(left), c);
      const i64 g0 = s * kIn / gs;
      const __m512 sv = _mm512_permutexvar_ps(idx, load_scales<kBf16>(sc + 2 * g0, groups - g0));
      if constexpr (kBits == 4) {
        const __m512i lo = _mm512_and_si512(v, m4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const auto* x = reinterpret_cast<const Step4*>(xp + r * xrb) + s;
          __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(x->even));
          p = _mm512_dpbusd_epi32(p, hi, _mm512_load_si512(x->odd));
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(sv, _mm512_load_ps(x->dl)),
                                   acc[r]);
        }
      } else {
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const auto* x = reinterpret_cast<const Step8*>(xp + r * xrb) + s;
          const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, _mm512_load_si512(x->q));
          acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(sv, _mm512_load_ps(x->dl)),
                                   acc[r]);
        }
      }
    }
    add_bias_terms<R, kBf16>(bi, groups, xp, xrb, sums_at, accb);
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) {
      y[r * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r], accb[r])) + bv;
    }
  }
}

using Rows = void (*)(const AffineMatrix&, const u8*, i64, i64, i64, const float*, float*, i64);

template <int R>
Rows pick(const AffineMatrix& w) {
  const bool bf16 = w.scale_dtype == DType::kBF16;
  if (w.bits == 4) return bf16 ? gemv_rows<R, 4, true> : gemv_rows<R, 4, false>;
  return bf16 ? gemv_rows<R, 8, true> : gemv_rows<R, 8, false>;
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
const AffineDecode& affine_decode_avx512() {
  return kDecode;
}
}  // namespace detail

}  // namespace hearth::kernels
