// AVX-512 VNNI tiled kernels of quant_gemm.hpp (the frame: quant_gemm_impl.hpp): vectors of 16
// weight rows, each int32 lane four of a row's unsigned codes, against four int8 inputs of an x
// row broadcast (vpdpbusd); signed codes are stored + 128 (the offset in the min).
#pragma GCC target("avx512vnni")
#define HEARTH_QG_AVX2 1
#define HEARTH_QG_VNNI 1
#include "hearth/kernels/quant_gemm_impl.hpp"

namespace hearth::kernels {
namespace {

struct Vnni512 {
  // Tile shape (measured against 2 x 4, 4 x 3 and 2 x 6 on Zen 4: within 5%, this the best):
  // three vectors of 16 weight rows by four x rows, 12 int32 and 12 f32 accumulators.
  static constexpr int kLanes = 16, kNp = 3, kMr = 4;
  static constexpr bool kOffsetSigned = true;
  static constexpr std::int64_t kMinRows = 9;  // at 16 rows already 1.3x the GEMV (Zen 4)
  static constexpr int kTile = kLanes * kNp;

  template <int H, int R, Codes C>
  static void tile(const Packed& pk, i64 subs, const Q8Block* xq, i64 r0, const float* bias,
                   int rows, float* y, i64 ldy) {
    static_assert(C == Codes::kUnsigned, "signed codes are stored offset by 128");
    __m512 f[kNp][R];
    for (int p = 0; p < kNp; ++p) {
      for (int r = 0; r < R; ++r) f[p][r] = _mm512_setzero_ps();
    }
    const Q8Block* xb[R];
    for (int r = 0; r < R; ++r) xb[r] = xq + (r0 + r) * subs;
    for (i64 j = 0; j < subs; ++j) {
      const std::uint8_t* q = pk.codes + j * kSubBytes<Vnni512>;
#pragma GCC unroll 2
      for (int h = 0; h < H; ++h) {
        __m512i a[kNp][R];
        for (int p = 0; p < kNp; ++p) {
          for (int r = 0; r < R; ++r) a[p][r] = _mm512_setzero_si512();
        }
#pragma GCC unroll 8
        for (int step = 0; step < 8 / H; ++step) {
          const int t = h * (8 / H) + step;
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
      const int n = rows - 16 * p;
      const auto mask = static_cast<__mmask16>(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1);
      const __m512 b =
          bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + 16 * p) : _mm512_setzero_ps();
      for (int r = 0; r < R; ++r) {
        _mm512_mask_storeu_ps(y + (r0 + r) * ldy + 16 * p, mask, _mm512_add_ps(f[p][r], b));
      }
    }
  }
};

}  // namespace

namespace detail {

const QuantGemm& quant_gemm_vnni512() {
  static constexpr QuantGemm table = make_quant_gemm<Vnni512>("int8-avx512vnni-tiled");
  return table;
}

}  // namespace detail
}  // namespace hearth::kernels
