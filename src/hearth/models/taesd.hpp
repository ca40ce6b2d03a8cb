// The tiny autoencoders of madebyollin/taesd (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2): 64-channel
// blocks of three 3x3 convolutions with ReLU and an identity skip, three stride-2 convolutions
// down (encoder) and three nearest 2x upsamplings up (decoder), tanh(x / 3) * 3 on the decoder
// input; TAEF2 adds a pooled branch (1x1 conv to 4x channels, GroupNorm(4) + ReLU, 1x1 conv back,
// added to the block's input) to the blocks at the latent resolution. Images are in [0, 1], latents
// are the raw latents of the big VAE (no scale or shift). Weights: the repository's
// nn.Sequential state dicts ("1.conv.0.weight", ...) as safetensors, encoder and decoder files
// apart; latent channels and the pooled branch are read off the tensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "hearth/kernels/backend.hpp"
#include "hearth/models/image_net.hpp"

namespace hearth::models {

class TinyAutoencoder {
 public:
  // Either file may be absent (encode or decode then throws kUnsupported).
  static TinyAutoencoder load(const std::optional<std::filesystem::path>& encoder,
                              const std::optional<std::filesystem::path>& decoder,
                              kernels::Backend& backend);
  // A folder with one *encoder.safetensors and one *decoder.safetensors (taef2_encoder...).
  static TinyAutoencoder load(const std::filesystem::path& folder, kernels::Backend& backend);

  TinyAutoencoder(TinyAutoencoder&&) noexcept;
  TinyAutoencoder& operator=(TinyAutoencoder&&) noexcept;
  ~TinyAutoencoder();

  std::int64_t latent_channels() const;
  static constexpr std::int64_t kDownscale = 8;

  // An image in [0, 1] (sides multiples of 8) to latents [channels, h / 8, w / 8].
  Latent encode(const FloatImage& image) const;
  // Latents to an image in about [0, 1] (not clamped).
  FloatImage decode(const Latent& latents) const;

 private:
  struct Impl;
  explicit TinyAutoencoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hearth::models
