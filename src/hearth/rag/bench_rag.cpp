#include "hearth/rag/bench_rag.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/rag/beir.hpp"

namespace hearth::rag {
namespace fs = std::filesystem;

void add_bench_rag_options(CLI::App& app, BenchRagOptions& o) {
  app.add_option("--beir", o.beir, "BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)")
      ->required();
  app.add_option("--split", o.split, "qrels split")->capture_default_str();
  app.add_option("--mode", o.mode, "bm25, dense or hybrid")->capture_default_str();
  app.add_option("--reranker", o.reranker, "Cross-encoder folder (needs the BERT engine)");
  app.add_option("--bank", o.bank, "Keep the bank in this folder (reused when it exists)");
  app.add_option("--max-docs", o.max_docs, "Use only the first N corpus documents");
}

int run_bench_rag(const BenchRagOptions& o) {
  const SearchMode mode = parse_search_mode(o.mode);
  if (mode != SearchMode::kBm25) {
    throw Error(ErrorCode::kUnsupported,
                std::string("--mode ") + o.mode +
                    " needs an embedding model, which this build does not have yet (compute "
                    "core + BERT issue); use --mode bm25");
  }
  if (!o.reranker.empty()) {
    throw Error(ErrorCode::kUnsupported,
                "--reranker needs the BERT engine, which this build does not have yet");
  }
  const Timer load_timer;
  const BeirDataset data = load_beir(o.beir, o.split, o.max_docs);
  const double load_s = load_timer.seconds();
  fs::path folder = o.bank;
  bool temporary = false;
  if (folder.empty()) {
    folder = fs::temp_directory_path() / ("hearth-bench-rag-" + std::to_string(::getpid()) + "-" +
                                          std::to_string(std::random_device{}()));
    temporary = true;
  }
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ec;
      if (!path.empty()) fs::remove_all(path, ec);
    }
  } cleanup{temporary ? folder : fs::path()};
  auto bank = Bank::open(folder, nullptr, true, beir_chunking());
  std::uint64_t bytes = 0;
  for (const BeirDocument& d : data.corpus) bytes += d.title.size() + d.text.size();
  const Timer ingest_timer;
  const Bank::StoreCounts counts = ingest_beir(*bank, data);
  const double ingest_s = ingest_timer.seconds();

  SearchOptions so;
  so.mode = mode;
  const BeirMetrics m = evaluate_beir({bank.get()}, data, so);

  // Raw BM25 top-10 latency (the FTS5 query alone, without fetching chunk texts).
  std::vector<double> raw;
  for (const auto& [qid, rels] : data.qrels) {
    const auto q = data.queries.find(qid);
    if (q == data.queries.end()) continue;
    const Timer t;
    (void)bank->search_bm25(q->second, 10);
    raw.push_back(t.millis());
  }
  std::sort(raw.begin(), raw.end());
  const double raw_p50 = raw.empty() ? 0 : raw[raw.size() / 2];

  const double docs_s = double(data.corpus.size()) / std::max(ingest_s, 1e-9);
  const double mb_s = double(bytes) / 1e6 / std::max(ingest_s, 1e-9);
  std::printf("| metric | value |\n|---|---|\n");
  std::printf("| dataset | %s (%s, %zu queries, %zu docs) |\n", fs::path(o.beir).filename().c_str(),
              o.split.c_str(), m.queries, data.corpus.size());
  std::printf("| mode | %s |\n", o.mode.c_str());
  std::printf(
      "| nDCG@10 | %.4f |\n| Recall@10 | %.4f |\n| Recall@100 | %.4f |\n| MRR@10 | %.4f |\n",
      m.ndcg10, m.recall10, m.recall100, m.mrr10);
  std::printf("| query latency p50 (top 100, with texts) | %.3f ms |\n", m.p50_ms);
  std::printf("| query latency p99 (top 100, with texts) | %.3f ms |\n", m.p99_ms);
  std::printf("| BM25 top-10 p50 (FTS5 query alone) | %.3f ms |\n", raw_p50);
  std::printf("| ingest (%zu new, %zu unchanged) | %.2f s, %.0f docs/s, %.2f MB/s |\n",
              counts.added + counts.updated, counts.unchanged, ingest_s, docs_s, mb_s);
  nlohmann::json j{{"dataset", o.beir},
                   {"split", o.split},
                   {"mode", o.mode},
                   {"queries", m.queries},
                   {"documents", data.corpus.size()},
                   {"ndcg@10", m.ndcg10},
                   {"recall@10", m.recall10},
                   {"recall@100", m.recall100},
                   {"mrr@10", m.mrr10},
                   {"latency_p50_ms", m.p50_ms},
                   {"latency_p99_ms", m.p99_ms},
                   {"bm25_top10_p50_ms", raw_p50},
                   {"load_seconds", load_s},
                   {"ingest_seconds", ingest_s},
                   {"ingest_docs_per_s", docs_s},
                   {"ingest_mb_per_s", mb_s},
                   {"ingested_documents", counts.added + counts.updated}};
  std::printf("\n```json\n%s\n```\n", j.dump(2).c_str());
  return 0;
}

}  // namespace hearth::rag
