// `bench-cli rag`: builds (or reuses) a bank from a BEIR dataset and reports retrieval quality
// and latency as a markdown table followed by the same figures as JSON.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <string>

namespace hearth::rag {

struct BenchRagOptions {
  std::string beir;
  std::string split = "test";
  std::string mode = "bm25";
  std::string reranker;
  std::string bank;  // empty: a temporary bank, removed afterwards
  std::size_t max_docs = 0;
};

void add_bench_rag_options(CLI::App& app, BenchRagOptions& options);
int run_bench_rag(const BenchRagOptions& options);

}  // namespace hearth::rag
