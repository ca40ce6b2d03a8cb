// The mlx affine kernels at every level against dequantize + double dot products: the f32 family
// to f32 rounding, the int8 family within the exact bound of its activation rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

struct Quantized {
  i64 rows = 0, cols = 0;
  int bits = 0, group = 0;
  DType sdt = DType::kF16;
  std::vector<std::uint8_t> codes;
  std::vector<std::byte> scales, biases;
  std::vector<float> deq;  // rows x cols, what the stored form means
  WeightView view() const {
    WeightView v{DType::kU32, codes.data(), rows, cols};
    v.affine = {bits, group, sdt, scales.data(), biases.data()};
    return v;
  }
};

Quantized make_weights(i64 rows, i64 cols, int bits, int group, DType sdt, unsigned seed) {
  Quantized q{rows, cols, bits, group, sdt};
  const auto w = testing::random_vector(static_cast<std::size_t>(rows * cols), seed, 0.05f);
  const i64 rb = mlx::packed_row_bytes(cols, bits);
  const i64 groups = cols / group;
  const std::size_t es = sdt == DType::kF32 ? 4 : 2;
  q.codes.resize(static_cast<std::size_t>(rows * rb));
  q.scales.resize(static_cast<std::size_t>(rows * groups) * es);
  q.biases.resize(q.scales.size());
  q.deq.resize(w.size());
  std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
  for (i64 r = 0; r < rows; ++r) {
    mlx::quantize_row(w.data() + r * cols, cols, bits, group, q.codes.data() + r * rb, s.data(),
                      b.data());
    for (i64 g = 0; g < groups; ++g) {
      const std::size_t at = static_cast<std::size_t>(r * groups + g) * es;
      if (sdt == DType::kF32) {
        std::memcpy(&q.scales[at], &s[g], 4);
        std::memcpy(&q.biases[at], &b[g], 4);
      } else {
        const std::uint16_t hs = sdt == DType::kF16 ? f32_to_f16(s[g]) : f32_to_bf16(s[g]);
        const std::uint16_t hb = sdt == DType::kF16 ? f32_to_f16(b[g]) : f32_to_bf16(b[g]);
        std::memcpy(&q.scales[at], &hs, 2);
        std::memcpy(&q.biases[at], &hb, 2);
      }
    }
    mlx::dequantize_row(q.codes.data() + r * rb, cols, bits, group, sdt,
                        q.scales.data() + r * groups * es, q.biases.data() + r * groups * es,
                        q.deq.data() + r * cols);
  }
  return q;
}

// Checks y = x W^T + bias against the dequantized weights in double. With int8 activations the
// error bound is exact: x_i is replaced by d xq_i, |x_i - d xq_i| <= d / 2 (d = max|x| / 127 of
// x_i's block of 32), and only the s q_i part of each weight multiplies it (the bias part uses
// the exact sum of x), so |error| <= sum_i |s_g q_i| d_b / 2 (+ f32 rounding).
void check(const Quantized& q, SimdLevel level, i64 rows, unsigned seed) {
  ThreadPool pool(2);
  auto be = make_cpu_backend(pool, level);
  const auto x = testing::random_vector(static_cast<std::size_t>(rows * q.cols), seed);
  const auto bias = testing::random_vector(static_cast<std::size_t>(q.rows), seed + 1);
  const auto lin = be->make_linear_view(q.view(), bias.data());
  std::vector<float> y(static_cast<std::size_t>(rows * q.rows));
  be->linear(*lin, x.data(), rows, y.data());
  // 4 and 8 bits run int8 kernels (the GEMV ones, or the tiles from QuantGemm::min_rows rows) at
  // every level that has them, the other widths the exact f32 ones at every level and row count.
  const bool int8 = affine_kernels(level, q.bits).int8();
  const i64 groups = q.cols / q.group;
  const std::size_t es = q.sdt == DType::kF32 ? 4 : 2;
  for (i64 r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * q.cols;
    std::vector<double> d(static_cast<std::size_t>(q.cols / 32));
    for (i64 blk = 0; blk < q.cols / 32; ++blk) {
      double amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(double{xr[blk * 32 + i]}));
      d[static_cast<std::size_t>(blk)] = amax / 127.0;
    }
    for (i64 n = 0; n < q.rows; ++n) {
      double ref = bias[n], mag = std::fabs(bias[n]), bound = 0;
      for (i64 i = 0; i < q.cols; ++i) {
        const double w = q.deq[n * q.cols + i];
        ref += w * xr[i];
        mag += std::fabs(w * xr[i]);
        const float s = mlx::read_scale(q.sdt, q.scales.data() + n * groups * es, i / q.group);
        const double code =
            mlx::unpack_code(q.codes.data() + n * mlx::packed_row_bytes(q.cols, q.bits), i, q.bits);
        bound += std::fabs(double{s} * code) * d[static_cast<std::size_t>(i / 32)] / 2;
      }
      const double tol = 2e-6 * mag + (int8 ? bound * 1.001 : 0.0) + 1e-6;
      ASSERT_NEAR(y[r * q.rows + n], ref, tol)
          << to_string(level) << " bits " << q.bits << " group " << q.group << " "
          << dtype_name(q.sdt) << " rows " << rows << " [" << r << ", " << n << "]";
    }
  }
}

TEST(MlxAffineKernels, EveryWidthGroupAndLevel) {
  for (SimdLevel level : testing::simd_levels()) {
    for (int bits : {2, 3, 4, 5, 6, 8}) {
      for (int group : {32, 64, 128}) {
        // Three groups per row: with group 32 an odd number of 32-input blocks (the AVX-512
        // kernels' single-block tail).
        const Quantized q = make_weights(13, 3 * group, bits, group, DType::kF16,
                                         static_cast<unsigned>(bits * 7 + group));
        // 9 and 21 rows: the AVX-512 VNNI tiles; 33: the AVX2 ones too.
        for (i64 rows : {1, 3, 9, 21, 33}) check(q, level, rows, static_cast<unsigned>(rows));
      }
    }
  }
}

TEST(MlxAffineKernels, ScaleTypes) {
  for (SimdLevel level : testing::simd_levels()) {
    for (DType sdt : {DType::kBF16, DType::kF32}) {
      for (int bits : {4, 8, 3}) {
        const Quantized q = make_weights(7, 160, bits, 32, sdt, 3);
        check(q, level, 1, 9);
        check(q, level, 11, 10);
        check(q, level, 35, 11);
      }
    }
  }
}

// Decode (up to 8 rows: AffineDecode on AVX2 and AVX-512) and prefill (more rows: the tiles) round
// each x row alike and multiply the same integers, so a row gives the same output either way up to
// f32 summation order (the derived bound: quant_gemm_test.cpp).
TEST(MlxAffineKernels, DecodeRowsEqualPrefillRows) {
  ThreadPool pool(2);
  for (SimdLevel level : testing::simd_levels()) {
    auto be = make_cpu_backend(pool, level);
    for (int bits : {4, 8}) {
      for (int group : {32, 64, 128}) {
        for (DType sdt : {DType::kF16, DType::kBF16}) {
          const Quantized q = make_weights(37, 4 * group + 128, bits, group, sdt, 5);
          const auto lin = be->make_linear_view(q.view(), nullptr);
          const i64 many = 33;  // past every level's QuantGemm::min_rows: the tiles
          const auto x = testing::random_vector(static_cast<std::size_t>(many * q.cols), 8);
          std::vector<float> all(static_cast<std::size_t>(many * q.rows));
          be->linear(*lin, x.data(), many, all.data());
          for (i64 rows : {1, 2, 3, 4, 5, 8}) {
            std::vector<float> y(static_cast<std::size_t>(rows * q.rows));
            be->linear(*lin, x.data(), rows, y.data());
            for (std::size_t i = 0; i < y.size(); ++i) {
              ASSERT_NEAR(y[i], all[i], 1e-4 * (std::fabs(all[i]) + 1.0f))
                  << to_string(level) << " bits " << bits << " group " << group << " "
                  << dtype_name(sdt) << " rows " << rows << " output " << i;
            }
          }
        }
      }
    }
  }
}

using testing::mlx_blocks;

// The AVX2 decode kernels (AffineDecode at the AVX2 level) called directly against a double
// reference built from the same int8 blocks: the integer products are exact (int16 pairs of at
// most 4 * 15 * 127, or 2 * 128 * 127 through the 8-bit sign trick; int32 lanes far below 2^24,
// so their conversion is exact too), so the kernels differ from it by f32 rounding alone. Each
// term passes through at most 3 roundings (x d, x s, the fma into its chain), then the additions
// of its chain (at most k / 64 steps) and of the reductions (3 for the horizontal sum, 2 for
// merging chains and bias terms, 1 for the bias): the group sums of x add g / 8 + 3 more and the
// bias chain k / g / 8. So |error| <= (k / 64 + g / 8 + k / g / 8 + 12) 2^-24 sum|terms| (first
// order), with the 8-bit terms' magnitudes those of the two parts the kernel forms,
// |s d q| (|code - 128| + 128). Shapes: one group; a partial last chunk of eight groups; whole
// chunks; a row of 64 m + 32 inputs (half a step at the end); rows 1..8 (tiles of 4 and a rest),
// a sub-range of weight rows, ldy past n; codes at 0 and 2^bits - 1 and inputs at +-max (xq
// +-127), a zero block, and one large input among tiny ones.
TEST(MlxAffineKernels, Avx2DecodeMatchesTheExactBlockSums) {
  if (!cpu_features().avx2) GTEST_SKIP() << "this CPU lacks AVX2";
  const AffineDecode* kern = affine_decode(SimdLevel::kAvx2);
  ASSERT_NE(kern, nullptr);
  for (const int bits : {4, 8}) {
    const int top = (1 << bits) - 1;
    for (const int group : {32, 64, 128}) {
      for (const DType sdt : {DType::kF16, DType::kBF16}) {
        for (const i64 groups : {1, 5, 7, 8, 11, 15, 17}) {
          const i64 k = groups * group, n = 13, n0 = 2, ldy = n + 2;
          const i64 rb = mlx::packed_row_bytes(k, bits);
          std::mt19937 rng(static_cast<unsigned>(bits * 1000 + group * 10 + groups));
          std::vector<std::uint8_t> code(static_cast<std::size_t>(n * k));
          for (i64 j = 0; j < n; ++j) {
            for (i64 i = 0; i < k; ++i) {
              // Rows 0-2: every code 0, every code top, alternating; the rest random.
              const int c = j == 0   ? 0
                            : j == 1 ? top
                            : j == 2 ? (i % 2 == 0 ? top : 0)
                                     : static_cast<int>(rng() % (top + 1));
              code[static_cast<std::size_t>(j * k + i)] = static_cast<std::uint8_t>(c);
            }
          }
          std::vector<std::uint8_t> codes(static_cast<std::size_t>(n * rb));
          for (i64 j = 0; j < n; ++j) {
            mlx::pack_codes(code.data() + j * k, k, bits, codes.data() + j * rb);
          }
          const auto sf = testing::random_vector(static_cast<std::size_t>(n * groups), 3, 0.02f);
          const auto bf = testing::random_vector(sf.size(), 4, 0.2f);
          std::vector<std::uint16_t> sc(sf.size()), bi(sf.size());
          for (std::size_t i = 0; i < sf.size(); ++i) {
            sc[i] = sdt == DType::kF16 ? f32_to_f16(sf[i]) : f32_to_bf16(sf[i]);
            bi[i] = sdt == DType::kF16 ? f32_to_f16(bf[i]) : f32_to_bf16(bf[i]);
          }
          const AffineMatrix w{codes.data(), n, k, bits, group, sdt, sc.data(), bi.data()};
          ASSERT_TRUE(kern->handles(w));
          const auto bias = testing::random_vector(static_cast<std::size_t>(n), 5);
          for (i64 rows = 1; rows <= 8; ++rows) {
            auto x = testing::random_vector(static_cast<std::size_t>(rows * k),
                                            static_cast<unsigned>(rows * 7 + k));
            // Row 0's blocks: +-1 (xq +-127 throughout), zero, one large input among tiny ones.
            for (i64 i = 0; i < k; ++i) {
              const i64 b = i / 32;
              x[i] = b % 3 == 0   ? (i % 3 == 0 ? -1.0f : 1.0f)
                     : b % 3 == 1 ? 0.0f
                                  : (i % 32 == 5 ? 1000.0f : 1e-3f * x[i]);
            }
            std::vector<double> ref(static_cast<std::size_t>(rows * n)), tol(ref.size());
            for (i64 r = 0; r < rows; ++r) {
              const float* xr = x.data() + r * k;
              const testing::Int8Blocks a = mlx_blocks(xr, k);
              for (i64 j = 0; j < n; ++j) {
                double acc = bias[j], mag = std::fabs(bias[j]);
                for (i64 g = 0; g < groups; ++g) {
                  const double s = mlx::read_scale(sdt, sc.data() + j * groups, g);
                  const double b = mlx::read_scale(sdt, bi.data() + j * groups, g);
                  for (i64 i = g * group; i < (g + 1) * group; ++i) {
                    const int c = code[static_cast<std::size_t>(j * k + i)];
                    const double sdq = s * a.d[static_cast<std::size_t>(i / 32)] *
                                       a.q[static_cast<std::size_t>(i)];
                    acc += sdq * c + b * xr[i];
                    mag += std::fabs(sdq) * (bits == 8 ? std::abs(c - 128) + 128 : c) +
                           std::fabs(b * xr[i]);
                  }
                }
                const auto o = static_cast<std::size_t>(r * n + j);
                ref[o] = acc;
                const double steps = static_cast<double>(k / 64 + group / 8 + groups / 8 + 12);
                tol[o] = steps * std::ldexp(mag, -24);
              }
            }
            std::vector<unsigned char> raw(
                static_cast<std::size_t>(rows * kern->row_bytes(w) + 64));
            void* xp = raw.data() + (64 - reinterpret_cast<std::uintptr_t>(raw.data()) % 64) % 64;
            kern->prepare(w, x.data(), rows, k, xp);
            std::vector<float> y(static_cast<std::size_t>(rows * ldy), -7.0f);
            kern->gemv(w, xp, rows, n0, n, bias.data(), y.data(), ldy);
            for (i64 r = 0; r < rows; ++r) {
              for (i64 j = 0; j < ldy; ++j) {
                const float got = y[static_cast<std::size_t>(r * ldy + j)];
                if (j < n0 || j >= n) {
                  ASSERT_EQ(got, -7.0f) << "wrote outside [n0, n) at row " << r << " col " << j;
                  continue;
                }
                const auto o = static_cast<std::size_t>(r * n + j);
                ASSERT_NEAR(got, ref[o], tol[o])
                    << "bits " << bits << " group " << group << " " << dtype_name(sdt) << " k " << k
                    << " rows " << rows << " [" << r << ", " << j << "]";
              }
            }
          }
        }
      }
    }
  }
}

// AffineDecode where the CPU has it: AVX2's at the AVX2 level, at the AVX-512 level AVX-512 VNNI's
// or (a CPU without VNNI) AVX2's; none at the scalar level. What the AVX2 kernels take.
TEST(MlxAffineKernels, DecodeKernelsPerLevel) {
  EXPECT_EQ(affine_decode(SimdLevel::kScalar), nullptr);
  if (!cpu_features().avx2) GTEST_SKIP() << "this CPU lacks AVX2";
  const AffineDecode* avx2 = affine_decode(SimdLevel::kAvx2);
  ASSERT_NE(avx2, nullptr);
  if (cpu_features().avx512) {
    EXPECT_EQ(affine_decode(SimdLevel::kAvx512) == avx2, !cpu_features().avx512_vnni);
  }
  AffineMatrix w{nullptr, 4, 256, 4, 64, DType::kF16, nullptr, nullptr};
  EXPECT_TRUE(avx2->handles(w));
  w.bits = 8;
  w.scale_dtype = DType::kBF16;
  EXPECT_TRUE(avx2->handles(w));
  w.bits = 3;
  EXPECT_FALSE(avx2->handles(w));
  w.bits = 4;
  w.scale_dtype = DType::kF32;
  EXPECT_FALSE(avx2->handles(w));
  w.scale_dtype = DType::kF16;
  w.cols = 48;
  w.group_size = 16;
  EXPECT_FALSE(avx2->handles(w));
}

TEST(MlxAffineKernels, EmbeddingRowsDequantized) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool, SimdLevel::kScalar);
  const Quantized q = make_weights(9, 64, 4, 32, DType::kF16, 4);
  const std::int32_t ids[3] = {8, 0, 3};
  std::vector<float> out(3 * 64);
  be->embedding(q.view(), ids, 3, out.data());
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 64; ++j) EXPECT_EQ(out[i * 64 + j], q.deq[ids[i] * 64 + j]);
  }
  const std::int32_t bad = 9;
  EXPECT_THROW(be->embedding(q.view(), &bad, 1, out.data()), Error);
}

TEST(MlxAffineKernels, RefusesBadViews) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool, SimdLevel::kScalar);
  Quantized q = make_weights(2, 64, 4, 32, DType::kF16, 1);
  WeightView v = q.view();
  v.affine.bits = 7;
  EXPECT_THROW(be->make_linear_view(v, nullptr), Error);
  v = q.view();
  v.affine.group_size = 48;
  EXPECT_THROW(be->make_linear_view(v, nullptr), Error);
  v = q.view();
  v.cols = 80;  // not a multiple of the group
  EXPECT_THROW(be->make_linear_view(v, nullptr), Error);
  v = q.view();
  v.affine.biases = nullptr;
  EXPECT_THROW(be->make_linear_view(v, nullptr), Error);
}

}  // namespace
}  // namespace hearth::kernels
