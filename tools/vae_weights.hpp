// Random-weight FLUX.1-style AutoencoderKLs for tests (hearth-make-vae, hearth-make-model --arch
// flux-pipeline), the same weights in both layouts hearth reads: a diffusers vae/ folder
// (config.json + diffusion_pytorch_model.safetensors), Black Forest Labs' ae.safetensors and
// mflux's saved vae/ folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "hearth/tensor/dtype.hpp"

struct VaeShape {
  std::vector<std::int64_t> channels = {32, 64};  // block_out_channels (FLUX.1: 128,256,512,512)
  std::int64_t layers = 1;                        // layers_per_block (FLUX.1: 2)
  std::int64_t latent = 16;                       // latent_channels
  std::int64_t groups = 32;                       // norm_num_groups (BFL files: 32)
};

// Writes the diffusers folder vae_dir and / or the BFL file ae_file (an empty path: not that
// layout). Weights are drawn per tensor from N(0, 1 / fan_in) for convolutions and linears
// (activations stay O(1) through the depth), gamma ~ 1 + N(0, 0.1^2), betas and biases
// ~ N(0, 0.1^2).
void write_random_vae(const std::filesystem::path& vae_dir, const std::filesystem::path& ae_file,
                      hearth::DType dtype, const VaeShape& shape, unsigned seed);

// mflux's saved vae/ (what mflux-save writes): the same weights under diffusers' names but
// conv_in.conv2d, conv_out.conv2d and conv_norm_out.norm, every convolution channels-last
// [out, kh, kw, in], one shard 0.safetensors with mflux's metadata (quantization_level "None",
// or bits) and model.safetensors.index.json, no config.json. bits 4 or 8: the attention's linears
// (mflux quantizes every nn.Linear, nn.Conv2d has no quantized form) MLX-affine, group 64, by
// hearth's quantizer (codes U32, scales and biases in dtype); 0: none. twin_vae_dir (or empty):
// a diffusers vae/ folder holding exactly the weights the mflux folder stores (the quantized
// linears as their dequantized values, f32), so both must decode identically.
void write_random_vae_mflux(const std::filesystem::path& dir,
                            const std::filesystem::path& twin_vae_dir, hearth::DType dtype,
                            const VaeShape& shape, unsigned seed, int bits);
