// The knowledge banks' model seams (embedding.hpp) implemented by hearth's BERT engine: a
// sentence-transformers embedder for dense retrieval and token-budget chunking, and a
// cross-encoder for reranking.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/bert.hpp"
#include "hearth/rag/embedding.hpp"

namespace hearth::rag {

class BertEmbedding : public EmbeddingModel {
 public:
  // A sentence-transformers folder or a GGUF `bert` file.
  static std::unique_ptr<BertEmbedding> load(const std::filesystem::path& path,
                                             const models::BertOptions& options = {});
  explicit BertEmbedding(models::Embedder embedder) : embedder_(std::move(embedder)) {}

  std::string id() const override { return embedder_.name(); }
  std::string fingerprint() const override { return embedder_.fingerprint(); }
  std::size_t dim() const override { return static_cast<std::size_t>(embedder_.dimension()); }
  std::vector<float> embed(const std::vector<std::string>& texts) override;
  std::size_t count_tokens(std::string_view text) const override {
    return embedder_.count_tokens(text);
  }
  // The most tokens of text one input can hold (max_length less [CLS] and [SEP]).
  std::size_t max_text_tokens() const;
  models::Embedder& embedder() { return embedder_; }

 private:
  models::Embedder embedder_;
};

class CrossEncoderReranker : public Reranker {
 public:
  static std::unique_ptr<CrossEncoderReranker> load(const std::filesystem::path& path,
                                                    const models::BertOptions& options = {});
  explicit CrossEncoderReranker(models::CrossEncoder encoder) : encoder_(std::move(encoder)) {}

  // Raw logits (higher is more relevant).
  std::vector<float> score(const std::string& query,
                           const std::vector<std::string>& passages) override {
    return encoder_.score(query, passages);
  }
  models::CrossEncoder& encoder() { return encoder_; }

 private:
  models::CrossEncoder encoder_;
};

}  // namespace hearth::rag
