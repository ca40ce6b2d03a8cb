// rag-cli's configuration file: the defaults a person would otherwise repeat on every command
// (model, embedding model, reranker, bank, top-k, max tokens, temperature, context, seed).
//
// $XDG_CONFIG_HOME/hearth/config.toml, else ~/.config/hearth/config.toml. TOML (toml++, Debian's
// libtomlplusplus-dev); every key is top-level, unknown keys and wrong types are errors naming
// the file and line. A leading "~/" in a string is the home folder.
//
//   model = "~/models/Phi-3-mini-4k-instruct"     # or a .gguf, or ORG/NAME in the HF cache
//   embedding_model = "~/models/all-MiniLM-L6-v2"
//   reranker = "~/models/ms-marco-MiniLM-L-6-v2"
//   bank = "~/banks/notes"
//   top_k = 5
//   max_tokens = 512
//   temperature = 0.0
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace hearth::rag {

struct RagConfig {
  std::filesystem::path file;
  bool exists = false;
  std::optional<std::string> model, embedding_model, reranker, bank;
  std::optional<std::int64_t> top_k, max_tokens, context, seed;
  std::optional<double> temperature;
  std::map<std::string, int> lines;  // key -> its line in the file

  // $XDG_CONFIG_HOME/hearth/config.toml, else $HOME/.config/hearth/config.toml.
  static std::filesystem::path default_path();
  // A missing file gives an empty configuration; a malformed one throws Error(kFormat) naming
  // file:line, an unknown key or a value of the wrong type or range Error(kInvalidArgument).
  static RagConfig load(const std::filesystem::path& file);
  // "FILE:LINE" of a key that is set.
  std::string where(const std::string& key) const;
};

}  // namespace hearth::rag
