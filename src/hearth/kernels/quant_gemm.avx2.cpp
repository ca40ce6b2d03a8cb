// AVX2 tiled kernels of quant_gemm.hpp (the frame: quant_gemm_impl.hpp), also used by AVX-512
// CPUs without VNNI: vectors of 8 weight rows, each int32 lane four of a row's codes, against four
// int8 inputs of an x row broadcast: vpmaddubsw (unsigned code x signed input, pairs to int16,
// saturating), vpmaddwd by ones to int32 (unsigned codes: the pairs of four steps, or two for the
// 16-input scales, summed in int16 first, which stays below 2^15). No pair saturates: the inputs
// are within [-127, 127] (the quantizers clamp to 127 d), unsigned codes are at most 63 here (2 *
// 63 * 127 < 2^15); signed codes c (Q8_0, IQ4, 8-bit mlx as c = q - 128, Codes::kShifted) go
// through the sign trick: vpsignb(c, c) is |c| in [0, 128] read as unsigned (c = -128 gives the
// byte 0x80 = 128), vpsignb(x, c) is x * sign(c) in [-127, 127], so each pair lies within 2 * 128 *
// 127 = 32512 < 2^15. A sub-block's int32 sum is at most 32 * 128 * 127 in magnitude; kShifted adds
// 128 * sum(xq) to it, giving sum(q xq) with |.| <= 32 * 255 * 127 < 2^24: exact, as an f32 too.
#define HEARTH_QG_AVX2 1
#include "hearth/kernels/quant_gemm_impl.hpp"

namespace hearth::kernels {
namespace {

struct Avx2 {
  // Two vectors of 8 weight rows by two x rows: 4 int32 and 4 f32 accumulators, the codes, their
  // magnitudes and the broadcast input within the 16 registers.
  static constexpr int kLanes = 8, kNp = 2, kMr = 2;
  static constexpr bool kOffsetSigned = false;
  static constexpr std::int64_t kMinRows = 32;  // at 16 rows about the GEMV's rate, at 128 1.4x
  static constexpr int kTile = kLanes * kNp;

  template <int H, int R, Codes C>
  static void tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 r0, const float* bias,
                   int rows, float* y, i64 ldy) {
    constexpr bool S = C != Codes::kUnsigned;
    static_assert(C != Codes::kShifted || H == 1, "shifted codes are mlx's, whole sub-blocks");
    __m256 f[kNp][R];
    for (int p = 0; p < kNp; ++p) {
      for (int r = 0; r < R; ++r) f[p][r] = _mm256_setzero_ps();
    }
    const Q8Block* xb[R];
    for (int r = 0; r < R; ++r) xb[r] = xq + (r0 + r) * subs;
    const __m256i ones = _mm256_set1_epi16(1);
    for (i64 j = 0; j < subs; ++j) {
      const std::uint8_t* q = pk.codes + j * kSubBytes<Avx2>;
#pragma GCC unroll 2
      for (int h = 0; h < H; ++h) {
        __m256i a[kNp][R];
        for (int p = 0; p < kNp; ++p) {
          for (int r = 0; r < R; ++r) a[p][r] = _mm256_setzero_si256();
        }
        // Unsigned codes: the pairs of kJoin steps summed in int16 before one vpmaddwd (at most
        // kJoin * 2 * 31 * 127 = 31496 for the one-scale types, whose codes are at most 31 (Q4_0,
        // Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, mlx 4-bit); 2 * 2 * 63 * 127 for the two-scale ones).
        constexpr int kJoin = S ? 1 : H == 1 ? 4 : 2;
#pragma GCC unroll 2
        for (int g = 0; g < 8 / H; g += kJoin) {
          __m256i s16[kNp][R];
#pragma GCC unroll 4
          for (int step = g; step < g + kJoin; ++step) {
            const int t = h * (8 / H) + step;
            __m256i w[kNp], u[kNp];
            for (int p = 0; p < kNp; ++p) {
              w[p] = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + (t * kNp + p) * 32));
              u[p] = S ? _mm256_sign_epi8(w[p], w[p]) : w[p];
            }
            for (int r = 0; r < R; ++r) {
              int v;
              std::memcpy(&v, xb[r][j].q + 4 * t, 4);
              const __m256i xv = _mm256_set1_epi32(v);
              for (int p = 0; p < kNp; ++p) {
                const __m256i xs = S ? _mm256_sign_epi8(xv, w[p]) : xv;
                const __m256i pairs = _mm256_maddubs_epi16(u[p], xs);
                s16[p][r] = step == g ? pairs : _mm256_add_epi16(s16[p][r], pairs);
              }
            }
          }
          for (int p = 0; p < kNp; ++p) {
            for (int r = 0; r < R; ++r) {
              a[p][r] = _mm256_add_epi32(a[p][r], _mm256_madd_epi16(s16[p][r], ones));
            }
          }
        }
        if constexpr (C == Codes::kShifted) {
          for (int r = 0; r < R; ++r) {
            const int sum = static_cast<int>(xb[r][j].sum[0]) + static_cast<int>(xb[r][j].sum[1]);
            const __m256i back = _mm256_set1_epi32(128 * sum);
            for (int p = 0; p < kNp; ++p) a[p][r] = _mm256_add_epi32(a[p][r], back);
          }
        }
        const i64 at = (j * H + h) * kTile;
        for (int r = 0; r < R; ++r) {
          const __m256 d = _mm256_set1_ps(xb[r][j].d);
          const __m256 ms = _mm256_set1_ps(H == 2 ? xb[r][j].sum[h] : xb[r][j].total);
          for (int p = 0; p < kNp; ++p) {
            const __m256 sd = _mm256_mul_ps(_mm256_load_ps(pk.scale + at + 8 * p), d);
            f[p][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[p][r]), sd, f[p][r]);
            f[p][r] = _mm256_fnmadd_ps(_mm256_load_ps(pk.min + at + 8 * p), ms, f[p][r]);
          }
        }
      }
    }
    for (int p = 0; p < kNp; ++p) {
      const int n = rows - 8 * p < 8 ? rows - 8 * p : 8;
      if (n <= 0) break;
      alignas(32) float b[8] = {};
      if (bias != nullptr) std::memcpy(b, bias + 8 * p, static_cast<std::size_t>(n) * 4);
      const __m256 bv = _mm256_load_ps(b);
      for (int r = 0; r < R; ++r) {
        float* yr = y + (r0 + r) * ldy + 8 * p;
        if (n == 8) {
          _mm256_storeu_ps(yr, _mm256_add_ps(f[p][r], bv));
        } else {
          alignas(32) float out[8];
          _mm256_store_ps(out, _mm256_add_ps(f[p][r], bv));
          std::memcpy(yr, out, static_cast<std::size_t>(n) * 4);
        }
      }
    }
  }
};

}  // namespace

namespace detail {

const QuantGemm& quant_gemm_avx2() {
  static constexpr QuantGemm table = make_quant_gemm<Avx2>("int8-avx2-tiled");
  return table;
}

}  // namespace detail
}  // namespace hearth::kernels
