// Writing files so that a crash or Ctrl+C never leaves a half-written file under the real name:
// bytes go to a temporary file in the same folder, which is fsynced and renamed on commit().
#pragma once

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <string>

namespace hearth::formats {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded

  void write(const void* data, std::size_t n);
  void commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  std::FILE* file_ = nullptr;
};

// Reads a whole (small) file into a string: configs, JSON, tokenizer files.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace hearth::formats
