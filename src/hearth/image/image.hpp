// 8-bit RGB images and their conversion to and from the float images the models work on (HWC:
// row-major pixels of three interleaved channels).
#pragma once

#include <cstdint>
#include <vector>

namespace hearth::image {

struct Image8 {
  std::int64_t width = 0;
  std::int64_t height = 0;
  std::vector<std::uint8_t> rgb;  // height x width x 3, top row first
};

// A VAE's output in [-1, 1] to 8 bits as the diffusers pipelines do (VaeImageProcessor
// .postprocess): x / 2 + 0.5 clamped to [0, 1], times 255, rounded half to even (numpy's round).
Image8 to_u8_signed(const float* hwc, std::int64_t height, std::int64_t width);
// The same for an image in [0, 1] (the tiny autoencoders): clamped, times 255, rounded.
Image8 to_u8_unit(const float* hwc, std::int64_t height, std::int64_t width);

// 8 bits to the model's input range: v / 255 * 2 - 1 (diffusers' preprocess) or v / 255.
std::vector<float> to_f32_signed(const Image8& image);
std::vector<float> to_f32_unit(const Image8& image);

// Peak signal-to-noise ratio of b against a in dB over every channel value (255 peak); infinity
// when they are equal. The sizes must match (kInvalidArgument).
double psnr(const Image8& a, const Image8& b);

// Images of one size side by side, row by row, in columns columns (0: the smallest count whose
// square holds them all); cells left over are black. kInvalidArgument when there are none or
// their sizes differ.
Image8 grid(const std::vector<Image8>& images, std::int64_t columns = 0);

}  // namespace hearth::image
