// Linear layers over ggml block-quantized weights (CpuBackend::make_linear_view + linear, the
// kernels of kernels/quant_ggml*), at every instruction-set level, against a double-precision
// product with the dequantized weights. The kernels quantize x to 8 bits per block of 32
// (d = max|x| / 127, rounding error at most d / 2 per element), so for output j the error is at
// most sum_i |w_ji| d(i) / 2 plus f32 rounding; that is the bound asserted. The levels also agree
// with each other far more tightly (same integer products, only the f32 sums differ).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

const DType kTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,   DType::kQ5_1,
                        DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,   DType::kQ4_K,
                        DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS};

// Quantized weights at an odd byte offset, and their exact dequantized values.
struct QuantWeights {
  std::vector<unsigned char> bytes;
  std::vector<float> values;
  WeightView view;
  QuantWeights(DType t, i64 rows, i64 cols, unsigned seed) {
    const std::vector<float> w =
        testing::random_vector(static_cast<std::size_t>(rows * cols), seed, 0.1f);
    const i64 rb = ggml::row_bytes(t, cols);
    bytes.resize(static_cast<std::size_t>(rows * rb + 3));
    values.resize(w.size());
    for (i64 r = 0; r < rows; ++r) {
      ggml::quantize_row(t, w.data() + r * cols, bytes.data() + 3 + r * rb, cols);
      ggml::dequantize_row(t, bytes.data() + 3 + r * rb, values.data() + r * cols, cols);
    }
    view = {t, bytes.data() + 3, rows, cols};
  }
};

// Per output: the double product and the bound that 8-bit activation blocks allow.
void reference(const QuantWeights& w, const std::vector<float>& x, const std::vector<float>& bias,
               i64 m, std::vector<double>& ref, std::vector<double>& bound) {
  const i64 n = w.view.rows, k = w.view.cols;
  ref.assign(static_cast<std::size_t>(m * n), 0.0);
  bound.assign(ref.size(), 0.0);
  for (i64 r = 0; r < m; ++r) {
    std::vector<double> half_step(static_cast<std::size_t>(k));
    for (i64 b = 0; b < k / 32; ++b) {
      float amax = 0.0f;
      for (i64 i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[r * k + b * 32 + i]));
      for (i64 i = 0; i < 32; ++i) half_step[b * 32 + i] = amax / 127.0 / 2.0;
    }
    for (i64 j = 0; j < n; ++j) {
      double s = bias.empty() ? 0.0 : bias[j], e = 0.0, mag = 0.0;
      for (i64 i = 0; i < k; ++i) {
        const double wv = w.values[j * k + i];
        s += wv * x[r * k + i];
        e += std::fabs(wv) * half_step[i];
        mag += std::fabs(wv * x[r * k + i]);
      }
      ref[r * n + j] = s;
      bound[r * n + j] = e + 1e-5 * mag + 1e-6;
    }
  }
}

TEST(QuantLinear, EveryTypeShapeAndLevelWithinTheActivationRoundingBound) {
  ThreadPool pool(2);
  for (const DType t : kTypes) {
    const i64 block = dtype_info(t).block_size;
    for (const i64 k : {block, 3 * block, 15 * block, 512 + block}) {
      for (const i64 n : {1, 7, 37}) {
        const QuantWeights w(t, n, k, static_cast<unsigned>(n * 31 + k));
        const std::vector<float> bias = testing::random_vector(static_cast<std::size_t>(n), 3);
        for (const i64 m : {1, 3, 4, 5, 9, 21}) {
          const std::vector<float> x =
              testing::random_vector(static_cast<std::size_t>(m * k), static_cast<unsigned>(m));
          std::vector<double> ref, bound;
          reference(w, x, bias, m, ref, bound);
          std::vector<float> scalar;
          for (const SimdLevel level : testing::simd_levels()) {
            SCOPED_TRACE(::testing::Message() << to_string(level) << " " << dtype_name(t)
                                              << " m=" << m << " n=" << n << " k=" << k);
            auto be = make_cpu_backend(pool, level);
            const auto lin = be->make_linear_view(w.view, bias.data());
            std::vector<float> y(static_cast<std::size_t>(m * n));
            be->linear(*lin, x.data(), m, y.data());
            for (std::size_t i = 0; i < y.size(); ++i) {
              ASSERT_NEAR(y[i], ref[i], bound[i]) << "output " << i;
            }
            if (level == SimdLevel::kScalar) {
              scalar = y;
              continue;
            }
            for (std::size_t i = 0; i < y.size(); ++i) {
              ASSERT_NEAR(y[i], scalar[i], 2e-5 * (std::fabs(scalar[i]) + 1.0))
                  << "vs scalar " << i;
            }
          }
        }
      }
    }
  }
}

// The error the 8-bit activations add, for the record (docs/llm.md): relative RMS of the outputs
// against the exact product at a decoder-like shape, and the bound it must stay under (about
// 1 / (127 sqrt(3)) of a Gaussian block's max over its RMS).
TEST(QuantLinear, ActivationRoundingErrorIsAboutOnePercent) {
  ThreadPool pool(2);
  auto be = make_cpu_backend(pool);
  const i64 n = 64, k = 1024;
  const std::vector<float> x = testing::random_vector(static_cast<std::size_t>(k), 11);
  for (const DType t : {DType::kQ4_0, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K}) {
    const QuantWeights w(t, n, k, 5);
    std::vector<double> ref, bound;
    reference(w, x, {}, 1, ref, bound);
    std::vector<float> y(static_cast<std::size_t>(n));
    be->linear(*be->make_linear_view(w.view, nullptr), x.data(), 1, y.data());
    double num = 0.0, den = 0.0;
    for (i64 j = 0; j < n; ++j) {
      num += (y[j] - ref[j]) * (y[j] - ref[j]);
      den += ref[j] * ref[j];
    }
    const double rel = std::sqrt(num / den);
    std::printf("%-5s 8-bit activations: relative rms output error %.4f\n",
                std::string(dtype_name(t)).c_str(), rel);
    EXPECT_LT(rel, 0.012) << dtype_name(t);
    EXPECT_GT(rel, 0.0005) << dtype_name(t) << ": activations not rounded?";
  }
}

TEST(QuantLinear, EmbeddingRowsAreTheExactDequantizedRows) {
  ThreadPool pool(2);
  for (const SimdLevel level : testing::simd_levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const DType t : kTypes) {
      const QuantWeights w(t, 9, 512, 17);
      const std::int32_t ids[] = {8, 0, 3};
      std::vector<float> out(3 * 512);
      be->embedding(w.view, ids, 3, out.data());
      for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(std::memcmp(out.data() + i * 512, w.values.data() + ids[i] * 512, 512 * 4), 0)
            << dtype_name(t);
      }
      const std::int32_t bad = 9;
      EXPECT_THROW(be->embedding(w.view, &bad, 1, out.data()), Error);
    }
  }
}

TEST(QuantLinear, PartialBlocksAreRefused) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool);
  std::vector<unsigned char> bytes(4096);
  try {
    be->make_linear_view({DType::kQ4_K, bytes.data(), 2, 320}, nullptr);
    FAIL() << "accepted 320 columns of q4_K";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not whole blocks of 256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(be->make_linear_view({DType::kIQ2_XXS, bytes.data(), 2, 256}, nullptr), Error);
}

}  // namespace
}  // namespace hearth::kernels
