#include "hearth/cli/console.hpp"

#include <editline/readline.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "hearth/core/cancel.hpp"

namespace hearth::cli {

Progress::Progress(std::string program) : program_(std::move(program)), tty_(::isatty(2) != 0) {}

void Progress::update(std::size_t done, std::size_t total, const std::string& detail,
                      std::uint64_t bytes_done, std::uint64_t bytes_total) {
  const bool last = done == total;
  if (!last && last_.seconds() < (tty_ ? 0.1 : 2.0)) return;
  last_.reset();
  const double secs = total_.seconds();
  // A rate needs bytes actually processed over a measurable time; skipped work counts neither
  // way (callers leave it out of bytes_done and bytes_total).
  const bool timed = bytes_done > 0 && secs >= 0.5;
  const double rate = timed ? static_cast<double>(bytes_done) / secs : 0.0;
  const std::uint64_t left = bytes_total > bytes_done ? bytes_total - bytes_done : 0;
  char speed[64] = "";
  if (timed) {
    std::snprintf(speed, sizeof speed, ", %.1f MB/s, ETA %.0fs", rate / 1e6,
                  static_cast<double>(left) / rate);
  }
  char line[384];
  if (tty_) {
    const int width = 24;
    const int filled = total == 0 ? width : static_cast<int>(width * done / total);
    std::snprintf(line, sizeof line, "\r[%-*s] %zu/%zu  %s%s ", width,
                  std::string(static_cast<std::size_t>(filled), '#').c_str(), done, total,
                  detail.c_str(), speed);
    std::fputs(line, stderr);
    drawn_ = true;
  } else {
    std::snprintf(line, sizeof line, "%s: progress %zu/%zu, %s%s\n", program_.c_str(), done, total,
                  detail.c_str(), speed);
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

namespace {

// libedit calls back with each finished line; the reader waits for it.
struct PendingLine {
  bool done = false;
  std::optional<std::string> line;
};
PendingLine* g_pending = nullptr;

void on_line(char* line) {
  if (g_pending == nullptr) return;
  g_pending->done = true;
  if (line != nullptr) g_pending->line = std::string(line);
  std::free(line);
  rl_callback_handler_remove();
}

// Waits until stdin is readable; false when a cancel was requested first.
bool wait_for_input() {
  for (;;) {
    if (cancel_requested()) return false;
    pollfd pfd{0, POLLIN, 0};
    const int rc = ::poll(&pfd, 1, 100);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let the read report it
  }
}

std::optional<std::string> read_plain_line() {
  std::string line;
  for (;;) {
    if (!wait_for_input()) return std::nullopt;
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

}  // namespace

std::string history_file(const std::string& name) {
  const char* state = std::getenv("XDG_STATE_HOME");
  const char* home = std::getenv("HOME");
  std::filesystem::path dir;
  if (state != nullptr && *state == '/') {
    dir = state;
  } else if (home != nullptr && *home != '\0') {
    dir = std::filesystem::path(home) / ".local" / "state";
  } else {
    return {};
  }
  return (dir / "hearth" / (name + "_history")).string();
}

LineReader::LineReader(std::string history_file)
    : history_file_(std::move(history_file)), editing_(::isatty(0) != 0 && ::isatty(1) != 0) {
  if (!editing_) return;
  // libedit decodes the prompt and the typed characters with the C library's multibyte
  // functions: they need the user's character set (UTF-8 at least for the prompt).
  if (std::setlocale(LC_CTYPE, "") == nullptr || MB_CUR_MAX == 1) {
    std::setlocale(LC_CTYPE, "C.UTF-8");
  }
  rl_catch_signals = 0;  // Ctrl+C stays hearth's cancel request
  rl_readline_name = "hearth";
  using_history();
  stifle_history(1000);
  if (!history_file_.empty()) read_history(history_file_.c_str());
}

LineReader::~LineReader() {
  if (editing_) rl_callback_handler_remove();
}

std::optional<std::string> LineReader::read(const std::string& prompt) {
  if (!editing_) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
    return read_plain_line();
  }
  PendingLine pending;
  g_pending = &pending;
  rl_callback_handler_install(prompt.c_str(), on_line);
  while (!pending.done) {
    if (!wait_for_input()) {
      rl_callback_handler_remove();
      g_pending = nullptr;
      return std::nullopt;
    }
    rl_callback_read_char();
  }
  g_pending = nullptr;
  if (pending.line && pending.line->find_first_not_of(" \t") != std::string::npos &&
      !history_file_.empty()) {
    add_history(pending.line->c_str());
    std::error_code ec;
    const std::filesystem::path file(history_file_);
    std::filesystem::create_directories(file.parent_path(), ec);
    const mode_t old = ::umask(077);  // the questions are the user's own
    write_history(history_file_.c_str());
    ::umask(old);
  }
  return pending.line;
}

}  // namespace hearth::cli
