#include "hearth/formats/npy.hpp"

#include <cstring>
#include <string>
#include <string_view>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"

namespace hearth::formats {

void write_npy_f32(const std::filesystem::path& path, std::span<const float> data,
                   std::span<const std::int64_t> shape) {
  std::int64_t count = 1;
  std::string dims;
  for (const std::int64_t d : shape) {
    if (d < 0) throw Error(ErrorCode::kInternal, "negative dimension in an .npy shape");
    count *= d;
    dims += std::to_string(d) + ", ";
  }
  if (static_cast<std::size_t>(count) != data.size()) {
    throw Error(ErrorCode::kInternal, "an .npy shape does not match its data");
  }
  if (shape.size() > 1) dims.resize(dims.size() - 2);  // (n,) keeps its comma
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  const auto len = static_cast<std::uint16_t>(header.size());
  std::string prefix = "\x93NUMPY";
  prefix.push_back('\x01');
  prefix.push_back('\x00');
  prefix.push_back(static_cast<char>(len & 0xFF));
  prefix.push_back(static_cast<char>(len >> 8));
  AtomicFileWriter out(path);
  out.write(prefix.data(), prefix.size());
  out.write(header.data(), header.size());
  out.write(data.data(), data.size() * sizeof(float));
  out.commit();
}

namespace {

// The value of 'key' in the header dict, up to its end (a quoted string, a tuple, or a word).
std::string_view header_value(std::string_view header, std::string_view key,
                              const std::string& file) {
  std::string quoted(1, '\'');
  quoted.append(key).push_back('\'');
  std::size_t at = header.find(quoted);
  if (at == std::string_view::npos) {
    throw Error(ErrorCode::kFormat, "the .npy header has no " + quoted, {.file = file});
  }
  at = header.find(':', at + quoted.size());
  if (at == std::string_view::npos) {
    throw Error(ErrorCode::kFormat, "the .npy header is malformed at " + quoted, {.file = file});
  }
  ++at;
  while (at < header.size() && header[at] == ' ') ++at;
  if (at >= header.size()) {
    throw Error(ErrorCode::kFormat, "the .npy header is malformed at " + quoted, {.file = file});
  }
  const char open = header[at];
  const char close = open == '(' ? ')' : open == '\'' ? '\'' : open == '"' ? '"' : ',';
  const std::size_t end = header.find(close, at + 1);
  if (end == std::string_view::npos) {
    throw Error(ErrorCode::kFormat, "the .npy header is malformed at " + quoted, {.file = file});
  }
  return close == ',' ? header.substr(at, end - at) : header.substr(at + 1, end - at - 1);
}

}  // namespace

NpyF32 read_npy_f32(const std::filesystem::path& path) {
  const std::string file = path.string();
  const std::string bytes = read_text_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    throw Error(ErrorCode::kFormat, "not a NumPy .npy file (no \\x93NUMPY magic)", {.file = file});
  }
  const auto major = static_cast<unsigned char>(bytes[6]);
  if (major < 1 || major > 3) {
    throw Error(ErrorCode::kUnsupported, ".npy format version " + std::to_string(major),
                {.file = file});
  }
  const auto byte = [&](std::size_t i) {
    return static_cast<std::size_t>(static_cast<unsigned char>(bytes[i]));
  };
  std::size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = byte(8) | byte(9) << 8;
    start = 10;
  } else {
    if (bytes.size() < 12) throw Error(ErrorCode::kFormat, "truncated .npy header", {.file = file});
    header_len = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24;
    start = 12;
  }
  if (header_len > bytes.size() - start) {
    throw Error(ErrorCode::kFormat, "truncated .npy header", {.file = file});
  }
  const std::string_view header(bytes.data() + start, header_len);
  const std::string_view descr = header_value(header, "descr", file);
  if (descr != "<f4") {
    throw Error(ErrorCode::kUnsupported,
                "holds dtype '" + std::string(descr) + "'; a float32 array ('<f4') is needed",
                {.file = file, .key = "descr"});
  }
  if (header_value(header, "fortran_order", file) != "False") {
    throw Error(ErrorCode::kUnsupported, "Fortran-ordered arrays are not read; save C order",
                {.file = file, .key = "fortran_order"});
  }
  NpyF32 out;
  const std::string_view dims = header_value(header, "shape", file);
  std::size_t count = 1;
  std::size_t i = 0;
  while (i < dims.size()) {
    while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
    if (i >= dims.size()) break;
    std::int64_t d = 0;
    std::size_t digits = 0;
    while (i < dims.size() && dims[i] >= '0' && dims[i] <= '9') {
      if (d > (std::int64_t{1} << 40)) break;
      d = d * 10 + (dims[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0 || d > (std::int64_t{1} << 40)) {
      throw Error(ErrorCode::kFormat, "the .npy shape (" + std::string(dims) + ") is malformed",
                  {.file = file, .key = "shape"});
    }
    out.shape.push_back(d);
    count *= static_cast<std::size_t>(d);
    if (count > (std::size_t{1} << 40)) {
      throw Error(ErrorCode::kFormat, "the .npy shape is too large",
                  {.file = file, .key = "shape"});
    }
  }
  const std::size_t data_at = start + header_len;
  if (bytes.size() - data_at != count * sizeof(float)) {
    throw Error(ErrorCode::kFormat,
                "holds " + std::to_string(bytes.size() - data_at) + " data bytes; its shape (" +
                    std::string(dims) + ") needs " + std::to_string(count * sizeof(float)),
                {.file = file});
  }
  out.data.resize(count);
  std::memcpy(out.data.data(), bytes.data() + data_at, count * sizeof(float));
  return out;
}

}  // namespace hearth::formats
