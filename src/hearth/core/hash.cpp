#include "hearth/core/hash.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace hearth {

std::string content_hash(std::string_view bytes) {
  // 64-bit multiply-rotate hash over 8-byte words, seeded with the length.
  constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;
  std::uint64_t h = 0xCBF29CE484222325ull ^ (bytes.size() * kMul);
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ (w * kMul)) * 0xFF51AFD7ED558CCDull;
    h = (h << 29) | (h >> 35);
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  h = (h ^ (tail * kMul)) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace hearth
