// 4-bit MLX affine weights for several x rows on AVX-512 VNNI (quant_batch.hpp): per weight row,
// groups of 16 blocks of 32 inputs (256 packed bytes, four 64-byte loads), transposed by 4-byte
// lanes (a 4 x 4 transpose within each 128-bit lane) so that lane 4u + s of every vector holds
// block 4s + u. Eight vpdpbusd (low nibbles: the even inputs, high: the odd) sum a whole block
// per int32 lane; one conversion, one product of the lanes' group scales by the activation
// scales and one fma per x row finish the group. The bias term is sum_g b_g * sum(x over g) with
// the exact f32 sums, as in the one-row kernel.
#pragma GCC target("avx512vnni")
#include <cstring>

#include "hearth/kernels/avx512_util.hpp"
#include "hearth/kernels/quant_batch.hpp"

namespace hearth::kernels {
namespace {

constexpr int kMaxRows = 8;  // x rows per pass over the weights

// The activations of one group of 16 blocks: lane 4u + s is block 4s + u; at 4 * lane, q[j] holds
// its inputs 8j, 8j + 2, 8j + 4, 8j + 6 (the low nibbles of code bytes 4j .. 4j + 3) and q[4 + j]
// inputs 8j + 1, 8j + 3, 8j + 5, 8j + 7 (the high nibbles).
struct Group {
  std::int8_t q[8][64];
  float dl[16];  // the block's d
};
static_assert(sizeof(Group) == 576);

i64 groups_of(const AffineMatrix& w) {
  return (w.cols / 32 + 15) / 16;
}

bool handles(const AffineMatrix& w) {
  return w.bits == 4 && (w.scale_dtype == DType::kF16 || w.scale_dtype == DType::kBF16) &&
         w.cols % 32 == 0 && (w.group_size == 32 || w.group_size == 64 || w.group_size == 128);
}

// The groups, then the weight-group sums of x (padded to 16 floats), to whole cache lines.
i64 act_row_bytes(const AffineMatrix& w) {
  const i64 sums = (w.groups() + 15) / 16 * 16 * 4;
  return (groups_of(w) * static_cast<i64>(sizeof(Group)) + sums + 63) / 64 * 64;
}

void prepare(const AffineMatrix& w, const float* x, i64 rows, i64 ldx, void* out) {
  const i64 rb = act_row_bytes(w);
  const i64 nb = w.cols / 32, ng = groups_of(w), groups = w.groups();
  for (i64 r = 0; r < rows; ++r) {
    u8* base = static_cast<u8*>(out) + r * rb;
    std::memset(base, 0, static_cast<std::size_t>(rb));
    auto* grp = reinterpret_cast<Group*>(base);
    const float* xr = x + r * ldx;
    for (i64 b = 0; b < nb; ++b) {
      Group& g = grp[b / 16];
      const int lane = lane_of(b % 16);
      __m512i q0, q1;
      g.dl[lane] = quantize_affine_block(xr + b * 32, q0, q1);
      std::int8_t q[32];
      store16(q, q0);
      store16(q + 16, q1);
      for (int j = 0; j < 4; ++j) {
        for (int i = 0; i < 4; ++i) {
          g.q[j][4 * lane + i] = q[8 * j + 2 * i];
          g.q[4 + j][4 * lane + i] = q[8 * j + 2 * i + 1];
        }
      }
    }
    auto* sums = reinterpret_cast<float*>(base + ng * static_cast<i64>(sizeof(Group)));
    group_sums(xr, groups, w.group_size, sums);
  }
}

template <int R, bool kBf16>
void gemv_rows(const AffineMatrix& w, const u8* xp, i64 xrb, i64 n0, i64 n1, const float* bias,
               float* y, i64 ldy) {
  const i64 groups = w.groups();
  const i64 ng = groups_of(w);
  const i64 rb = w.row_bytes();
  const i64 per_group = w.group_size / 32;  // blocks per weight group
  const i64 sums_at = ng * static_cast<i64>(sizeof(Group));
  // Lane 4u + s (block 4s + u of the group) takes the scale of weight group (4s + u) / per_group,
  // counted from the group's first.
  alignas(64) std::int32_t lane_group[16];
  for (int l = 0; l < 16; ++l) lane_group[l] = static_cast<int>((4 * (l % 4) + l / 4) / per_group);
  const __m512i idx = _mm512_load_si512(lane_group);
  for (i64 n = n0; n < n1; ++n) {
    const u8* codes = w.codes + n * rb;
    const u8* sc = static_cast<const u8*>(w.scales) + n * groups * 2;
    const u8* bi = static_cast<const u8*>(w.biases) + n * groups * 2;
    __m512 acc[R], accb[R];
    for (int r = 0; r < R; ++r) acc[r] = accb[r] = _mm512_setzero_ps();
    for (i64 g = 0; g < ng; ++g) {
      const u8* c = codes + g * 256;
      for (int l = 0; l < 4; ++l) {
        _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetch512 + 64 * l), _MM_HINT_T0);
      }
      __m512i cs[4];
      for (int s = 0; s < 4; ++s) {
        const i64 left = rb - g * 256 - 64 * s;
        cs[s] = left >= 64 ? _mm512_loadu_si512(c + 64 * s)
                : left > 0 ? _mm512_maskz_loadu_epi8(first_bytes(left), c + 64 * s)
                           : _mm512_setzero_si512();
      }
      __m512i lo[4], hi[4];
      transposed_nibbles(cs, lo, hi);
      const i64 g0 = 16 * g / per_group;
      const __m512 sv = _mm512_permutexvar_ps(idx, load_scales<kBf16>(sc + 2 * g0, groups - g0));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const Group* x = reinterpret_cast<const Group*>(xp + r * xrb) + g;
        acc[r] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(block_sums<R>(_mm512_setzero_si512(), lo, hi, x)),
                            _mm512_mul_ps(sv, _mm512_load_ps(x->dl)), acc[r]);
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

template <bool kBf16>
constexpr Rows kRows[kMaxRows] = {gemv_rows<1, kBf16>, gemv_rows<2, kBf16>, gemv_rows<3, kBf16>,
                                  gemv_rows<4, kBf16>, gemv_rows<5, kBf16>, gemv_rows<6, kBf16>,
                                  gemv_rows<7, kBf16>, gemv_rows<8, kBf16>};

void gemv(const AffineMatrix& w, const void* xp, i64 rows, i64 n0, i64 n1, const float* bias,
          float* y, i64 ldy) {
  const auto* xb = static_cast<const u8*>(xp);
  const i64 xrb = act_row_bytes(w);
  const bool bf16 = w.scale_dtype == DType::kBF16;
  for (i64 r = 0; r < rows; r += kMaxRows) {
    const i64 tile = rows - r < kMaxRows ? rows - r : kMaxRows;
    const Rows f = bf16 ? kRows<true>[tile - 1] : kRows<false>[tile - 1];
    f(w, xb + r * xrb, xrb, n0, n1, bias, y + r * ldy, ldy);
  }
}

constexpr AffineDecode kBatch = {handles, act_row_bytes, prepare, gemv};

}  // namespace

namespace detail {
const AffineDecode& batch_affine_decode_avx512() {
  return kBatch;
}
}  // namespace detail

}  // namespace hearth::kernels
