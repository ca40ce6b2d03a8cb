// AVX-512 VNNI tiled kernels of quant_gemm.hpp. The weight traits are quant_ggml_impl.hpp's
// (compiled here as for quant_ggml.avx512.cpp); a tile of kTile weight rows is unpacked into
//   codes:  [sub-block j][int32 group t of 4 inputs][vector p of 16 rows][row lane][4 bytes]
//   scales, mins: [sub-block j][half h (Q2_K, Q3_K, Q6_K: two per 32)][p][row lane]
// so that each step of four inputs is kNp 64-byte loads against kMr broadcast x dwords
// (vpdpbusd), kNp x kMr accumulator pairs (int32 per sub-block, f32 over the row) in registers.
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

// Tile shape (measured against 2 x 4, 4 x 3 and 2 x 6 on Zen 4: within 5%, this the best): three
// vectors of 16 weight rows by four x rows, 12 int32 and 12 f32 accumulators.
constexpr int kNp = 3;                   // vectors of 16 weight rows per tile
constexpr int kTile = 16 * kNp;          // weight rows per tile
constexpr int kMr = 4;                   // x rows per register tile
constexpr int kSubBytes = 8 * kNp * 64;  // one sub-block of 32 inputs of a tile

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
  const __m256i idx =
      _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(kNp * 64));
  _mm256_i32scatter_epi32(pk.codes + j * kSubBytes + (i / 16) * 64 + (i % 16) * 4, idx, v, 1);
}

inline void put_scale(const Packed& pk, int halves, int i, i64 j, int h, float s, float m) {
  const i64 at = ((j * halves + h) * kNp + i / 16) * 16 + i % 16;
  pk.scale[at] = s;
  pk.min[at] = m;
}

// y rows r0..r0+R of the tile (valid weight rows: masks) from x blocks xq (row r at r * subs).
template <int H, int R>
void tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 r0, const float* bias,
          const __mmask16* mask, float* y, i64 ldy) {
  __m512 f[kNp][R];
  for (int p = 0; p < kNp; ++p) {
    for (int r = 0; r < R; ++r) f[p][r] = _mm512_setzero_ps();
  }
  const Q8Block* xb[R];
  for (int r = 0; r < R; ++r) xb[r] = xq + (r0 + r) * subs;
  for (i64 j = 0; j < subs; ++j) {
    const std::uint8_t* q = pk.codes + j * kSubBytes;
#pragma GCC unroll 2
    for (int h = 0; h < H; ++h) {
      __m512i a[kNp][R];
      for (int p = 0; p < kNp; ++p) {
        for (int r = 0; r < R; ++r) a[p][r] = _mm512_setzero_si512();
      }
#pragma GCC unroll 8
      for (int t = h * 8 / H; t < (h + 1) * 8 / H; ++t) {
        __m512i w[kNp];
        for (int p = 0; p < kNp; ++p) w[p] = _mm512_load_si512(q + (t * kNp + p) * 64);
        for (int r = 0; r < R; ++r) {
          int v;
          std::memcpy(&v, xb[r][j].q + 4 * t, 4);
          const __m512i xv = _mm512_set1_epi32(v);
          for (int p = 0; p < kNp; ++p) a[p][r] = _mm512_dpbusd_epi32(a[p][r], w[p], xv);
        }
      }
      const i64 at = (j * H + h) * kTile;
      for (int r = 0; r < R; ++r) {
        const __m512 d = _mm512_set1_ps(xb[r][j].d);
        const __m512 ms = _mm512_set1_ps(H == 2 ? xb[r][j].sum[h] : xb[r][j].total);
        for (int p = 0; p < kNp; ++p) {
          const __m512 sd = _mm512_mul_ps(_mm512_load_ps(pk.scale + at + 16 * p), d);
          f[p][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[p][r]), sd, f[p][r]);
          f[p][r] = _mm512_fnmadd_ps(_mm512_load_ps(pk.min + at + 16 * p), ms, f[p][r]);
        }
      }
    }
  }
  for (int p = 0; p < kNp; ++p) {
    const __m512 b =
        bias != nullptr ? _mm512_maskz_loadu_ps(mask[p], bias + 16 * p) : _mm512_setzero_ps();
    for (int r = 0; r < R; ++r) {
      _mm512_mask_storeu_ps(y + (r0 + r) * ldy + 16 * p, mask[p], _mm512_add_ps(f[p][r], b));
    }
  }
}

// The last left < kMr x rows.
template <int H, int R>
void tail(int left, const Packed& pk, i64 subs, const Q8Block* xq, i64 r0, const float* bias,
          const __mmask16* mask, float* y, i64 ldy) {
  if constexpr (R > 0) {
    if (left == R) return tile<H, R>(pk, subs, xq, r0, bias, mask, y, ldy);
    tail<H, R - 1>(left, pk, subs, xq, r0, bias, mask, y, ldy);
  }
}

// Every x row of [m0, m1) against one unpacked tile of rows valid weight rows.
template <int H>
void run_tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 m0, i64 m1, const float* bias,
              int rows, float* y, i64 ldy) {
  __mmask16 mask[kNp];
  for (int p = 0; p < kNp; ++p) {
    const int n = rows - 16 * p;
    mask[p] = static_cast<__mmask16>(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1);
  }
  i64 r = m0;
  for (; r + kMr <= m1; r += kMr) tile<H, kMr>(pk, subs, xq, r, bias, mask, y, ldy);
  tail<H, kMr - 1>(static_cast<int>(m1 - r), pk, subs, xq, r, bias, mask, y, ldy);
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
