// The decoder benchmark behind `hearth-bench-llm` (and `bench-cli llm`): prefill and decode
// tokens/s of a decoder model (a file, or the Phi-3-mini shape with random weights made in
// memory), beside the memory-bandwidth limit measured in the same run: decode streams every
// weight once per token, so bandwidth / weight bytes per token is the fastest decode can be.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/tensor/dtype.hpp"

namespace hearth::models {

struct LlmBenchOptions {
  std::filesystem::path model;  // empty: random weights of the Phi-3-mini shape
  std::vector<DType> dtypes = {DType::kF16, DType::kBF16};  // random weights only
  std::int64_t layers = 32;                                 // random weights only
  std::size_t threads = 2;
  std::int64_t prompt = 128;  // prefill tokens
  std::int64_t decode = 16;   // decode steps per window
  int repeats = 3;            // windows; the fastest is reported (the machine is shared)
  DType kv_dtype = DType::kF16;
};

struct LlmBenchRow {
  std::string model;
  std::string dtype;
  double load_seconds = 0.0;  // file: load(); random: making the weights in memory
  double prefill_tokens_per_s = 0.0;
  double decode_tokens_per_s = 0.0;
  std::uint64_t weight_bytes_per_token = 0;
  double limit_tokens_per_s = 0.0;  // bandwidth / weight bytes per token
  double decode_fraction = 0.0;     // decode / limit
  double prefill_gflops = 0.0;
  std::uint64_t peak_rss = 0;  // of the process after this row
};

struct LlmBenchReport {
  std::string cpu;
  std::string backend;
  std::size_t threads = 0;
  double bandwidth_gbs = 0.0;
  double peak_gflops = 0.0;
  std::vector<LlmBenchRow> rows;
};

LlmBenchReport run_llm_bench(const LlmBenchOptions& options);
std::string to_text(const LlmBenchReport& report);
nlohmann::json to_json(const LlmBenchReport& report);

}  // namespace hearth::models
