// Writing NumPy .npy arrays (format 1.0, little-endian float32, C order): how hearth hands
// numbers to other implementations for comparison (rag-cli generate --dump-logits); and reading
// float32 ones back (flux-cli --noise).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace hearth::formats {

// Writes data as an array of the given shape (the product of shape must equal data.size()),
// atomically (see AtomicFileWriter).
void write_npy_f32(const std::filesystem::path& path, std::span<const float> data,
                   std::span<const std::int64_t> shape);

}  // namespace hearth::formats

namespace hearth::formats {

struct NpyF32 {
  std::vector<std::int64_t> shape;
  std::vector<float> data;  // C order
};

// Reads a float32 .npy (format 1.0 to 3.0, little-endian '<f4', C order) such as numpy.save
// writes for a float32 array. Anything else is an Error(kFormat) or Error(kUnsupported) naming
// the file and what it holds.
NpyF32 read_npy_f32(const std::filesystem::path& path);

}  // namespace hearth::formats
