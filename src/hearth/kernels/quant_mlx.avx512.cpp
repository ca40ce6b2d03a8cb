// AVX-512 affine kernels: the f32 family over 16-lane vectors, and the int8 family for 4 and 8
// bits on AVX-512 VNNI's vpdpbusd (64 unsigned code x signed int8 products summed in fours into
// 16 int32 lanes, no saturation), two blocks of 32 inputs per step: lanes 0-7 hold the first
// block's sums, 8-15 the second's. 4-bit rows are split into low and high nibbles (the even and
// odd inputs, which AffineActs stores in that order) and the 128-bit lanes put in block order.
// Compiled for VNNI by function attribute; affine_kernels() picks these only on CPUs that have it.
#include "hearth/kernels/quant_mlx_impl.hpp"

namespace hearth::kernels {
namespace {

#define HEARTH_VNNI __attribute__((target("avx512vnni")))

// [v[0] x 8, v[1] x 8] from two floats at p.
inline __m512 pair_lanes(const float* p) {
  double two;
  __builtin_memcpy(&two, p, sizeof two);
  const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castpd_ps(_mm512_set1_pd(two)));
}

template <int Bits, bool kTwo>
HEARTH_VNNI inline __m512i load_codes(const std::uint8_t* p) {
  if constexpr (Bits == 4) {
    const __m256i raw =
        kTwo ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
             : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(raw, low4);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    const __m512i z = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);  // loA loB hiA hiB
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));               // loA hiA loB hiB
  } else {
    return kTwo ? _mm512_loadu_si512(p)
                : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
}

template <int Bits>
struct VnniTile {
  template <int R>
  struct T {
    template <bool kTwo>
    HEARTH_VNNI static inline void step(const std::uint8_t* wrow, const float* sblk, i64 j,
                                        const AffineActs& a, i64 r, __m512* acc) {
      const __m512i codes = load_codes<Bits, kTwo>(wrow + j * Bits * 4);
      const __m512 sv = pair_lanes(sblk + j);
      const i64 pc = a.padded_cols();
      const i64 nbp = a.blocks();
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m512i xv = _mm512_loadu_si512(a.q.data() + (r + i) * pc + j * 32);
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, xv);
        const __m512 ds = _mm512_mul_ps(pair_lanes(a.d.data() + (r + i) * nbp + j), sv);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), ds, acc[i]);
      }
    }
    HEARTH_VNNI static void run(const std::uint8_t* wrow, const float* sblk, i64 nb,
                                const AffineActs& a, i64 r, float* sums) {
      __m512 acc[R];
      for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
      i64 j = 0;
      for (; j + 2 <= nb; j += 2) step<true>(wrow, sblk, j, a, r, acc);
      if (j < nb) step<false>(wrow, sblk, j, a, r, acc);
      for (int i = 0; i < R; ++i) sums[i] = Vec{acc[i]}.reduce_add();
    }
  };
};

template <int R>
using Tile4 = VnniTile<4>::T<R>;
template <int R>
using Tile8 = VnniTile<8>::T<R>;

constexpr AffineKernels kInt8VnniBits4 = {true, run_int8<Tile4, false>, "int8-avx512vnni"};
constexpr AffineKernels kInt8VnniBits8 = {true, run_int8<Tile8, false>, "int8-avx512vnni"};

}  // namespace

namespace detail {

const AffineKernels& affine_f32_avx512() {
  return kAffineF32;
}

const AffineKernels& affine_int8_vnni512(int bits) {
  return bits == 4 ? kInt8VnniBits4 : kInt8VnniBits8;
}

}  // namespace detail
}  // namespace hearth::kernels
