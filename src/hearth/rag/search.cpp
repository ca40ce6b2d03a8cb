#include "hearth/rag/search.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/rag/chunker.hpp"
#include "hearth/rag/dense.hpp"

namespace hearth::rag {
namespace {

constexpr int kBankShift = 48;  // fused ids: bank index in the high bits, chunk id below

std::int64_t fused_id(std::size_t bank, std::int64_t chunk) {
  return (static_cast<std::int64_t>(bank) << kBankShift) | chunk;
}

// Lower-cased words with a crude suffix folding, for matching question words in sentences.
std::vector<std::string> terms_of(std::string_view text) {
  std::vector<std::string> out;
  for (std::string& w : lowercase_words(text)) {
    if (w.size() <= 1 || is_stop_word(w)) continue;
    if (w.size() > 3 && w.back() == 's') w.pop_back();
    if (w.size() > 6) w.resize(6);
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace

SearchMode parse_search_mode(const std::string& name) {
  if (name == "auto") return SearchMode::kAuto;
  if (name == "bm25") return SearchMode::kBm25;
  if (name == "dense") return SearchMode::kDense;
  if (name == "hybrid") return SearchMode::kHybrid;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown search mode '" + name + "' (auto, bm25, dense, hybrid)");
}

const char* to_string(SearchMode mode) {
  switch (mode) {
    case SearchMode::kAuto:
      return "auto";
    case SearchMode::kBm25:
      return "bm25";
    case SearchMode::kDense:
      return "dense";
    case SearchMode::kHybrid:
      return "hybrid";
  }
  return "?";
}

std::vector<Hit> search(const std::vector<const Bank*>& banks, const std::string& query,
                        const SearchOptions& options) {
  std::vector<Hit> hits;
  if (banks.empty() || options.top_k == 0) return hits;
  SearchMode mode = options.mode;
  const bool all_dense = std::all_of(banks.begin(), banks.end(), [](const Bank* b) {
    return b->has_vectors() && b->model() != nullptr;
  });
  if (mode == SearchMode::kAuto) mode = all_dense ? SearchMode::kHybrid : SearchMode::kBm25;
  const bool use_dense = mode == SearchMode::kDense || mode == SearchMode::kHybrid;
  const bool use_bm25 = mode == SearchMode::kBm25 || mode == SearchMode::kHybrid;
  if (use_dense && !all_dense) {
    throw Error(ErrorCode::kUnsupported,
                std::string(to_string(mode)) +
                    " search needs banks built with an embedding model and that model loaded; "
                    "use --mode bm25");
  }
  const std::size_t per_list = std::max(options.candidates, options.top_k);
  std::vector<std::vector<std::int64_t>> lists;
  std::unordered_map<std::int64_t, double> single_scores;
  std::vector<float> qvec;
  if (use_dense) {
    const EmbeddingModel* first = banks[0]->model();
    for (const Bank* b : banks) {
      if (b->model()->fingerprint() != first->fingerprint() || b->model()->dim() != first->dim()) {
        throw Error(ErrorCode::kInvalidArgument,
                    "banks searched together must share one embedding model",
                    {.file = b->folder()});
      }
    }
    qvec = banks[0]->model()->embed({query});
    normalize_rows(qvec.data(), 1, qvec.size());
  }
  for (std::size_t i = 0; i < banks.size(); ++i) {
    throw_if_cancelled();
    if (use_bm25) {
      std::vector<std::int64_t> list;
      for (const ChunkScore& s : banks[i]->search_bm25(query, per_list, options.path_glob)) {
        list.push_back(fused_id(i, s.chunk_id));
        single_scores[list.back()] = s.score;
      }
      lists.push_back(std::move(list));
    }
    if (use_dense) {
      std::vector<std::int64_t> list;
      for (const ChunkScore& s : banks[i]->search_dense(qvec, per_list, options.path_glob)) {
        list.push_back(fused_id(i, s.chunk_id));
        single_scores[list.back()] = s.score;
      }
      lists.push_back(std::move(list));
    }
  }
  const std::size_t keep = options.reranker != nullptr ? per_list : options.top_k;
  std::vector<std::pair<std::int64_t, double>> ranked;
  if (lists.size() == 1) {
    for (const std::int64_t id : lists[0]) ranked.emplace_back(id, single_scores[id]);
  } else {
    ranked = reciprocal_rank_fusion(lists, options.rrf_k);
  }
  if (ranked.size() > keep) ranked.resize(keep);
  for (const auto& [id, score] : ranked) {
    const std::size_t bank = static_cast<std::size_t>(id >> kBankShift);
    const std::int64_t chunk_id = id & ((std::int64_t{1} << kBankShift) - 1);
    auto info = banks[bank]->chunk(chunk_id);
    if (!info) continue;  // removed meanwhile by another process
    hits.push_back({bank, std::move(*info), score});
  }
  if (options.reranker != nullptr && !hits.empty()) {
    std::vector<std::string> passages;
    for (const Hit& h : hits) passages.push_back(h.chunk.text);
    const std::vector<float> scores = options.reranker->score(query, passages);
    if (scores.size() != hits.size()) {
      throw Error(ErrorCode::kInternal, "reranker returned the wrong number of scores");
    }
    for (std::size_t i = 0; i < hits.size(); ++i) hits[i].score = scores[i];
    std::stable_sort(hits.begin(), hits.end(),
                     [](const Hit& a, const Hit& b) { return a.score > b.score; });
    if (hits.size() > options.top_k) hits.resize(options.top_k);
  }
  return hits;
}

std::string format_citation(const Citation& c) {
  std::string s = c.path;
  if (c.page_first > 0) {
    if (c.page_last > c.page_first) {
      s += ", pp. " + std::to_string(c.page_first) + "-" + std::to_string(c.page_last);
    } else {
      s += ", p. " + std::to_string(c.page_first);
    }
  }
  return s;
}

ExtractiveAnswer extractive_answer(const std::string& question, const std::vector<Hit>& hits,
                                   std::size_t max_sentences) {
  ExtractiveAnswer answer;
  answer.hits = hits;
  const std::vector<std::string> qterms_list = terms_of(question);
  const std::set<std::string> qterms(qterms_list.begin(), qterms_list.end());
  if (qterms.empty()) return answer;
  struct Candidate {
    std::string text;
    std::size_t hit;
    std::set<std::string> matched;
    double score = 0;
  };
  std::vector<Candidate> candidates;
  std::map<std::string, std::size_t> df;
  for (std::size_t h = 0; h < hits.size(); ++h) {
    const std::string& text = hits[h].chunk.text;
    for (const auto& [b, e] : split_sentences(text)) {
      std::string sentence = collapse_whitespace(std::string_view(text).substr(b, e - b));
      if (sentence.size() < 15) continue;
      Candidate c{std::move(sentence), h, {}, 0};
      for (const std::string& t : terms_of(c.text)) {
        if (qterms.count(t) > 0) c.matched.insert(t);
      }
      if (c.matched.empty()) continue;
      for (const std::string& t : c.matched) ++df[t];
      candidates.push_back(std::move(c));
    }
  }
  const double n = static_cast<double>(candidates.size());
  for (Candidate& c : candidates) {
    for (const std::string& t : c.matched) c.score += std::log(1.0 + n / double(df[t]));
    // Question words in the chunk's headings support its sentences too, at half weight.
    for (const std::string& t : terms_of(hits[c.hit].chunk.heading)) {
      if (qterms.count(t) > 0 && c.matched.count(t) == 0 && df.count(t) > 0) {
        c.score += 0.5 * std::log(1.0 + n / double(df[t]));
      }
    }
    c.score += 1.0 / static_cast<double>(c.hit + 1);  // prefer better-ranked chunks
    if (c.text.size() > 400) c.score *= 0.8;          // long sentences answer less precisely
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
  std::set<std::string> used;
  std::map<std::string, int> citation_of;  // "path|pages" -> number
  for (const Candidate& c : candidates) {
    if (answer.sentences.size() >= max_sentences) break;
    if (!used.insert(c.text).second) continue;
    const ChunkInfo& chunk = hits[c.hit].chunk;
    const std::string key =
        chunk.path + "|" + std::to_string(chunk.page_first) + "-" + std::to_string(chunk.page_last);
    auto [it, inserted] = citation_of.emplace(key, 0);
    if (inserted) {
      it->second = static_cast<int>(answer.citations.size()) + 1;
      answer.citations.push_back(
          {it->second, chunk.path, chunk.page_first, chunk.page_last, chunk.heading});
    }
    answer.sentences.push_back({c.text, it->second});
  }
  return answer;
}

}  // namespace hearth::rag
