// ggml block types: layouts checked on hand-made blocks, hearth's quantizer against stated error
// bounds, and the dequantizer against the f32 tensors that llama.cpp's own quantizer started from
// (the llamacpp-logits fixture files).
#include "hearth/tensor/ggml_quant.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/tensor/half.hpp"
#include "support/fixtures.hpp"

namespace hearth {
namespace {

namespace fs = std::filesystem;

// Relative RMS error (rms(error) / rms(x)) that hearth's quantizer must stay under on Gaussian
// rows. Round to nearest with a step of range / levels has an RMS error of step / sqrt(12); for
// blocks of 32 Gaussian values the max magnitude is about 2.1 sigma and the range about 4.1 sigma:
// q4_0 2.1 / 8 / 3.46 = 0.076, q5_0 0.038, q8_0 0.0048, q4_1 4.1 / 15 / 3.46 = 0.079, q5_1 0.038;
// K-quants over sub-blocks of 16/32 with quantized sub-scales: q2_K 3 levels over 16 (~0.25),
// q3_K 0.16, q4_K 0.08, q5_K 0.04, q6_K 0.02; iq4 (16 non-uniform levels) ~0.075. The bounds add
// about 25% headroom.
const std::map<DType, double>& error_bounds() {
  static const std::map<DType, double> m = {
      {DType::kQ4_0, 0.10},  {DType::kQ4_1, 0.10},   {DType::kQ5_0, 0.05},
      {DType::kQ5_1, 0.05},  {DType::kQ8_0, 0.0065}, {DType::kQ2_K, 0.33},
      {DType::kQ3_K, 0.20},  {DType::kQ4_K, 0.10},   {DType::kQ5_K, 0.05},
      {DType::kQ6_K, 0.025}, {DType::kIQ4_NL, 0.09}, {DType::kIQ4_XS, 0.095},
  };
  return m;
}

double rel_rms(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

std::vector<float> roundtrip(DType t, const std::vector<float>& x) {
  const auto n = static_cast<std::int64_t>(x.size());
  std::vector<unsigned char> blocks(static_cast<std::size_t>(ggml::row_bytes(t, n)));
  ggml::quantize_row(t, x.data(), blocks.data(), n);
  std::vector<float> y(x.size());
  ggml::dequantize_row(t, blocks.data(), y.data(), n);
  return y;
}

TEST(GgmlQuant, QuantizerErrorWithinBoundOnGaussianRows) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> x(4096);
  for (float& v : x) v = normal(rng);
  x[5] = 0.4f;  // an outlier: its block's scale must still serve the others
  for (const auto& [t, bound] : error_bounds()) {
    const double err = rel_rms(x, roundtrip(t, x));
    std::printf("%-7s relative rms error %.4f (bound %.4f)\n", std::string(dtype_name(t)).c_str(),
                err, bound);
    EXPECT_LT(err, bound) << dtype_name(t);
    EXPECT_GT(err, bound / 20) << dtype_name(t) << ": suspiciously exact";
  }
}

TEST(GgmlQuant, ZerosAndConstantsSurvive) {
  for (const auto& [t, bound] : error_bounds()) {
    const std::vector<float> zeros(256, 0.0f);
    for (float v : roundtrip(t, zeros)) ASSERT_EQ(v, 0.0f) << dtype_name(t);
    const std::vector<float> ones(256, -0.75f);
    for (float v : roundtrip(t, ones)) ASSERT_NEAR(v, -0.75f, 0.75f * bound) << dtype_name(t);
  }
}

TEST(GgmlQuant, HandMadeBlocksDecodeAsGgmlLaysThemOut) {
  float y[256];
  {
    ggml::BlockQ4_0 b{};
    b.d = f32_to_f16(0.5f);
    b.qs[0] = 0xF1;  // element 0 = 1 - 8, element 16 = 15 - 8
    for (int j = 1; j < 16; ++j) b.qs[j] = 0x88;
    ggml::dequantize_row(DType::kQ4_0, &b, y, 32);
    EXPECT_EQ(y[0], -3.5f);
    EXPECT_EQ(y[16], 3.5f);
    EXPECT_EQ(y[1], 0.0f);
  }
  {
    ggml::BlockQ5_0 b{};
    b.d = f32_to_f16(1.0f);
    std::memset(b.qs, 0, 16);
    const std::uint32_t qh = (1u << 3) | (1u << 20);  // fifth bits of elements 3 and 20
    std::memcpy(b.qh, &qh, 4);
    ggml::dequantize_row(DType::kQ5_0, &b, y, 32);
    EXPECT_EQ(y[3], 0.0f);
    EXPECT_EQ(y[20], 0.0f);
    EXPECT_EQ(y[4], -16.0f);
  }
  {
    ggml::BlockQ4_K b{};
    b.d = f32_to_f16(1.0f);
    b.dmin = f32_to_f16(1.0f);
    // sub-block 5: scale 0x25 (low nibble 5 in byte 9, high bits 2 in byte 1's top), min 3
    b.scales[9] = 0x35;
    b.scales[1] = 2u << 6;
    b.qs[32 * 2 + 0] = 0x70;  // element 160 (sub-block 5, high nibble of byte 64) = 7
    ggml::dequantize_row(DType::kQ4_K, &b, y, 256);
    EXPECT_EQ(y[160], 0x25 * 7 - 3);
    EXPECT_EQ(y[161], -3.0f);
    EXPECT_EQ(y[128], 0.0f);  // sub-block 4: scale and min 0
  }
  {
    ggml::BlockQ6_K b{};
    b.d = f32_to_f16(1.0f);
    for (auto& s : b.scales) s = 1;
    b.scales[13] = -2;          // elements 208..223
    b.ql[64 + 32 + 16] = 0x50;  // element 240: n = 1, g = 3 (high nibble), l = 16
    std::memset(b.qh, 0, 64);
    b.qh[32 + 16] = 3u << 6;  // g = 3, l = 16, n = 1: element 240
    ggml::dequantize_row(DType::kQ6_K, &b, y, 256);
    EXPECT_EQ(y[240], 1.0f * ((0x5 | (3 << 4)) - 32));
    EXPECT_EQ(y[208], -2.0f * -32);
  }
  {
    ggml::BlockIQ4_XS b{};
    b.d = f32_to_f16(0.25f);
    b.scales_l[1] = 0x40;     // sub-block 3: low nibble 4
    b.scales_h = 2u << 6;     // high bits 2: scale 0x24 - 32 = 4
    b.qs[16 * 3 + 2] = 0xF0;  // element 96 + 2 -> value 0 (-127), element 96 + 18 -> 113
    ggml::dequantize_row(DType::kIQ4_XS, &b, y, 256);
    EXPECT_EQ(y[98], 0.25f * 4 * -127);
    EXPECT_EQ(y[114], 0.25f * 4 * 113);
  }
}

TEST(GgmlQuant, RefusesPartialBlocksAndUnknownTypes) {
  std::vector<float> x(48, 1.0f);
  std::vector<unsigned char> out(64);
  EXPECT_THROW(ggml::quantize_row(DType::kQ4_0, x.data(), out.data(), 48), Error);
  EXPECT_THROW(ggml::dequantize_row(DType::kIQ2_XXS, out.data(), x.data(), 0), Error);
  EXPECT_FALSE(ggml::supported(DType::kF16));
  EXPECT_TRUE(ggml::supported(DType::kQ6_K));
}

// The fixture's quantized files were written by llama-quantize from its f32 files: every
// quantized matrix dequantized by hearth must lie near its f32 original, within the bound for its
// type (llama.cpp's quantizer searches scales, so it does at least as well as hearth's; a layout
// bug such as swapped nibbles or a misread scale gives relative errors near 1).
TEST(GgmlQuant, FixtureTensorsDequantizeNearTheirF32Originals) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/llamacpp-logits");
  std::map<std::string, std::unique_ptr<formats::GGUFFile>> bases;
  std::map<DType, int> seen;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".gguf" || name.find("-f32") != std::string::npos) continue;
    const std::string base = name.substr(0, name.find('-')) + "-f32.gguf";
    if (!bases.count(base))
      bases[base] = std::make_unique<formats::GGUFFile>(formats::GGUFFile::open(dir / base));
    const formats::GGUFFile& f32 = *bases[base];
    const formats::GGUFFile q = formats::GGUFFile::open(entry.path());
    for (const auto& info : q.tensors()) {
      if (!ggml::supported(info.dtype)) continue;
      const auto* orig = f32.find_tensor(info.name);
      ASSERT_NE(orig, nullptr) << name << " " << info.name;
      const TensorView v = q.view(info);
      const TensorView o = f32.view(*orig);
      std::vector<float> want(static_cast<std::size_t>(o.numel()));
      std::memcpy(want.data(), o.data, want.size() * 4);
      std::vector<float> got(want.size());
      ggml::dequantize_row(info.dtype, v.data, got.data(), v.numel());
      const double err = rel_rms(want, got);
      EXPECT_LT(err, error_bounds().at(info.dtype)) << name << " " << info.name;
      ++seen[info.dtype];
    }
  }
  EXPECT_EQ(seen.size(), error_bounds().size()) << "every supported type appears in the fixture";
}

}  // namespace
}  // namespace hearth
