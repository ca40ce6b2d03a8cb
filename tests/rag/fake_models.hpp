// Deterministic stand-ins for the neural models, so dense storage, top-k, fusion and reranking
// are tested without weights.
#pragma once

#include <cctype>
#include <string>
#include <vector>

#include "hearth/rag/embedding.hpp"

namespace hearth::rag::testing_fakes {

// Hashed bag of words: each lower-cased word adds 1 to one of dim buckets.
class FakeEmbedding : public EmbeddingModel {
 public:
  explicit FakeEmbedding(std::size_t dim = 32, std::string id = "fake-bow")
      : dim_(dim), id_(std::move(id)) {}
  std::string id() const override { return id_; }
  std::string fingerprint() const override { return "fp-" + id_ + "-" + std::to_string(dim_); }
  std::size_t dim() const override { return dim_; }
  std::vector<float> embed(const std::vector<std::string>& texts) override {
    ++calls;
    embedded += texts.size();
    std::vector<float> out(texts.size() * dim_, 0.0f);
    for (std::size_t t = 0; t < texts.size(); ++t) {
      std::string word;
      auto flush = [&] {
        if (word.empty()) return;
        std::size_t h = 1469598103u;
        for (const char c : word) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
        out[t * dim_ + h % dim_] += 1.0f;
        word.clear();
      };
      for (const char c : texts[t]) {
        if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
          word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        } else {
          flush();
        }
      }
      flush();
    }
    return out;
  }
  // One token per alphanumeric run.
  std::size_t count_tokens(std::string_view text) const override {
    std::size_t n = 0;
    bool in_word = false;
    for (const char c : text) {
      const bool alnum = std::isalnum(static_cast<unsigned char>(c)) != 0;
      n += alnum && !in_word ? 1 : 0;
      in_word = alnum;
    }
    return n;
  }
  std::size_t calls = 0;
  std::size_t embedded = 0;

 private:
  std::size_t dim_;
  std::string id_;
};

// Scores a passage by how often it contains the needle.
class FakeReranker : public Reranker {
 public:
  explicit FakeReranker(std::string needle) : needle_(std::move(needle)) {}
  std::vector<float> score(const std::string&, const std::vector<std::string>& passages) override {
    std::vector<float> s;
    for (const std::string& p : passages) {
      float n = 0;
      for (std::size_t at = p.find(needle_); at != std::string::npos;
           at = p.find(needle_, at + 1)) {
        n += 1;
      }
      s.push_back(n);
    }
    return s;
  }

 private:
  std::string needle_;
};

}  // namespace hearth::rag::testing_fakes
