// Retrieval over one or more banks (BM25, dense, or both fused by reciprocal rank fusion), an
// optional cross-encoder rerank, and the extractive answer used until an LLM is configured.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "hearth/rag/bank.hpp"
#include "hearth/rag/embedding.hpp"

namespace hearth::rag {

enum class SearchMode { kAuto, kBm25, kDense, kHybrid };

// "auto", "bm25", "dense", "hybrid"; throws kInvalidArgument otherwise.
SearchMode parse_search_mode(const std::string& name);
const char* to_string(SearchMode mode);

struct SearchOptions {
  SearchMode mode = SearchMode::kAuto;  // auto: hybrid when every bank has vectors, else BM25
  std::size_t top_k = 5;
  std::size_t candidates = 20;  // per list, and what the reranker sees
  std::string path_glob;
  Reranker* reranker = nullptr;
  double rrf_k = 60.0;
};

struct Hit {
  std::size_t bank = 0;  // index into the banks passed in
  ChunkInfo chunk;
  double score = 0;  // reranker score, else the fused (or single-list) score
};

// banks must all use the same embedding model when mode needs vectors.
std::vector<Hit> search(const std::vector<const Bank*>& banks, const std::string& query,
                        const SearchOptions& options);

struct Citation {
  int number = 0;  // [number] in the answer
  std::string path;
  int page_first = 0;
  int page_last = 0;
  std::string heading;
};

struct AnswerSentence {
  std::string text;
  int citation = 0;
};

struct ExtractiveAnswer {
  std::vector<AnswerSentence> sentences;
  std::vector<Citation> citations;
  std::vector<Hit> hits;
};

// The sentences of the hits that share the most (rarer) words with the question, at most
// max_sentences, each citing its chunk's document and pages.
ExtractiveAnswer extractive_answer(const std::string& question, const std::vector<Hit>& hits,
                                   std::size_t max_sentences = 3);

// "file.pdf, p. 3" / "file.pdf, pp. 3-4" / "file.md".
std::string format_citation(const Citation& c);

}  // namespace hearth::rag
