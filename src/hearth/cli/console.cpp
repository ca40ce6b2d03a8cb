#include "hearth/cli/console.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "hearth/core/cancel.hpp"

namespace hearth::cli {

Progress::Progress(std::string program) : program_(std::move(program)), tty_(::isatty(2) != 0) {}

void Progress::update(std::size_t done, std::size_t total, const std::string& detail,
                      std::uint64_t bytes_done, std::uint64_t bytes_total) {
  const bool last = done == total;
  if (!last && last_.seconds() < (tty_ ? 0.1 : 2.0)) return;
  last_.reset();
  const double secs = std::max(total_.seconds(), 1e-6);
  const double rate = static_cast<double>(bytes_done) / secs;
  const std::uint64_t left = bytes_total > bytes_done ? bytes_total - bytes_done : 0;
  const double eta = rate > 0 ? static_cast<double>(left) / rate : 0.0;
  char line[256];
  if (tty_) {
    const int width = 24;
    const int filled = total == 0 ? width : static_cast<int>(width * done / total);
    std::snprintf(line, sizeof line, "\r[%-*s] %zu/%zu  %s  %.1f MB/s  ETA %.0fs ", width,
                  std::string(static_cast<std::size_t>(filled), '#').c_str(), done, total,
                  detail.c_str(), rate / 1e6, eta);
    std::fputs(line, stderr);
    drawn_ = true;
  } else {
    std::snprintf(line, sizeof line, "%s: progress %zu/%zu, %s, %.1f MB/s, ETA %.0fs\n",
                  program_.c_str(), done, total, detail.c_str(), rate / 1e6, eta);
    std::fputs(line, stderr);
  }
}

void Progress::message(const std::string& text) {
  clear();
  std::fprintf(stderr, "%s: %s\n", program_.c_str(), text.c_str());
}

void Progress::clear() {
  if (drawn_) std::fputs("\r\033[K", stderr);
  drawn_ = false;
}

std::optional<std::string> read_line() {
  std::string line;
  for (;;) {
    if (cancel_requested()) return std::nullopt;
    pollfd pfd{0, POLLIN, 0};
    const int rc = ::poll(&pfd, 1, 100);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) continue;
    char c;
    const ssize_t n = ::read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (line.empty()) return std::nullopt;
      return line;
    }
    if (c == '\n') return line;
    line += c;
  }
}

}  // namespace hearth::cli
