// Running another program (a peer benchmark the user points at, such as llama.cpp's
// llama-bench) and reading what it prints, without a shell and without leaving it running on
// Ctrl+C.
#pragma once

#include <string>
#include <vector>

namespace hearth {

struct ProcessResult {
  int exit_status = -1;  // the program's exit status; -1 when a signal ended it
  int signal = 0;        // the signal that ended it, 0 when it exited
  std::string out;       // everything it wrote to stdout
  std::string err;       // the last 4 KiB it wrote to stderr
};

// Runs argv[0] (a path, not looked up in PATH) with argv, stdin from /dev/null. Waits for it,
// polling the cancel flag: on Ctrl+C the program is sent SIGTERM (SIGKILL two seconds later if it
// is still running), reaped, and Error(kCancelled) is thrown. Throws Error(kNotFound) when the
// program does not exist, Error(kIo) when it cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv);

}  // namespace hearth
