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

// [v[0] x 4, v[1] x 4, v[2] x 4, v[3] x 4] from four floats at p.
inline __m512 quad_lanes(const float* p) {
  const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_zextps128_ps512(_mm_loadu_ps(p)));
}

// 4 bits: one step is four blocks (64 packed bytes): the low nibbles of all 64 bytes against the
// four blocks' even inputs, the high nibbles against their odd inputs, both into the same lanes
// (lanes 4t..4t+3 sum block t). The group scales per lane: groups of 32 one per block, of 64 one
// per pair, of 128 one for all.
struct VnniTile4 {
  template <int R>
  struct T {
    template <bool kFull>
    HEARTH_VNNI static inline void step(const std::uint8_t* wrow, const float* s, int per_group,
                                        i64 j, i64 nb, const AffineActs& a, i64 r, __m512* acc) {
      const __m512i raw =
          kFull ? _mm512_loadu_si512(wrow + j * 16)
                : _mm512_maskz_loadu_epi8((1ull << ((nb - j) * 16)) - 1, wrow + j * 16);
      const __m512i low4 = _mm512_set1_epi8(0x0F);
      const __m512i lo = _mm512_and_si512(raw, low4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
      const __m512 sv = per_group == 1   ? quad_lanes(s + j)
                        : per_group == 2 ? pair_lanes(s + j / 2)
                                         : _mm512_set1_ps(s[j / 4]);
      const i64 pc = a.padded_cols();
      const i64 lf = a.lane_floats();
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const std::int8_t* xq = a.q.data() + (r + i) * pc + j * 32;
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xq));
        p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512(xq + 64));
        const __m512 ds =
            _mm512_mul_ps(_mm512_loadu_ps(a.lanes.data() + (r + i) * lf + j / 4 * 16), sv);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), ds, acc[i]);
      }
    }
    HEARTH_VNNI static void run(const std::uint8_t* wrow, const float* s, int per_group, i64 nb,
                                const AffineActs& a, i64 r, float* sums) {
      __m512 acc[R];
      for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
      i64 j = 0;
      for (; j + 4 <= nb; j += 4) step<true>(wrow, s, per_group, j, nb, a, r, acc);
      if (j < nb) step<false>(wrow, s, per_group, j, nb, a, r, acc);
      for (int i = 0; i < R; ++i) sums[i] = Vec{acc[i]}.reduce_add();
    }
  };
};

// 8 bits: one step is two blocks (64 codes), inputs in order; lanes 0-7 sum the first block.
struct VnniTile8 {
  template <int R>
  struct T {
    // Blocks j and j + 1 (j even): with groups of 64 or more both lie in group j / per_group.
    template <bool kTwo>
    HEARTH_VNNI static inline void step(const std::uint8_t* wrow, const float* s, int per_group,
                                        i64 j, const AffineActs& a, i64 r, __m512* acc) {
      const __m512i codes = kTwo ? _mm512_loadu_si512(wrow + j * 32)
                                 : _mm512_zextsi256_si512(_mm256_loadu_si256(
                                       reinterpret_cast<const __m256i*>(wrow + j * 32)));
      const __m512 sv = per_group == 1 ? pair_lanes(s + j) : _mm512_set1_ps(s[j / per_group]);
      const i64 pc = a.padded_cols();
      const i64 lf = a.lane_floats();
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m512i xv = _mm512_loadu_si512(a.q.data() + (r + i) * pc + j * 32);
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, xv);
        const __m512 ds =
            _mm512_mul_ps(_mm512_loadu_ps(a.lanes.data() + (r + i) * lf + j / 2 * 16), sv);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), ds, acc[i]);
      }
    }
    HEARTH_VNNI static void run(const std::uint8_t* wrow, const float* s, int per_group, i64 nb,
                                const AffineActs& a, i64 r, float* sums) {
      __m512 acc[R];
      for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
      i64 j = 0;
      for (; j + 2 <= nb; j += 2) step<true>(wrow, s, per_group, j, a, r, acc);
      if (j < nb) step<false>(wrow, s, per_group, j, a, r, acc);
      for (int i = 0; i < R; ++i) sums[i] = Vec{acc[i]}.reduce_add();
    }
  };
};

template <int R>
using Tile4 = VnniTile4::T<R>;
template <int R>
using Tile8 = VnniTile8::T<R>;

constexpr AffineKernels kInt8VnniBits4 = {ActLayout::kVnni, run_int8<Tile4, false>,
                                          "int8-avx512vnni"};
constexpr AffineKernels kInt8VnniBits8 = {ActLayout::kVnni, run_int8<Tile8, false>,
                                          "int8-avx512vnni"};

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
