// The sentence-embedding benchmark behind `bench-cli embed`: sentences/s and tokens/s of a BERT
// encoder at several batch sizes and input lengths, achieved GFLOP/s (whole model and its GEMMs)
// beside the machine's FMA peak measured in the same run, and hearth's GEMM vs OpenBLAS at the
// model's shapes.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/kernels/backend.hpp"

namespace hearth::models {

struct EmbedBenchOptions {
  std::filesystem::path model;  // empty: MiniLM-shape random weights (384 x 6 layers, 12 heads)
  std::size_t threads = 2;
  std::vector<int> batches = {1, 32};
  std::vector<int> lengths = {64, 256};
  double seconds = 2.0;  // per measurement window
  // Windows per measurement; the fastest is reported (this machine is shared, and other work
  // only ever slows a window down). The peak probe takes its best window too.
  int repeats = 3;
  kernels::GemmImpl gemm = kernels::GemmImpl::kAuto;
  bool compare_gemm = true;  // hearth vs OpenBLAS at every batch x length rows
};

struct EmbedBenchRow {
  int batch = 0;
  int length = 0;
  double sentences_per_s = 0.0;
  double tokens_per_s = 0.0;
  double model_gflops = 0.0;  // all model FLOPs (linears + attention) / wall time
  double gemm_gflops = 0.0;   // linear-layer FLOPs / time inside linear layers
  double gemm_share = 0.0;    // fraction of wall time inside linear layers
};

struct GemmShapeRow {
  std::int64_t m = 0, n = 0, k = 0;
  double hearth_gflops = 0.0;
  double openblas_gflops = 0.0;
};

struct EmbedBenchReport {
  std::string model;
  std::string backend;
  std::string cpu;
  std::size_t threads = 0;
  int repeats = 1;
  double peak_gflops = 0.0;
  std::vector<EmbedBenchRow> rows;
  std::vector<GemmShapeRow> gemm;
};

EmbedBenchReport run_embed_bench(const EmbedBenchOptions& options);
std::string to_text(const EmbedBenchReport& report);
nlohmann::json to_json(const EmbedBenchReport& report);

}  // namespace hearth::models
