// Q4_0 for several x rows on AVX-512 VNNI (quant_batch.hpp): per weight row, groups of 16
// blocks (four steps of four blocks, 288 bytes). Each step's 64 nibble bytes are gathered by a
// word permute as in the one-row kernel; the four steps' vectors are then transposed by 4-byte
// lanes (within each 128-bit lane, a 4 x 4 transpose) so that lane 4u + s of every vector holds
// block 4s + u. Eight vpdpbusd (low and high nibbles of the four transposed vectors) then sum a
// whole block per int32 lane, from -8 * sum(q) (the Q4_0 offset, precomputed per block); one
// conversion, one product of the 16 weight scales by the 16 activation scales and one fma per x
// row finish the group.
#pragma GCC target("avx512vnni")
#include <cstring>

#include "hearth/kernels/avx512_util.hpp"
#include "hearth/kernels/quant_batch.hpp"

namespace hearth::kernels {
namespace {

constexpr int kMaxRows = 8;  // x rows per pass over the weights

// The activations of one group of 16 blocks (512 inputs): lane 4u + s is block 4s + u, and q[j]
// holds at 4 * lane that block's inputs 4j .. 4j + 3.
struct Group {
  std::int8_t q[8][64];
  std::int32_t bias[16];  // -8 * sum of the block's q
  float dl[16];           // the block's d
};
static_assert(sizeof(Group) == 640);

i64 groups_of(i64 k) {
  return (k / 32 + 15) / 16;
}

bool handles(DType t) {
  return t == DType::kQ4_0;
}

i64 act_row_bytes(DType /*t*/, i64 k) {
  return groups_of(k) * static_cast<i64>(sizeof(Group));
}

void prepare(DType /*t*/, const float* x, i64 rows, i64 ldx, i64 k, void* out) {
  const i64 nb = k / 32;
  const i64 ng = groups_of(k);
  for (i64 r = 0; r < rows; ++r) {
    auto* groups = reinterpret_cast<Group*>(static_cast<u8*>(out) + r * ng * sizeof(Group));
    std::memset(static_cast<void*>(groups), 0, static_cast<std::size_t>(ng) * sizeof(Group));
    const float* xr = x + r * ldx;
    for (i64 b = 0; b < nb; ++b) {
      Group& g = groups[b / 16];
      const int lane = lane_of(b % 16);
      __m512i q0, q1;
      g.dl[lane] = quantize_q8_block(xr + b * 32, q0, q1);
      g.bias[lane] = -8 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
      std::int8_t q[32];
      store16(q, q0);
      store16(q + 16, q1);
      for (int j = 0; j < 8; ++j) std::memcpy(g.q[j] + 4 * lane, q + 4 * j, 4);
    }
  }
}

template <int R>
void gemv_q4_0(const u8* w, i64 k, i64 n0, i64 n1, const u8* xp, i64 xrb, const float* bias,
               float* y, i64 ldy) {
  const i64 nb = k / 32;
  const i64 rb = nb * 18;
  const i64 ng = groups_of(k);
  // Words 9u + 1 .. 9u + 8 of a step are block u's nibbles; word 9u its scale, wanted at word
  // 4u + s of the group's scales for step s.
  const __m512i idx_qs = words({1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
                                19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35});
  const __m512i idx_sc = words({0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27});
  for (i64 n = n0; n < n1; ++n) {
    const u8* row = w + n * rb;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (i64 g = 0; g < ng; ++g) {
      const u8* grp = row + g * 288;
      for (int c = 0; c < 5; ++c) {
        _mm_prefetch(reinterpret_cast<const char*>(grp + kPrefetch512 + 64 * c), _MM_HINT_T0);
      }
      __m512i qs[4];
      __m512i sc = _mm512_setzero_si512();
      for (int s = 0; s < 4; ++s) {
        const i64 first = 16 * g + 4 * s;  // the step's first block
        const u8* blk = grp + 72 * s;
        __m512i a = _mm512_setzero_si512(), b = a;
        if (first + 4 <= nb) {
          a = _mm512_loadu_si512(blk);
          b = _mm512_maskz_loadu_epi8(0xFF, blk + 64);
        } else if (first < nb) {
          const i64 left = (nb - first) * 18;
          a = _mm512_maskz_loadu_epi8(first_bytes(left), blk);
          b = _mm512_maskz_loadu_epi8(first_bytes(left - 64 > 0 ? left - 64 : 0), blk + 64);
        }
        qs[s] = _mm512_permutex2var_epi16(a, idx_qs, b);
        sc = _mm512_mask_permutexvar_epi16(sc, static_cast<__mmask32>(0x1111u << s), idx_sc, a);
      }
      __m512i lo[4], hi[4];
      transposed_nibbles(qs, lo, hi);
      const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const Group* x = reinterpret_cast<const Group*>(xp + r * xrb) + g;
        const __m512i p = block_sums<R>(_mm512_load_si512(x->bias), lo, hi, x);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, _mm512_load_ps(x->dl)),
                                 acc[r]);
      }
    }
    const float bv = bias != nullptr ? bias[n] : 0.0f;
    for (int r = 0; r < R; ++r) y[r * ldy + n] = _mm512_reduce_add_ps(acc[r]) + bv;
  }
}

using Gemv = void (*)(const u8*, i64, i64, i64, const u8*, i64, const float*, float*, i64);

constexpr Gemv kQ4_0[kMaxRows] = {gemv_q4_0<1>, gemv_q4_0<2>, gemv_q4_0<3>, gemv_q4_0<4>,
                                  gemv_q4_0<5>, gemv_q4_0<6>, gemv_q4_0<7>, gemv_q4_0<8>};

void gemv(DType t, const void* w, i64 k, i64 n0, i64 n1, const void* xp, i64 rows,
          const float* bias, float* y, i64 ldy) {
  const auto* wb = static_cast<const u8*>(w);
  const auto* xb = static_cast<const u8*>(xp);
  const i64 xrb = act_row_bytes(t, k);
  for (i64 r = 0; r < rows; r += kMaxRows) {
    const i64 tile = rows - r < kMaxRows ? rows - r : kMaxRows;
    kQ4_0[tile - 1](wb, k, n0, n1, xb + r * xrb, xrb, bias, y + r * ldy, ldy);
  }
}

constexpr DecodeKernels kBatch = {handles, act_row_bytes, prepare, gemv};

}  // namespace

namespace detail {
const DecodeKernels& batch_decode_kernels_avx512() {
  return kBatch;
}
}  // namespace detail

}  // namespace hearth::kernels
