// Test support for the decoder engine: hearth-make-model's random decoders with a real tokenizer,
// the independent torch reference (tools/llm_reference.py, many jobs in one Python process), and
// hearth's own prompt-then-greedy run, all with the same row layout so they compare row for row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/models/decoder.hpp"
#include "support/fixtures.hpp"

namespace hearth::testing {

// Writes a decoder (hearth-make-model args such as "--arch phi3 --dtype bf16") with the
// stories260K tokenizer (vocab 512) as an HF folder at dir and/or a GGUF file at dir + ".gguf".
// Needs the models/stories260K fixture; a failure is fatal (check HasFatalFailure()).
void make_stories_decoder(const std::filesystem::path& dir, const std::string& args, bool hf = true,
                          bool gguf = true);

// n ids: BOS (1) then uniform ids in [3, vocab) from seed.
std::vector<std::int32_t> random_ids(int n, int vocab, unsigned seed);

// Logits of a prompt then greedy steps, rows [prompt + steps, vocab]: row i < prompt is prompt
// position i, row prompt + k the logits after feeding greedy_ids[k] (greedy_ids[0] is the argmax
// of the last prompt row; ties to the lowest id). The reference's and llama.cpp's layout.
struct LogitRows {
  std::vector<std::int32_t> prompt_ids;
  std::vector<std::int32_t> greedy_ids;
  std::size_t vocab = 0;
  std::vector<double> logits;
  std::size_t rows() const { return vocab == 0 ? 0 : logits.size() / vocab; }
  double at(std::size_t row, std::size_t col) const { return logits[row * vocab + col]; }
};

// Where two runs differ most: the largest |a - b| over rows [row0, row1), and in which row.
struct RowsDiff {
  double max = 0.0;
  std::size_t row = 0;
  std::vector<double> per_row;  // max |a - b| of each compared row
};
// The runs must have the same shape (a failed expectation and max = infinity otherwise).
RowsDiff diff_rows(const LogitRows& a, const LogitRows& b, std::size_t row0 = 0,
                   std::size_t row1 = SIZE_MAX);

// The standard deviation of every logit (random models should give neither flat nor exploding
// logits).
double logits_stddev(const LogitRows& r);

// hearth: the whole prompt in one feed (batched prefill), then steps greedy single-token feeds,
// in a session of the given context (0 = the model's default).
LogitRows run_hearth(const models::LanguageModel& model, const std::vector<std::int32_t>& prompt,
                     int steps, std::int64_t context = 0);

// One run of tools/llm_reference.py: float64 (or float32) full recompute at every step.
struct ReferenceJob {
  std::filesystem::path model;  // HF folder or .gguf
  std::vector<std::int32_t> ids;
  int steps = 0;
  std::string dtype = "float64";
  // The context an engine would run the model with: picks Phi-3's LongRoPE long factors when it
  // exceeds the original context (0 = the model's max_position_embeddings).
  std::int64_t ctx = 0;
};

struct ReferenceRun : LogitRows {
  int final_argmax = -1;        // argmax of the last row
  std::vector<double> margins;  // top-1 minus top-2 logit behind each greedy id
  nlohmann::json config;        // the reference's view of the model (arch, rope, factors...)
};

// Runs every job in one Python process (the torch import costs seconds) and reads the outputs.
// The caller checks HEARTH_REQUIRE_TORCH first; a failed run is a test failure and gives no runs.
std::vector<ReferenceRun> run_reference(const std::vector<ReferenceJob>& jobs, const TempDir& tmp);

}  // namespace hearth::testing
