#include "hearth/core/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"

extern char** environ;

namespace hearth {

namespace {

constexpr std::size_t kErrTail = 4096;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv) {
  if (argv.empty()) throw Error(ErrorCode::kInvalidArgument, "no program to run");
  const std::string& program = argv.front();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(program, ec)) {
    throw Error(ErrorCode::kNotFound, "no such program", {.file = program});
  }
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
    throw Error(ErrorCode::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  Fd out_r{out_pipe[0]}, out_w{out_pipe[1]};
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw Error(ErrorCode::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  Fd err_r{err_pipe[0]}, err_w{err_pipe[1]};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.fd, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw Error(ErrorCode::kIo, std::string("cannot run it: ") + std::strerror(rc),
                {.file = program});
  }
  out_w.reset();
  err_w.reset();

  ProcessResult result;
  std::string err;
  bool terminated = false;
  bool exited = false;
  int status = 0;
  Timer since_term;
  char buf[65536];
  // Reads what is ready within timeout_ms (closing a pipe at its end); whether it read bytes.
  const auto read_ready = [&](int timeout_ms) {
    pollfd fds[2] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, timeout_ms);
    bool got_any = false;
    for (int i = 0; n > 0 && i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        (i == 0 ? out_r : err_r).reset();
        continue;
      }
      got_any = true;
      if (i == 0) {
        result.out.append(buf, static_cast<std::size_t>(got));
      } else {
        err.append(buf, static_cast<std::size_t>(got));
        if (err.size() > 2 * kErrTail) err.erase(0, err.size() - kErrTail);
      }
    }
    return got_any;
  };
  while (out_r.fd >= 0 || err_r.fd >= 0) {
    if (cancel_requested() && !terminated) {
      ::kill(pid, SIGTERM);
      terminated = true;
      since_term.reset();
    }
    if (terminated && !exited && since_term.seconds() > 2.0) ::kill(pid, SIGKILL);
    read_ready(100);
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) exited = true;
    if (exited) {
      // What it wrote before it ended, not what a process it left behind writes later.
      while ((out_r.fd >= 0 || err_r.fd >= 0) && read_ready(0)) {
      }
      break;
    }
  }
  while (!exited && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (err.size() > kErrTail) err.erase(0, err.size() - kErrTail);
  result.err = std::move(err);
  if (WIFEXITED(status)) {
    result.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  if (terminated || cancel_requested()) throw Error(ErrorCode::kCancelled, "cancelled");
  return result;
}

}  // namespace hearth
