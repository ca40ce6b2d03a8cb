// PNG files through libpng: 8-bit RGB images with text chunks (a generated image's prompt, seed,
// steps, size, model). Reading accepts every PNG colour type and bit depth and gives RGB8
// (palette and grey expanded, 16-bit reduced, alpha dropped); a malformed or truncated file is an
// Error(kFormat) naming the file and libpng's complaint.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hearth/image/image.hpp"

namespace hearth::image {

// Keyword, text. Keywords are 1-79 printable Latin-1 characters without leading, trailing or
// double spaces (the PNG rules; checked when writing). Texts of plain ASCII are written as tEXt
// chunks, other UTF-8 texts as uncompressed iTXt; reading returns both kinds in file order.
using PngText = std::vector<std::pair<std::string, std::string>>;

struct PngFile {
  Image8 image;
  PngText text;
};

// The largest image read or written: 32768 pixels a side, 2^28 pixels in all.
inline constexpr std::int64_t kMaxPngSide = 32768;
inline constexpr std::int64_t kMaxPngPixels = std::int64_t{1} << 28;

std::vector<std::byte> encode_png(const Image8& image, const PngText& text = {});
// Writes atomically (AtomicFileWriter): an interrupted write leaves no partial file.
void write_png(const std::filesystem::path& path, const Image8& image, const PngText& text = {});

PngFile decode_png(std::span<const std::byte> bytes, const std::string& source);
PngFile read_png(const std::filesystem::path& path);

}  // namespace hearth::image
