// AVX2 affine kernels: the f32 family over 8-lane vectors, and the int8 family for 4 and 8 bits
// on vpmaddubsw (unsigned codes x signed int8 activations, pairs summed to int16, then vpmaddwd
// to int32), one weight group per step. 8-bit codes go through the sign trick: q - 128 is
// a signed byte, |q - 128| * sign(xq) fits vpmaddubsw without saturating (2 * 128 * 127 < 2^15),
// and 128 * sum(xq) is added back per block.
#include "hearth/kernels/quant_mlx_impl.hpp"

namespace hearth::kernels {
namespace {

template <int Bits>
struct Avx2Tile {
  template <int R>
  struct T {
    static void run(const std::uint8_t* wrow, const float* s, int per_group, i64 nb,
                    const AffineActs& a, i64 r, float* sums) {
      const i64 pc = a.padded_cols();
      const i64 nbp = a.blocks();
      __m256 acc[R];
      for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
      const __m256i low4 = _mm256_set1_epi8(0x0F);
      const __m256i ones = _mm256_set1_epi16(1);
      const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
      // Block j's codes: wq for vpmaddubsw, ws the sign source of the 8-bit trick.
      auto codes = [&](i64 j, __m256i& wq, __m256i& ws) {
        if constexpr (Bits == 4) {
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wrow + j * 16));
          wq = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low4);
          ws = wq;
        } else {
          const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wrow + j * 32));
          ws = _mm256_xor_si256(raw, flip);  // q - 128 as a signed byte
          wq = _mm256_abs_epi8(ws);
        }
      };
      // Block j's eight int32 partial sums against x row i.
      auto dot = [&](i64 j, int i, __m256i wq, __m256i ws) {
        const __m256i xv = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a.q.data() + (r + i) * pc + j * 32));
        const __m256i xs = Bits == 4 ? xv : _mm256_sign_epi8(xv, ws);
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(wq, xs), ones));
      };
      auto dj = [&](i64 j, int i) {
        return _mm256_broadcast_ss(&a.d[static_cast<std::size_t>((r + i) * nbp + j)]);
      };
      // One group of PG blocks per step (groups of 32, 64 or 128 inputs: nb is a multiple of PG),
      // its scale read once: with PG >= 2 the blocks go in pairs, d_j p_j + d_j+1 p_j+1 and then
      // one multiply by the group's scale.
      auto groups = [&]<int PG>() {
        for (i64 j = 0; j < nb; j += PG) {
          const __m256 sg = _mm256_broadcast_ss(&s[j / PG]);
          if constexpr (PG == 1) {
            __m256i wq, ws;
            codes(j, wq, ws);
#pragma GCC unroll 4
            for (int i = 0; i < R; ++i) {
              acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dot(j, i, wq, ws), dj(j, i)), sg, acc[i]);
            }
          } else {
#pragma GCC unroll 2
            for (int k = 0; k < PG; k += 2) {
              __m256i wq0, ws0, wq1, ws1;
              codes(j + k, wq0, ws0);
              codes(j + k + 1, wq1, ws1);
#pragma GCC unroll 4
              for (int i = 0; i < R; ++i) {
                const __m256 t =
                    _mm256_fmadd_ps(dot(j + k + 1, i, wq1, ws1), dj(j + k + 1, i),
                                    _mm256_mul_ps(dot(j + k, i, wq0, ws0), dj(j + k, i)));
                acc[i] = _mm256_fmadd_ps(t, sg, acc[i]);
              }
            }
          }
        }
      };
      if (per_group == 1) {
        groups.template operator()<1>();
      } else if (per_group == 2) {
        groups.template operator()<2>();
      } else {
        groups.template operator()<4>();
      }
      for (int i = 0; i < R; ++i) sums[i] = Vec{acc[i]}.reduce_add();
    }
  };
};

template <int R>
using Tile4 = Avx2Tile<4>::T<R>;
template <int R>
using Tile8 = Avx2Tile<8>::T<R>;

constexpr AffineKernels kInt8Avx2Bits4 = {ActLayout::kBlocks, run_int8<Tile4, false>, "int8-avx2"};
constexpr AffineKernels kInt8Avx2Bits8 = {ActLayout::kBlocks, run_int8<Tile8, true>, "int8-avx2"};

}  // namespace

namespace detail {

const AffineKernels& affine_f32_avx2() {
  return kAffineF32;
}

const AffineKernels& affine_int8_avx2(int bits) {
  return bits == 4 ? kInt8Avx2Bits4 : kInt8Avx2Bits8;
}

}  // namespace detail
}  // namespace hearth::kernels
