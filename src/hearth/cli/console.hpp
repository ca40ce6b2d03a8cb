// Console pieces the executables share: a progress display for long work on stderr and a line
// reader for interactive loops that Ctrl+C can interrupt.
#pragma once

#include <cstddef>
#include <cstdint>
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
  // and the ETA.
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

// Reads one line from stdin, polling so that Ctrl+C is noticed at the prompt. nullopt at end of
// input (Ctrl+D) or after a cancel request.
std::optional<std::string> read_line();

}  // namespace hearth::cli
