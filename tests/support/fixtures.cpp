#include "support/fixtures.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>

namespace hearth::testing {
namespace fs = std::filesystem;

fs::path fixtures_dir() {
  if (const char* env = std::getenv("HEARTH_FIXTURES")) return env;
  return HEARTH_FIXTURES_DIR;
}

fs::path fixture(const std::string& relative) {
  const fs::path p = fixtures_dir() / relative;
  std::error_code ec;
  return fs::exists(p, ec) ? p : fs::path();
}

fs::path tools_dir() {
  return HEARTH_TOOLS_DIR;
}

fs::path source_dir() {
  return HEARTH_SOURCE_DIR;
}

void make_model(const std::string& args) {
  std::string out;
  const std::string cmd = cat({quote(tools_dir() / "hearth-make-model"), " ", args});
  ASSERT_EQ(run_command(cmd, &out), 0) << cmd << "\n" << out;
}

bool have_torch() {
  static const bool ok =
      run_command(cat({kSystemPython, " -c 'import torch, numpy' 2>/dev/null"})) == 0;
  return ok;
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = fs::temp_directory_path() /
          ("hearth-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::byte> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  std::memcpy(out.data(), chars.data(), chars.size());
  return out;
}

void write_bytes(const fs::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (const std::string_view p : parts) s.append(p);
  return s;
}

std::string quote(const std::filesystem::path& path) {
  return cat({"'", path.string(), "'"});
}

fs::path npm_packages(const std::string& folder, const std::string& packages,
                      const std::vector<std::string>& markers, std::string* why) {
  const fs::path dir = tools_dir().parent_path() / folder;
  const auto ready = [&] {
    return std::all_of(markers.begin(), markers.end(),
                       [&](const std::string& m) { return fs::exists(dir / m); });
  };
  why->clear();
  if (run_command("node --version") != 0) {
    *why = "node is not installed";
    return {};
  }
  fs::create_directories(dir);
  const fs::path lock_path = dir / ".install-lock";
  const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    *why = "cannot lock " + lock_path.string() + ": " + std::strerror(errno);
    if (lock >= 0) ::close(lock);
    return {};
  }
  std::string out;
  if (!ready()) {
    if (run_command("npm --version") != 0) {
      *why = "npm is not installed";
    } else if (run_command(
                   cat({"cd ", quote(dir),
                        " && timeout 300 npm install --no-audit --no-fund --no-save ", packages}),
                   &out) != 0) {
      *why = cat({"npm install ", packages, " failed: ", out});
    } else if (!ready()) {
      *why = cat({"npm install ", packages, " did not install ", markers.front(), ": ", out});
    }
  }
  ::close(lock);  // releases the lock
  return why->empty() ? dir / "node_modules" : fs::path();
}

int run_command(const std::string& command, std::string* output) {
  std::string cmd = command + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  std::array<char, 4096> buf;
  std::string out;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  if (output != nullptr) *output = std::move(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace hearth::testing
