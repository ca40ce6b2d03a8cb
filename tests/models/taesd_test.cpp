// The tiny autoencoders on real weights: TAEF2 (../shared/fixtures/models/taef2/) encodes and
// decodes a natural photograph (tests/data/taesd_dog_256.png) with hearth's conv, group-norm and
// upsample kernels, and agrees with the torch reference.
#include "hearth/models/taesd.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

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

TEST(Taesd, Taef2ReconstructsAPhotograph) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/taef2");
  REQUIRE_DOG(dog);
  ThreadPool pool(2);
  auto be = kernels::make_cpu_backend(pool);
  const TinyAutoencoder tae = TinyAutoencoder::load(dir, *be);
  EXPECT_EQ(tae.latent_channels(), 32);
  const image::PngFile png = image::read_png(dog);
  ASSERT_EQ(png.image.width, 256);
  const FloatImage in{256, 256, image::to_f32_unit(png.image)};
  const Latent z = tae.encode(in);
  ASSERT_EQ(z.channels, 32);
  ASSERT_EQ(z.height, 32);
  ASSERT_EQ(z.width, 32);
  const FloatImage out = tae.decode(z);
  ASSERT_EQ(out.height, 256);
  const image::Image8 back = image::to_u8_unit(out.data.data(), out.height, out.width);
  const double psnr = image::psnr(png.image, back);
  RecordProperty("psnr_db", std::to_string(psnr));
  std::printf("TAEF2 encode+decode of %s: PSNR %.2f dB\n", dog.filename().c_str(), psnr);
  EXPECT_GE(psnr, 25.0);
  // Random latents give no such picture: the check can fail.
  Latent noise = z;
  std::reverse(noise.data.begin(), noise.data.end());
  const FloatImage junk = tae.decode(noise);
  EXPECT_LT(image::psnr(png.image, image::to_u8_unit(junk.data.data(), 256, 256)), 15.0);
}

TEST(Taesd, Taef2MatchesTorch) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/taef2");
  HEARTH_REQUIRE_TORCH();
  REQUIRE_DOG(dog);
  TempDir tmp;
  const image::PngFile png = image::read_png(dog);
  // The top-left 64 x 64 pixels keep the reference quick.
  std::vector<float> crop;
  const std::vector<float> all = image::to_f32_unit(png.image);
  for (int y = 0; y < 64; ++y) {
    crop.insert(crop.end(), all.begin() + y * 256 * 3, all.begin() + (y * 256 + 64) * 3);
  }
  testing::save_npy(tmp / "img.npy", crop, {64, 64, 3});
  const std::string files = cat({"taesd --encoder ", quote(dir / "taef2_encoder.safetensors"),
                                 " --decoder ", quote(dir / "taef2_decoder.safetensors")});
  const auto want_z =
      testing::run_vae_reference(cat({files, " --encode ", quote(tmp / "img.npy")}), tmp / "z.npy");
  ASSERT_FALSE(want_z.empty());
  ThreadPool pool(2);
  auto be = kernels::make_cpu_backend(pool);
  const TinyAutoencoder tae = TinyAutoencoder::load(dir, *be);
  const Latent z = tae.encode({64, 64, crop});
  const double dz = testing::max_abs_diff(z.data, want_z);
  EXPECT_LT(dz, 3e-5);  // observed about 3e-6 (f32 against float64)
  testing::save_npy(tmp / "zin.npy", z.data, {32, 8, 8});
  const auto want_img = testing::run_vae_reference(
      cat({files, " --decode ", quote(tmp / "zin.npy")}), tmp / "out.npy");
  ASSERT_FALSE(want_img.empty());
  const double di = testing::max_abs_diff(tae.decode(z).data, want_img);
  EXPECT_LT(di, 3e-5);
  std::printf("TAEF2 max |hearth - torch|: encode %.2e, decode %.2e\n", dz, di);
}

}  // namespace
}  // namespace hearth::models
