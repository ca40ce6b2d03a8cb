// libpng reports errors by longjmp to the last setjmp. So every libpng call that can fail runs in
// a small function of plain C calls with its own setjmp (no C++ objects to skip), nothing that
// throws runs inside libpng's callbacks (the write callback records a failed allocation instead),
// and the libpng structures are released by a guard on every path.
#include "hearth/image/png.hpp"

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>

#include "hearth/core/error.hpp"
#include "hearth/core/mapped_file.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/file_io.hpp"

namespace hearth::image {
namespace {

struct PngIo {
  char message[256] = {};
  const std::byte* data = nullptr;
  std::size_t size = 0;
  std::size_t pos = 0;
  std::vector<std::byte>* out = nullptr;
  bool out_of_memory = false;
};

[[noreturn]] void on_error(png_structp png, png_const_charp message) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->message, sizeof io->message, "%s", message);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void read_bytes(png_structp png, png_bytep dst, png_size_t n) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (io->size - io->pos < n) png_error(png, "the file ends early (truncated)");
  std::memcpy(dst, io->data + io->pos, n);
  io->pos += n;
}

void write_bytes(png_structp png, png_bytep src, png_size_t n) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (io->out_of_memory) return;
  try {
    const auto* b = reinterpret_cast<const std::byte*>(src);
    io->out->insert(io->out->end(), b, b + n);
  } catch (const std::bad_alloc&) {
    io->out_of_memory = true;
  }
}

void flush_nothing(png_structp) {}

struct ReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~ReadGuard() { png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr); }
};

struct WriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~WriteGuard() { png_destroy_write_struct(&png, info != nullptr ? &info : nullptr); }
};

bool is_ascii(const std::string& s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

void check_text(const PngText& text) {
  for (const auto& [key, value] : text) {
    bool ok = !key.empty() && key.size() <= 79 && key.front() != ' ' && key.back() != ' ' &&
              key.find("  ") == std::string::npos;
    for (const char c : key) ok = ok && c >= 32 && c <= 126;
    if (!ok) {
      throw Error(ErrorCode::kInvalidArgument,
                  "PNG text keyword '" + printable(key) +
                      "' is not 1-79 printable characters without leading, trailing or double "
                      "spaces");
    }
    if (value.find('\0') != std::string::npos || !is_valid_utf8(value)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "PNG text for '" + key + "' holds a NUL byte or is not UTF-8");
    }
  }
}

void check_size(std::int64_t width, std::int64_t height, const std::string& what) {
  if (width <= 0 || height <= 0 || width > kMaxPngSide || height > kMaxPngSide ||
      width * height > kMaxPngPixels) {
    throw Error(ErrorCode::kInvalidArgument, what + " of " + std::to_string(width) + " x " +
                                                 std::to_string(height) + " pixels (at most " +
                                                 std::to_string(kMaxPngSide) + " a side and " +
                                                 std::to_string(kMaxPngPixels) + " pixels)");
  }
}

// Latin-1 (tEXt, zTXt) to UTF-8.
std::string latin1_to_utf8(const char* s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// The libpng steps, each with its own setjmp; false after a libpng error (message in io).
__attribute__((noinline)) bool write_all(png_structp png, png_infop info, PngIo* io,
                                         png_uint_32 width, png_uint_32 height, png_textp text,
                                         int text_count, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, io, write_bytes, flush_nothing);
  png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (text_count > 0) png_set_text(png, info, text, text_count);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

// Reads the header and sets up the conversion to RGB8.
__attribute__((noinline)) bool read_header(png_structp png, png_infop info, PngIo* io,
                                           png_uint_32* width, png_uint_32* height) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, kMaxPngSide, kMaxPngSide);
  png_set_read_fn(png, io, read_bytes);
  png_read_info(png, info);
  *width = png_get_image_width(png, info);
  *height = png_get_image_height(png, info);
  if (static_cast<std::int64_t>(*width) * *height > kMaxPngPixels) {
    png_error(png, "image has more pixels than hearth reads");
  }
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != static_cast<png_size_t>(*width) * 3) {
    png_error(png, "unexpected row size after conversion to RGB");
  }
  return true;
}

__attribute__((noinline)) bool read_pixels(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

}  // namespace

std::vector<std::byte> encode_png(const Image8& image, const PngText& text) {
  check_size(image.width, image.height, "a PNG image");
  if (image.rgb.size() != static_cast<std::size_t>(image.width * image.height * 3)) {
    throw Error(ErrorCode::kInvalidArgument, "RGB image bytes do not match its size");
  }
  check_text(text);
  std::vector<std::byte> out;
  std::vector<png_text> chunks(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    png_text& c = chunks[i];
    c.key = const_cast<char*>(text[i].first.c_str());
    c.text = const_cast<char*>(text[i].second.c_str());
    if (is_ascii(text[i].second)) {
      c.compression = PNG_TEXT_COMPRESSION_NONE;
      c.text_length = text[i].second.size();
    } else {
      c.compression = PNG_ITXT_COMPRESSION_NONE;
      c.itxt_length = text[i].second.size();
    }
  }
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.height));
  for (std::size_t y = 0; y < rows.size(); ++y) {
    rows[y] =
        const_cast<png_bytep>(image.rgb.data() + y * static_cast<std::size_t>(image.width) * 3);
  }
  PngIo io;
  io.out = &out;
  WriteGuard g;
  g.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
  if (g.png != nullptr) g.info = png_create_info_struct(g.png);
  if (g.png == nullptr || g.info == nullptr) {
    throw Error(ErrorCode::kInternal, "libpng could not start a PNG encoder");
  }
  if (!write_all(g.png, g.info, &io, static_cast<png_uint_32>(image.width),
                 static_cast<png_uint_32>(image.height), chunks.data(),
                 static_cast<int>(chunks.size()), rows.data())) {
    throw Error(ErrorCode::kInternal,
                std::string("libpng could not encode the image: ") + io.message);
  }
  if (io.out_of_memory) {
    throw Error(ErrorCode::kInvalidArgument, "out of memory encoding a PNG image");
  }
  return out;
}

void write_png(const std::filesystem::path& path, const Image8& image, const PngText& text) {
  const std::vector<std::byte> bytes = encode_png(image, text);
  formats::AtomicFileWriter writer(path);
  writer.write(bytes.data(), bytes.size());
  writer.commit();
}

PngFile decode_png(std::span<const std::byte> bytes, const std::string& source) {
  if (bytes.size() < 8 || png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) != 0) {
    throw Error(ErrorCode::kFormat, "not a PNG file (no PNG signature)", {source});
  }
  PngFile result;
  std::vector<png_bytep> rows;
  PngIo io;
  io.data = bytes.data();
  io.size = bytes.size();
  ReadGuard g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
  if (g.png != nullptr) g.info = png_create_info_struct(g.png);
  if (g.png == nullptr || g.info == nullptr) {
    throw Error(ErrorCode::kInternal, "libpng could not start a PNG decoder", {source});
  }
  const std::string malformed = "malformed PNG: ";
  png_uint_32 width = 0, height = 0;
  if (!read_header(g.png, g.info, &io, &width, &height)) {
    throw Error(ErrorCode::kFormat, malformed + io.message, {source});
  }
  result.image.width = width;
  result.image.height = height;
  result.image.rgb.resize(static_cast<std::size_t>(width) * height * 3);
  rows.resize(height);
  for (std::size_t y = 0; y < rows.size(); ++y) {
    rows[y] = result.image.rgb.data() + y * static_cast<std::size_t>(width) * 3;
  }
  if (!read_pixels(g.png, g.info, rows.data())) {
    throw Error(ErrorCode::kFormat, malformed + io.message, {source});
  }
  png_textp texts = nullptr;
  const int count = png_get_text(g.png, g.info, &texts, nullptr);
  for (int i = 0; i < count; ++i) {
    const png_text& t = texts[i];
    const bool utf8 =
        t.compression == PNG_ITXT_COMPRESSION_NONE || t.compression == PNG_ITXT_COMPRESSION_zTXt;
    const std::size_t n = utf8 ? t.itxt_length : t.text_length;
    result.text.emplace_back(t.key, utf8 ? std::string(t.text, n) : latin1_to_utf8(t.text, n));
  }
  return result;
}

PngFile read_png(const std::filesystem::path& path) {
  const MappedFile file = MappedFile::open(path);
  return decode_png(file.bytes(), path.string());
}

}  // namespace hearth::image
