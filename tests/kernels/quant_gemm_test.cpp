// The tiled quantized matrix-matrix kernels (kernels/quant_gemm.hpp): through the backend at every
// level (prefill shapes: several weight tiles, a partial last tile, x rows past one register tile,
// past every level's QuantGemm::min_rows and past one task's row chunk) against double products
// with the dequantized weights, within the bound of the 8-bit activations; and called directly on
// sub-ranges against the GEMV kernels of the same level, which compute the same integer products.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "hearth/core/thread_pool.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/quant_gemm.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

constexpr DType kTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,   DType::kQ5_1,
                            DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,   DType::kQ4_K,
                            DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS};

// A weight matrix in one of the two formats, with what it means in floats.
struct Weights {
  std::vector<unsigned char> bytes;
  std::vector<std::uint16_t> scales, biases;  // mlx (f16)
  std::vector<float> values;                  // dequantized, rows x cols
  std::vector<float> code_scale;              // mlx: |s q| of each weight (the bound's part)
  WeightView view;
};

Weights ggml_weights(DType t, i64 rows, i64 cols, unsigned seed) {
  const auto w = testing::random_vector(static_cast<std::size_t>(rows * cols), seed, 0.1f);
  const i64 rb = ggml::row_bytes(t, cols);
  Weights out;
  out.bytes.resize(static_cast<std::size_t>(rows * rb));
  out.values.resize(w.size());
  for (i64 r = 0; r < rows; ++r) {
    ggml::quantize_row(t, w.data() + r * cols, out.bytes.data() + r * rb, cols);
    ggml::dequantize_row(t, out.bytes.data() + r * rb, out.values.data() + r * cols, cols);
  }
  out.view = {t, out.bytes.data(), rows, cols};
  out.code_scale.assign(out.values.size(), 0.0f);
  for (std::size_t i = 0; i < out.values.size(); ++i) out.code_scale[i] = std::fabs(out.values[i]);
  return out;
}

Weights mlx_weights(int bits, int group, i64 rows, i64 cols, unsigned seed) {
  const auto w = testing::random_vector(static_cast<std::size_t>(rows * cols), seed, 0.05f);
  const i64 rb = mlx::packed_row_bytes(cols, bits), groups = cols / group;
  Weights out;
  out.bytes.resize(static_cast<std::size_t>(rows * rb));
  out.scales.resize(static_cast<std::size_t>(rows * groups));
  out.biases.resize(out.scales.size());
  out.values.resize(w.size());
  out.code_scale.resize(w.size());
  std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
  for (i64 r = 0; r < rows; ++r) {
    std::uint8_t* row = out.bytes.data() + r * rb;
    mlx::quantize_row(w.data() + r * cols, cols, bits, group, row, s.data(), b.data());
    for (i64 g = 0; g < groups; ++g) {
      out.scales[static_cast<std::size_t>(r * groups + g)] = f32_to_f16(s[g]);
      out.biases[static_cast<std::size_t>(r * groups + g)] = f32_to_f16(b[g]);
    }
    for (i64 i = 0; i < cols; ++i) {
      const std::size_t g = static_cast<std::size_t>(r * groups + i / group);
      const float sc = f16_to_f32(out.scales[g]);
      const auto q = static_cast<float>(mlx::unpack_code(row, i, bits));
      out.values[static_cast<std::size_t>(r * cols + i)] = sc * q + f16_to_f32(out.biases[g]);
      out.code_scale[static_cast<std::size_t>(r * cols + i)] = std::fabs(sc * q);
    }
  }
  out.view = {DType::kU32, out.bytes.data(), rows, cols};
  out.view.affine = {bits, group, DType::kF16, out.scales.data(), out.biases.data()};
  return out;
}

// What check_backend measured: the RMS of the outputs' errors against the double product, the RMS
// that uniform rounding noise of the activations predicts (sqrt(sum_i code_scale_i^2 d_i^2 / 12)
// per output), and the RMS of the outputs.
struct Measured {
  double error = 0.0, predicted = 0.0, output = 0.0;
};

// y = x W^T + bias through a backend at level, each output against the double product within
// sum_i code_scale_i d_i / 2 (the activations' rounding to 8 bits, d = max|x| / 127 of the block)
// plus f32 rounding.
Measured check_backend(const Weights& w, SimdLevel level, i64 m, unsigned seed) {
  const i64 n = w.view.rows, k = w.view.cols;
  ThreadPool pool(2);
  auto be = make_cpu_backend(pool, level);
  const auto x = testing::random_vector(static_cast<std::size_t>(m * k), seed);
  const auto bias = testing::random_vector(static_cast<std::size_t>(n), seed + 1);
  const auto lin = be->make_linear_view(w.view, bias.data());
  std::vector<float> y(static_cast<std::size_t>(m * n));
  be->linear(*lin, x.data(), m, y.data());
  double se = 0.0, sp = 0.0, so = 0.0;
  for (i64 r = 0; r < m; ++r) {
    std::vector<double> half_step(static_cast<std::size_t>(k));
    for (i64 b = 0; b < k / 32; ++b) {
      double amax = 0.0;
      for (i64 i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[r * k + b * 32 + i]));
      for (i64 i = 0; i < 32; ++i) half_step[b * 32 + i] = amax / 127.0 / 2.0;
    }
    for (i64 j = 0; j < n; ++j) {
      double s = bias[j], e = 0.0, mag = std::fabs(bias[j]), var = 0.0;
      for (i64 i = 0; i < k; ++i) {
        const double wv = w.values[j * k + i];
        s += wv * x[r * k + i];
        e += w.code_scale[j * k + i] * half_step[i];
        var += std::pow(w.code_scale[j * k + i] * 2.0 * half_step[i], 2) / 12.0;
        mag += std::fabs(wv * x[r * k + i]);
      }
      const double got = y[r * n + j];
      if (!(std::fabs(got - s) <= e * 1.001 + 1e-5 * mag + 1e-6)) {
        ADD_FAILURE() << to_string(level) << " m=" << m << " [" << r << ", " << j << "]: " << got
                      << " against " << s << ", bound " << e;
        return {};
      }
      se += (got - s) * (got - s);
      sp += var;
      so += s * s;
    }
  }
  const double outputs = static_cast<double>(m * n);
  return {std::sqrt(se / outputs), std::sqrt(sp / outputs), std::sqrt(so / outputs)};
}

TEST(QuantGemm, GgmlTypesThroughTheBackendAtEveryLevel) {
  for (const DType t : kTypes) {
    const i64 k = dtype_info(t).block_size == 256 ? 256 : 160;
    const Weights w = ggml_weights(t, 101, k, 7);  // two whole tiles of 48 and a partial one
    for (const SimdLevel level : testing::simd_levels()) {
      SCOPED_TRACE(dtype_name(t));
      check_backend(w, level, 37, 5);  // past every level's min_rows, a partial register tile
    }
  }
}

TEST(QuantGemm, MoreRowsThanOneTask) {
  const Weights w = ggml_weights(DType::kQ4_0, 50, 64, 3);
  for (const SimdLevel level : testing::simd_levels()) check_backend(w, level, 261, 5);
}

// mlx 4 and 8 bits at every group size: 99 weight rows (partial last tiles of 48 and of 16), 37 x
// rows (past every level's min_rows, a partial register tile); an odd number of sub-blocks at
// group 32. Prints the measured RMS error relative to the RMS output, against the prediction for
// uniform rounding noise (sqrt(sum (s q)^2 d^2 / 12) per output).
TEST(QuantGemm, MlxAffineThroughTheBackendAtEveryLevel) {
  for (const int bits : {4, 8}) {
    for (const int group : {32, 64, 128}) {
      const i64 k = group == 32 ? 160 : 3 * group;
      const Weights w = mlx_weights(bits, group, 99, k, static_cast<unsigned>(bits + group));
      for (const SimdLevel level : testing::simd_levels()) {
        SCOPED_TRACE(::testing::Message() << "bits " << bits << " group " << group);
        const Measured e = check_backend(w, level, 37, 2);
        std::printf(
            "[ mlx-tile ] %-7s %d bits g%-3d RMS error %.3g (predicted %.3g) of RMS "
            "output %.3g: %.2f%%\n",
            to_string(level), bits, group, e.error, e.predicted, e.output,
            100.0 * e.error / e.output);
      }
    }
  }
}

// QuantGemm::affine_quantize rounds exactly as the GEMV's AffineActs::fill (8 bits: the blocks in
// input order): the same codes and scales bit for bit, ties to even included (a block whose
// maximum is 127 maps x to itself: 0.5, 1.5, 2.5 round to 0, 2, 2), an all-zero block, and the
// integer and f32 sums of each block.
TEST(QuantGemm, MlxActivationsRoundAsTheGemvRoundsThem) {
  constexpr i64 kR = 5, kK = 96;
  auto x = testing::random_vector(static_cast<std::size_t>(kR * kK), 31, 3.0f);
  for (int i = 0; i < 32; ++i) x[static_cast<std::size_t>(i)] = 0.5f * static_cast<float>(i % 8);
  x[31] = -127.0f;
  for (int i = 32; i < 64; ++i) x[static_cast<std::size_t>(i)] = 0.0f;
  bool ran = false;
  for (const SimdLevel level : testing::simd_levels()) {
    const QuantGemm* g = quant_gemm(level);
    if (g == nullptr) continue;
    ran = true;
    std::vector<Q8Block> xq(static_cast<std::size_t>(kR * kK / 32));
    g->affine_quantize(x.data(), kR, kK, kK, xq.data());
    AffineActs acts;
    acts.reset(kR, kK, 8, 32, ActLayout::kBlocks);
    acts.fill(x.data(), kK, 0, kR);
    for (i64 r = 0; r < kR; ++r) {
      for (i64 b = 0; b < kK / 32; ++b) {
        const Q8Block& o = xq[static_cast<std::size_t>(r * kK / 32 + b)];
        SCOPED_TRACE(::testing::Message() << to_string(level) << " row " << r << " block " << b);
        ASSERT_EQ(o.d, acts.d[static_cast<std::size_t>(r * acts.blocks() + b)]);
        int half[2] = {0, 0};
        double sum = 0.0, mag = 0.0;
        for (int i = 0; i < 32; ++i) {
          ASSERT_EQ(o.q[i], acts.q[static_cast<std::size_t>(r * acts.padded_cols() + b * 32 + i)])
              << i;
          half[i / 16] += o.q[i];
          sum += x[static_cast<std::size_t>(r * kK + b * 32 + i)];
          mag += std::fabs(x[static_cast<std::size_t>(r * kK + b * 32 + i)]);
        }
        EXPECT_EQ(o.sum[0], static_cast<float>(half[0]));
        EXPECT_EQ(o.sum[1], static_cast<float>(half[1]));
        EXPECT_NEAR(o.total, sum, 32.0 * std::ldexp(1.0, -24) * mag);
      }
    }
    EXPECT_EQ(xq[0].q[1], 0);  // 0.5
    EXPECT_EQ(xq[0].q[3], 2);  // 1.5
    EXPECT_EQ(xq[0].q[5], 2);  // 2.5
    EXPECT_EQ(xq[1].d, 0.0f);
  }
  if (!ran) GTEST_SKIP() << "no level of this CPU has the tiled kernels (AVX2 or AVX-512)";
}

// The exact value both the tiles and the mlx GEMV kernels compute (quant_gemm.hpp), in double,
// and the bound on how far apart f32 summation orders can put them: each kernel forms the same
// terms s_g d_j I_j and b_g x_i (and 128 s_g d_j sum(xq_j), which the AVX2 8-bit GEMV subtracts
// and adds back) with at most n = 3 k / 32 + group + 64 roundings in any chain, so each is within
// n u M of the exact value (u = 2^-24; M the sum of the magnitudes of the terms and of the output
// bias), and the two within 2 n u M of each other.
struct Exact {
  double value = 0.0, bound = 0.0;
};

Exact mlx_exact(const Weights& w, const Q8Block* xq, const float* x, i64 n, const float* bias) {
  const i64 k = w.view.cols, group = w.view.affine.group_size, groups = k / group;
  const int bits = w.view.affine.bits;
  const std::uint8_t* row = w.bytes.data() + n * mlx::packed_row_bytes(k, bits);
  double value = bias != nullptr ? bias[n] : 0.0, mag = std::fabs(value);
  for (i64 j = 0; j < k / 32; ++j) {
    const auto g = static_cast<std::size_t>(n * groups + j * 32 / group);
    const double s = f16_to_f32(w.scales[g]), b = f16_to_f32(w.biases[g]);
    std::int64_t dot = 0, sum = 0;
    for (int i = 0; i < 32; ++i) {
      dot += std::int64_t{mlx::unpack_code(row, j * 32 + i, bits)} * xq[j].q[i];
      sum += xq[j].q[i];
    }
    const double sd = s * xq[j].d;
    value += sd * static_cast<double>(dot);
    mag += std::fabs(sd) * (std::fabs(static_cast<double>(dot)) + 128.0 * std::fabs(sum));
    for (int i = 0; i < 32; ++i) {
      value += b * x[j * 32 + i];
      mag += std::fabs(b * x[j * 32 + i]);
    }
  }
  const double chain = 3.0 * static_cast<double>(k / 32) + static_cast<double>(group) + 64.0;
  return {value, chain * std::ldexp(1.0, -24) * mag};
}

// The tiles against the exact value and against the mlx GEMV kernels of the same level (their int8
// family, and the decode kernels (AffineDecode) where the level has them), on sub-ranges of weight
// rows and x rows: every width and group size, nothing written outside the ranges. Prints the
// largest difference seen as a fraction of the bound.
TEST(QuantGemm, MlxTilesMatchTheGemvKernels) {
  constexpr i64 kRows = 23, kN = 130, kN0 = 5, kN1 = 117, kM0 = 2, kM1 = 21;
  bool ran = false;
  for (const SimdLevel level : testing::simd_levels()) {
    const QuantGemm* g = quant_gemm(level);
    if (g == nullptr) continue;
    ran = true;
    double worst = 0.0;
    for (const int bits : {4, 8}) {
      for (const int group : {32, 64, 128}) {
        SCOPED_TRACE(::testing::Message()
                     << to_string(level) << " bits " << bits << " group " << group);
        const i64 k = group == 32 ? 224 : 2 * group;
        const Weights w = mlx_weights(bits, group, kN, k, static_cast<unsigned>(12 + bits + group));
        const auto x = testing::random_vector(static_cast<std::size_t>(kRows * k), 8);
        const auto bias = testing::random_vector(static_cast<std::size_t>(kN), 6);
        const AffineMatrix m{w.bytes.data(), kN, k, bits, group, DType::kF16, w.scales.data(),
                             w.biases.data()};
        std::vector<Q8Block> xq(static_cast<std::size_t>(kRows * k / 32));
        g->affine_quantize(x.data(), kRows, k, k, xq.data());
        std::vector<float> got(static_cast<std::size_t>(kRows * kN), -7.0f);
        g->affine(m, kN0, kN1, xq.data(), kM0, kM1, bias.data(), got.data(), kN);
        std::vector<std::vector<float>> others;
        const AffineKernels& ak = affine_kernels(level, bits);
        AffineActs acts;
        acts.reset(kRows, k, bits, group, ak.layout);
        acts.fill(x.data(), k, 0, kRows);
        others.emplace_back(got.size(), -7.0f);
        ak.run(m, acts, x.data(), k, kN0, kN1, kM0, kM1, bias.data(), others.back().data(), kN);
        if (const AffineDecode* ad = affine_decode(level); ad != nullptr && ad->handles(m)) {
          others.emplace_back(got.size(), -7.0f);
          std::vector<std::uint8_t> raw(static_cast<std::size_t>(kRows * ad->row_bytes(m) + 64));
          void* xp = raw.data() + (64 - reinterpret_cast<std::uintptr_t>(raw.data()) % 64) % 64;
          ad->prepare(m, x.data() + kM0 * k, kM1 - kM0, k, xp);
          ad->gemv(m, xp, kM1 - kM0, kN0, kN1, bias.data(), others.back().data() + kM0 * kN, kN);
        }
        for (i64 r = 0; r < kRows; ++r) {
          for (i64 n = 0; n < kN; ++n) {
            const std::size_t at = static_cast<std::size_t>(r * kN + n);
            if (r < kM0 || r >= kM1 || n < kN0 || n >= kN1) {
              ASSERT_EQ(got[at], -7.0f)
                  << "written outside the ranges at [" << r << ", " << n << "]";
              continue;
            }
            const Exact e = mlx_exact(w, xq.data() + r * k / 32, x.data() + r * k, n, bias.data());
            ASSERT_NEAR(got[at], e.value, e.bound) << "tile [" << r << ", " << n << "]";
            for (const auto& other : others) {
              const double diff = std::fabs(double{got[at]} - other[at]);
              ASSERT_LE(diff, 2.0 * e.bound) << "tile against GEMV [" << r << ", " << n << "]";
              worst = std::max(worst, diff / (2.0 * e.bound));
            }
          }
        }
      }
    }
    std::printf("[ mlx-tile ] %s: tiles vs GEMV kernels, largest difference %.3g of the bound\n",
                to_string(level), worst);
  }
  if (!ran) GTEST_SKIP() << "no level of this CPU has the tiled kernels (AVX2 or AVX-512)";
}

// The AVX2 and AVX-512 VNNI tiles form the same integer sums (the AVX2 8-bit ones through the
// shift, the VNNI ones directly) and the same f32 operations in the same order per output, so
// their mlx results are identical bit for bit.
TEST(QuantGemm, MlxTilesOfBothLevelsAgreeBitForBit) {
  if (!cpu_features().avx512 || !cpu_features().avx512_vnni) {
    GTEST_SKIP() << "this CPU lacks AVX-512 VNNI: only one kind of tile runs here";
  }
  const QuantGemm& avx2 = *quant_gemm(SimdLevel::kAvx2);
  const QuantGemm& vnni = *quant_gemm(SimdLevel::kAvx512);
  for (const int bits : {4, 8}) {
    const Weights w = mlx_weights(bits, 64, 70, 320, 21);
    const AffineMatrix m{w.bytes.data(), 70, 320, bits, 64, DType::kF16, w.scales.data(),
                         w.biases.data()};
    const auto x = testing::random_vector(static_cast<std::size_t>(13 * 320), 22);
    std::vector<Q8Block> xq(static_cast<std::size_t>(13 * 10));
    avx2.affine_quantize(x.data(), 13, 320, 320, xq.data());
    std::vector<float> a(static_cast<std::size_t>(13 * 70)), b(a.size());
    avx2.affine(m, 0, 70, xq.data(), 0, 13, nullptr, a.data(), 70);
    vnni.affine(m, 0, 70, xq.data(), 0, 13, nullptr, b.data(), 70);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << bits << " bits";
  }
}

// The extremes of the integer products: codes 0 and 2^bits - 1 against inputs of +-127 (every
// input of a block +-1, so d = 1/127 and xq = +-127), where an unshifted 8-bit code would saturate
// vpmaddubsw's pairs (2 * 255 * 127 > 2^15) and the shifted one reaches 2 * 128 * 127. Scale 1 and
// bias 0: the exact output is sum_i q_i x_i, an integer; the tiles must give it to f32 rounding.
TEST(QuantGemm, MlxExtremeCodesAndInputsDoNotSaturate) {
  constexpr i64 kN = 24, kK = 256, kM = 6;
  for (const int bits : {4, 8}) {
    const int top = (1 << bits) - 1;
    std::vector<int> codes(static_cast<std::size_t>(kN * kK));
    for (i64 n = 0; n < kN; ++n) {
      for (i64 i = 0; i < kK; ++i) {
        const int pattern = static_cast<int>(n % 4);  // all top, all 0, alternating, blocks
        const bool high =
            pattern == 0 || (pattern == 2 && i % 2 == 0) || (pattern == 3 && (i / 32 + n) % 2 == 0);
        codes[static_cast<std::size_t>(n * kK + i)] = high ? top : 0;
      }
    }
    const i64 rb = mlx::packed_row_bytes(kK, bits);
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(kN * rb), 0);
    for (i64 n = 0; n < kN; ++n) {
      for (i64 i = 0; i < kK; ++i) {
        const int c = codes[static_cast<std::size_t>(n * kK + i)];
        std::uint8_t* row = packed.data() + n * rb;
        if (bits == 8) {
          row[i] = static_cast<std::uint8_t>(c);
        } else {
          row[i / 2] = static_cast<std::uint8_t>(row[i / 2] | (c << (4 * (i % 2))));
        }
      }
    }
    std::vector<std::uint16_t> scales(static_cast<std::size_t>(kN * kK / 64), f32_to_f16(1.0f));
    std::vector<std::uint16_t> biases(scales.size(), f32_to_f16(0.0f));
    const AffineMatrix m{packed.data(), kN,           kK, bits, 64, DType::kF16,
                         scales.data(), biases.data()};
    std::vector<float> x(static_cast<std::size_t>(kM * kK));
    for (i64 r = 0; r < kM; ++r) {
      for (i64 i = 0; i < kK; ++i) {  // row 0 all +1, row 1 all -1, then mixed signs
        const bool neg = r == 1 || (r > 1 && ((i * 7 + r * 3) % (r + 1)) == 0);
        x[static_cast<std::size_t>(r * kK + i)] = neg ? -1.0f : 1.0f;
      }
    }
    std::vector<Q8Block> xq(static_cast<std::size_t>(kM * kK / 32));
    for (const SimdLevel level : testing::simd_levels()) {
      const QuantGemm* g = quant_gemm(level);
      if (g == nullptr) continue;
      g->affine_quantize(x.data(), kM, kK, kK, xq.data());
      std::vector<float> y(static_cast<std::size_t>(kM * kN));
      g->affine(m, 0, kN, xq.data(), 0, kM, nullptr, y.data(), kN);
      for (i64 r = 0; r < kM; ++r) {
        for (i64 n = 0; n < kN; ++n) {
          double want = 0.0;
          for (i64 i = 0; i < kK; ++i) {
            want += codes[static_cast<std::size_t>(n * kK + i)] * x[r * kK + i];
          }
          ASSERT_NEAR(y[r * kN + n], want, 1e-6 * kK * top + 1e-6)
              << to_string(level) << " bits " << bits << " [" << r << ", " << n << "]";
        }
      }
    }
  }
}

// The largest unsigned codes of each width against inputs of +-127 (x of +-1): the AVX2 tiles
// sum the pairs of several steps in int16 before vpmaddwd (Q5_0 codes of 31: 4 steps of
// 2 * 31 * 127; Q6_K's 63: 2 steps), so a saturating sum would show here. Blocks written raw:
// every code at its top (rows 0, 2, ...) or top and 0 alternating (rows 1, 3, ...), scale 1.
TEST(QuantGemm, TopCodesAndInputsDoNotSaturate) {
  constexpr i64 kN = 24, kK = 256, kM = 5;
  bool ran = false;
  for (const DType t : {DType::kQ4_0, DType::kQ5_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    SCOPED_TRACE(dtype_name(t));
    const i64 rb = ggml::row_bytes(t, kK);
    const i64 bb = static_cast<i64>(dtype_info(t).block_bytes);
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(kN * rb));
    const std::uint16_t one = f32_to_f16(1.0f), zero = f32_to_f16(0.0f);
    for (i64 n = 0; n < kN; ++n) {
      for (i64 b = 0; b < rb / bb; ++b) {
        std::uint8_t* blk = bytes.data() + n * rb + b * bb;
        std::memset(blk, n % 2 == 0 ? 0xFF : 0x0F, static_cast<std::size_t>(bb));
        switch (t) {
          case DType::kQ4_0:
          case DType::kQ5_0:
            std::memcpy(blk, &one, 2);
            break;
          case DType::kQ4_K:
          case DType::kQ5_K:  // d 1, dmin 0; the 6-bit scales 1 and mins 0
            std::memcpy(blk, &one, 2);
            std::memcpy(blk + 2, &zero, 2);
            std::memset(blk + 4, 0, 12);
            for (int j = 0; j < 4; ++j) blk[4 + j] = 1;
            for (int j = 8; j < 12; ++j) blk[4 + j] = 1;
            break;
          default:  // Q6_K: scales 1 (int8), d 1
            std::memset(blk + 192, 1, 16);
            std::memcpy(blk + 208, &one, 2);
            break;
        }
      }
    }
    std::vector<float> w(static_cast<std::size_t>(kN * kK));
    for (i64 n = 0; n < kN; ++n) ggml::dequantize_row(t, bytes.data() + n * rb, &w[n * kK], kK);
    std::vector<float> x(static_cast<std::size_t>(kM * kK));
    for (i64 r = 0; r < kM; ++r) {
      for (i64 i = 0; i < kK; ++i) {  // row 0 all +1, row 1 all -1, then mixed signs
        const bool neg = r == 1 || (r > 1 && ((i * 7 + r * 3) % (r + 1)) == 0);
        x[static_cast<std::size_t>(r * kK + i)] = neg ? -1.0f : 1.0f;
      }
    }
    for (const SimdLevel level : testing::simd_levels()) {
      const QuantGemm* g = quant_gemm(level);
      if (g == nullptr) continue;
      ran = true;
      std::vector<Q8Block> xq(static_cast<std::size_t>(kM * kK / 32));
      quant_kernels(level).quantize_rows(x.data(), kM, kK, kK, xq.data());
      std::vector<float> y(static_cast<std::size_t>(kM * kN));
      g->ggml(t, bytes.data(), kK, 0, kN, xq.data(), 0, kM, nullptr, y.data(), kN);
      for (i64 r = 0; r < kM; ++r) {
        for (i64 n = 0; n < kN; ++n) {
          double want = 0.0, mag = 0.0;
          for (i64 i = 0; i < kK; ++i) {
            want += static_cast<double>(w[n * kK + i]) * x[r * kK + i];
            mag += std::fabs(w[n * kK + i]);
          }
          ASSERT_NEAR(y[r * kN + n], want, 1e-6 * mag + 1e-6)
              << to_string(level) << " [" << r << ", " << n << "]";
        }
      }
    }
  }
  if (!ran) GTEST_SKIP() << "no level of this CPU has the tiled kernels (AVX2 or AVX-512)";
}

// Sub-ranges of weight rows and x rows, straight into the kernels: the same as the GEMV kernels of
// the level on the same quantized x (to f32 rounding), nothing written outside the ranges (mlx:
// MlxTilesMatchTheGemvKernels).
TEST(QuantGemm, SubRangesMatchTheGemvKernels) {
  constexpr i64 kRows = 23, kN = 130, kN0 = 5, kN1 = 117, kM0 = 2, kM1 = 21;
  bool ran = false;
  for (const SimdLevel level : testing::simd_levels()) {
    const QuantGemm* g = quant_gemm(level);
    if (g == nullptr) continue;
    ran = true;
    const QuantKernels& q = quant_kernels(level);
    for (const DType t : kTypes) {
      SCOPED_TRACE(dtype_name(t));
      const i64 k = dtype_info(t).block_size == 256 ? 256 : 96;
      const Weights w = ggml_weights(t, kN, k, 11);
      const auto x = testing::random_vector(static_cast<std::size_t>(kRows * k), 4);
      const auto bias = testing::random_vector(static_cast<std::size_t>(kN), 6);
      std::vector<Q8Block> xq(static_cast<std::size_t>(kRows * k / 32));
      q.quantize_rows(x.data(), kRows, k, k, xq.data());
      std::vector<float> want(static_cast<std::size_t>(kRows * kN), -7.0f), got = want;
      q.gemv(t, w.bytes.data(), k, kN0, kN1, xq.data() + kM0 * k / 32, kM1 - kM0, bias.data(),
             want.data() + kM0 * kN, kN);
      g->ggml(t, w.bytes.data(), k, kN0, kN1, xq.data(), kM0, kM1, bias.data(), got.data(), kN);
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 2e-5 * (std::fabs(want[i]) + 1.0)) << i;
      }
    }
  }
  if (!ran) GTEST_SKIP() << "no level of this CPU has the tiled kernels (AVX2 or AVX-512)";
}

}  // namespace
}  // namespace hearth::kernels

namespace hearth::kernels {
namespace {

// Prefill equals decode: many x rows in one call (the tiles) against one row per call (the GEMV).
TEST(QuantGemm, ManyRowsEqualOneRowAtATime) {
  ThreadPool pool(2);
  for (const SimdLevel level : testing::simd_levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const int bits : {0, 4, 8}) {  // 0: Q4_0, Q4_K, Q6_K, Q8_0 blocks
      for (const DType t : {DType::kQ4_0, DType::kQ4_K, DType::kQ6_K, DType::kQ8_0}) {
        if (bits != 0 && t != DType::kQ4_0) continue;
        const Weights w =
            bits == 0 ? ggml_weights(t, 320, 256, 3) : mlx_weights(bits, 64, 320, 256, 3);
        const i64 k = 256;
        const auto lin = be->make_linear_view(w.view, nullptr);
        const i64 m = 37;
        const auto x = testing::random_vector(static_cast<std::size_t>(m * k), 9);
        // mlx: the tiles' x blocks, for the bound (none at the scalar level, where every row count
        // runs the same f32 kernels: bit-identical).
        const QuantGemm* g = quant_gemm(level);
        std::vector<Q8Block> xq(static_cast<std::size_t>(m * k / 32));
        if (g != nullptr) g->affine_quantize(x.data(), m, k, k, xq.data());
        std::vector<float> all(static_cast<std::size_t>(m * 320)), one(320);
        be->linear(*lin, x.data(), m, all.data());
        for (i64 r = 0; r < m; ++r) {
          be->linear(*lin, x.data() + r * k, 1, one.data());
          for (i64 j = 0; j < 320; ++j) {
            // mlx: the same integer products, so within the f32-order bound of the two sums.
            const double tol =
                bits == 0 ? 1e-4 * (std::fabs(one[j]) + 1.0)
                : g == nullptr
                    ? 0.0
                    : 2.0 *
                          mlx_exact(w, xq.data() + r * k / 32, x.data() + r * k, j, nullptr).bound;
            ASSERT_NEAR(all[r * 320 + j], one[j], tol)
                << to_string(level) << " " << dtype_name(w.view.dtype) << " bits " << bits << " ["
                << r << ", " << j << "]";
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace hearth::kernels
