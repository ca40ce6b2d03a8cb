#include "hearth/formats/npy.hpp"

#include <string>

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

}  // namespace hearth::formats
