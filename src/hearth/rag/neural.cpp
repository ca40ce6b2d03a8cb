#include "hearth/rag/neural.hpp"

#include <algorithm>

namespace hearth::rag {

std::unique_ptr<BertEmbedding> BertEmbedding::load(const std::filesystem::path& path,
                                                   const models::BertOptions& options) {
  return std::make_unique<BertEmbedding>(models::Embedder::load(path, options));
}

std::vector<float> BertEmbedding::embed(const std::vector<std::string>& texts) {
  const std::vector<std::vector<float>> rows = embedder_.embed(texts);
  std::vector<float> out;
  out.reserve(rows.size() * dim());
  for (const std::vector<float>& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

std::size_t BertEmbedding::max_text_tokens() const {
  const std::int64_t n = embedder_.model_max_length() - 2;
  return static_cast<std::size_t>(std::max<std::int64_t>(n, 1));
}

std::unique_ptr<CrossEncoderReranker> CrossEncoderReranker::load(
    const std::filesystem::path& path, const models::BertOptions& options) {
  return std::make_unique<CrossEncoderReranker>(models::CrossEncoder::load(path, options));
}

}  // namespace hearth::rag
