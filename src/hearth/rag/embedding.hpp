// The seams through which neural models plug into knowledge banks. The bank needs only these two
// interfaces; the BERT embedder and the cross-encoder implement them.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::rag {

class EmbeddingModel {
 public:
  virtual ~EmbeddingModel() = default;
  // A stable name ("sentence-transformers/all-MiniLM-L6-v2") and a fingerprint of the weights:
  // a bank built with one model refuses another.
  virtual std::string id() const = 0;
  virtual std::string fingerprint() const = 0;
  virtual std::size_t dim() const = 0;
  // Row-major texts.size() x dim() embeddings. The bank L2-normalises them (cosine = dot).
  virtual std::vector<float> embed(const std::vector<std::string>& texts) = 0;
  // Tokens text costs in this model, special tokens not counted (token-budget chunking).
  virtual std::size_t count_tokens(std::string_view text) const = 0;
};

class Reranker {
 public:
  virtual ~Reranker() = default;
  // One relevance score per passage, higher is better.
  virtual std::vector<float> score(const std::string& query,
                                   const std::vector<std::string>& passages) = 0;
};

}  // namespace hearth::rag
