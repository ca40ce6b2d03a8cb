#include "hearth/tensor/mlx_quant.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "hearth/tensor/half.hpp"

namespace hearth::mlx {
namespace {

// MLX's own decoding of its 3-, 5- and 6-bit packs (the byte formulas of its CPU backend's
// extract_bits), written out here independently of unpack_code.
std::vector<int> mlx_extract(const std::uint8_t* w, int bits) {
  if (bits == 3) {
    return {w[0] & 0x7,         (w[0] & 0x38) >> 3, ((w[0] & 0xc0) >> 6) + ((w[1] & 0x1) << 2),
            (w[1] & 0xe) >> 1,  (w[1] & 0x70) >> 4, ((w[1] & 0x80) >> 7) + ((w[2] & 0x3) << 1),
            (w[2] & 0x1c) >> 2, (w[2] & 0xe0) >> 5};
  }
  if (bits == 5) {
    return {w[0] & 0x1f,
            ((w[0] & 0xe0) >> 5) + ((w[1] & 0x3) << 3),
            (w[1] & 0x7c) >> 2,
            ((w[1] & 0x80) >> 7) + ((w[2] & 0xf) << 1),
            ((w[2] & 0xf0) >> 4) + ((w[3] & 0x1) << 4),
            (w[3] & 0x3e) >> 1,
            ((w[3] & 0xc0) >> 6) + ((w[4] & 0x7) << 2),
            (w[4] & 0xf8) >> 3};
  }
  return {w[0] & 0x3f, ((w[0] >> 6) & 0x03) + ((w[1] & 0x0f) << 2),
          ((w[1] >> 4) & 0x0f) + ((w[2] & 0x03) << 4), (w[2] >> 2) & 0x3f};
}

std::vector<std::uint8_t> random_codes(std::int64_t n, int bits, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> c(static_cast<std::size_t>(n));
  for (auto& v : c) v = static_cast<std::uint8_t>(rng() & ((1u << bits) - 1));
  return c;
}

TEST(MlxPack, RoundTripsEveryWidth) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    const std::int64_t n = 96;
    const auto codes = random_codes(n, bits, static_cast<unsigned>(bits));
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(packed_row_bytes(n, bits)));
    pack_codes(codes.data(), n, bits, packed.data());
    std::vector<std::uint8_t> back(codes.size());
    unpack_codes(packed.data(), n, bits, back.data());
    EXPECT_EQ(back, codes) << bits << " bits";
    EXPECT_EQ(packed.size() % 4, 0u) << "rows are whole uint32 words";
  }
}

TEST(MlxPack, PowerOfTwoWidthsAreLowBitsFirstInWords) {
  for (int bits : {2, 4, 8}) {
    const auto codes = random_codes(32, bits, 11);
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(packed_row_bytes(32, bits)));
    pack_codes(codes.data(), 32, bits, packed.data());
    const int per_word = 32 / bits;
    for (std::size_t w = 0; w < packed.size() / 4; ++w) {
      std::uint32_t expect = 0;
      for (int j = 0; j < per_word; ++j) {
        expect |= static_cast<std::uint32_t>(codes[w * per_word + j]) << (j * bits);
      }
      const std::uint32_t got = packed[4 * w] | packed[4 * w + 1] << 8 | packed[4 * w + 2] << 16 |
                                static_cast<std::uint32_t>(packed[4 * w + 3]) << 24;
      EXPECT_EQ(got, expect) << bits << " bits, word " << w;
    }
  }
}

TEST(MlxPack, OddWidthsMatchMlxByteLayout) {
  for (int bits : {3, 5, 6}) {
    const int per_pack = bits == 6 ? 4 : 8;
    const int pack_bytes = per_pack * bits / 8;
    const auto codes = random_codes(64, bits, 5);
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(packed_row_bytes(64, bits)));
    pack_codes(codes.data(), 64, bits, packed.data());
    for (int p = 0; p < 64 / per_pack; ++p) {
      const auto got = mlx_extract(packed.data() + p * pack_bytes, bits);
      for (int j = 0; j < per_pack; ++j) {
        EXPECT_EQ(got[j], codes[p * per_pack + j]) << bits << " bits, pack " << p << " code " << j;
      }
    }
  }
  // Codes 1..7, 0 at 3 bits: the bit stream 001 010 011 100 101 110 111 000, lowest first.
  const std::uint8_t codes[8] = {1, 2, 3, 4, 5, 6, 7, 0};
  std::uint8_t packed[3];
  pack_codes(codes, 8, 3, packed);
  EXPECT_EQ(packed[0], 0xD1);
  EXPECT_EQ(packed[1], 0x58);
  EXPECT_EQ(packed[2], 0x1F);
}

TEST(MlxQuantize, NegativeScaleWhenTheMaximumDominates) {
  // min -1, max 3 at 4 bits: the max is the edge, scale = -(4/15) -> q0 = round(3 / s) = -11,
  // s = 3 / -11, bias = 3; w = 0 is code 11, w = -1 code 15, w = 3 code 0.
  std::vector<float> w(32, 0.5f);
  w[0] = -1.0f;
  w[1] = 3.0f;
  w[2] = 0.0f;
  std::vector<std::uint8_t> packed(16);
  float s = 0, b = 0;
  quantize_row(w.data(), 32, 4, 32, packed.data(), &s, &b);
  EXPECT_FLOAT_EQ(s, 3.0f / -11.0f);
  EXPECT_EQ(b, 3.0f);
  EXPECT_EQ(unpack_code(packed.data(), 0, 4), 15u);
  EXPECT_EQ(unpack_code(packed.data(), 1, 4), 0u);
  EXPECT_EQ(unpack_code(packed.data(), 2, 4), 11u);
  // min -3, max 1: the min dominates, the scale is positive and the bias the min.
  for (float& v : w) v = -v;
  quantize_row(w.data(), 32, 4, 32, packed.data(), &s, &b);
  EXPECT_GT(s, 0.0f);
  EXPECT_EQ(b, -3.0f);
}

TEST(MlxQuantize, ErrorWithinHalfAStepAndZeroExact) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int group : {32, 64, 128}) {
      std::mt19937 rng(static_cast<unsigned>(bits * 1000 + group));
      std::normal_distribution<float> dist(0.0f, 0.02f);
      const std::int64_t n = 3 * group;
      std::vector<float> w(static_cast<std::size_t>(n));
      for (auto& v : w) v = dist(rng);
      w[5] = 0.0f;
      w[static_cast<std::size_t>(group + 7)] = 0.0f;
      std::vector<std::uint8_t> packed(static_cast<std::size_t>(packed_row_bytes(n, bits)));
      std::vector<float> s(3), b(3), out(w.size());
      quantize_row(w.data(), n, bits, group, packed.data(), s.data(), b.data());
      dequantize_row(packed.data(), n, bits, group, DType::kF32, s.data(), b.data(), out.data());
      for (std::int64_t i = 0; i < n; ++i) {
        const float step = std::fabs(s[static_cast<std::size_t>(i / group)]);
        // Half a step inside the range; s = edge / q0 moves the far end of the range by at most
        // (2^bits - 1) |s - s0| <= |s0| (|q0| >= half the levels), where codes are clamped.
        EXPECT_LE(std::fabs(out[i] - w[i]), step * 1.05f + 1e-6f)
            << bits << " bits, group " << group << ", i " << i;
      }
      EXPECT_LE(std::fabs(out[5]), 1e-7f) << bits << " bits: zero must be representable";
      EXPECT_LE(std::fabs(out[static_cast<std::size_t>(group + 7)]), 1e-7f);
    }
  }
}

TEST(MlxQuantize, DequantizeReadsHalfScales) {
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[i] = static_cast<float>(i % 9) * 0.125f - 0.5f;
  std::vector<std::uint8_t> packed(32);
  float s[2], b[2];
  quantize_row(w.data(), 64, 4, 32, packed.data(), s, b);
  std::uint16_t hs[2] = {f32_to_f16(s[0]), f32_to_f16(s[1])};
  std::uint16_t hb[2] = {f32_to_f16(b[0]), f32_to_f16(b[1])};
  std::uint16_t bs[2] = {f32_to_bf16(s[0]), f32_to_bf16(s[1])};
  std::uint16_t bb[2] = {f32_to_bf16(b[0]), f32_to_bf16(b[1])};
  std::vector<float> o16(64), obf(64);
  dequantize_row(packed.data(), 64, 4, 32, DType::kF16, hs, hb, o16.data());
  dequantize_row(packed.data(), 64, 4, 32, DType::kBF16, bs, bb, obf.data());
  for (int i = 0; i < 64; ++i) {
    const float q = static_cast<float>(unpack_code(packed.data(), i, 4));
    EXPECT_EQ(o16[i], f16_to_f32(hs[i / 32]) * q + f16_to_f32(hb[i / 32]));
    EXPECT_EQ(obf[i], bf16_to_f32(bs[i / 32]) * q + bf16_to_f32(bb[i / 32]));
  }
}

}  // namespace
}  // namespace hearth::mlx
