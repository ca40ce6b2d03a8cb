#include "hearth/core/error.hpp"

namespace hearth {
namespace {

std::string render(const std::string& message, const ErrorWhere& where) {
  std::string out;
  if (!where.file.empty()) out += where.file + ": ";
  if (where.offset) out += "at byte " + std::to_string(*where.offset) + ": ";
  if (!where.key.empty()) out += "'" + where.key + "': ";
  out += message;
  return out;
}

}  // namespace

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kIo:
      return "i/o error";
    case ErrorCode::kFormat:
      return "format error";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kInternal:
      return "internal error";
  }
  return "error";
}

Error::Error(ErrorCode code, const std::string& message, ErrorWhere where)
    : std::runtime_error(render(message, where)),
      code_(code),
      message_(message),
      where_(std::move(where)) {}

Error Error::with_file(const std::string& file) const {
  ErrorWhere w = where_;
  w.file = file;
  return Error(code_, message_, std::move(w));
}

int exit_code_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnsupported:
      return 2;
    case ErrorCode::kCancelled:
      return 130;
    default:
      return 1;
  }
}

}  // namespace hearth
