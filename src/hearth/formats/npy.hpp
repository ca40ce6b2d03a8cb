// Writing NumPy .npy arrays (format 1.0, little-endian float32, C order): how hearth hands
// numbers to other implementations for comparison (rag-cli generate --dump-logits).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

namespace hearth::formats {

// Writes data as an array of the given shape (the product of shape must equal data.size()),
// atomically (see AtomicFileWriter).
void write_npy_f32(const std::filesystem::path& path, std::span<const float> data,
                   std::span<const std::int64_t> shape);

}  // namespace hearth::formats
