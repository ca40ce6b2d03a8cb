// Peers for `bench-cli llm --peer NAME=PATH`: another engine's benchmark run on the same model
// file in the same run, its figures set beside hearth's with the ratio. The one peer today is
// llama.cpp's llama-bench, a binary the user points at (hearth never downloads or builds one):
// it runs with the same tests, repetitions, threads and KV cache type (`-o json`, CPU only), on
// GGUF files only.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/llm_bench.hpp"

namespace hearth::models {

struct LlmPeer {
  std::string name;  // "llama-bench"
  std::filesystem::path path;
};

// "llama-bench=PATH"; Error(kInvalidArgument) naming the known peers for anything else.
LlmPeer parse_peer_spec(std::string_view spec);

// Before anything runs: the peer needs a GGUF model file (Error(kUnsupported) saying so for a
// folder, a safetensors file or random weights) and an existing program (Error(kNotFound)).
void check_peer(const LlmPeer& peer, const LlmBenchOptions& options);

// The command line: PATH -m MODEL -p P1,P2 -n N1,N2 -r R -t T -ctk KV -ctv KV -ngl 0 -o json.
std::vector<std::string> llama_bench_command(const LlmPeer& peer, const LlmBenchOptions& options,
                                             std::size_t threads);

// One test of llama-bench's JSON output (an array of such objects).
struct LlamaBenchTest {
  std::int64_t n_prompt = 0, n_gen = 0, n_threads = 0;
  std::vector<double> samples_ns, samples_ts;
  double avg_ts = 0.0, stddev_ts = 0.0;
};
struct LlamaBenchRun {
  LlmPeerInfo info;
  std::vector<LlamaBenchTest> tests;
};

// Parses `llama-bench -o json` output (text before the opening '[' is skipped). Error(kFormat)
// naming source and the field for anything else.
LlamaBenchRun parse_llama_bench_json(std::string_view text, const std::string& source);

// Sets report.peer and each row's peer figures from the test with the same n_prompt and n_gen
// (the peer's fraction of the row's own limit, hearth / peer ratio); rows the peer did not run
// stay without.
void attach_peer(LlmBenchReport& report, const LlamaBenchRun& run);

// Runs the peer (after hearth's rows) and attaches its figures. Error(kIo) with the end of its
// stderr when it fails; Error(kCancelled) on Ctrl+C.
void run_peer(const LlmPeer& peer, const LlmBenchOptions& options, LlmBenchReport& report);

}  // namespace hearth::models
