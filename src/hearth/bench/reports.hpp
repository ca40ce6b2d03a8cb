// The reports of bench-cli's measuring subcommands (report.hpp's format): each turns what its
// benchmark measured into figures with stable ids, markdown tables and charts.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "hearth/bench/report.hpp"
#include "hearth/models/embed_bench.hpp"
#include "hearth/models/llm_bench.hpp"
#include "hearth/rag/bench_rag.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::bench {

// `bench-cli embed`: throughput and GFLOP/s per batch x length beside the FMA peak (taken from
// the run, machine.peak_gflops is set to it), hearth's GEMM beside OpenBLAS.
Report embed_report(const models::EmbedBenchReport& r, const models::EmbedBenchOptions& o,
                    Machine machine);

// `bench-cli llm`: ppN / tgN tokens/s beside their limits (prefill against the FMA peak, decode
// against the read bandwidth, one chart each), the peer's when there is one; per model load,
// first token and peak RSS. The machine's limits are the run's best probes.
Report llm_report(const models::LlmBenchReport& r);

// `bench-cli rag`: nDCG@10 (and recall, MRR) per mode, latency histograms per mode and for BM25
// top 10, ingest, PDF and dense figures when measured.
Report rag_report(const rag::BenchRagResult& result, const rag::BenchRagOptions& o,
                  Machine machine);

// `bench-cli tokenize`: one encoding of text, then encode calls of the same text repeated for
// about `seconds` (at least 3 calls): per-call latency, tokens/s, MB/s.
struct TokenizeBench {
  std::string model;
  std::string model_type;
  tokenize::Encoding encoding;
  std::vector<std::string> pieces;
  std::size_t text_bytes = 0;
  std::vector<double> call_us;  // each timed call
};
TokenizeBench run_tokenize_bench(const tokenize::Tokenizer& tok, const std::string& model,
                                 const std::string& text, const std::optional<std::string>& pair,
                                 bool add_special, double seconds);
Report tokenize_report(const TokenizeBench& b, Machine machine);

}  // namespace hearth::bench
