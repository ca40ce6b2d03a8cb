// GGUF (llama.cpp's model file), versions 2 and 3, little-endian.
//
// Layout: magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, then kv_count metadata
// entries (string key, u32 type, value), then tensor_count tensor infos (string name, u32 n_dims,
// u64 dims[n_dims] innermost first, u32 ggml type, u64 offset), then padding to general.alignment
// (default 32) and the tensor data. The reader validates all of it against the file size before
// any allocation that depends on a count, and gives zero-copy views into the mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "hearth/core/mapped_file.hpp"
#include "hearth/formats/writer_util.hpp"
#include "hearth/tensor/tensor.hpp"

namespace hearth::formats {

// Value type ids as stored in the file. The order matches GGUFValue::Storage's alternatives.
enum class GGUFType : std::uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* gguf_type_name(GGUFType t);

struct GGUFArray;

// A metadata value: a scalar, a string, or an array (typed, possibly nested).
class GGUFValue {
 public:
  using Storage =
      std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t,
                   std::int32_t, float, bool, std::string, std::shared_ptr<const GGUFArray>,
                   std::uint64_t, std::int64_t, double>;

  GGUFValue() = default;
  template <class T>
  requires std::is_constructible_v<Storage, T> GGUFValue(T v)
      : v_(std::move(v)) {}  // NOLINT: implicit by design
  GGUFValue(const char* s) : v_(std::string(s)) {}
  GGUFValue(GGUFArray array);

  GGUFType type() const { return static_cast<GGUFType>(v_.index()); }
  const Storage& storage() const { return v_; }

  template <class T>
  const T* get_if() const {
    return std::get_if<T>(&v_);
  }

  // Any integer type whose value fits; bool is not an integer here.
  std::optional<std::int64_t> as_int() const;
  std::optional<std::uint64_t> as_uint() const;
  // Any numeric type.
  std::optional<double> as_number() const;
  const std::string* as_string() const { return std::get_if<std::string>(&v_); }
  const GGUFArray* as_array() const;

  // Human form for dumps: strings quoted, arrays shown up to max_items then "... (N items)".
  std::string to_display(std::size_t max_items = 8) const;

  bool operator==(const GGUFValue& other) const;

 private:
  Storage v_;
};

struct GGUFArray {
  using Items =
      std::variant<std::vector<std::uint8_t>, std::vector<std::int8_t>, std::vector<std::uint16_t>,
                   std::vector<std::int16_t>, std::vector<std::uint32_t>, std::vector<std::int32_t>,
                   std::vector<float>, std::vector<bool>, std::vector<std::string>,
                   std::vector<GGUFArray>, std::vector<std::uint64_t>, std::vector<std::int64_t>,
                   std::vector<double>>;
  Items items;

  GGUFType elem_type() const { return static_cast<GGUFType>(items.index()); }
  std::size_t size() const;
  template <class T>
  const std::vector<T>* get_if() const {
    return std::get_if<std::vector<T>>(&items);
  }
  bool operator==(const GGUFArray& other) const { return items == other.items; }
};

struct GGUFTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;               // outermost first (GGUF's dims reversed)
  std::uint64_t offset = 0;  // from the start of the data section
  std::uint64_t nbytes = 0;
};

class GGUFFile {
 public:
  // Maps and parses the file. Errors name the file and the byte offset.
  static GGUFFile open(const std::filesystem::path& path);
  // Parses bytes that the caller keeps alive for the lifetime of the result (fuzzing, tests).
  static GGUFFile parse(std::span<const std::byte> bytes, std::string source);

  const std::string& source() const { return source_; }
  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::uint64_t file_size() const { return bytes_.size(); }

  const std::vector<std::pair<std::string, GGUFValue>>& metadata() const { return kv_; }
  const GGUFValue* find(std::string_view key) const;
  // Required values: throw Error(kNotFound or kFormat) naming the file and the key.
  const GGUFValue& at(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::int64_t get_int(std::string_view key) const;
  double get_number(std::string_view key) const;
  const GGUFArray& get_array(std::string_view key) const;

  // general.architecture, or "" when absent.
  std::string architecture() const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find_tensor(std::string_view name) const;
  TensorView view(const GGUFTensorInfo& info) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  std::span<const std::byte> bytes_;
  std::string source_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::unordered_map<std::string, std::size_t> kv_index_;
  std::vector<GGUFTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;

  friend class GGUFParser;
};

// Builds GGUF files: metadata in insertion order, tensors laid out at general.alignment (if set,
// else 32). Tensor bytes are referenced, not copied: keep them alive until write returns.
class GGUFWriter {
 public:
  explicit GGUFWriter(std::uint32_t version = 3);

  void set(std::string key, GGUFValue value);  // replaces an existing key in place
  void add_tensor(std::string name, DType dtype, Shape shape, std::span<const std::byte> data);

  std::vector<std::byte> serialize() const;
  // Writes to a temporary file beside path, then renames it over path.
  void write(const std::filesystem::path& path) const;

 private:
  void emit(const std::function<void(const void*, std::size_t)>& out) const;

  std::uint32_t version_;
  std::vector<std::pair<std::string, GGUFValue>> kv_;
  std::vector<detail::PendingTensor> tensors_;
};

}  // namespace hearth::formats
