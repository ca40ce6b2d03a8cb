#include "hearth/cli/console.hpp"

#include <fcntl.h>
#include <histedit.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <cwchar>
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

// libedit's character source: one character from stdin, decoded in the locale's character set,
// polling so that a cancel request ends the line being edited. 1 for a character, 0 at the end
// of input, -1 on a cancel or an error (el_gets then returns nullptr).
int read_char(EditLine* /*el*/, wchar_t* out) {
  char bytes[MB_LEN_MAX];
  std::size_t have = 0;
  for (;;) {
    if (!wait_for_input()) {
      errno = EINTR;
      return -1;
    }
    const ssize_t n = ::read(0, bytes + have, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0 ? 0 : -1;
    ++have;
    std::mbstate_t state{};
    const std::size_t used = std::mbrtowc(out, bytes, have, &state);
    if (used == static_cast<std::size_t>(-2) && have < sizeof bytes) continue;  // incomplete
    if (used == static_cast<std::size_t>(-1) || used == static_cast<std::size_t>(-2)) {
      have = 0;  // not a character in this character set: dropped, as libedit's own reader does
      continue;
    }
    return 1;
  }
}

// The prompt callback has libedit's type (el_pfunc_t); libedit only reads the text.
char* prompt_of(EditLine* el) {
  void* data = nullptr;
  el_get(el, EL_CLIENTDATA, &data);
  return static_cast<std::string*>(data)->data();
}

}  // namespace

// libedit's own interface (histedit.h), not its readline emulation: the emulation's callback
// mode writes through a stale pointer once a line passes 1023 bytes (rl_line_buffer keeps
// pointing at a conversion buffer that el_gets has reallocated), corrupting the heap.
struct LineReader::Editor {
  EditLine* el = nullptr;
  History* history = nullptr;
  std::string prompt;
};

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
  editor_ = std::make_unique<Editor>();
  editor_->el = el_init("hearth", stdin, stdout, stderr);
  editor_->history = history_init();
  if (editor_->el == nullptr || editor_->history == nullptr) {
    editing_ = false;
    return;
  }
  EditLine* el = editor_->el;
  HistEvent ev;
  history(editor_->history, &ev, H_SETSIZE, 1000);
  history(editor_->history, &ev, H_SETUNIQUE, 1);  // a question asked twice in a row is kept once
  el_set(el, EL_CLIENTDATA, &editor_->prompt);
  el_set(el, EL_PROMPT, prompt_of);
  el_set(el, EL_EDITOR, "emacs");
  el_set(el, EL_HIST, history, editor_->history);
  el_set(el, EL_GETCFN, read_char);
  el_set(el, EL_SIGNAL, 0);  // Ctrl+C stays hearth's cancel request
  el_source(el, nullptr);    // the user's ~/.editrc, as other libedit programs read it
  if (!history_file_.empty()) history(editor_->history, &ev, H_LOAD, history_file_.c_str());
}

LineReader::~LineReader() {
  if (!editor_) return;
  if (editor_->el != nullptr) el_end(editor_->el);
  if (editor_->history != nullptr) history_end(editor_->history);
}

std::optional<std::string> LineReader::read(const std::string& prompt) {
  if (!editing_) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
    return read_plain_line();
  }
  editor_->prompt = prompt;
  int count = 0;
  const char* got = el_gets(editor_->el, &count);
  if (got == nullptr || count <= 0) return std::nullopt;
  std::string line(got, static_cast<std::size_t>(count));
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.find_first_not_of(" \t") != std::string::npos) {
    HistEvent ev;
    history(editor_->history, &ev, H_ENTER, line.c_str());
    save_history();
  }
  return line;
}

void LineReader::save_history() {
  if (history_file_.empty()) return;
  const std::filesystem::path file(history_file_);
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  // The questions are the user's own: the file is made readable by the user alone.
  const int fd = ::open(history_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;  // no history is no reason to stop answering
  ::fchmod(fd, 0600);
  FILE* f = ::fdopen(fd, "w");
  if (f == nullptr) {
    ::close(fd);
    return;
  }
  HistEvent ev;
  history(editor_->history, &ev, H_SAVE_FP, f);
  std::fclose(f);
}

}  // namespace hearth::cli
