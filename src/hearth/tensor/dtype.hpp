// Element types of every tensor hearth reads: plain numeric types (safetensors, GGUF) and every
// block-quantized ggml type. Block types are described (block size, bytes per block) even when no
// kernel computes with them yet, so readers can size and validate them.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace hearth {

enum class DType : std::uint8_t {
  // plain types
  kF64,
  kF32,
  kF16,
  kBF16,
  kF8E4M3,
  kF8E5M2,
  kI64,
  kI32,
  kI16,
  kI8,
  kU64,
  kU32,
  kU16,
  kU8,
  kBool,
  // ggml block-quantized types
  kQ4_0,
  kQ4_1,
  kQ5_0,
  kQ5_1,
  kQ8_0,
  kQ8_1,
  kQ2_K,
  kQ3_K,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kQ8_K,
  kIQ2_XXS,
  kIQ2_XS,
  kIQ3_XXS,
  kIQ1_S,
  kIQ4_NL,
  kIQ3_S,
  kIQ2_S,
  kIQ4_XS,
  kIQ1_M,
  kTQ1_0,
  kTQ2_0,
  kMXFP4,
  kCount,
};

struct DTypeInfo {
  std::string_view name;      // lower-case, as printed: "f32", "q4_K", "iq2_xxs"
  std::uint32_t block_size;   // elements per block (1 for plain types)
  std::uint32_t block_bytes;  // bytes per block
  bool quantized;
};

const DTypeInfo& dtype_info(DType t);
inline std::string_view dtype_name(DType t) {
  return dtype_info(t).name;
}

// Bytes for n elements (n must be a multiple of the block size; nullopt if not, or on overflow).
std::optional<std::uint64_t> dtype_bytes(DType t, std::uint64_t n_elements);

// ggml's numeric type ids (GGUF tensor infos). nullopt for ids that are unknown or were removed
// from ggml (4, 5, 31-33, 36-38).
std::optional<DType> dtype_from_ggml(std::uint32_t ggml_type);
std::optional<std::uint32_t> ggml_type_of(DType t);

// safetensors dtype strings ("F32", "BF16", "U8", ...).
std::optional<DType> dtype_from_safetensors(std::string_view name);
std::optional<std::string_view> safetensors_name_of(DType t);

// Parses any printed name ("f16", "q4_K", ...), case-insensitively.
std::optional<DType> dtype_from_name(std::string_view name);

}  // namespace hearth
