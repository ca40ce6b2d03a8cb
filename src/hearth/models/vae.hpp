// FLUX.1's 16-channel AutoencoderKL (the same graph as diffusers' AutoencoderKL and Black Forest
// Labs' ae.safetensors): ResNet blocks of GroupNorm + SiLU + 3x3 convolutions, a mid block with
// one single-head self-attention, stride-2 downsampling (zero padding after the image only) and
// nearest 2x upsampling. Three weight layouts are read: a diffusers `vae/` folder (config.json +
// diffusion_pytorch_model.safetensors), mflux's saved vae/ (see load) or BFL's single
// ae.safetensors, whose configuration is read off its tensor shapes (32 groups, eps 1e-6, FLUX.1's
// scale and shift, as BFL's code fixes them).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hearth/kernels/backend.hpp"
#include "hearth/models/image_net.hpp"

namespace hearth::models {

struct VaeConfig {
  std::int64_t in_channels = 3;
  std::int64_t out_channels = 3;
  std::int64_t latent_channels = 16;
  std::vector<std::int64_t> block_out_channels = {128, 256, 512, 512};
  std::int64_t layers_per_block = 2;
  std::int64_t norm_groups = 32;
  float eps = 1e-6f;
  bool mid_attention = true;
  // latents = (mean - shift_factor) * scaling_factor; decoding inverts it.
  float scaling_factor = 0.3611f;
  float shift_factor = 0.1159f;
  // Image pixels per latent pixel along each axis: 2^(blocks - 1).
  std::int64_t downscale() const { return std::int64_t{1} << (block_out_channels.size() - 1); }
};

enum class VaeLayout { kDiffusers, kBfl, kMflux };
const char* to_string(VaeLayout layout);

class Vae {
 public:
  // A diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors), a
  // pipeline folder holding one as vae/, or a BFL ae.safetensors file. kNotFound / kFormat /
  // kUnsupported errors name the file.
  // mflux's saved vae/ folder (found by its shard's quantization_level / mflux_version
  // metadata, no config.json) is read too: diffusers' names but conv_in.conv2d, conv_out.conv2d
  // and conv_norm_out.norm, convolutions channels-last [out, kh, kw, in] (transposed at load),
  // the attention's linears MLX affine when mflux quantized them (dequantized at load).
  static Vae load(const std::filesystem::path& path, kernels::Backend& backend);

  Vae(Vae&&) noexcept;
  Vae& operator=(Vae&&) noexcept;
  ~Vae();

  const VaeConfig& config() const;
  VaeLayout layout() const;
  const std::string& source() const;

  // Latents as the transformer makes them (scaled and shifted: [latent_channels, h, w]) to an
  // image of (h * downscale) x (w * downscale) pixels in about [-1, 1], as diffusers'
  // `vae.decode(latents / scaling_factor + shift_factor)` computes it.
  FloatImage decode(const Latent& latents) const;
  // An image in [-1, 1] (sides multiples of downscale(), checked) to scaled latents: the mean of
  // the encoder's distribution, (mean - shift_factor) * scaling_factor.
  Latent encode(const FloatImage& image) const;

 private:
  struct Impl;
  explicit Vae(std::unique_ptr<Impl> impl);
  static Vae load_mflux(const std::filesystem::path& dir, kernels::Backend& backend);
  std::unique_ptr<Impl> impl_;
};

// FLUX's 2x2 latent packing for the transformer (diffusers' _pack_latents): [C, H, W] to
// [(H / 2) * (W / 2), 4C] tokens, row-major over the half-resolution grid, token feature
// c * 4 + dy * 2 + dx. H and W must be even (kInvalidArgument).
std::vector<float> pack_latents(const Latent& latents);
// The inverse: tokens [(H / 2) * (W / 2), 4 * channels] to [channels, H, W].
Latent unpack_latents(const float* tokens, std::int64_t channels, std::int64_t height,
                      std::int64_t width);

}  // namespace hearth::models
