// bench-cli llm: llama-bench's prefill/decode figures for a model file or folder, or a random
// model of a named shape, beside the limits measured in the same run, optionally with llama.cpp's
// llama-bench as a peer (src/hearth/models/llm_bench.hpp, llm_peer.hpp).
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>
#include <vector>

#include "hearth/models/llm_bench.hpp"

namespace hearth::apps {

struct BenchLlmFlags {
  std::string model;  // --model or the positional path (a repo id is resolved in the HF cache)
  std::string positional;
  models::LlmBenchOptions options;
  std::size_t threads = 0;  // -t; 0: bench-cli --threads, else every core
  std::string kv_cache = "f16";
  std::size_t probe_mib = 1024;
  std::vector<std::string> peers;
  bool json = false;
};

// Adds the `llm` subcommand to app; flags receives its options.
CLI::App* add_bench_llm(CLI::App& app, BenchLlmFlags& flags);

// Runs it, prints the tables (or the JSON) and returns what it measured; global_threads is
// bench-cli's --threads.
models::LlmBenchReport run_bench_llm(BenchLlmFlags& flags, std::size_t global_threads);

}  // namespace hearth::apps
