// MLX affine quantization (the format of mlx-community's 2/3/4/5/6/8-bit models), written from
// MLX's description of it: a row of n weights is cut into groups of group_size (32, 64 or 128)
// consecutive inputs; each group has a scale s and a bias b (stored f16, bf16 or f32 in their own
// [rows, n / group_size] tensors) and every weight a code q in [0, 2^bits - 1]:
//
//   w ≈ s * q + b
//
// Codes are packed as one little-endian bit stream per row: code i occupies bits
// [i * bits, (i + 1) * bits) of the row's bytes, lowest bit first (for 2, 4 and 8 bits that is
// "low bits first within each uint32 word"; 3, 5 and 6 bits straddle bytes and words). A row of n
// codes takes n * bits / 8 bytes (n * bits / 32 uint32 words: n is a multiple of 32).
//
// MLX's quantizer, which quantize_row follows: per group, the edge is the extreme of larger
// magnitude (min when |min| > |max|, else max); s = max((max - min) / (2^bits - 1), 1e-7), negated
// when the edge is the max; q0 = round(edge / s); when q0 != 0, s = edge / q0 and b = edge (so
// w = 0 sits on the code -q0: zero is exactly representable), else b = 0. Codes are
// round((w - b) / s) clamped to the range. The scale is negative wherever the maximum has the
// larger magnitude: nothing may assume s > 0.
#pragma once

#include <cstdint>

#include "hearth/tensor/dtype.hpp"

namespace hearth::mlx {

bool valid_bits(int bits);         // 2, 3, 4, 5, 6, 8
bool valid_group_size(int group);  // 32, 64, 128

// Bytes of one packed row of n codes (n * bits / 8; n a multiple of 32 makes it whole words).
inline std::int64_t packed_row_bytes(std::int64_t n, int bits) {
  return n * bits / 8;
}

// Code i of a packed row.
inline std::uint32_t unpack_code(const std::uint8_t* packed, std::int64_t i, int bits) {
  const std::int64_t bit = i * bits;
  const std::uint8_t* p = packed + bit / 8;
  const int shift = static_cast<int>(bit % 8);
  // At most 8 + 7 = 15 bits from the first byte on: two bytes always hold the code.
  std::uint32_t v = p[0];
  if (shift + bits > 8) v |= static_cast<std::uint32_t>(p[1]) << 8;
  return (v >> shift) & ((1u << bits) - 1u);
}

// codes[0:n] (each < 2^bits) into packed (packed_row_bytes(n, bits) bytes, overwritten).
void pack_codes(const std::uint8_t* codes, std::int64_t n, int bits, std::uint8_t* packed);
void unpack_codes(const std::uint8_t* packed, std::int64_t n, int bits, std::uint8_t* codes);

// Quantizes one row of n weights (n a multiple of group_size) the way MLX does: codes into packed
// (packed_row_bytes(n, bits) bytes), one scale and bias per group (f32; the caller rounds them to
// the stored type, as MLX does, after the codes were chosen with the f32 values).
void quantize_row(const float* w, std::int64_t n, int bits, int group_size, std::uint8_t* packed,
                  float* scales, float* biases);

// out[i] = s[g] * q[i] + b[g] for the n weights of a packed row; scales and biases of
// scale_dtype (kF16, kBF16 or kF32), n / group_size of each.
void dequantize_row(const std::uint8_t* packed, std::int64_t n, int bits, int group_size,
                    DType scale_dtype, const void* scales, const void* biases, float* out);

// Element g of a scales/biases row of type t (kF16, kBF16 or kF32) at any byte address.
float read_scale(DType t, const void* row, std::int64_t g);

}  // namespace hearth::mlx
