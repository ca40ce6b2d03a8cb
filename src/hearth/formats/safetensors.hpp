// safetensors: u64 little-endian header length N, N bytes of JSON, then the tensor data.
// The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the data section) and may hold "__metadata__": {string: string}. The reader checks
// every entry against the file (dtype known, size = dtype x shape, in bounds, no overlap, no
// duplicate names) and gives zero-copy views into the mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hearth/core/mapped_file.hpp"
#include "hearth/formats/writer_util.hpp"
#include "hearth/tensor/tensor.hpp"

namespace hearth::formats {

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  std::uint64_t offset = 0;  // from the start of the data section
  std::uint64_t nbytes = 0;
};

class SafetensorsFile {
 public:
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

  static SafetensorsFile open(const std::filesystem::path& path);
  // Parses bytes that the caller keeps alive for the lifetime of the result.
  static SafetensorsFile parse(std::span<const std::byte> bytes, std::string source);

  const std::string& source() const { return source_; }
  std::uint64_t header_bytes() const { return data_offset_ - 8; }
  std::uint64_t data_offset() const { return data_offset_; }
  std::uint64_t file_size() const { return bytes_.size(); }

  // In header order.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  const std::string* find_metadata(std::string_view key) const;

  // In header order.
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
  const SafetensorsTensorInfo* find_tensor(std::string_view name) const;
  TensorView view(const SafetensorsTensorInfo& info) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  std::span<const std::byte> bytes_;
  std::string source_;
  std::uint64_t data_offset_ = 8;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

// Builds safetensors files. Tensor bytes are referenced, not copied: keep them alive until
// write returns. The header lists tensors in insertion order and is padded to 8 bytes; the data
// is laid out widest element first (stable), so every tensor is aligned to its element size.
class SafetensorsWriter {
 public:
  void set_metadata(std::string key, std::string value);
  void add_tensor(std::string name, DType dtype, Shape shape, std::span<const std::byte> data);

  std::vector<std::byte> serialize() const;
  void write(const std::filesystem::path& path) const;

 private:
  std::string header() const;
  std::vector<std::size_t> data_order() const;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<detail::PendingTensor> tensors_;
};

}  // namespace hearth::formats
