// The one error model of hearth: every failure is a hearth::Error that says what went wrong and
// where (file, byte offset, key). Apps print it as a single line and exit non-zero.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace hearth {

enum class ErrorCode {
  kInvalidArgument,  // the caller (or the user) asked for something that makes no sense
  kNotFound,         // a file, key or tensor that should exist does not
  kIo,               // the operating system refused (open, read, mmap, write)
  kFormat,           // a file's bytes do not follow its format
  kUnsupported,      // valid input that hearth cannot handle (yet)
  kCancelled,        // the user pressed Ctrl+C
  kInternal,         // a broken invariant inside hearth
};

const char* to_string(ErrorCode code);

// Where an error happened. Every field is optional; what() renders only those that are set.
struct ErrorWhere {
  std::string file;
  std::optional<std::uint64_t> offset;
  std::string key;
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, ErrorWhere where = {});

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const ErrorWhere& where() const { return where_; }

  // A copy with the file set when the thrower did not know it (readers working on byte spans).
  Error with_file(const std::string& file) const;

 private:
  ErrorCode code_;
  std::string message_;
  ErrorWhere where_;
};

// Process exit status for an error, shared by every CLI: 1 for failures, 2 for usage mistakes and
// unsupported requests, 130 for a cancel (as a shell reports SIGINT).
int exit_code_for(ErrorCode code);

}  // namespace hearth
