// rag-cli's language-model commands: `generate` (one completion, streamed) and `chat` (an
// interactive conversation). They run the decoder engine directly; cited answers over a bank
// (`ask --model-id`) build on the same pieces.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hearth/cli/app.hpp"

namespace hearth::apps {

// What the user said about the model and the sampling, bound to both subcommands.
struct LlmFlags {
  bool raw = false;
  std::string system;
  float temperature = 0.0f;
  std::int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  std::uint64_t seed = 0;
  std::int64_t context = 0;
  std::vector<std::string> stop;
  std::string dump_logits;
  std::string kv_cache = "f16";
  bool ignore_eos = false;
  bool show_prompt = false;
  std::string prompt;
};

struct LlmCommands {
  CLI::App* generate = nullptr;
  CLI::App* chat = nullptr;
  LlmFlags flags;
};

// Adds `generate` and `chat` to app; commands.flags receives their options.
void add_llm_commands(CLI::App& app, LlmCommands& commands);

// The global options the commands share with the rest of rag-cli.
struct LlmGlobals {
  std::string model_id;
  std::size_t max_tokens = 0;  // 0: the default (512)
  bool json = false;
  cli::CommonOptions common;
  // rag-cli's own --temp/--seed/--ctx or the config file's; the subcommand's flags win.
  std::optional<float> temperature;
  std::optional<std::uint64_t> seed;
  std::optional<std::int64_t> context;
};

// Runs whichever of the two was parsed (exit status), or -1 when neither was.
int run_llm_command(const LlmCommands& commands, const LlmGlobals& globals);

}  // namespace hearth::apps
