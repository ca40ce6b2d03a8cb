// PNG reading and writing (libpng), text chunks, malformed files, and the float <-> 8-bit
// conversions of the diffusers pipelines.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/image/image.hpp"
#include "hearth/image/png.hpp"
#include "support/fixtures.hpp"

namespace hearth::image {
namespace {

using testing::TempDir;

Image8 gradient(std::int64_t w, std::int64_t h) {
  Image8 img{w, h, std::vector<std::uint8_t>(static_cast<std::size_t>(w * h * 3))};
  for (std::int64_t y = 0; y < h; ++y) {
    for (std::int64_t x = 0; x < w; ++x) {
      const auto i = static_cast<std::size_t>((y * w + x) * 3);
      img.rgb[i] = static_cast<std::uint8_t>(x * 7 + y);
      img.rgb[i + 1] = static_cast<std::uint8_t>(y * 13);
      img.rgb[i + 2] = static_cast<std::uint8_t>((x * y) ^ 0x5A);
    }
  }
  return img;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Png, RoundTripKeepsPixelsAndText) {
  const Image8 img = gradient(37, 21);
  const PngText text = {{"prompt", "a red fox in snow"},
                        {"seed", "42"},
                        {"Comment", "caf\xC3\xA9 \xE2\x80\x94 UTF-8 goes to iTXt"}};
  TempDir tmp;
  write_png(tmp / "a.png", img, text);
  const PngFile back = read_png(tmp / "a.png");
  EXPECT_EQ(back.image.width, 37);
  EXPECT_EQ(back.image.height, 21);
  EXPECT_EQ(back.image.rgb, img.rgb);
  EXPECT_EQ(back.text, text);
}

TEST(Png, AsciiTextIsATextChunk) {
  const std::vector<std::byte> png = encode_png(gradient(4, 4), {{"prompt", "hello"}});
  std::string s(reinterpret_cast<const char*>(png.data()), png.size());
  // Chunk type, then keyword NUL text (tEXt's layout).
  EXPECT_NE(s.find(std::string("tEXtprompt\0hello", 16)), std::string::npos);
  const std::vector<std::byte> utf = encode_png(gradient(4, 4), {{"prompt", "\xC3\xA9"}});
  s.assign(reinterpret_cast<const char*>(utf.data()), utf.size());
  EXPECT_NE(s.find("iTXtprompt"), std::string::npos);
}

TEST(Png, BadTextIsRefused) {
  for (const std::string& key : {std::string(), std::string(80, 'k'), std::string(" lead"),
                                 std::string("two  spaces"), std::string("tab\tkey")}) {
    EXPECT_THROW(encode_png(gradient(2, 2), {{key, "x"}}), Error) << "'" << key << "'";
  }
  EXPECT_THROW(encode_png(gradient(2, 2), {{"k", std::string("a\0b", 3)}}), Error);
  EXPECT_THROW(encode_png(gradient(2, 2), {{"k", "\xFF"}}), Error) << "not UTF-8";
  Image8 bad = gradient(2, 2);
  bad.rgb.pop_back();
  EXPECT_THROW(encode_png(bad), Error);
  EXPECT_THROW(encode_png(Image8{}), Error);
}

TEST(Png, MalformedFilesGiveErrorsNamingTheFile) {
  TempDir tmp;
  const std::vector<std::byte> good = encode_png(gradient(16, 16), {{"k", "v"}});
  struct Case {
    std::string name;
    std::vector<std::byte> bytes;
    std::string expect;
  };
  std::vector<Case> cases;
  cases.push_back({"empty.png", {}, "no PNG signature"});
  cases.push_back({"text.png", {std::byte{'h'}, std::byte{'i'}}, "no PNG signature"});
  cases.push_back({"header.png", {good.begin(), good.begin() + 20}, "truncated"});
  cases.push_back({"half.png", {good.begin(), good.begin() + good.size() / 2}, "truncated"});
  std::vector<std::byte> crc = good;
  crc[29] ^= std::byte{0xFF};  // the IHDR CRC
  cases.push_back({"crc.png", crc, "CRC"});
  std::vector<std::byte> huge = good;
  huge[16] = std::byte{0x7F};  // width 2^31 - ish: over the limits
  cases.push_back({"huge.png", huge, "malformed PNG"});
  for (const Case& c : cases) {
    testing::write_bytes(tmp / c.name, c.bytes);
    const std::string msg = error_of([&] { read_png(tmp / c.name); });
    EXPECT_NE(msg.find(c.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([&] { read_png(tmp / "absent.png"); }).find("absent.png"), std::string::npos);
}

TEST(Png, FloatConversionsFollowTheDiffusersPipeline) {
  // [-1, 1] -> (x / 2 + 0.5) clamped, * 255, rounded half to even.
  const std::vector<float> signed_px = {-1.0f, 1.0f, 0.0f, -3.0f, 2.0f, 0.2f};
  const Image8 a = to_u8_signed(signed_px.data(), 1, 2);
  EXPECT_EQ(a.rgb, (std::vector<std::uint8_t>{0, 255, 128, 0, 255, 153}));
  const std::vector<float> unit_px = {0.0f, 1.0f, 0.5f, -0.1f, 1.5f, 0.1f};
  const Image8 b = to_u8_unit(unit_px.data(), 2, 1);
  EXPECT_EQ(b.rgb, (std::vector<std::uint8_t>{0, 255, 128, 0, 255, 26}));
  const std::vector<float> back = to_f32_signed(a);
  EXPECT_FLOAT_EQ(back[0], -1.0f);
  EXPECT_FLOAT_EQ(back[1], 1.0f);
  EXPECT_NEAR(back[2], 128.0f / 255.0f * 2.0f - 1.0f, 1e-7);
  EXPECT_FLOAT_EQ(to_f32_unit(b)[1], 1.0f);
  EXPECT_TRUE(std::isinf(psnr(a, a)));
  Image8 c = a;
  c.rgb[0] = 10;  // one value off by 10 in 6: MSE 100 / 6
  EXPECT_NEAR(psnr(a, c), 10.0 * std::log10(255.0 * 255.0 * 6.0 / 100.0), 1e-9);
  EXPECT_THROW(psnr(a, b), Error);
}

}  // namespace
}  // namespace hearth::image
