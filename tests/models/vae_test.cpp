// The FLUX.1 AutoencoderKL: tiny random models from hearth-make-vae against the torch reference
// (tools/vae_reference.py, float64), the diffusers and BFL layouts of the same weights, latent
// packing, mflux's saved layout, and broken inputs.
#include "hearth/models/vae.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/safetensors.hpp"
#include "support/fixtures.hpp"
#include "support/image_ref.hpp"
#include "support/levels.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;
using testing::TempDir;

// Three levels (downscale 4), one resnet per block, 32 groups, FLUX.1's 16 latent channels.
void make_tiny(const fs::path& dir, const std::string& extra = "") {
  const std::string cmd =
      cat({quote(testing::tools_dir() / "hearth-make-vae"),
           " --channels 32,64,64 --layers 1 --seed 7 --out ", quote(dir), " ", extra, " 2>&1"});
  std::string log;
  ASSERT_EQ(testing::run_command(cmd, &log), 0) << cmd << "\n" << log;
}

Latent random_latent(std::int64_t c, std::int64_t h, std::int64_t w, unsigned seed) {
  return {c, h, w, testing::random_vector(static_cast<std::size_t>(c * h * w), seed)};
}

FloatImage random_image(std::int64_t h, std::int64_t w, unsigned seed) {
  auto v = testing::random_vector(static_cast<std::size_t>(h * w * 3), seed, 0.5f);
  for (float& x : v) x = std::clamp(x, -1.0f, 1.0f);
  return {h, w, v};
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Vae, TinyRandomDecodeAndEncodeMatchTorch) {
  HEARTH_REQUIRE_TORCH();
  TempDir tmp;
  make_tiny(tmp.path());
  if (HasFatalFailure()) return;
  const Latent z = random_latent(16, 6, 5, 1);
  testing::save_npy(tmp / "z.npy", z.data, {16, 6, 5});
  const FloatImage img = random_image(24, 20, 2);
  testing::save_npy(tmp / "img.npy", img.data, {24, 20, 3});
  const auto want_img = testing::run_vae_reference(
      cat({"kl --model ", quote(tmp / "vae"), " --decode ", quote(tmp / "z.npy")}),
      tmp / "ref_img.npy");
  const auto want_z = testing::run_vae_reference(
      cat({"kl --model ", quote(tmp / "vae"), " --encode ", quote(tmp / "img.npy")}),
      tmp / "ref_z.npy");
  ASSERT_FALSE(want_img.empty());
  ASSERT_FALSE(want_z.empty());
  for (const SimdLevel level : testing::simd_levels()) {
    ThreadPool pool(2);
    auto be = kernels::make_cpu_backend(pool, level);
    const Vae vae = Vae::load(tmp / "vae", *be);
    EXPECT_EQ(vae.layout(), VaeLayout::kDiffusers);
    EXPECT_EQ(vae.config().downscale(), 4);
    const FloatImage out = vae.decode(z);
    ASSERT_EQ(out.height, 24);
    ASSERT_EQ(out.width, 20);
    // f32 against float64 (observed about 3e-6) through 27 convolutions, 14 group norms and two
    // attentions.
    const double d_img = testing::max_abs_diff(out.data, want_img);
    EXPECT_LT(d_img, 2e-5) << to_string(level);
    const Latent enc = vae.encode(img);
    ASSERT_EQ(enc.channels, 16);
    ASSERT_EQ(enc.height, 6);
    ASSERT_EQ(enc.width, 5);
    const double d_z = testing::max_abs_diff(enc.data, want_z);
    EXPECT_LT(d_z, 2e-5) << to_string(level);
    std::printf("%s: max |hearth - torch| decode %.2e, encode %.2e\n", to_string(level), d_img,
                d_z);
  }
}

TEST(Vae, DiffusersAndBflLayoutsGiveIdenticalOutput) {
  TempDir tmp;
  make_tiny(tmp.path());
  if (HasFatalFailure()) return;
  ThreadPool pool(2);
  auto be = kernels::make_cpu_backend(pool);
  const Vae d = Vae::load(tmp.path(), *be);  // the pipeline folder: finds vae/
  const Vae b = Vae::load(tmp / "ae.safetensors", *be);
  EXPECT_EQ(d.layout(), VaeLayout::kDiffusers);
  EXPECT_EQ(b.layout(), VaeLayout::kBfl);
  EXPECT_EQ(b.config().block_out_channels, d.config().block_out_channels);
  EXPECT_EQ(b.config().layers_per_block, 1);
  EXPECT_EQ(b.config().latent_channels, 16);
  EXPECT_FLOAT_EQ(b.config().scaling_factor, 0.3611f);
  EXPECT_FLOAT_EQ(b.config().shift_factor, 0.1159f);
  const Latent z = random_latent(16, 4, 4, 3);
  const FloatImage a = d.decode(z);
  EXPECT_EQ(a.data, b.decode(z).data);
  const FloatImage img = random_image(16, 16, 4);
  EXPECT_EQ(d.encode(img).data, b.encode(img).data);
  // Half-precision files of the same weights are close, not equal.
  make_tiny(tmp / "bf16", "--dtype bf16 --layout bfl");
  if (HasFatalFailure()) return;
  const Vae h = Vae::load(tmp / "bf16" / "ae.safetensors", *be);
  const double diff = testing::max_abs_diff(h.decode(z).data, a.data);
  EXPECT_GT(diff, 0.0);
  EXPECT_LT(diff, 0.2);
}

// mflux's saved vae/ (channels-last convolutions, conv_in.conv2d names, no config): the same
// weights as the diffusers twin hearth-make-vae writes beside it decode and encode bit for bit,
// unquantized and with the attention's linears MLX-quantized (the twin holds their dequantized
// values, so the comparison is exact there too).
TEST(Vae, MfluxLayoutGivesIdenticalOutput) {
  TempDir tmp;
  ThreadPool pool(2);
  auto be = kernels::make_cpu_backend(pool);
  const Latent z = random_latent(16, 4, 4, 3);
  const FloatImage img = random_image(16, 16, 4);
  std::vector<float> plain;
  for (const auto& [bits, dtype] : {std::pair{0, "bf16"}, std::pair{8, "f32"}, {4, "bf16"}}) {
    const fs::path dir = tmp / (std::to_string(bits) + dtype);
    make_tiny(dir, cat({"--layout mflux --dtype ", dtype, " --mlx-bits ", std::to_string(bits)}));
    if (HasFatalFailure()) return;
    const Vae m = Vae::load(dir / "mflux", *be);  // the model folder: finds vae/
    const Vae d = Vae::load(dir / "vae", *be);
    EXPECT_EQ(m.layout(), VaeLayout::kMflux);
    EXPECT_EQ(std::string(to_string(m.layout())), "mflux");
    EXPECT_EQ(m.config().block_out_channels, d.config().block_out_channels);
    EXPECT_EQ(m.config().layers_per_block, 1);
    EXPECT_EQ(m.config().latent_channels, 16);
    EXPECT_FLOAT_EQ(m.config().scaling_factor, 0.3611f);
    const FloatImage a = m.decode(z);
    EXPECT_EQ(a.data, d.decode(z).data) << bits;
    EXPECT_EQ(m.encode(img).data, d.encode(img).data) << bits;
    if (bits == 0) plain = a.data;
    if (bits == 4) {
      // 4-bit attention weights move the image, but not far: the attention is one block of the
      // decoder's mid section, behind a residual.
      const double diff = testing::max_abs_diff(a.data, plain);
      EXPECT_GT(diff, 0.0);
      EXPECT_LT(diff, 0.5);
    }
  }
}

// The mflux shard rewritten with one tensor changed or dropped.
void rewrite_shard(const fs::path& file, const std::string& name, const Shape* new_shape) {
  const auto f = formats::SafetensorsFile::open(file);
  formats::SafetensorsWriter w;
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  std::vector<std::vector<std::byte>> bytes;
  bytes.reserve(f.tensors().size());
  for (const auto& t : f.tensors()) {
    if (t.name == name && new_shape == nullptr) continue;
    const TensorView v = f.view(t);
    bytes.emplace_back(v.data, v.data + v.nbytes);
    w.add_tensor(t.name, t.dtype, t.name == name ? *new_shape : t.shape, bytes.back());
  }
  w.write(file.string() + ".new");
  fs::rename(file.string() + ".new", file);
}

TEST(Vae, BrokenMfluxFoldersNameFileAndTensor) {
  TempDir tmp;
  make_tiny(tmp.path(), "--layout mflux --mlx-bits 8");
  if (HasFatalFailure()) return;
  ThreadPool pool(1);
  auto be = kernels::make_cpu_backend(pool);
  const fs::path shard = tmp / "mflux" / "vae" / "0.safetensors";
  // A convolution in PyTorch's [out, in, kh, kw] order instead of MLX's [out, kh, kw, in].
  const Shape torch_order{64, 64, 3, 3};
  rewrite_shard(shard, "decoder.mid_block.resnets.0.conv1.weight", &torch_order);
  std::string msg = error_of([&] { Vae::load(tmp / "mflux", *be); });
  EXPECT_NE(msg.find("0.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("decoder.mid_block.resnets.0.conv1.weight has shape [64, 64, 3, 3], expected "
                     "[64, 3, 3, 64]"),
            std::string::npos)
      << msg;
  make_tiny(tmp.path(), "--layout mflux --mlx-bits 8");
  if (HasFatalFailure()) return;
  rewrite_shard(shard, "encoder.mid_block.attentions.0.to_k.scales", nullptr);
  msg = error_of([&] { Vae::load(tmp / "mflux" / "vae", *be); });
  EXPECT_NE(msg.find("0.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("encoder.mid_block.attentions.0.to_k.scales is missing"), std::string::npos)
      << msg;
  make_tiny(tmp.path(), "--layout mflux --mlx-bits 8");
  if (HasFatalFailure()) return;
  rewrite_shard(shard, "decoder.up_blocks.1.resnets.0.conv2.bias", nullptr);
  msg = error_of([&] { Vae::load(tmp / "mflux", *be); });
  EXPECT_NE(msg.find("0.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensor decoder.up_blocks.1.resnets.0.conv2.bias"), std::string::npos)
      << msg;
  fs::remove(shard);
  fs::copy_file(tmp / "vae" / "diffusion_pytorch_model.safetensors",
                tmp / "mflux" / "vae" / "x.safetensors");
  // No mflux metadata in the remaining shard, and no config.json: not an mflux folder.
  msg = error_of([&] { Vae::load(tmp / "mflux", *be); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
}

TEST(Vae, PackingIsDiffusersPackLatents) {
  const Latent z = random_latent(3, 4, 6, 5);
  const std::vector<float> tokens = pack_latents(z);
  ASSERT_EQ(tokens.size(), z.data.size());
  // Token (1, 2) of the 2 x 3 grid, feature c * 4 + dy * 2 + dx, from pixel (2 + dy, 4 + dx).
  for (int c = 0; c < 3; ++c) {
    for (int dy = 0; dy < 2; ++dy) {
      for (int dx = 0; dx < 2; ++dx) {
        EXPECT_EQ(tokens[(1 * 3 + 2) * 12 + c * 4 + dy * 2 + dx],
                  z.data[(c * 4 + 2 + dy) * 6 + 4 + dx]);
      }
    }
  }
  const Latent back = unpack_latents(tokens.data(), 3, 4, 6);
  EXPECT_EQ(back.data, z.data);
  EXPECT_THROW(pack_latents(random_latent(1, 3, 4, 6)), Error);
  EXPECT_THROW(unpack_latents(tokens.data(), 3, 4, 5), Error);
}

TEST(Vae, BrokenFilesAndInputsGiveClearErrors) {
  TempDir tmp;
  make_tiny(tmp.path());
  if (HasFatalFailure()) return;
  ThreadPool pool(1);
  auto be = kernels::make_cpu_backend(pool);
  const Vae vae = Vae::load(tmp / "vae", *be);
  EXPECT_NE(error_of([&] { vae.decode(random_latent(4, 4, 4, 1)); }).find("16 latent channels"),
            std::string::npos);
  EXPECT_NE(error_of([&] { vae.encode(random_image(18, 16, 1)); }).find("multiples of 4"),
            std::string::npos);
  // A config with a missing block: the first absent tensor is named with its file.
  const fs::path cfg = tmp / "vae" / "config.json";
  auto j = nlohmann::json::parse(formats::read_text_file(cfg));
  j["block_out_channels"] = {32, 64, 64, 64};
  std::ofstream(cfg) << j.dump();
  std::string msg = error_of([&] { Vae::load(tmp / "vae", *be); });
  EXPECT_NE(msg.find("diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing tensor encoder.down_blocks.2.downsamplers.0.conv.weight"),
            std::string::npos)
      << msg;
  j["block_out_channels"] = {32, 48};
  std::ofstream(cfg) << j.dump();
  msg = error_of([&] { Vae::load(tmp / "vae", *be); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  j["block_out_channels"] = {32, 64, 32};
  std::ofstream(cfg) << j.dump();
  msg = error_of([&] { Vae::load(tmp / "vae", *be); });
  EXPECT_NE(msg.find("expected"), std::string::npos) << msg;
  std::ofstream(cfg) << "{not json";
  EXPECT_NE(error_of([&] { Vae::load(tmp / "vae", *be); }).find("malformed JSON"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Vae::load(tmp / "nowhere", *be); }).find("nowhere"), std::string::npos);
}

}  // namespace
}  // namespace hearth::models
