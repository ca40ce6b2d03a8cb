// The decoder ops of the backend (linear layers over f32/f16/bf16 weights read in place, RoPE,
// KV-cache attention with GQA and sliding windows, SwiGLU, embedding rows), at every
// instruction-set level this machine has, against double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/peak.hpp"
#include "hearth/tensor/float8.hpp"
#include "hearth/tensor/half.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

std::vector<SimdLevel> levels() {
  return testing::simd_levels();
}
using testing::random_vector;

// Weights stored as dtype at a deliberately odd byte offset; values() are what they hold.
struct StoredWeights {
  std::vector<std::byte> bytes;
  std::vector<float> values;
  WeightView view;
  StoredWeights(const std::vector<float>& w, DType dtype, i64 rows, i64 cols, std::size_t offset) {
    const std::size_t n = w.size();
    const bool f8 = dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2;
    const std::size_t es = dtype == DType::kF32 ? 4 : f8 ? 1 : 2;
    bytes.resize(n * es + offset);
    values.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (f8) {  // e5m2: the upper byte of the half, truncated (any code will do)
        const std::uint8_t b = dtype == DType::kF8E4M3
                                   ? f32_to_f8e4m3(w[i])
                                   : static_cast<std::uint8_t>(f32_to_f16(w[i]) >> 8);
        bytes[offset + i] = static_cast<std::byte>(b);
        values[i] = dtype == DType::kF8E4M3 ? f8e4m3_to_f32(b) : f8e5m2_to_f32(b);
      } else if (dtype == DType::kF32) {
        std::memcpy(bytes.data() + offset + i * 4, &w[i], 4);
        values[i] = w[i];
      } else {
        const std::uint16_t h = dtype == DType::kF16 ? f32_to_f16(w[i]) : f32_to_bf16(w[i]);
        std::memcpy(bytes.data() + offset + i * 2, &h, 2);
        values[i] = dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
      }
    }
    view = {dtype, bytes.data() + offset, rows, cols};
  }
};

TEST(LinearView, EveryDtypeShapeAndLevelMatchesDouble) {
  ThreadPool pool(2);
  for (const SimdLevel level : levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const DType dtype :
         {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2}) {
      for (const i64 m : {1, 3, 8, 9, 37}) {
        for (const i64 n : {1, 5, 33, 70}) {
          for (const i64 k : {1, 7, 16, 100, 131}) {
            SCOPED_TRACE(::testing::Message() << to_string(level) << " " << dtype_name(dtype)
                                              << " m=" << m << " n=" << n << " k=" << k);
            const auto w = random_vector(static_cast<std::size_t>(n * k), 1);
            const auto x = random_vector(static_cast<std::size_t>(m * k), 2);
            const auto b = random_vector(static_cast<std::size_t>(n), 3);
            const StoredWeights sw(w, dtype, n, k, 1);  // odd address: any alignment works
            const bool bias = (n + k) % 2 == 0;
            auto lin = be->make_linear_view(sw.view, bias ? b.data() : nullptr);
            std::vector<float> y(static_cast<std::size_t>(m * n));
            be->linear(*lin, x.data(), m, y.data());
            double worst = 0.0;
            for (i64 i = 0; i < m; ++i) {
              for (i64 j = 0; j < n; ++j) {
                double s = bias ? b[j] : 0.0;
                for (i64 p = 0; p < k; ++p) {
                  s += static_cast<double>(x[i * k + p]) * sw.values[j * k + p];
                }
                worst = std::max(worst, std::fabs(s - y[i * n + j]) / (1.0 + std::sqrt(k)));
              }
            }
            EXPECT_LT(worst, 2e-6);
          }
        }
      }
    }
  }
}

// Every code of both float8 types, decoded in the SIMD loads (rows of 16 equal codes: whole
// vectors at every level) and in the scalar tails (rows of 3), through the GEMV (1 row of x) and
// the converting GEMM (9 rows), equals its definition (tensor/float8.hpp), NaNs included; and
// the definition matches hand-picked values.
TEST(LinearView, EveryFloat8CodeDecodesExactly) {
  EXPECT_EQ(f8e4m3_to_f32(0x7E), 448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), 0x1p-9f);  // smallest subnormal
  EXPECT_EQ(f8e4m3_to_f32(0x08), 0x1p-6f);  // smallest normal
  EXPECT_EQ(f8e4m3_to_f32(0xB9), -1.125f);  // 1 0111 001
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7F)) && std::isnan(f8e4m3_to_f32(0xFF)));
  EXPECT_EQ(f8e5m2_to_f32(0x7B), 57344.0f);
  EXPECT_TRUE(std::isinf(f8e5m2_to_f32(0x7C)));
  EXPECT_EQ(f32_to_f8e4m3(1000.0f), 0x7E);    // saturates
  EXPECT_EQ(f32_to_f8e4m3(1.0625f), 0x38);    // a tie: to the even code (1.0)
  EXPECT_EQ(f32_to_f8e4m3(1.1875f), 0x3A);    // a tie: to the even code (1.25)
  EXPECT_EQ(f32_to_f8e4m3(-0x1p-10f), 0x80);  // half the smallest subnormal: to even (-0)
  for (int c = 0; c < 255; ++c) {             // every value round-trips (0x7F is NaN)
    if (c == 0x7F) continue;
    EXPECT_EQ(f32_to_f8e4m3(f8e4m3_to_f32(static_cast<std::uint8_t>(c))), c) << c;
  }
  ThreadPool pool(2);
  for (const SimdLevel level : levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const DType dtype : {DType::kF8E4M3, DType::kF8E5M2}) {
      for (const i64 k : {16, 3}) {
        std::vector<std::byte> codes(256 * static_cast<std::size_t>(k));
        for (std::size_t i = 0; i < codes.size(); ++i) {
          codes[i] = static_cast<std::byte>(i / static_cast<std::size_t>(k));
        }
        const auto lin = be->make_linear_view({dtype, codes.data(), 256, k}, nullptr);
        for (const i64 m : {1, 9}) {
          SCOPED_TRACE(::testing::Message()
                       << to_string(level) << " " << dtype_name(dtype) << " k=" << k << " m=" << m);
          // Weights summing to 1 by powers of two: every partial sum stays exact (no zeros:
          // e5m2's infinities times 0 would be NaN).
          std::vector<float> x(static_cast<std::size_t>(m * k));
          for (i64 r = 0; r < m; ++r) {
            for (i64 p = 0; p < k; ++p)
              x[r * k + p] = k == 16 ? 1.0f / 16.0f : p < 2 ? 0.25f : 0.5f;
          }
          std::vector<float> y(static_cast<std::size_t>(m * 256));
          be->linear(*lin, x.data(), m, y.data());
          for (int c = 0; c < 256; ++c) {
            const auto b = static_cast<std::uint8_t>(c);
            const float want = dtype == DType::kF8E4M3 ? f8e4m3_to_f32(b) : f8e5m2_to_f32(b);
            for (i64 r = 0; r < m; ++r) {
              const float got = y[r * 256 + c];
              if (std::isnan(want)) {
                EXPECT_TRUE(std::isnan(got)) << c;
              } else {
                EXPECT_EQ(got, want) << "code " << c;
              }
            }
          }
        }
      }
    }
  }
}

// ggml block types have their own kernels (quant_ggml_test.cpp); types without one are refused.
TEST(LinearView, RefusesTypesWithoutKernels) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool, SimdLevel::kScalar);
  std::vector<std::byte> bytes(256);
  EXPECT_THROW(be->make_linear_view({DType::kIQ2_XXS, bytes.data(), 1, 256}, nullptr), Error);
  EXPECT_THROW(be->make_linear_view({DType::kI32, bytes.data(), 1, 32}, nullptr), Error);
}

TEST(Rope, BothConventionsMatchDouble) {
  ThreadPool pool(2);
  const i64 rows = 5, heads = 3, head_dim = 40, rot = 32, ld = heads * head_dim + 6;
  std::vector<i64> pos = {0, 1, 7, 100, 513};
  std::vector<float> inv(rot / 2);
  for (i64 i = 0; i < rot / 2; ++i) inv[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rot));
  const float mscale = 1.25f;
  for (const SimdLevel level : levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const bool neox : {true, false}) {
      SCOPED_TRACE(::testing::Message() << to_string(level) << (neox ? " neox" : " normal"));
      const auto x0 = random_vector(static_cast<std::size_t>(rows * ld), 4);
      auto x = x0;
      be->rope(x.data(), rows, ld, heads, head_dim, rot, pos.data(), inv.data(), mscale, neox);
      double worst = 0.0;
      for (i64 r = 0; r < rows; ++r) {
        for (i64 h = 0; h < heads; ++h) {
          const float* a = x0.data() + r * ld + h * head_dim;
          const float* got = x.data() + r * ld + h * head_dim;
          for (i64 i = 0; i < rot / 2; ++i) {
            const i64 i0 = neox ? i : 2 * i;
            const i64 i1 = neox ? i + rot / 2 : 2 * i + 1;
            const double t = static_cast<double>(static_cast<float>(pos[r]) * inv[i]);
            const double c = std::cos(t) * mscale, s = std::sin(t) * mscale;
            worst = std::max(worst, std::fabs(a[i0] * c - a[i1] * s - got[i0]));
            worst = std::max(worst, std::fabs(a[i0] * s + a[i1] * c - got[i1]));
          }
          for (i64 i = rot; i < head_dim; ++i) EXPECT_EQ(got[i], a[i]);  // not rotated
        }
        for (i64 i = heads * head_dim; i < ld; ++i) EXPECT_EQ(x[r * ld + i], x0[r * ld + i]);
      }
      EXPECT_LT(worst, 1e-5);
    }
  }
}

// Causal GQA attention over a cache filled in two stores, with and without a window.
TEST(AttentionCached, GqaWindowAndBothCacheTypesMatchDouble) {
  ThreadPool pool(2);
  const i64 heads = 4, kv_heads = 2, d = 24, first = 5, rows = 7, total = first + rows;
  const i64 ld_kv = kv_heads * d + 3, ld_q = heads * d;
  const auto k = random_vector(static_cast<std::size_t>(total * ld_kv), 5);
  const auto v = random_vector(static_cast<std::size_t>(total * ld_kv), 6);
  const auto q = random_vector(static_cast<std::size_t>(rows * ld_q), 7);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (const SimdLevel level : levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const DType dtype : {DType::kF32, DType::kF16}) {
      for (const i64 window : {0, 4}) {
        SCOPED_TRACE(::testing::Message()
                     << to_string(level) << " " << dtype_name(dtype) << " window " << window);
        auto cache = be->make_kv_cache(3, kv_heads, d, 16, dtype);
        be->kv_store(*cache, 1, 0, first, k.data(), v.data(), ld_kv);
        be->kv_store(*cache, 1, first, rows, k.data() + first * ld_kv, v.data() + first * ld_kv,
                     ld_kv);
        std::vector<float> out(static_cast<std::size_t>(rows * ld_q));
        be->attention_cached(*cache, 1, q.data(), ld_q, rows, first, heads, scale, window,
                             out.data(), ld_q);
        const auto stored = [&](float x) {
          return dtype == DType::kF16 ? static_cast<double>(f16_to_f32(f32_to_f16(x))) : x;
        };
        double worst = 0.0;
        for (i64 r = 0; r < rows; ++r) {
          const i64 p = first + r;
          const i64 lo = window > 0 ? std::max<i64>(0, p - window + 1) : 0;
          for (i64 h = 0; h < heads; ++h) {
            const i64 g = h / (heads / kv_heads);
            std::vector<double> s;
            double mx = -1e300;
            for (i64 j = lo; j <= p; ++j) {
              double dot = 0.0;
              for (i64 c = 0; c < d; ++c) {
                dot += q[r * ld_q + h * d + c] * stored(k[j * ld_kv + g * d + c]);
              }
              s.push_back(dot * scale);
              mx = std::max(mx, s.back());
            }
            double sum = 0.0;
            for (double& e : s) sum += (e = std::exp(e - mx));
            for (i64 c = 0; c < d; ++c) {
              double o = 0.0;
              for (i64 j = lo; j <= p; ++j) o += s[j - lo] / sum * stored(v[j * ld_kv + g * d + c]);
              worst = std::max(worst, std::fabs(o - out[r * ld_q + h * d + c]));
            }
          }
        }
        EXPECT_LT(worst, 2e-6);
      }
    }
  }
}

TEST(AttentionCached, OutOfRangeStoresAreRefused) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool, SimdLevel::kScalar);
  auto cache = be->make_kv_cache(1, 1, 8, 4, DType::kF32);
  std::vector<float> kv(8 * 5);
  EXPECT_THROW(be->kv_store(*cache, 0, 2, 3, kv.data(), kv.data(), 8), Error);
  EXPECT_THROW(be->kv_store(*cache, 1, 0, 1, kv.data(), kv.data(), 8), Error);
  EXPECT_THROW(be->make_kv_cache(1, 1, 8, 4, DType::kBF16), Error);
}

TEST(SiluMul, MatchesDouble) {
  ThreadPool pool(2);
  const i64 rows = 3, dim = 37, ld = 2 * dim;
  const auto gu = random_vector(static_cast<std::size_t>(rows * ld), 8, 3.0f);
  for (const SimdLevel level : levels()) {
    auto be = make_cpu_backend(pool, level);
    for (const i64 r : {i64{1}, rows}) {
      std::vector<float> out(static_cast<std::size_t>(r * dim));
      be->silu_mul(gu.data(), gu.data() + dim, ld, r, dim, out.data());
      for (i64 i = 0; i < r; ++i) {
        for (i64 j = 0; j < dim; ++j) {
          const double g = gu[i * ld + j], u = gu[i * ld + dim + j];
          EXPECT_NEAR(out[i * dim + j], g / (1.0 + std::exp(-g)) * u,
                      1e-5 * (1 + std::fabs(u * g)));
        }
      }
    }
  }
}

TEST(EmbeddingView, ConvertsRowsAndChecksIds) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool);
  const auto w = random_vector(5 * 6, 9);
  for (const DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const StoredWeights sw(w, dtype, 5, 6, 2);
    const std::int32_t ids[] = {4, 0, 4};
    std::vector<float> out(3 * 6);
    be->embedding(sw.view, ids, 3, out.data());
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 6; ++j) EXPECT_EQ(out[i * 6 + j], sw.values[ids[i] * 6 + j]);
    }
    const std::int32_t bad = 5;
    EXPECT_THROW(be->embedding(sw.view, &bad, 1, out.data()), Error);
  }
}

TEST(Bandwidth, ProbeMeasuresSomething) {
  ThreadPool pool(2);
  const double gbs = measure_read_bandwidth_gbs(pool, std::size_t{64} << 20, 2);
  EXPECT_GT(gbs, 0.1);
  EXPECT_LT(gbs, 10000.0);
}

}  // namespace
}  // namespace hearth::kernels
