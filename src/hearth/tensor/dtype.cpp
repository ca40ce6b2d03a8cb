#include "hearth/tensor/dtype.hpp"

#include <array>
#include <cctype>
#include <limits>

namespace hearth {
namespace {

struct Entry {
  DTypeInfo info;
  int ggml_id;                   // -1: no ggml id
  std::string_view safetensors;  // empty: not a safetensors dtype
};

constexpr int kN = static_cast<int>(DType::kCount);

// Block layouts follow ggml's block_* structs (QK_K = 256).
constexpr std::array<Entry, kN> kTable = {{
    {{"f64", 1, 8, false}, 28, "F64"},
    {{"f32", 1, 4, false}, 0, "F32"},
    {{"f16", 1, 2, false}, 1, "F16"},
    {{"bf16", 1, 2, false}, 30, "BF16"},
    {{"f8_e4m3", 1, 1, false}, -1, "F8_E4M3"},
    {{"f8_e5m2", 1, 1, false}, -1, "F8_E5M2"},
    {{"i64", 1, 8, false}, 27, "I64"},
    {{"i32", 1, 4, false}, 26, "I32"},
    {{"i16", 1, 2, false}, 25, "I16"},
    {{"i8", 1, 1, false}, 24, "I8"},
    {{"u64", 1, 8, false}, -1, "U64"},
    {{"u32", 1, 4, false}, -1, "U32"},
    {{"u16", 1, 2, false}, -1, "U16"},
    {{"u8", 1, 1, false}, -1, "U8"},
    {{"bool", 1, 1, false}, -1, "BOOL"},
    {{"q4_0", 32, 2 + 16, true}, 2, ""},
    {{"q4_1", 32, 2 + 2 + 16, true}, 3, ""},
    {{"q5_0", 32, 2 + 4 + 16, true}, 6, ""},
    {{"q5_1", 32, 2 + 2 + 4 + 16, true}, 7, ""},
    {{"q8_0", 32, 2 + 32, true}, 8, ""},
    {{"q8_1", 32, 2 + 2 + 32, true}, 9, ""},
    {{"q2_K", 256, 16 + 64 + 2 + 2, true}, 10, ""},
    {{"q3_K", 256, 32 + 64 + 12 + 2, true}, 11, ""},
    {{"q4_K", 256, 2 + 2 + 12 + 128, true}, 12, ""},
    {{"q5_K", 256, 2 + 2 + 12 + 32 + 128, true}, 13, ""},
    {{"q6_K", 256, 128 + 64 + 16 + 2, true}, 14, ""},
    {{"q8_K", 256, 4 + 256 + 32, true}, 15, ""},
    {{"iq2_xxs", 256, 2 + 64, true}, 16, ""},
    {{"iq2_xs", 256, 2 + 64 + 8, true}, 17, ""},
    {{"iq3_xxs", 256, 2 + 64 + 32, true}, 18, ""},
    {{"iq1_s", 256, 2 + 32 + 16, true}, 19, ""},
    {{"iq4_nl", 32, 2 + 16, true}, 20, ""},
    {{"iq3_s", 256, 2 + 64 + 32 + 8 + 4, true}, 21, ""},
    {{"iq2_s", 256, 2 + 64 + 16, true}, 22, ""},
    {{"iq4_xs", 256, 2 + 2 + 128 + 4, true}, 23, ""},
    {{"iq1_m", 256, 32 + 16 + 8, true}, 29, ""},
    {{"tq1_0", 256, 2 + 4 * 13, true}, 34, ""},
    {{"tq2_0", 256, 2 + 64, true}, 35, ""},
    {{"mxfp4", 32, 1 + 16, true}, 39, ""},
}};

const Entry& entry(DType t) {
  return kTable[static_cast<std::size_t>(t)];
}

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

const DTypeInfo& dtype_info(DType t) {
  return entry(t).info;
}

std::optional<std::uint64_t> dtype_bytes(DType t, std::uint64_t n_elements) {
  const DTypeInfo& info = dtype_info(t);
  if (n_elements % info.block_size != 0) return std::nullopt;
  const std::uint64_t blocks = n_elements / info.block_size;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / info.block_bytes) return std::nullopt;
  return blocks * info.block_bytes;
}

std::optional<DType> dtype_from_ggml(std::uint32_t ggml_type) {
  for (int i = 0; i < kN; ++i) {
    if (kTable[i].ggml_id >= 0 && static_cast<std::uint32_t>(kTable[i].ggml_id) == ggml_type) {
      return static_cast<DType>(i);
    }
  }
  return std::nullopt;
}

std::optional<std::uint32_t> ggml_type_of(DType t) {
  const int id = entry(t).ggml_id;
  if (id < 0) return std::nullopt;
  return static_cast<std::uint32_t>(id);
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (int i = 0; i < kN; ++i) {
    if (!kTable[i].safetensors.empty() && kTable[i].safetensors == name) {
      return static_cast<DType>(i);
    }
  }
  return std::nullopt;
}

std::optional<std::string_view> safetensors_name_of(DType t) {
  if (entry(t).safetensors.empty()) return std::nullopt;
  return entry(t).safetensors;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (int i = 0; i < kN; ++i) {
    if (iequal(kTable[i].info.name, name)) return static_cast<DType>(i);
  }
  return std::nullopt;
}

}  // namespace hearth
