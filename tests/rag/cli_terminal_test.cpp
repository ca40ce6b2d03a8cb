// rag-cli's interactive loop on a real terminal (a pseudo-terminal): a pasted line longer than the
// terminal's line mode keeps, the history kept per user and recalled with the arrow key, Ctrl+C
// and Ctrl+D at an idle prompt. Every wait is bounded: a stuck child fails the test, it never
// hangs it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;
using Clock = std::chrono::steady_clock;

// Generous for a sanitizer build on a busy machine; only a failing test waits this long.
constexpr auto kPatience = std::chrono::seconds(30);
const std::string kPrompt = "\xE2\x9D\x93> ";

fs::path sample_corpus() {
  for (fs::path dir = testing::tools_dir(); !dir.empty() && dir != dir.parent_path();
       dir = dir.parent_path()) {
    if (fs::is_directory(dir / "data" / "sample-corpus")) return dir / "data" / "sample-corpus";
  }
  return {};
}

// rag-cli's loop with a pseudo-terminal as its controlling terminal; the test holds the master
// side, as a terminal emulator does.
class Terminal {
 public:
  Terminal(const fs::path& bank, const fs::path& home) {
    // Everything the child needs is made before the fork: the test program may have threads, and
    // a forked child of a threaded program may only make async-signal-safe calls.
    const std::string cli = (testing::tools_dir() / "rag-cli").string();
    std::vector<std::string> args = {cli, "--bank", bank.string()};
    std::vector<std::string> env = {
        "HOME=" + home.string(),  // no ~/.editrc of the person running the tests
        "XDG_STATE_HOME=" + (home / "state").string(),
        "TERM=xterm",  // a terminal that edits; "dumb" would not
    };
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view v(*e);
      if (!v.starts_with("HOME=") && !v.starts_with("XDG_STATE_HOME=") && !v.starts_with("TERM=")) {
        env.emplace_back(v);
      }
    }
    std::vector<char*> argv;
    std::vector<char*> envp;
    for (std::string& a : args) argv.push_back(a.data());
    for (std::string& e : env) envp.push_back(e.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    winsize size{24, 80, 0, 0};  // a terminal of no size confuses line editors
    pid_ = ::forkpty(&fd_, nullptr, nullptr, &size);
    if (pid_ == 0) {
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    if (pid_ > 0) ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~Terminal() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  Terminal(const Terminal&) = delete;
  Terminal& operator=(const Terminal&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& output() const { return out_; }

  // Waits for the prompt, then for the terminal to leave line mode (the line editor reads key by
  // key): what is typed before that would be cut by the line discipline, not by rag-cli.
  bool wait_for_prompt() {
    if (!wait_for(kPrompt)) return false;
    const auto deadline = Clock::now() + kPatience;
    for (;;) {
      termios t{};
      // On Linux the master side reports the terminal settings of the slave side.
      if (::tcgetattr(fd_, &t) == 0 && (t.c_lflag & ICANON) == 0) return true;
      if (Clock::now() > deadline || !pump(10)) return false;
    }
  }

  // Types keys while reading the echo (a terminal whose output is not read stalls the program
  // writing to it).
  bool type(const std::string& keys) {
    const auto deadline = Clock::now() + kPatience;
    for (std::size_t at = 0; at < keys.size();) {
      const ssize_t n =
          ::write(fd_, keys.data() + at, std::min<std::size_t>(keys.size() - at, 256));
      if (n > 0) {
        at += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
      }
      if (Clock::now() > deadline || !pump(n > 0 ? 0 : 10)) return false;
    }
    return true;
  }
  bool type_and_wait(const std::string& keys, const std::string& text) {
    return type(keys) && wait_for(text);
  }

  // Waits until the output since the last wait holds text.
  bool wait_for(const std::string& text) {
    const auto deadline = Clock::now() + kPatience;
    for (;;) {
      const std::size_t at = out_.find(text, mark_);
      if (at != std::string::npos) {
        mark_ = at + text.size();
        return true;
      }
      if (Clock::now() > deadline || !pump(50)) return false;
    }
  }

  // The exit status once the program ends (128 + signal when a signal ended it), reading its
  // last output meanwhile; -1 when it is still running after the patience.
  int wait_exit() {
    const auto deadline = Clock::now() + kPatience;
    while (Clock::now() < deadline) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (!pump(20)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  // Reads what the program wrote, waiting up to ms for it; false once the terminal is closed.
  bool pump(int ms) {
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, ms);
    if (rc < 0) return errno == EINTR;
    if (rc == 0) return true;
    char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        out_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      return false;  // EIO: every slave descriptor is closed, the program is gone
    }
  }

  int fd_ = -1;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::string out_;
  std::size_t mark_ = 0;
};

std::string tail(const std::string& s) {
  return s.substr(s.size() > 1500 ? s.size() - 1500 : 0);
}

TEST(RagCliTerminal, LongPastedLineHistoryCtrlCAndCtrlD) {
  if (sample_corpus().empty()) GTEST_SKIP() << "data/sample-corpus not found above the build";
  testing::TempDir dir;
  const fs::path bank = dir / "bank";
  const fs::path home = dir / "home";
  fs::create_directories(home);
  std::string out;
  ASSERT_EQ(testing::run_command(cat({quote(testing::tools_dir() / "rag-cli"), " --bank ",
                                      quote(bank), " ingest ", quote(sample_corpus())}),
                                 &out),
            0)
      << out;
  // A pasted question of over 6000 characters whose only words in the bank come last: a terminal
  // in line mode keeps 4095 characters of a line and drops the rest, and libedit's readline
  // emulation corrupted the heap past 1023.
  std::string question;
  while (question.size() < 6000) question += "zqxv ";
  question += "Can I stop a long ingest?";
  {
    Terminal t(bank, home);
    if (!t.started())
      GTEST_SKIP() << "no pseudo-terminal here (forkpty: " << strerror(errno) << ")";
    ASSERT_TRUE(t.wait_for_prompt()) << tail(t.output());
    ASSERT_TRUE(t.type_and_wait(question + "\r", "Sources:"))
        << "the end of the long line was lost: " << tail(t.output());
    EXPECT_TRUE(t.wait_for("questions-and-answers.html")) << tail(t.output());
    ASSERT_TRUE(t.wait_for_prompt()) << tail(t.output());
    // The up arrow brings the question back; a line editor that is not there would send the
    // escape sequence itself as the question, which matches nothing.
    ASSERT_TRUE(t.type_and_wait("\x1b[A\r", "Sources:"))
        << "the arrow key did not recall the question: " << tail(t.output());
    ASSERT_TRUE(t.wait_for_prompt()) << tail(t.output());
    // Editing inside the line: the left arrow moves back to its start, the words typed then go
    // before the others (the history file below holds the line as edited).
    std::string edit = "long ingest?";
    for (int i = 0; i < 12; ++i) edit += "\x1b[D";
    ASSERT_TRUE(t.type_and_wait(edit + "Can I stop a \r", "Sources:")) << tail(t.output());
    ASSERT_TRUE(t.wait_for_prompt()) << tail(t.output());
    ASSERT_TRUE(t.type("\x03"));  // Ctrl+C, sent as the terminal sends it
    EXPECT_EQ(t.wait_exit(), 130) << "Ctrl+C at an idle prompt: " << tail(t.output());
  }
  const fs::path history = home / "state" / "hearth" / "rag-cli_history";
  ASSERT_TRUE(fs::exists(history)) << "no history in $XDG_STATE_HOME/hearth";
  std::stringstream saved;
  saved << std::ifstream(history).rdbuf();
  // One line per question (spaces written as \040), the recalled one not twice: the long line
  // whole, then the edited one.
  std::vector<std::string> lines;
  for (std::string line; std::getline(saved, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << saved.str().substr(0, 300);
  EXPECT_TRUE(lines[1].starts_with("zqxv\\040zqxv")) << lines[1].substr(0, 100);
  EXPECT_TRUE(lines[1].ends_with("zqxv\\040Can\\040I\\040stop\\040a\\040long\\040ingest?"))
      << lines[1].substr(lines[1].size() > 100 ? lines[1].size() - 100 : 0);
  std::size_t words = 0;
  for (std::size_t at = lines[1].find("zqxv"); at != std::string::npos;
       at = lines[1].find("zqxv", at + 1)) {
    ++words;
  }
  EXPECT_EQ(words, 1200u) << "the long line is kept whole";
  EXPECT_EQ(lines[2], "Can\\040I\\040stop\\040a\\040long\\040ingest?");
  EXPECT_EQ(fs::status(history).permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none)
      << "the history is the user's own";
  // A new session starts with that history; Ctrl+D ends it normally.
  Terminal t(bank, home);
  ASSERT_TRUE(t.wait_for_prompt()) << tail(t.output());
  ASSERT_TRUE(t.type_and_wait("\x1b[A\r", "Sources:"))
      << "the history was not kept between sessions: " << tail(t.output());
  EXPECT_TRUE(t.wait_for("questions-and-answers.html")) << tail(t.output());
  ASSERT_TRUE(t.wait_for_prompt()) << tail(t.output());
  ASSERT_TRUE(t.type("\x04"));  // Ctrl+D on an empty line
  EXPECT_EQ(t.wait_exit(), 0) << "Ctrl+D at an idle prompt: " << tail(t.output());
}

}  // namespace
}  // namespace hearth::rag
