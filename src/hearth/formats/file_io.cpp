#include "hearth/formats/file_io.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "hearth/core/error.hpp"

namespace hearth::formats {
namespace {

[[noreturn]] void io_error(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorCode::kIo, what + ": " + std::strerror(errno), {.file = path.string()});
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::filesystem::path path) : path_(std::move(path)) {
  tmp_ = path_;
  tmp_ += ".tmp-" + std::to_string(::getpid());
  file_ = std::fopen(tmp_.c_str(), "wb");
  if (file_ == nullptr) io_error(tmp_, "cannot create");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void AtomicFileWriter::write(const void* data, std::size_t n) {
  if (n > 0 && std::fwrite(data, 1, n, file_) != n) io_error(tmp_, "cannot write");
}

void AtomicFileWriter::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) io_error(tmp_, "cannot flush");
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    io_error(tmp_, "cannot close");
  }
  file_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
    errno = err;
    io_error(path_, "cannot rename the finished file into place");
  }
}

std::string read_text_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error(ErrorCode::kNotFound, "file does not exist", {.file = path.string()});
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) io_error(path, "cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) io_error(path, "cannot read");
  return ss.str();
}

}  // namespace hearth::formats
