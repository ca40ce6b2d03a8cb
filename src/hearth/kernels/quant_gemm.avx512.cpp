// AVX-512 VNNI tiled kernels of quant_gemm.hpp. The weight traits are quant_ggml_impl.hpp's
// (compiled here as for quant_ggml.avx512.cpp); a tile of 32 weight rows is unpacked into
//   codes:  [sub-block j][int32 group t of 4 inputs][half of the tile p][row lane][4 bytes]
//   scales, mins: [sub-block j][half h (Q2_K, Q3_K, Q6_K: two per 32)][p][row lane]
// so that each step of four inputs is two 64-byte loads against four broadcast x dwords (vpdpbusd
// with m32bcst), 2 x 4 accumulator pairs (int32 per sub-block, f32 over the row) in registers.
#pragma GCC target("avx512vnni")
#define HEARTH_QG_AVX2 1
#define HEARTH_QG_VNNI 1
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "hearth/kernels/quant_gemm.hpp"
#include "hearth/kernels/quant_ggml_impl.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace hearth::kernels {
namespace {

constexpr int kTile = 32;  // weight rows per tile: two vectors of 16
constexpr int kMr = 4;     // x rows per register tile

// A thread's unpacked tile: codes, then scales, then mins (64-byte aligned).
struct Packed {
  std::uint8_t* codes = nullptr;
  float* scale = nullptr;
  float* min = nullptr;
};

Packed packed_tile(i64 subs, int halves, bool clear) {
  thread_local std::vector<std::uint8_t> buf;
  const auto code_bytes = static_cast<std::size_t>(subs * 8 * kTile * 4);
  const auto scale_floats = static_cast<std::size_t>(subs * halves * kTile);
  const std::size_t bytes = code_bytes + 2 * scale_floats * sizeof(float) + 64;
  if (buf.size() < bytes) buf.resize(bytes);
  auto* base = reinterpret_cast<std::uint8_t*>((reinterpret_cast<std::uintptr_t>(buf.data()) + 63) &
                                               ~std::uintptr_t{63});
  if (clear) std::memset(base, 0, bytes - 64);
  Packed p;
  p.codes = base;
  p.scale = reinterpret_cast<float*>(base + code_bytes);
  p.min = p.scale + scale_floats;
  return p;
}

// Row i of the tile, sub-block j: 32 unsigned codes v in input order.
inline void put_codes(const Packed& pk, int i, i64 j, __m256i v) {
  const __m256i idx = _mm256_setr_epi32(0, 128, 256, 384, 512, 640, 768, 896);
  _mm256_i32scatter_epi32(pk.codes + j * 1024 + (i / 16) * 64 + (i % 16) * 4, idx, v, 1);
}

inline void put_scale(const Packed& pk, int halves, int i, i64 j, int h, float s, float m) {
  const i64 at = ((j * halves + h) * 2 + i / 16) * 16 + i % 16;
  pk.scale[at] = s;
  pk.min[at] = m;
}

// y rows r0..r0+R of the tile (valid weight rows: mask) from x blocks xq (row r at r * subs).
template <int H, int R>
void tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 r0, const float* bias, __mmask16 mask0,
          __mmask16 mask1, float* y, i64 ldy) {
  __m512 f[2][R];
  for (int r = 0; r < R; ++r) f[0][r] = f[1][r] = _mm512_setzero_ps();
  const Q8Block* xb[R];
  for (int r = 0; r < R; ++r) xb[r] = xq + (r0 + r) * subs;
  for (i64 j = 0; j < subs; ++j) {
    const std::uint8_t* q = pk.codes + j * 1024;
#pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      __m512i a[2][R];
      for (int r = 0; r < R; ++r) a[0][r] = a[1][r] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int t = h * 8 / H; t < (h + 1) * 8 / H; ++t) {
        const __m512i w0 = _mm512_load_si512(q + t * 128);
        const __m512i w1 = _mm512_load_si512(q + t * 128 + 64);
        for (int r = 0; r < R; ++r) {
          int v;
          std::memcpy(&v, xb[r][j].q + 4 * t, 4);
          const __m512i xv = _mm512_set1_epi32(v);
          a[0][r] = _mm512_dpbusd_epi32(a[0][r], w0, xv);
          a[1][r] = _mm512_dpbusd_epi32(a[1][r], w1, xv);
        }
      }
      const i64 at = (j * H + h) * 32;
      const __m512 s0 = _mm512_load_ps(pk.scale + at), s1 = _mm512_load_ps(pk.scale + at + 16);
      const __m512 m0 = _mm512_load_ps(pk.min + at), m1 = _mm512_load_ps(pk.min + at + 16);
      for (int r = 0; r < R; ++r) {
        const __m512 d = _mm512_set1_ps(xb[r][j].d);
        const __m512 ms = _mm512_set1_ps(H == 2 ? xb[r][j].sum[h] : xb[r][j].total);
        f[0][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[0][r]), _mm512_mul_ps(s0, d), f[0][r]);
        f[1][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[1][r]), _mm512_mul_ps(s1, d), f[1][r]);
        f[0][r] = _mm512_fnmadd_ps(m0, ms, f[0][r]);
        f[1][r] = _mm512_fnmadd_ps(m1, ms, f[1][r]);
      }
    }
  }
  const __m512 b0 = bias != nullptr ? _mm512_maskz_loadu_ps(mask0, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias != nullptr ? _mm512_maskz_loadu_ps(mask1, bias + 16) : _mm512_setzero_ps();
  for (int r = 0; r < R; ++r) {
    float* yr = y + (r0 + r) * ldy;
    _mm512_mask_storeu_ps(yr, mask0, _mm512_add_ps(f[0][r], b0));
    _mm512_mask_storeu_ps(yr + 16, mask1, _mm512_add_ps(f[1][r], b1));
  }
}

// Every x row of [m0, m1) against one unpacked tile of rows valid weight rows.
template <int H>
void run_tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 m0, i64 m1, const float* bias,
              int rows, float* y, i64 ldy) {
  const auto mask0 = static_cast<__mmask16>(rows >= 16 ? 0xFFFF : (1u << rows) - 1);
  const auto mask1 = static_cast<__mmask16>(rows >= 32   ? 0xFFFF
                                            : rows <= 16 ? 0
                                                         : (1u << (rows - 16)) - 1);
  i64 r = m0;
  for (; r + kMr <= m1; r += kMr) tile<H, kMr>(pk, subs, xq, r, bias, mask0, mask1, y, ldy);
  switch (m1 - r) {
    case 3:
      tile<H, 3>(pk, subs, xq, r, bias, mask0, mask1, y, ldy);
      break;
    case 2:
      tile<H, 2>(pk, subs, xq, r, bias, mask0, mask1, y, ldy);
      break;
    case 1:
      tile<H, 1>(pk, subs, xq, r, bias, mask0, mask1, y, ldy);
      break;
    default:
      break;
  }
}

template <DType T>
void ggml_t(const void* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, i64 m0, i64 m1,
            const float* bias, float* y, i64 ldy) {
  using W = Q<T>;
  constexpr int kH = W::kPer16 ? 2 : 1;
  constexpr int spb = W::kElems / 32;
  const i64 nb = k / W::kElems;
  const i64 subs = k / 32;
  const auto* wb = static_cast<const u8*>(w);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (i64 tn = n0; tn < n1; tn += kTile) {
    const int rows = static_cast<int>(n1 - tn < kTile ? n1 - tn : kTile);
    const Packed pk = packed_tile(subs, kH, rows < kTile);
    for (int i = 0; i < rows; ++i) {
      const u8* row = wb + (tn + i) * nb * W::kBytes;
      for (i64 b = 0; b < nb; ++b) {
        const u8* blk = row + b * W::kBytes;
        Prep p;
        W::prep(blk, p);
        for (int j = 0; j < spb; ++j) {
          __m256i v = load_quants<T>(blk, j);
          if constexpr (W::kSigned) v = _mm256_xor_si256(v, flip);
          const i64 jg = b * spb + j;
          put_codes(pk, i, jg, v);
          for (int h = 0; h < kH; ++h) {
            const float s = p.scale[2 * j + h];
            const float m = W::kSigned ? 128.0f * s : p.min[2 * j + h];
            put_scale(pk, kH, i, jg, h, s, m);
          }
        }
      }
    }
    run_tile<kH>(pk, subs, xq, m0, m1, bias != nullptr ? bias + tn : nullptr, rows, y + tn, ldy);
  }
}

void ggml(DType t, const void* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, i64 m0, i64 m1,
          const float* bias, float* y, i64 ldy) {
  switch (t) {
#define HEARTH_QGEMM_CASE(T) \
  case T:                    \
    return ggml_t<T>(w, k, n0, n1, xq, m0, m1, bias, y, ldy);
    HEARTH_QGEMM_CASE(DType::kQ4_0)
    HEARTH_QGEMM_CASE(DType::kQ4_1)
    HEARTH_QGEMM_CASE(DType::kQ5_0)
    HEARTH_QGEMM_CASE(DType::kQ5_1)
    HEARTH_QGEMM_CASE(DType::kQ8_0)
    HEARTH_QGEMM_CASE(DType::kQ2_K)
    HEARTH_QGEMM_CASE(DType::kQ3_K)
    HEARTH_QGEMM_CASE(DType::kQ4_K)
    HEARTH_QGEMM_CASE(DType::kQ5_K)
    HEARTH_QGEMM_CASE(DType::kQ6_K)
    HEARTH_QGEMM_CASE(DType::kIQ4_NL)
    HEARTH_QGEMM_CASE(DType::kIQ4_XS)
#undef HEARTH_QGEMM_CASE
    default:
      return;
  }
}

// 32 codes of an mlx row from input 32 j on, in input order.
inline __m256i affine_codes(const std::uint8_t* row, int bits, i64 j) {
  if (bits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j * 32));
  if (bits == 4) {  // byte i holds inputs 2i (low nibble) and 2i + 1
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j * 16));
    const __m128i m = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(raw, m), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
  }
  alignas(32) std::uint8_t c[32];
  for (int i = 0; i < 32; ++i)
    c[i] = static_cast<std::uint8_t>(mlx::unpack_code(row, j * 32 + i, bits));
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(c));
}

void affine(const AffineMatrix& w, i64 n0, i64 n1, const Q8Block* xq, i64 m0, i64 m1,
            const float* bias, float* y, i64 ldy) {
  const i64 subs = w.cols / 32;
  const i64 groups = w.groups();
  const i64 per_group = w.group_size / 32;
  const i64 es = w.scale_dtype == DType::kF32 ? 4 : 2;
  const auto* scales = static_cast<const std::uint8_t*>(w.scales);
  const auto* biases = static_cast<const std::uint8_t*>(w.biases);
  for (i64 tn = n0; tn < n1; tn += kTile) {
    const int rows = static_cast<int>(n1 - tn < kTile ? n1 - tn : kTile);
    const Packed pk = packed_tile(subs, 1, rows < kTile);
    for (int i = 0; i < rows; ++i) {
      const i64 n = tn + i;
      const std::uint8_t* row = w.codes + n * w.row_bytes();
      for (i64 j = 0; j < subs; ++j) put_codes(pk, i, j, affine_codes(row, w.bits, j));
      for (i64 g = 0; g < groups; ++g) {
        const float s = mlx::read_scale(w.scale_dtype, scales + n * groups * es, g);
        const float b = mlx::read_scale(w.scale_dtype, biases + n * groups * es, g);
        for (i64 j = g * per_group; j < (g + 1) * per_group; ++j) put_scale(pk, 1, i, j, 0, s, -b);
      }
    }
    run_tile<1>(pk, subs, xq, m0, m1, bias != nullptr ? bias + tn : nullptr, rows, y + tn, ldy);
  }
}

}  // namespace

namespace detail {

const QuantGemm& quant_gemm_vnni512() {
  static constexpr QuantGemm table = {"int8-avx512vnni-tiled", kTile, ggml, affine};
  return table;
}

}  // namespace detail
}  // namespace hearth::kernels
