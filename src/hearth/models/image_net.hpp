// What the image models (the FLUX.1 VAE in vae.cpp, the tiny autoencoders in taesd.cpp) share:
// latents and float images, and ImageNet, the skeleton that reads their safetensors weights
// (f32/f16/bf16, converted to f32 at load; every shape checked, errors naming file and tensor)
// and runs convolutions, group norms and upsampling on a Backend over NHWC activations.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hearth/formats/safetensors.hpp"
#include "hearth/kernels/backend.hpp"

namespace hearth::models {

// A latent: channels x height x width, channels first (as torch, .npy files and the sampler
// keep it).
struct Latent {
  std::int64_t channels = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::vector<float> data;
};

// An RGB image of floats: height x width x 3, interleaved (HWC), top row first.
struct FloatImage {
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::vector<float> data;
};

// NHWC activations: height x width pixels of channels floats.
struct Activations {
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::int64_t channels = 0;
  std::vector<float> data;
  std::int64_t pixels() const { return height * width; }
};

Activations from_chw(const Latent& latent);
Latent to_chw(const Activations& a);

class ImageNet {
 public:
  struct Conv {
    std::unique_ptr<kernels::ConvWeights> w;
  };
  struct Norm {
    std::vector<float> gamma, beta;
    std::int64_t groups = 0;
    float eps = 1e-6f;
  };

  ImageNet(kernels::Backend& backend, const std::filesystem::path& file);

  const std::string& source() const { return file_.source(); }
  const formats::SafetensorsFile& file() const { return file_; }
  bool has(const std::string& name) const { return file_.find_tensor(name) != nullptr; }
  // The tensor's shape (kNotFound naming the file and tensor when absent).
  const Shape& shape(const std::string& name) const;
  // The tensor as f32, checked against shape (kFormat naming file, tensor and both shapes).
  std::vector<float> f32(const std::string& name, const Shape& expect) const;

  // name.weight [out, in, k, k] (or [out, in] for a linear layer stored as a 1x1 conv's weight
  // when k is 1) and name.bias [out] when bias. With channels_last (MLX's Conv2d, as mflux saves
  // it) a 4-D weight is [out, k, k, in] and is transposed at load.
  void set_channels_last(bool channels_last) { channels_last_ = channels_last; }
  Conv conv(const std::string& name, std::int64_t out, std::int64_t in, kernels::ConvShape shape,
            bool bias = true) const;
  Norm norm(const std::string& name, std::int64_t channels, std::int64_t groups, float eps) const;

  kernels::Backend& backend() const { return backend_; }

  // y = act(conv(x) + residual) over x's pixels; residual may be null.
  Activations run(const Conv& c, const Activations& x, const Activations* residual = nullptr,
                  kernels::Activation act = kernels::Activation::kNone) const;
  // In place.
  void run(const Norm& n, Activations& x, kernels::Activation act) const;
  Activations upsample(const Activations& x) const;

 private:
  kernels::Backend& backend_;
  formats::SafetensorsFile file_;
  bool channels_last_ = false;
};

}  // namespace hearth::models
