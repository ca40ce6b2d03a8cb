// What every hearth executable shares: one-line errors with a meaningful exit status, the
// --version and --threads flags and Ctrl+C handling.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <functional>
#include <string>

namespace hearth::cli {

struct CommonOptions {
  std::size_t threads = 0;  // 0: every core
};

// Adds --version and --threads to app.
void add_common_options(CLI::App& app, CommonOptions& options);

// Parses argv into app and runs body. A hearth::Error or any other exception becomes one line on
// stderr ("<program>: error: <what>") and the matching exit status; --help prints and exits 0; a
// usage mistake exits 2 (with hint, when not empty, after an error about missing or unexpected
// arguments). Installs the Ctrl+C handler first.
int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body);
int run(CLI::App& app, int argc, char** argv, const std::string& hint,
        const std::function<int()>& body);

}  // namespace hearth::cli
