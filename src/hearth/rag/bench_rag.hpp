// `bench-cli rag`: builds (or reuses) a bank from a BEIR dataset and reports retrieval quality,
// latency and ingest speed; optionally PDF pages/s beside pdftotext and exact dense top-10 speed
// against the measured memory bandwidth. Markdown tables, then the same figures as JSON. Several
// modes (`--mode bm25,dense,hybrid`) are evaluated over one bank, ingested once.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hearth::rag {

struct BenchRagOptions {
  std::string beir;
  std::string split = "test";
  std::string mode = "bm25";    // one mode or a comma-separated list
  std::string embedding_model;  // needed by dense and hybrid
  std::string reranker;
  std::string bank;  // empty: a temporary bank, removed afterwards
  std::size_t max_docs = 0;
  std::vector<std::string> pdfs;  // PDF files or folders: pages/s beside pdftotext
  std::size_t dense_rows = 0;     // synthetic exact dense top-10 against memory bandwidth
  std::size_t dense_dim = 384;
  std::size_t threads = 0;
};

struct BenchRagResult {
  // {"beir": the first mode's figures, "beir_modes": every mode's (with two or more modes),
  //  "pdf": ..., "dense": ...}, as printed.
  nlohmann::json json;
  // Per query, milliseconds: each mode's search (top 100 with texts), in mode order, then BM25
  // top 10 with texts (what `rag-cli search` does).
  std::vector<std::pair<std::string, std::vector<double>>> latencies_ms;
};

void add_bench_rag_options(CLI::App& app, BenchRagOptions& options);
// Prints the tables and the JSON.
BenchRagResult run_bench_rag(const BenchRagOptions& options);

}  // namespace hearth::rag
