#include "hearth/tensor/mlx_quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "hearth/tensor/half.hpp"

namespace hearth::mlx {

bool valid_bits(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
}

bool valid_group_size(int group) {
  return group == 32 || group == 64 || group == 128;
}

void pack_codes(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* packed) {
  std::memset(packed, 0, static_cast<std::size_t>(packed_row_bytes(n, bits)));
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t bit = i * bits;
    const std::uint32_t v = static_cast<std::uint32_t>(codes[i]) << (bit % 8);
    packed[bit / 8] |= static_cast<std::uint8_t>(v);
    if (bit % 8 + bits > 8) packed[bit / 8 + 1] |= static_cast<std::uint8_t>(v >> 8);
  }
}

void unpack_codes(const std::uint8_t* packed, std::int64_t n, int bits, std::uint8_t* codes) {
  for (std::int64_t i = 0; i < n; ++i)
    codes[i] = static_cast<std::uint8_t>(unpack_code(packed, i, bits));
}

void quantize_row(const float* w, std::int64_t n, int bits, int group_size, std::uint8_t* packed,
                  float* scales, float* biases) {
  const float levels = static_cast<float>((1 << bits) - 1);
  std::memset(packed, 0, static_cast<std::size_t>(packed_row_bytes(n, bits)));
  for (std::int64_t g = 0; g * group_size < n; ++g) {
    const float* x = w + g * group_size;
    float lo = std::numeric_limits<float>::infinity();
    float hi = -lo;
    for (int i = 0; i < group_size; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    const bool min_edge = std::fabs(lo) > std::fabs(hi);
    float scale = std::max((hi - lo) / levels, 1e-7f);
    scale = min_edge ? scale : -scale;
    const float edge = min_edge ? lo : hi;
    const float q0 = std::rint(edge / scale);
    float bias = 0.0f;
    if (q0 != 0.0f) {
      scale = edge / q0;
      bias = edge;
    }
    scales[g] = scale;
    biases[g] = bias;
    for (int i = 0; i < group_size; ++i) {
      const float q = std::clamp(std::rint((x[i] - bias) / scale), 0.0f, levels);
      const std::int64_t bit = (g * group_size + i) * bits;
      const std::uint32_t v = static_cast<std::uint32_t>(q) << (bit % 8);
      packed[bit / 8] |= static_cast<std::uint8_t>(v);
      if (bit % 8 + bits > 8) packed[bit / 8 + 1] |= static_cast<std::uint8_t>(v >> 8);
    }
  }
}

float read_scale(DType t, const void* row, std::int64_t g) {
  const auto* p = static_cast<const unsigned char*>(row);
  if (t == DType::kF32) {
    float f;
    std::memcpy(&f, p + g * 4, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, p + g * 2, 2);
  return t == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
}

void dequantize_row(const std::uint8_t* packed, std::int64_t n, int bits, int group_size,
                    DType scale_dtype, const void* scales, const void* biases, float* out) {
  for (std::int64_t g = 0; g * group_size < n; ++g) {
    const float s = read_scale(scale_dtype, scales, g);
    const float b = read_scale(scale_dtype, biases, g);
    for (int i = 0; i < group_size; ++i) {
      const std::int64_t j = g * group_size + i;
      out[j] = s * static_cast<float>(unpack_code(packed, j, bits)) + b;
    }
  }
}

}  // namespace hearth::mlx
