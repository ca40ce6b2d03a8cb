#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/tensor/dtype.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/tensor.hpp"

namespace hearth {
namespace {

TEST(Half, ScalarConversionIsExactOnEveryF16Value) {
  // Every finite f16 survives f16 -> f32 -> f16; NaNs stay NaN.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << "h=" << h;
  }
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);
}

TEST(Half, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);                      // below the halfway point to inf
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);                      // rounds to inf
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even (zero)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Half, BulkKernelsMatchScalar) {
  std::vector<float> src(1003);
  std::srand(7);
  for (float& x : src) x = static_cast<float>(std::rand()) / RAND_MAX * 200.0f - 100.0f;
  std::vector<std::uint16_t> h(src.size());
  std::vector<float> back(src.size());
  f32_to_f16(src.data(), h.data(), src.size());
  f16_to_f32(h.data(), back.data(), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(h[i], f32_to_f16(src[i]));
    ASSERT_EQ(back[i], f16_to_f32(h[i]));
  }
  f32_to_bf16(src.data(), h.data(), src.size());
  bf16_to_f32(h.data(), back.data(), src.size());
  for (std::size_t i = 0; i < src.size(); ++i) ASSERT_EQ(back[i], bf16_to_f32(h[i]));
  RecordProperty("simd", to_string(simd_level()));
}

TEST(DType, GgmlBlockSizesAndIds) {
  EXPECT_EQ(dtype_info(DType::kQ4_0).block_bytes, 18u);
  EXPECT_EQ(dtype_info(DType::kQ4_K).block_bytes, 144u);
  EXPECT_EQ(dtype_info(DType::kQ6_K).block_bytes, 210u);
  EXPECT_EQ(dtype_info(DType::kIQ4_XS).block_bytes, 136u);
  EXPECT_EQ(dtype_info(DType::kTQ1_0).block_bytes, 54u);
  EXPECT_EQ(dtype_from_ggml(12), DType::kQ4_K);
  EXPECT_EQ(dtype_from_ggml(30), DType::kBF16);
  EXPECT_EQ(dtype_from_ggml(39), DType::kMXFP4);
  for (std::uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 1000u}) {
    EXPECT_FALSE(dtype_from_ggml(removed)) << removed;
  }
  // Every ggml id round-trips.
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    const auto t = static_cast<DType>(i);
    if (const auto id = ggml_type_of(t)) {
      EXPECT_EQ(dtype_from_ggml(*id), t);
    }
    if (const auto name = safetensors_name_of(t)) {
      EXPECT_EQ(dtype_from_safetensors(*name), t);
    }
    EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  }
  EXPECT_EQ(dtype_bytes(DType::kQ4_0, 64), 36u);
  EXPECT_FALSE(dtype_bytes(DType::kQ4_0, 33));
  EXPECT_FALSE(dtype_bytes(DType::kF64, std::uint64_t{1} << 62));
}

TEST(TensorView, ContiguousStrides) {
  const TensorView v = TensorView::contiguous(DType::kF32, {2, 3, 4}, nullptr, 96);
  EXPECT_EQ(v.strides, (std::vector<std::int64_t>{48, 16, 4}));
  EXPECT_TRUE(v.is_contiguous());
  const TensorView q = TensorView::contiguous(DType::kQ8_0, {5, 64}, nullptr, 5 * 68);
  EXPECT_EQ(q.strides, (std::vector<std::int64_t>{68, 0}));
  EXPECT_EQ(shape_string({32064, 3072}), "[32064, 3072]");
}

}  // namespace
}  // namespace hearth
