// Read-only memory-mapped files: the zero-copy base under every model reader.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace hearth {

class MappedFile {
 public:
  // Maps the whole file read-only. Throws Error (kNotFound, kIo, kInvalidArgument for a folder).
  static MappedFile open(const std::filesystem::path& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

}  // namespace hearth
