// The decoder benchmark behind `bench-cli llm`: llama-bench's figures (prefill `ppN`: N prompt
// tokens in one batch from an empty cache; decode `tgN`: N tokens one at a time from an empty
// cache; each run once to warm up, then repeated, mean and standard deviation of tokens/s) for a
// model file or folder, or for a random-weight model of a named real shape made in memory.
//
// Beside each row, the limit measured in the same run, between its repetitions: decode streams
// every weight (and the KV cache so far) once per token, so read bandwidth / bytes per token is
// the fastest decode can be; prefill is bound by the FMA peak, so peak FLOP/s / FLOPs per token.
// The row's fraction is its mean tokens/s over that limit. A peer (llm_peer.hpp: llama.cpp's
// llama-bench on the same GGUF file) adds its own tokens/s and the ratio to each row.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/decoder.hpp"

namespace hearth::models {

// A named real model shape for random weights (`--random`).
struct RandomShape {
  const char* name;         // "phi3-mini"
  const char* description;  // "Phi-3-mini (3.8 B): hidden 3072, 32 layers ..."
  DecoderConfig (*config)();
};
std::span<const RandomShape> random_shapes();
// The shape's config; Error(kInvalidArgument) listing the known shapes for an unknown name.
DecoderConfig random_shape(std::string_view name);

// A weight format for random weights (`--weights`): how a model of it is made in memory. Every
// format hearth knows has an entry; make is null for formats this build cannot make yet.
using MakeRandomModel = std::unique_ptr<LanguageModel> (*)(const DecoderConfig& config,
                                                           unsigned seed,
                                                           const LlmOptions& options);
struct RandomWeights {
  const char* name;         // "f16", "q4_0", "mlx4"
  const char* description;  // "GGUF Q4_0 blocks (4.5 bits per weight)"
  MakeRandomModel make;
};
std::span<const RandomWeights> random_weights();
// The entry for name; Error(kInvalidArgument) for an unknown name, Error(kUnsupported) for a
// format this build cannot make ("not in this build"), both listing what it can make.
const RandomWeights& find_random_weights(std::string_view name);

// What one benchmark run measures.
struct LlmBenchOptions {
  std::filesystem::path model;                // a GGUF file or HF folder; empty: random weights
  std::string random_shape;                   // with model empty: a name from random_shapes()
  std::vector<std::string> weights;           // random: formats from random_weights() (default f16)
  std::int64_t layers = 0;                    // random: the shape's layer count when 0
  std::vector<std::int64_t> prompts = {512};  // prefill tests; 0 entries are skipped
  std::vector<std::int64_t> gens = {128};     // decode tests; 0 entries are skipped
  int repetitions = 5;
  std::size_t threads = 0;  // 0: every core
  DType kv_dtype = DType::kF16;
  std::uint64_t probe_bytes = std::uint64_t{1} << 30;  // bandwidth probe buffer (>> caches)
  double peak_seconds = 0.2;                           // FMA peak probe per repetition
  // Called before each measured step (loading, warm-up, each repetition): what runs, how many
  // steps are done and how many there are in all.
  std::function<void(const std::string& what, std::size_t done, std::size_t total)> progress;
};

// Mean and sample standard deviation (n - 1; 0 for one sample), as llama-bench computes them.
struct SampleStats {
  double mean = 0.0;
  double stddev = 0.0;
};
SampleStats sample_stats(std::span<const double> samples);

// Decode at positions 0 .. n_gen - 1 from an empty cache: the mean bytes of K and V one token's
// attention reads (every layer, sliding windows applied), for a cache of kv_dtype.
double mean_kv_bytes_per_decoded_token(const DecoderConfig& c, DType kv_dtype, std::int64_t n_gen);
// FLOPs of a prefill of n tokens from an empty cache: the projections (2 per weight per token),
// causal attention (QK and AV) and the output layer once (only the last position's logits).
double prefill_flops(const DecoderConfig& c, std::int64_t n_prompt);
// bandwidth (GB/s) / bytes per token, in tokens/s.
double bandwidth_limit_tokens_per_s(double bandwidth_gbs, double bytes_per_token);

struct LlmPeerFigures {
  std::vector<double> seconds;  // per repetition
  std::vector<double> tokens_per_s;
  SampleStats stats;      // of tokens_per_s
  double fraction = 0.0;  // stats.mean / the row's limit
  double ratio = 0.0;     // hearth mean / peer mean
};

struct LlmBenchRow {
  std::size_t model = 0;  // index into LlmBenchReport::models
  std::string test;       // "pp512", "tg128"
  std::int64_t n_prompt = 0, n_gen = 0;
  std::vector<double> seconds;  // per repetition
  std::vector<double> tokens_per_s;
  SampleStats stats;  // of tokens_per_s
  // Decode rows: bytes read per token (weights + mean KV) and the best read bandwidth probed
  // between the repetitions. Prefill rows: FLOPs per token, achieved GFLOP/s (mean) and the best
  // FMA peak probed between the repetitions.
  double bytes_per_token = 0.0;
  double bandwidth_gbs = 0.0;
  double flops_per_token = 0.0;
  double gflops = 0.0;
  double peak_gflops = 0.0;
  double limit_tokens_per_s = 0.0;  // bandwidth or FMA peak over the per-token cost
  double fraction = 0.0;            // stats.mean / limit_tokens_per_s
  std::optional<LlmPeerFigures> peer;
};

struct LlmBenchModel {
  std::string name;
  std::string source;   // the path, or "random phi3-mini"
  std::string weights;  // the projections' format ("f16", "q4_0" ...)
  std::string architecture;
  std::int64_t parameters = 0;
  std::uint64_t weight_bytes_per_token = 0;
  // File: open and load; random: making the weights. First token: that, plus the session and one
  // token run (the logits of the first token ready).
  double load_seconds = 0.0;
  double first_token_seconds = 0.0;
  std::uint64_t peak_rss = 0;  // of the process after this model's rows
};

struct MachineInfo {
  std::string cpu;       // cpu_model_name()
  std::string simd;      // "avx512", "avx2", "scalar"
  std::string features;  // describe_cpu()
  std::size_t logical_cpus = 0;
  std::uint64_t memory_bytes = 0;
};
MachineInfo machine_info();
nlohmann::json to_json(const MachineInfo& m);

struct LlmPeerInfo {
  std::string name;  // "llama-bench"
  std::string path;
  std::string version;  // build commit and number
  std::string backend;
  std::string model_type;
};

struct LlmBenchReport {
  MachineInfo machine;
  std::string backend;
  std::size_t threads = 0;
  int repetitions = 0;
  std::string kv_dtype;
  double bandwidth_gbs = 0.0;  // best of every probe in the run
  double peak_gflops = 0.0;
  std::vector<LlmBenchModel> models;
  std::vector<LlmBenchRow> rows;
  std::optional<LlmPeerInfo> peer;
};

// Checks the options (sizes, formats, shapes) before anything runs; throws what run_llm_bench
// would.
void check_llm_bench_options(const LlmBenchOptions& options);
// Runs every model (a file, or each --weights format of the random shape) through every test.
// Ctrl+C: Error(kCancelled).
LlmBenchReport run_llm_bench(const LlmBenchOptions& options);
// A markdown table (with the peer's columns when there is one) after a header of the machine.
std::string to_text(const LlmBenchReport& report);
nlohmann::json to_json(const LlmBenchReport& report);

}  // namespace hearth::models
