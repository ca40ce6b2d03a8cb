// The frame of the tiled kernels of quant_gemm.hpp, shared by quant_gemm.avx2.cpp and
// quant_gemm.avx512.cpp: unpacking a tile of weight rows and walking x rows through it. Each of
// those files defines an Isa (a struct) and hands it to the templates here:
//   kLanes        weight rows per vector (8 or 16), kNp vectors per tile, kMr x rows per step;
//   kMinRows      QuantGemm::min_rows;
//   kOffsetSigned true: signed codes (Q8_0, IQ4) are stored + 128 with the offset in the min (the
//                 kernels multiply unsigned codes only); false: stored signed (the kernels use the
//                 sign trick: |q| * sign(x, q)), and 8-bit mlx codes are stored as q - 128 with
//                 128 * sum(xq) added back to each sub-block's integer sum (Codes::kShifted);
//   tile<H, R, C>(...): y for x rows r0..r0+R against the whole unpacked tile of codes C.
// The weight traits are quant_ggml_impl.hpp's (the including file sets HEARTH_QG_AVX2).
//
// A tile in memory (64-byte aligned, reused by the thread for every tile):
//   codes:  [sub-block j][int32 group t of 4 inputs][vector p][row lane][4 bytes]
//   scales, mins: [sub-block j][half h (Q2_K, Q3_K, Q6_K: two per 32)][p][row lane]
// so that a step of four inputs is kNp vector loads against kMr broadcast x dwords.
#pragma once

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "hearth/kernels/quant_gemm.hpp"
#include "hearth/kernels/quant_ggml_impl.hpp"
#include "hearth/tensor/mlx_quant.hpp"  // read_scale

namespace hearth::kernels {
namespace {

// How a tile's codes are stored. kUnsigned: bytes 0..255 as they are; kSigned: signed bytes (the
// sign trick); kShifted: unsigned codes q stored as the signed byte q - 128, the kernel adding
// 128 * sum(xq) of the x block (from Q8Block::sum, which QuantGemm::affine_quantize leaves as the
// integer sums of the two halves) to each sub-block's integer sum, so that it equals sum(q xq)
// exactly, as the unsigned product would.
enum class Codes { kUnsigned, kSigned, kShifted };

struct Packed {
  std::uint8_t* codes = nullptr;
  float* scale = nullptr;
  float* min = nullptr;
};

template <class Isa>
constexpr int kTileRows = Isa::kLanes* Isa::kNp;
template <class Isa>
constexpr i64 kSubBytes = 8 * kTileRows<Isa> * 4;  // one sub-block of 32 inputs of a tile

template <class Isa>
Packed packed_tile(i64 subs, int halves, bool clear) {
  thread_local std::vector<std::uint8_t> buf;
  const auto code_bytes = static_cast<std::size_t>(subs * kSubBytes<Isa>);
  const auto scale_floats = static_cast<std::size_t>(subs * halves * kTileRows<Isa>);
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

// Row i of the tile, sub-block j: 32 codes v in input order, four at a time to their lanes.
template <class Isa>
inline void put_codes(const Packed& pk, int i, i64 j, __m256i v) {
  alignas(32) std::uint32_t c[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(c), v);
  std::uint8_t* dst =
      pk.codes + j * kSubBytes<Isa> + (i / Isa::kLanes) * Isa::kLanes * 4 + (i % Isa::kLanes) * 4;
  for (int t = 0; t < 8; ++t) std::memcpy(dst + t * kTileRows<Isa> * 4, &c[t], 4);
}

template <class Isa>
inline void put_scale(const Packed& pk, int halves, int i, i64 j, int h, float s, float m) {
  const i64 at = ((j * halves + h) * Isa::kNp + i / Isa::kLanes) * Isa::kLanes + i % Isa::kLanes;
  pk.scale[at] = s;
  pk.min[at] = m;
}

// The last left < kMr x rows.
template <class Isa, int H, int R, Codes C>
void tail(int left, const Packed& pk, i64 subs, const Q8Block* xq, i64 r0, const float* bias,
          int rows, float* y, i64 ldy) {
  if constexpr (R > 0) {
    if (left == R) return Isa::template tile<H, R, C>(pk, subs, xq, r0, bias, rows, y, ldy);
    tail<Isa, H, R - 1, C>(left, pk, subs, xq, r0, bias, rows, y, ldy);
  }
}

// Every x row of [m0, m1) against one unpacked tile of rows valid weight rows.
template <class Isa, int H, Codes C>
void run_tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 m0, i64 m1, const float* bias,
              int rows, float* y, i64 ldy) {
  i64 r = m0;
  for (; r + Isa::kMr <= m1; r += Isa::kMr) {
    Isa::template tile<H, Isa::kMr, C>(pk, subs, xq, r, bias, rows, y, ldy);
  }
  tail<Isa, H, Isa::kMr - 1, C>(static_cast<int>(m1 - r), pk, subs, xq, r, bias, rows, y, ldy);
}

template <class Isa, DType T>
void ggml_t(const void* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, i64 m0, i64 m1,
            const float* bias, float* y, i64 ldy) {
  using W = Q<T>;
  constexpr int kH = W::kPer16 ? 2 : 1;
  constexpr int spb = W::kElems / 32;
  constexpr bool kOffset = W::kSigned && Isa::kOffsetSigned;
  const i64 nb = k / W::kElems;
  const i64 subs = k / 32;
  const auto* wb = static_cast<const u8*>(w);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  constexpr int kTile = kTileRows<Isa>;
  for (i64 tn = n0; tn < n1; tn += kTile) {
    const int rows = static_cast<int>(n1 - tn < kTile ? n1 - tn : kTile);
    const Packed pk = packed_tile<Isa>(subs, kH, rows < kTile);
    for (int i = 0; i < rows; ++i) {
      const u8* row = wb + (tn + i) * nb * W::kBytes;
      for (i64 b = 0; b < nb; ++b) {
        const u8* blk = row + b * W::kBytes;
        Prep p;
        W::prep(blk, p);
        for (int j = 0; j < spb; ++j) {
          __m256i v = load_quants<T>(blk, j);
          if constexpr (kOffset) v = _mm256_xor_si256(v, flip);
          const i64 jg = b * spb + j;
          put_codes<Isa>(pk, i, jg, v);
          for (int h = 0; h < kH; ++h) {
            const float s = p.scale[2 * j + h];
            const float m = kOffset ? 128.0f * s : W::kMin ? p.min[2 * j + h] : 0.0f;
            put_scale<Isa>(pk, kH, i, jg, h, s, m);
          }
        }
      }
    }
    constexpr Codes kCodes = W::kSigned && !Isa::kOffsetSigned ? Codes::kSigned : Codes::kUnsigned;
    run_tile<Isa, kH, kCodes>(pk, subs, xq, m0, m1, bias != nullptr ? bias + tn : nullptr, rows,
                              y + tn, ldy);
  }
}

template <class Isa>
void ggml(DType t, const void* w, i64 k, i64 n0, i64 n1, const Q8Block* xq, i64 m0, i64 m1,
          const float* bias, float* y, i64 ldy) {
  switch (t) {
#define HEARTH_QGEMM_CASE(T) \
  case T:                    \
    return ggml_t<Isa, T>(w, k, n0, n1, xq, m0, m1, bias, y, ldy);
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

// 32 codes of a 4- or 8-bit mlx row from input 32 j on, in input order.
inline __m256i affine_codes(const std::uint8_t* row, int bits, i64 j) {
  if (bits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j * 32));
  // byte i holds inputs 2i (low nibble) and 2i + 1
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j * 16));
  const __m128i m = _mm_set1_epi8(15);
  const __m128i lo = _mm_and_si128(raw, m), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
  return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
}

// mlx: w = s q + b, so scale s and min -b: per sub-block j of group g and x row r the tile adds
// s_g d_j sum(q xq) - (-b_g) sum(x over j), the integer sum exact at every level (8-bit codes go
// in shifted where the Isa multiplies signed codes, Codes::kShifted).
template <class Isa>
void affine(const AffineMatrix& w, i64 n0, i64 n1, const Q8Block* xq, i64 m0, i64 m1,
            const float* bias, float* y, i64 ldy) {
  const i64 subs = w.cols / 32;
  const i64 groups = w.groups();
  const i64 per_group = w.group_size / 32;
  const i64 es = w.scale_dtype == DType::kF32 ? 4 : 2;
  const bool shift = w.bits == 8 && !Isa::kOffsetSigned;
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const auto* scales = static_cast<const std::uint8_t*>(w.scales);
  const auto* biases = static_cast<const std::uint8_t*>(w.biases);
  constexpr int kTile = kTileRows<Isa>;
  for (i64 tn = n0; tn < n1; tn += kTile) {
    const int rows = static_cast<int>(n1 - tn < kTile ? n1 - tn : kTile);
    const Packed pk = packed_tile<Isa>(subs, 1, rows < kTile);
    for (int i = 0; i < rows; ++i) {
      const i64 n = tn + i;
      const std::uint8_t* row = w.codes + n * w.row_bytes();
      for (i64 j = 0; j < subs; ++j) {
        const __m256i v = affine_codes(row, w.bits, j);
        put_codes<Isa>(pk, i, j, shift ? _mm256_xor_si256(v, flip) : v);
      }
      for (i64 g = 0; g < groups; ++g) {
        const float s = mlx::read_scale(w.scale_dtype, scales + n * groups * es, g);
        const float b = mlx::read_scale(w.scale_dtype, biases + n * groups * es, g);
        for (i64 j = g * per_group; j < (g + 1) * per_group; ++j) {
          put_scale<Isa>(pk, 1, i, j, 0, s, -b);
        }
      }
    }
    const float* tb = bias != nullptr ? bias + tn : nullptr;
    if constexpr (!Isa::kOffsetSigned) {
      if (shift) {
        run_tile<Isa, 1, Codes::kShifted>(pk, subs, xq, m0, m1, tb, rows, y + tn, ldy);
        continue;
      }
    }
    run_tile<Isa, 1, Codes::kUnsigned>(pk, subs, xq, m0, m1, tb, rows, y + tn, ldy);
  }
}

// QuantGemm::affine_quantize: per block of 32 the same f32 operations per input as
// AffineActs::fill (|x|, their maximum, x * (127 / max) clamped to [-127, 127], rounded to nearest
// even as nearbyint does under the default rounding mode), so q and d equal its bit for bit.
void affine_quantize(const float* x, i64 rows, i64 ldx, i64 k, Q8Block* xq) {
  const i64 nb = k / 32;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (i64 r = 0; r < rows; ++r) {
    for (i64 b = 0; b < nb; ++b) {
      const float* xb = x + r * ldx + b * 32;
      Q8Block& o = xq[r * nb + b];
      __m256 v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(xb + 8 * i);
      const __m256 m01 =
          _mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask));
      const __m256 m23 =
          _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask));
      __m128 m = _mm_max_ps(_mm256_castps256_ps128(_mm256_max_ps(m01, m23)),
                            _mm256_extractf128_ps(_mm256_max_ps(m01, m23), 1));
      m = _mm_max_ps(m, _mm_movehl_ps(m, m));
      const float amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
      const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
      __m256i q[4];
      for (int i = 0; i < 4; ++i) {
        q[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], inv), lo), hi));
      }
      const __m256i bytes = _mm256_permutevar8x32_epi32(
          _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])),
          order);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q), bytes);
      // [sum of inputs 0..15, of 16..31, the same again]
      __m256i h = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      h = _mm256_hadd_epi32(h, h);
      const __m128i sums = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      o.sum[0] = static_cast<float>(_mm_cvtsi128_si32(sums));
      o.sum[1] = static_cast<float>(_mm_extract_epi32(sums, 1));
      const __m256 t = _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3]));
      __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
      t4 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
      o.total = _mm_cvtss_f32(_mm_add_ss(t4, _mm_movehdup_ps(t4)));
      o.d = amax / 127.0f;
    }
  }
}

template <class Isa>
constexpr QuantGemm make_quant_gemm(const char* name) {
  return QuantGemm{name, kTileRows<Isa>, Isa::kMinRows, ggml<Isa>, affine<Isa>, affine_quantize};
}

}  // namespace
}  // namespace hearth::kernels
