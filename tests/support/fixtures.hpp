// Shared helpers for the test programs: where the real fixtures are, scratch folders, the
// project's own tools and scripts, and the Python references.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::testing {

// ../shared/fixtures (or $HEARTH_FIXTURES); empty when absent.
std::filesystem::path fixtures_dir();

// A fixture file or folder, or an empty path when it is absent. Use with HEARTH_REQUIRE_FIXTURE.
std::filesystem::path fixture(const std::string& relative);

// The folder holding hearth's executables (tools and apps) for this build.
std::filesystem::path tools_dir();

// The checkout this build was configured from (its tools/ and tests/ scripts). Set by CMake, so
// it holds wherever ctest runs from and whatever paths ccache rewrites (CCACHE_BASEDIR).
std::filesystem::path source_dir();

// Runs tools_dir()/hearth-make-model with args; a failure is a fatal test failure (callers check
// HasFatalFailure()).
void make_model(const std::string& args);

// Debian's python3, which has python3-torch and python3-numpy (not a pyenv python on PATH).
inline constexpr const char* kSystemPython = "/usr/bin/python3";
// Whether kSystemPython imports torch and numpy (asked once). Use with HEARTH_REQUIRE_TORCH.
bool have_torch();

// A fresh, empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

std::vector<std::byte> read_bytes(const std::filesystem::path& path);
void write_bytes(const std::filesystem::path& path, const std::vector<std::byte>& bytes);

// Runs a command through the shell; returns its exit status and fills output with stdout+stderr.
int run_command(const std::string& command, std::string* output = nullptr);

// npm packages (exact versions, space-separated) for a test, installed into <build>/<folder> on
// first use, that is while any of markers (paths inside the folder) is missing. Each folder holds
// one fixed set: an `npm install --no-save` prunes what an earlier one put in the same folder, so
// two sets sharing a folder remove each other's packages. The check and the install run under an
// exclusive lock on the folder (flock), so tests running at once install once and none sees a
// half-installed folder. Returns the node_modules folder, or why the packages cannot be used
// (no node, no npm, the install failed) in *why.
std::filesystem::path npm_packages(const std::string& folder, const std::string& packages,
                                   const std::vector<std::string>& markers, std::string* why);

// Concatenates pieces (avoids gcc 12's false -Wrestrict on "literal" + std::string chains).
std::string cat(std::initializer_list<std::string_view> parts);
// A path in single quotes for a shell command line.
std::string quote(const std::filesystem::path& path);

}  // namespace hearth::testing

// Skips the current test, saying which fixture is missing and where it was looked for.
#define HEARTH_REQUIRE_FIXTURE(var, relative)                                                 \
  const std::filesystem::path var = ::hearth::testing::fixture(relative);                     \
  if (var.empty()) {                                                                          \
    GTEST_SKIP() << "fixture " << (relative) << " is absent (looked in "                      \
                 << ::hearth::testing::fixtures_dir().string()                                \
                 << "; set HEARTH_FIXTURES or place ../shared/fixtures beside the checkout)"; \
  }

// Skips the current test when the torch references cannot run, saying what to install.
#define HEARTH_REQUIRE_TORCH()                                                         \
  if (!::hearth::testing::have_torch()) {                                              \
    GTEST_SKIP() << "the reference needs Debian's python3-torch and python3-numpy at " \
                 << ::hearth::testing::kSystemPython                                   \
                 << " (apt install python3-torch python3-numpy)";                      \
  }
