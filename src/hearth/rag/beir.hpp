// BEIR retrieval benchmarks (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): loading, ingesting
// the corpus into a bank (one document per entry, title as heading), and the standard metrics.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "hearth/rag/bank.hpp"
#include "hearth/rag/search.hpp"

namespace hearth::rag {

struct BeirDocument {
  std::string id;
  std::string title;
  std::string text;
};

struct BeirDataset {
  std::vector<BeirDocument> corpus;
  std::map<std::string, std::string> queries;               // id -> text
  std::map<std::string, std::map<std::string, int>> qrels;  // query -> doc -> relevance
};

// Reads dir/corpus.jsonl (the first max_docs entries when max_docs > 0), dir/queries.jsonl and
// dir/qrels/<split>.tsv (qrels and queries skipped when split is empty). Throws Error naming the
// file and line on malformed input.
BeirDataset load_beir(const std::filesystem::path& dir, const std::string& split,
                      std::size_t max_docs = 0);

// Chunking for BEIR banks: each abstract stays one chunk.
ChunkingOptions beir_chunking();

// Stores the corpus (document key = corpus id) in batches of batch_size documents per
// transaction; unchanged documents are skipped, so a re-run completes an interrupted one.
Bank::StoreCounts ingest_beir(Bank& bank, const BeirDataset& data, std::size_t batch_size = 64);

struct BeirMetrics {
  std::size_t queries = 0;
  double ndcg10 = 0;
  double recall10 = 0;
  double recall100 = 0;
  double mrr10 = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  std::vector<double> latencies_ms;  // every query's, in query order
};

// Runs every query with relevance judgements through search (top 100 documents) and averages.
BeirMetrics evaluate_beir(const std::vector<const Bank*>& banks, const BeirDataset& data,
                          SearchOptions options);

// nDCG@k of a ranked list of document ids against graded judgements (gain = relevance).
double ndcg_at(const std::vector<std::string>& ranked, const std::map<std::string, int>& rels,
               std::size_t k);

}  // namespace hearth::rag
