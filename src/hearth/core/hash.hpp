// A fast, stable 64-bit content hash (not cryptographic): document change detection in banks and
// model weight fingerprints. Stable across runs, builds and machines of the same endianness.
#pragma once

#include <string>
#include <string_view>

namespace hearth {

// The hash of bytes as 16 lower-case hex digits.
std::string content_hash(std::string_view bytes);

}  // namespace hearth
