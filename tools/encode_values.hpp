// The model makers' one way to store f32 values as f32, f16 or bf16 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hearth/tensor/dtype.hpp"
#include "hearth/tensor/half.hpp"

// v's values in dtype (kF32, kF16; anything else is stored as bf16), little-endian.
inline std::vector<std::byte> encode(const std::vector<float>& v, hearth::DType dtype) {
  std::vector<std::byte> out;
  if (dtype == hearth::DType::kF32) {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
  }
  std::vector<std::uint16_t> h(v.size());
  if (dtype == hearth::DType::kF16) {
    hearth::f32_to_f16(v.data(), h.data(), v.size());
  } else {
    hearth::f32_to_bf16(v.data(), h.data(), v.size());
  }
  out.resize(h.size() * 2);
  std::memcpy(out.data(), h.data(), out.size());
  return out;
}
