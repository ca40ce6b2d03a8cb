#include "hearth/image/image.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "hearth/core/error.hpp"

namespace hearth::image {
namespace {

Image8 quantize(const float* hwc, std::int64_t height, std::int64_t width, float scale,
                float offset) {
  Image8 out{width, height,
             std::vector<std::uint8_t>(static_cast<std::size_t>(height * width * 3))};
  for (std::size_t i = 0; i < out.rgb.size(); ++i) {
    const float unit = std::clamp(hwc[i] * scale + offset, 0.0f, 1.0f);
    // nearbyint rounds half to even in the default rounding mode, as numpy's round does.
    out.rgb[i] = static_cast<std::uint8_t>(std::nearbyint(unit * 255.0f));
  }
  return out;
}

std::vector<float> dequantize(const Image8& image, float scale, float offset) {
  std::vector<float> out(image.rgb.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<float>(image.rgb[i]) / 255.0f * scale + offset;
  }
  return out;
}

}  // namespace

Image8 to_u8_signed(const float* hwc, std::int64_t height, std::int64_t width) {
  return quantize(hwc, height, width, 0.5f, 0.5f);
}

Image8 to_u8_unit(const float* hwc, std::int64_t height, std::int64_t width) {
  return quantize(hwc, height, width, 1.0f, 0.0f);
}

std::vector<float> to_f32_signed(const Image8& image) {
  return dequantize(image, 2.0f, -1.0f);
}

std::vector<float> to_f32_unit(const Image8& image) {
  return dequantize(image, 1.0f, 0.0f);
}

double psnr(const Image8& a, const Image8& b) {
  if (a.width != b.width || a.height != b.height || a.rgb.size() != b.rgb.size() || a.rgb.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "PSNR of images of different or empty sizes");
  }
  double se = 0.0;
  for (std::size_t i = 0; i < a.rgb.size(); ++i) {
    const double d = static_cast<double>(a.rgb[i]) - static_cast<double>(b.rgb[i]);
    se += d * d;
  }
  if (se == 0.0) return std::numeric_limits<double>::infinity();
  const double mse = se / static_cast<double>(a.rgb.size());
  return 10.0 * std::log10(255.0 * 255.0 / mse);
}

Image8 grid(const std::vector<Image8>& images, std::int64_t columns) {
  if (images.empty()) throw Error(ErrorCode::kInvalidArgument, "a grid needs images");
  const std::int64_t n = static_cast<std::int64_t>(images.size());
  const std::int64_t w = images[0].width, h = images[0].height;
  for (const Image8& im : images) {
    if (im.width != w || im.height != h) {
      throw Error(ErrorCode::kInvalidArgument, "a grid's images must have one size");
    }
  }
  if (columns <= 0) {
    columns = 1;
    while (columns * columns < n) ++columns;
  }
  columns = std::min(columns, n);
  const std::int64_t rows = (n + columns - 1) / columns;
  Image8 out{w * columns, h * rows,
             std::vector<std::uint8_t>(static_cast<std::size_t>(w * columns * h * rows * 3))};
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t x0 = (k % columns) * w, y0 = (k / columns) * h;
    for (std::int64_t y = 0; y < h; ++y) {
      std::copy_n(images[k].rgb.begin() + y * w * 3, w * 3,
                  out.rgb.begin() + ((y0 + y) * out.width + x0) * 3);
    }
  }
  return out;
}

}  // namespace hearth::image
