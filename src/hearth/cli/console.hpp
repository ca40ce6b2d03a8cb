// Console pieces the executables share: a progress display for long work on stderr and a line
// reader for interactive loops that Ctrl+C can interrupt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "hearth/core/timer.hpp"

namespace hearth::cli {

// On a terminal: one line redrawn at most ten times a second, with a bar. Otherwise (a log, a
// pipe): a plain line every two seconds. Always the final state.
class Progress {
 public:
  explicit Progress(std::string program);

  // done of total units (files, steps), what else to show ("16 chunks"), and bytes for the rate
  // and the ETA (shown once bytes were processed for half a second).
  void update(std::size_t done, std::size_t total, const std::string& detail,
              std::uint64_t bytes_done, std::uint64_t bytes_total);
  // A message on its own line ("program: message"), the bar redrawn after it.
  void message(const std::string& text);
  // Removes the bar (call before printing results).
  void clear();

 private:
  std::string program_;
  bool tty_;
  bool drawn_ = false;
  Timer last_;
  Timer total_;
};

// Reads the lines of an interactive loop from stdin. On a terminal it edits them with libedit
// (cursor keys, Emacs bindings, ~/.editrc, no length limit: the terminal is not in line mode, so
// pasted multi-kilobyte lines arrive whole) and keeps a history in history_file (loaded at start,
// saved after each line, the last 1000 lines, readable by the user alone). Otherwise (a pipe, a
// file) it reads plain lines. Both poll, so that Ctrl+C is noticed at the prompt.
class LineReader {
 public:
  explicit LineReader(std::string history_file);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // One line without its newline; nullopt at end of input (Ctrl+D) or after a cancel request.
  std::optional<std::string> read(const std::string& prompt);
  bool editing() const { return editing_; }

 private:
  struct Editor;
  void save_history();

  std::string history_file_;
  bool editing_ = false;
  std::unique_ptr<Editor> editor_;
};

// $XDG_STATE_HOME/hearth/<name>_history (~/.local/state/hearth/...), the history file of one
// program for the user running it.
std::string history_file(const std::string& name);

}  // namespace hearth::cli
