// 4-bit MLX affine weights for several x rows on AVX-512 VNNI (quant_batch.hpp): per weight row,
// groups of 16 blocks of 32 inputs (256 packed bytes, four 64-byte loads), transposed by 4-byte
// lanes (a 4 x 4 transpose within each 128-bit lane) so that lane 4u + s of every vector holds
// block 4s + u. Eight vpdpbusd (low nibbles: the even inputs, high: the odd) sum a whole block
// per int32 lane; one conversion, one product of the lanes' group scales by the activation
// scales and one fma per x row finish the group. The bias term is sum_g b_g * sum(x over g) with
// the exact f32 sums, as in the one-row kernel.
#pragma GCC target("avx512vnni")
#include <immintrin.h>

#include <cstring>

#include "hearth/kernels/quant_batch.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;
using u8 = std::uint8_t;

constexpr i64 kPrefetch = 1536;  // bytes ahead in the code stream
constexpr int kMaxRows = 8;      // x rows per pass over the weights

// The activations of one group of 16 blocks: lane 4u + s is block 4s + u; at 4 * lane, q[j] holds
// its inputs 8j, 8j + 2, 8j + 4, 8j + 6 (the low nibbles of code bytes 4j .. 4j + 3) and q[4 + j]
// inputs 8j + 1, 8j + 3, 8j + 5, 8j + 7 (the high nibbles).
struct Group {
  std::int8_t q[8][64];
  float dl[16];  // the block's d
};
static_assert(sizeof(Group) == 576);

constexpr int lane_of(i64 block_in_group) {
  return static_cast<int>(4 * (block_in_group % 4) + block_in_group / 4);
}

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

// One block of 32 inputs as AffineActs::fill rounds it: q = round(x * 127 / max|x|) (nearest
// even, as cvtps rounds), clamped to +-127. Returns d.
inline float quantize_block(const float* x, std::int8_t* q) {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  const __m512 lim = _mm512_set1_ps(127.0f);
  const auto round = [&](__m512 v) {
    return _mm512_cvtps_epi32(_mm512_min_ps(
        _mm512_max_ps(_mm512_mul_ps(v, inv), _mm512_sub_ps(_mm512_setzero_ps(), lim)), lim));
  };
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(round(x0)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(round(x1)));
  return amax / 127.0f;
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
      std::int8_t q[32];
      g.dl[lane] = quantize_block(xr + b * 32, q);
      for (int j = 0; j < 4; ++j) {
        for (int i = 0; i < 4; ++i) {
          g.q[j][4 * lane + i] = q[8 * j + 2 * i];
          g.q[4 + j][4 * lane + i] = q[8 * j + 2 * i + 1];
        }
      }
    }
    auto* sums = reinterpret_cast<float*>(base + ng * static_cast<i64>(sizeof(Group)));
    for (i64 g = 0; g < groups; ++g) {
      __m512 acc = _mm512_setzero_ps();
      for (i64 i = 0; i < w.group_size; i += 16) {
        acc = _mm512_add_ps(acc, _mm512_loadu_ps(xr + g * w.group_size + i));
      }
      sums[g] = _mm512_reduce_add_ps(acc);
    }
  }
}

inline __mmask64 first_bytes(i64 n) {
  return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
}
inline __mmask16 first_lanes(i64 n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
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

// The 16 blocks' integer sums of one x row's group against the weights' (from p): two dependency
// chains for one or two rows, one each from three rows on (enough chains already, one add less).
template <int R>
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
  const __m512i m4 = _mm512_set1_epi8(15);
  for (i64 n = n0; n < n1; ++n) {
    const u8* codes = w.codes + n * rb;
    const u8* sc = static_cast<const u8*>(w.scales) + n * groups * 2;
    const u8* bi = static_cast<const u8*>(w.biases) + n * groups * 2;
    __m512 acc[R], accb[R];
    for (int r = 0; r < R; ++r) acc[r] = accb[r] = _mm512_setzero_ps();
    for (i64 g = 0; g < ng; ++g) {
      const u8* c = codes + g * 256;
      for (int l = 0; l < 4; ++l) {
        _mm_prefetch(reinterpret_cast<const char*>(c + kPrefetch + 64 * l), _MM_HINT_T0);
      }
      __m512i cs[4];
      for (int s = 0; s < 4; ++s) {
        const i64 left = rb - g * 256 - 64 * s;
        cs[s] = left >= 64 ? _mm512_loadu_si512(c + 64 * s)
                : left > 0 ? _mm512_maskz_loadu_epi8(first_bytes(left), c + 64 * s)
                           : _mm512_setzero_si512();
      }
      const __m512i t0 = _mm512_unpacklo_epi32(cs[0], cs[1]);
      const __m512i t1 = _mm512_unpackhi_epi32(cs[0], cs[1]);
      const __m512i t2 = _mm512_unpacklo_epi32(cs[2], cs[3]);
      const __m512i t3 = _mm512_unpackhi_epi32(cs[2], cs[3]);
      const __m512i v[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                            _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
      __m512i lo[4], hi[4];
      for (int j = 0; j < 4; ++j) {
        lo[j] = _mm512_and_si512(v[j], m4);
        hi[j] = _mm512_and_si512(_mm512_srli_epi16(v[j], 4), m4);
      }
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
    for (i64 g = 0; g < groups; g += 16) {
      const __m512 b = load_scales<kBf16>(bi + 2 * g, groups - g);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const auto* sums = reinterpret_cast<const float*>(xp + r * xrb + sums_at);
        accb[r] = _mm512_fmadd_ps(b, _mm512_loadu_ps(sums + g), accb[r]);
      }
    }
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
