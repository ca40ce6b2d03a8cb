#include "hearth/rag/beir.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/hash.hpp"
#include "hearth/core/timer.hpp"

namespace hearth::rag {
namespace fs = std::filesystem;
namespace {

template <typename Fn>
void for_each_line(const fs::path& file, Fn&& fn) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot open", {.file = file.string()});
  std::string line;
  std::uint64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line == "\r") continue;
    try {
      if (!fn(line, n)) break;
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::kFormat, "line " + std::to_string(n) + ": " + e.what(),
                  {.file = file.string()});
    }
  }
}

std::string json_id(const nlohmann::json& j) {
  const auto& id = j.at("_id");
  return id.is_string() ? id.get<std::string>() : id.dump();
}

}  // namespace

BeirDataset load_beir(const fs::path& dir, const std::string& split, std::size_t max_docs) {
  BeirDataset d;
  for_each_line(dir / "corpus.jsonl", [&](const std::string& line, std::uint64_t) {
    const auto j = nlohmann::json::parse(line);
    d.corpus.push_back({json_id(j), j.value("title", ""), j.value("text", "")});
    return max_docs == 0 || d.corpus.size() < max_docs;
  });
  if (split.empty()) return d;
  for_each_line(dir / "queries.jsonl", [&](const std::string& line, std::uint64_t) {
    const auto j = nlohmann::json::parse(line);
    d.queries[json_id(j)] = j.value("text", "");
    return true;
  });
  const fs::path qrels = dir / "qrels" / (split + ".tsv");
  for_each_line(qrels, [&](const std::string& line, std::uint64_t n) {
    const std::size_t a = line.find('\t');
    const std::size_t b = a == std::string::npos ? a : line.find('\t', a + 1);
    if (b == std::string::npos) {
      throw Error(ErrorCode::kFormat, "line " + std::to_string(n) + ": expected 3 columns",
                  {.file = qrels.string()});
    }
    if (n == 1 && line.starts_with("query-id")) return true;
    d.qrels[line.substr(0, a)][line.substr(a + 1, b - a - 1)] = std::atoi(line.c_str() + b + 1);
    return true;
  });
  return d;
}

ChunkingOptions beir_chunking() {
  return {ChunkingOptions::Mode::kStructural, 1000000, 0};
}

Bank::StoreCounts ingest_beir(Bank& bank, const BeirDataset& data, std::size_t batch_size) {
  Bank::StoreCounts total;
  std::vector<Bank::PendingDocument> batch;
  auto flush = [&] {
    if (batch.empty()) return;
    const auto c = bank.store_batch(batch);
    total.added += c.added;
    total.updated += c.updated;
    total.unchanged += c.unchanged;
    total.chunks += c.chunks;
    batch.clear();
  };
  for (const BeirDocument& doc : data.corpus) {
    throw_if_cancelled();
    Bank::PendingDocument p;
    p.key = doc.id;
    std::string text = doc.title + "\n\n" + doc.text;
    p.hash = content_hash(text);
    p.size = text.size();
    p.doc = parse_markdown("");
    p.doc.kind = "beir";
    p.doc.text = std::move(text);
    if (!doc.title.empty()) p.doc.blocks.push_back({1, 0, doc.title.size()});
    if (!doc.text.empty()) {
      p.doc.blocks.push_back({0, doc.title.size() + 2, p.doc.text.size()});
    }
    p.doc.title = doc.title;
    batch.push_back(std::move(p));
    if (batch.size() >= batch_size) flush();
  }
  flush();
  return total;
}

double ndcg_at(const std::vector<std::string>& ranked, const std::map<std::string, int>& rels,
               std::size_t k) {
  double dcg = 0;
  for (std::size_t i = 0; i < std::min(k, ranked.size()); ++i) {
    const auto it = rels.find(ranked[i]);
    if (it != rels.end() && it->second > 0) dcg += it->second / std::log2(double(i) + 2);
  }
  std::vector<int> ideal;
  for (const auto& [id, r] : rels) {
    if (r > 0) ideal.push_back(r);
  }
  std::sort(ideal.rbegin(), ideal.rend());
  double idcg = 0;
  for (std::size_t i = 0; i < std::min(k, ideal.size()); ++i) {
    idcg += ideal[i] / std::log2(double(i) + 2);
  }
  return idcg > 0 ? dcg / idcg : 0;
}

BeirMetrics evaluate_beir(const std::vector<const Bank*>& banks, const BeirDataset& data,
                          SearchOptions options) {
  BeirMetrics m;
  options.top_k = 100;
  options.candidates = std::max<std::size_t>(options.candidates, 100);
  std::vector<double> latencies;
  for (const auto& [qid, rels] : data.qrels) {
    throw_if_cancelled();
    const auto q = data.queries.find(qid);
    if (q == data.queries.end()) continue;
    const Timer t;
    const std::vector<Hit> hits = search(banks, q->second, options);
    latencies.push_back(t.millis());
    std::vector<std::string> ranked;
    std::set<std::string> seen;
    for (const Hit& h : hits) {
      if (seen.insert(h.chunk.path).second) ranked.push_back(h.chunk.path);
    }
    std::size_t relevant = 0;
    std::size_t hit10 = 0;
    std::size_t hit100 = 0;
    double rr = 0;
    for (const auto& [id, r] : rels) relevant += r > 0 ? 1 : 0;
    for (std::size_t i = 0; i < ranked.size() && i < 100; ++i) {
      const auto it = rels.find(ranked[i]);
      if (it == rels.end() || it->second <= 0) continue;
      ++hit100;
      if (i < 10) {
        ++hit10;
        if (rr == 0) rr = 1.0 / double(i + 1);
      }
    }
    m.ndcg10 += ndcg_at(ranked, rels, 10);
    if (relevant > 0) {
      m.recall10 += double(hit10) / double(relevant);
      m.recall100 += double(hit100) / double(relevant);
    }
    m.mrr10 += rr;
    ++m.queries;
  }
  if (m.queries > 0) {
    const double n = double(m.queries);
    m.ndcg10 /= n;
    m.recall10 /= n;
    m.recall100 /= n;
    m.mrr10 /= n;
    m.latencies_ms = latencies;
    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double p) {
      const std::size_t i = std::min(
          latencies.size() - 1, static_cast<std::size_t>(p * double(latencies.size() - 1) + 0.5));
      return latencies[i];
    };
    m.p50_ms = pct(0.50);
    m.p99_ms = pct(0.99);
  }
  return m;
}

}  // namespace hearth::rag
