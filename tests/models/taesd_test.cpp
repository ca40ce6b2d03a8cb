// The tiny autoencoders on real weights: TAEF2 (../shared/fixtures/models/taef2/) encodes and
// decodes a natural photograph (tests/data/taesd_dog_256.png) with hearth's conv, group-norm and
// upsample kernels, and agrees with the torch reference.
#include "hearth/models/taesd.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/image/image.hpp"
#include "hearth/image/png.hpp"
#include "support/fixtures.hpp"
#include "support/image_ref.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;
using testing::TempDir;

#define REQUIRE_DOG(var)                                                                        \
  const fs::path var = testing::source_dir() / "tests/data/taesd_dog_256.png";                  \
  if (!fs::exists(var)) {                                                                       \
    GTEST_SKIP() << "test photograph " << var.string() << " is absent (tests/data/SOURCES.md)"; \
  }

// The side x side pixels of img from (top, left).
image::Image8 crop(const image::Image8& img, std::int64_t top, std::int64_t left,
                   std::int64_t side) {
  image::Image8 out{side, side, {}};
  for (std::int64_t y = top; y < top + side; ++y) {
    const auto* row = img.rgb.data() + (y * img.width + left) * 3;
    out.rgb.insert(out.rgb.end(), row, row + side * 3);
  }
  return out;
}

// Sanitizer builds are unoptimised (Debug): the convolutions run about 100x slower there, so they
// check memory safety on the 32 x 32 centre (29.2 dB in the torch reference) instead of the whole
// photograph.
#if defined(__SANITIZE_ADDRESS__)
constexpr std::int64_t kSide = 32;
#else
constexpr std::int64_t kSide = 256;
#endif

TEST(Taesd, Taef2ReconstructsAPhotograph) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/taef2");
  REQUIRE_DOG(dog);
  ThreadPool pool(2);
  auto be = kernels::make_cpu_backend(pool);
  const TinyAutoencoder tae = TinyAutoencoder::load(dir, *be);
  EXPECT_EQ(tae.latent_channels(), 32);
  const image::PngFile png = image::read_png(dog);
  ASSERT_EQ(png.image.width, 256);
  ASSERT_EQ(png.image.height, 256);
  const image::Image8 photo = crop(png.image, (256 - kSide) / 2, (256 - kSide) / 2, kSide);
  const FloatImage in{kSide, kSide, image::to_f32_unit(photo)};
  const Latent z = tae.encode(in);
  ASSERT_EQ(z.channels, 32);
  ASSERT_EQ(z.height, kSide / 8);
  ASSERT_EQ(z.width, kSide / 8);
  const FloatImage out = tae.decode(z);
  ASSERT_EQ(out.height, kSide);
  const image::Image8 back = image::to_u8_unit(out.data.data(), out.height, out.width);
  const double psnr = image::psnr(photo, back);
  RecordProperty("psnr_db", std::to_string(psnr));
  std::printf("TAEF2 encode+decode of %s (%lld x %lld): PSNR %.2f dB\n", dog.filename().c_str(),
              static_cast<long long>(kSide), static_cast<long long>(kSide), psnr);
  EXPECT_GE(psnr, 25.0);
  // Other latents give no such picture, so the check can fail: reversed latents decode to about
  // 16 dB on the centre crop (mostly flat fur) and less on the whole photograph.
  Latent noise = z;
  std::reverse(noise.data.begin(), noise.data.end());
  const FloatImage junk = tae.decode(noise);
  EXPECT_LT(image::psnr(photo, image::to_u8_unit(junk.data.data(), kSide, kSide)), 20.0);
}

TEST(Taesd, Taef2MatchesTorch) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/taef2");
  HEARTH_REQUIRE_TORCH();
  REQUIRE_DOG(dog);
  TempDir tmp;
  // The top-left 32 x 32 pixels keep the reference quick.
  const std::vector<float> px = image::to_f32_unit(crop(image::read_png(dog).image, 0, 0, 32));
  testing::save_npy(tmp / "img.npy", px, {32, 32, 3});
  const std::string files = cat({"taesd --encoder ", quote(dir / "taef2_encoder.safetensors"),
                                 " --decoder ", quote(dir / "taef2_decoder.safetensors")});
  const auto want_z =
      testing::run_vae_reference(cat({files, " --encode ", quote(tmp / "img.npy")}), tmp / "z.npy");
  ASSERT_FALSE(want_z.empty());
  ThreadPool pool(2);
  auto be = kernels::make_cpu_backend(pool);
  const TinyAutoencoder tae = TinyAutoencoder::load(dir, *be);
  const Latent z = tae.encode({32, 32, px});
  const double dz = testing::max_abs_diff(z.data, want_z);
  EXPECT_LT(dz, 3e-5);  // observed about 3e-6 (f32 against float64)
  testing::save_npy(tmp / "zin.npy", z.data, {32, 4, 4});
  const auto want_img = testing::run_vae_reference(
      cat({files, " --decode ", quote(tmp / "zin.npy")}), tmp / "out.npy");
  ASSERT_FALSE(want_img.empty());
  const double di = testing::max_abs_diff(tae.decode(z).data, want_img);
  EXPECT_LT(di, 3e-5);
  std::printf("TAEF2 max |hearth - torch|: encode %.2e, decode %.2e\n", dz, di);
}

TEST(Taesd, MissingFilesAndBadInputsGiveClearErrors) {
  TempDir tmp;
  ThreadPool pool(1);
  auto be = kernels::make_cpu_backend(pool);
  try {
    TinyAutoencoder::load(tmp.path(), *be);
    ADD_FAILURE() << "an empty folder loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(std::string(e.what()).find(tmp.path().string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(TinyAutoencoder::load(std::nullopt, std::nullopt, *be), Error);
  HEARTH_REQUIRE_FIXTURE(dir, "models/taef2");
  const TinyAutoencoder dec_only =
      TinyAutoencoder::load(std::nullopt, dir / "taef2_decoder.safetensors", *be);
  EXPECT_THROW(dec_only.encode({8, 8, std::vector<float>(8 * 8 * 3)}), Error);
  EXPECT_THROW(dec_only.decode({16, 2, 2, std::vector<float>(16 * 4)}), Error)
      << "16 channels for a 32-channel decoder";
  // An encoder file where the decoder belongs: its first conv is missing.
  EXPECT_THROW(TinyAutoencoder::load(std::nullopt, dir / "taef2_encoder.safetensors", *be), Error);
  const TinyAutoencoder enc_only =
      TinyAutoencoder::load(dir / "taef2_encoder.safetensors", std::nullopt, *be);
  EXPECT_THROW(enc_only.encode({12, 8, std::vector<float>(12 * 8 * 3)}), Error) << "12 % 8";
}

}  // namespace
}  // namespace hearth::models
