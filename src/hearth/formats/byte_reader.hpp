// A bounds-checked little-endian cursor over untrusted bytes. Every read that would pass the end
// throws Error(kFormat) naming the offset and what was being read, so readers never over-read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "hearth/core/error.hpp"

namespace hearth::formats {

class ByteReader {
 public:
  ByteReader(std::span<const std::byte> bytes, std::string source)
      : bytes_(bytes), source_(std::move(source)) {}

  std::uint64_t offset() const { return pos_; }
  std::uint64_t remaining() const { return bytes_.size() - pos_; }
  const std::string& source() const { return source_; }

  template <class T>
  requires std::is_arithmetic_v<T> T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_bytes(std::uint64_t n, std::string_view what) {
    need(n, what);
    std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }

  [[noreturn]] void fail(const std::string& message, std::uint64_t at,
                         const std::string& key = {}) const {
    throw Error(ErrorCode::kFormat, message, {.file = source_, .offset = at, .key = key});
  }

  void need(std::uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      fail("file ends inside " + std::string(what) + " (needs " + std::to_string(n) + " bytes, " +
               std::to_string(remaining()) + " left)",
           pos_);
    }
  }

 private:
  std::span<const std::byte> bytes_;
  std::string source_;
  std::uint64_t pos_ = 0;
};

}  // namespace hearth::formats
