#include "hearth/rag/bench_rag.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "hearth/core/cpu.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/rag/beir.hpp"
#include "hearth/rag/dense.hpp"
#include "hearth/rag/neural.hpp"

namespace hearth::rag {
namespace fs = std::filesystem;

void add_bench_rag_options(CLI::App& app, BenchRagOptions& o) {
  app.add_option("--beir", o.beir, "BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)");
  app.add_option("--pdf", o.pdfs, "PDF files or folders: pages/s beside pdftotext");
  app.add_option("--dense-rows", o.dense_rows,
                 "Rows of a synthetic matrix for exact dense top-10 (e.g. 1000000)");
  app.add_option("--dense-dim", o.dense_dim, "Dimension of the synthetic vectors")
      ->capture_default_str();
  app.add_option("--split", o.split, "qrels split")->capture_default_str();
  app.add_option("--mode", o.mode, "bm25, dense or hybrid, or a comma-separated list of them")
      ->capture_default_str();
  app.add_option("--embedding-model", o.embedding_model,
                 "Sentence-transformers folder or GGUF (dense and hybrid modes)");
  app.add_option("--reranker", o.reranker,
                 "Cross-encoder folder or GGUF that reranks the top 100 of each query");
  app.add_option("--bank", o.bank, "Keep the bank in this folder (reused when it exists)");
  app.add_option("--max-docs", o.max_docs, "Use only the first N corpus documents");
}

namespace {

std::vector<std::string> split_modes(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(',', start), list.size());
    out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

nlohmann::json bench_beir(const BenchRagOptions& o, BenchRagResult& result) {
  const std::vector<std::string> names = split_modes(o.mode);
  std::vector<SearchMode> modes;
  for (const std::string& name : names) {
    modes.push_back(parse_search_mode(name));
    if ((modes.back() == SearchMode::kDense || modes.back() == SearchMode::kHybrid) &&
        o.embedding_model.empty()) {
      throw Error(ErrorCode::kInvalidArgument, "--mode " + name + " needs --embedding-model");
    }
  }
  models::BertOptions bert;
  bert.threads = o.threads;
  std::unique_ptr<BertEmbedding> embedding;
  std::unique_ptr<CrossEncoderReranker> reranker;
  if (!o.embedding_model.empty()) embedding = BertEmbedding::load(o.embedding_model, bert);
  if (!o.reranker.empty()) reranker = CrossEncoderReranker::load(o.reranker, bert);
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
  auto bank = Bank::open(folder, embedding.get(), true, beir_chunking());
  std::uint64_t bytes = 0;
  for (const BeirDocument& d : data.corpus) bytes += d.title.size() + d.text.size();
  const Timer ingest_timer;
  const Bank::StoreCounts counts = ingest_beir(*bank, data);
  const double ingest_s = ingest_timer.seconds();

  std::vector<BeirMetrics> metrics;
  for (std::size_t i = 0; i < modes.size(); ++i) {
    SearchOptions so;
    so.mode = modes[i];
    so.reranker = reranker.get();
    metrics.push_back(evaluate_beir({bank.get()}, data, so));
    result.latencies_ms.emplace_back(names[i], metrics.back().latencies_ms);
  }

  // BM25 top-10 latency: the FTS5 query alone, and what `rag-cli search` does (ranked chunks
  // with their texts, headings and paths).
  std::vector<double> raw;
  std::vector<double> top10;
  SearchOptions top10_options;
  top10_options.mode = SearchMode::kBm25;
  top10_options.top_k = 10;
  top10_options.candidates = 10;
  for (const auto& [qid, rels] : data.qrels) {
    const auto q = data.queries.find(qid);
    if (q == data.queries.end()) continue;
    const Timer t;
    (void)bank->search_bm25(q->second, 10);
    raw.push_back(t.millis());
    const Timer t2;
    (void)search({bank.get()}, q->second, top10_options);
    top10.push_back(t2.millis());
  }
  result.latencies_ms.emplace_back("bm25 top-10 with texts", top10);
  std::sort(raw.begin(), raw.end());
  std::sort(top10.begin(), top10.end());
  const double raw_p50 = raw.empty() ? 0 : raw[raw.size() / 2];
  const double top10_p50 = top10.empty() ? 0 : top10[top10.size() / 2];
  const double top10_p99 = top10.empty() ? 0 : top10[top10.size() * 99 / 100];

  const double docs_s = double(data.corpus.size()) / std::max(ingest_s, 1e-9);
  const double mb_s = double(bytes) / 1e6 / std::max(ingest_s, 1e-9);
  nlohmann::json all = nlohmann::json::array();
  for (std::size_t i = 0; i < modes.size(); ++i) {
    const BeirMetrics& m = metrics[i];
    if (i > 0) std::printf("\n");
    std::printf("| metric | value |\n|---|---|\n");
    std::printf("| dataset | %s (%s, %zu queries, %zu docs) |\n",
                fs::path(o.beir).filename().c_str(), o.split.c_str(), m.queries,
                data.corpus.size());
    std::printf("| mode | %s%s |\n", names[i].c_str(),
                reranker ? (" + rerank by " + reranker->encoder().name()).c_str() : "");
    if (embedding) std::printf("| embedding model | %s |\n", embedding->id().c_str());
    std::printf(
        "| nDCG@10 | %.4f |\n| Recall@10 | %.4f |\n| Recall@100 | %.4f |\n| MRR@10 | %.4f |\n",
        m.ndcg10, m.recall10, m.recall100, m.mrr10);
    std::printf("| query latency p50 (top 100, with texts) | %.3f ms |\n", m.p50_ms);
    std::printf("| query latency p99 (top 100, with texts) | %.3f ms |\n", m.p99_ms);
    std::printf("| BM25 top-10 p50 (FTS5 query alone) | %.3f ms |\n", raw_p50);
    std::printf("| BM25 top-10 with texts p50 / p99 (rag-cli search) | %.3f / %.3f ms |\n",
                top10_p50, top10_p99);
    std::printf("| ingest (%zu new, %zu unchanged) | %.2f s, %.0f docs/s, %.2f MB/s |\n",
                counts.added + counts.updated, counts.unchanged, ingest_s, docs_s, mb_s);
    all.push_back({{"dataset", o.beir},
                   {"split", o.split},
                   {"mode", names[i]},
                   {"embedding_model", embedding ? embedding->id() : ""},
                   {"reranker", reranker ? reranker->encoder().name() : ""},
                   {"queries", m.queries},
                   {"documents", data.corpus.size()},
                   {"ndcg@10", m.ndcg10},
                   {"recall@10", m.recall10},
                   {"recall@100", m.recall100},
                   {"mrr@10", m.mrr10},
                   {"latency_p50_ms", m.p50_ms},
                   {"latency_p99_ms", m.p99_ms},
                   {"bm25_top10_p50_ms", raw_p50},
                   {"bm25_top10_texts_p50_ms", top10_p50},
                   {"bm25_top10_texts_p99_ms", top10_p99},
                   {"load_seconds", load_s},
                   {"ingest_seconds", ingest_s},
                   {"ingest_docs_per_s", docs_s},
                   {"ingest_mb_per_s", mb_s},
                   {"ingested_documents", counts.added + counts.updated}});
  }
  return all;
}

// Pages/s of hearth's end-to-end PDF ingest (extract, chunk, store in a bank) and of pdftotext
// on the same files, in one run.
nlohmann::json bench_pdf(const BenchRagOptions& o) {
  std::vector<std::filesystem::path> roots(o.pdfs.begin(), o.pdfs.end());
  const auto files = collect_files(roots, {{"*.pdf"}, {}}, nullptr);
  if (files.empty()) throw Error(ErrorCode::kNotFound, "--pdf: no PDF files found");
  std::size_t pages = 0;
  std::uint64_t bytes = 0;
  for (const auto& f : files) {
    pages += load_document(f).page_starts.size();
    bytes += fs::file_size(f);
  }
  const fs::path dir =
      fs::temp_directory_path() / ("hearth-bench-pdf-" + std::to_string(::getpid()) + "-" +
                                   std::to_string(std::random_device{}()));
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } cleanup{dir};
  constexpr int kReps = 3;
  double best_hearth = 1e30;
  for (int r = 0; r < kReps; ++r) {
    const Timer t;
    auto bank = Bank::open(dir / ("bank" + std::to_string(r)), nullptr, true);
    const IngestReport rep = bank->ingest(roots, {});
    if (rep.failed > 0) throw Error(ErrorCode::kFormat, "--pdf: some files failed to ingest");
    best_hearth = std::min(best_hearth, t.seconds());
  }
  double best_extract = 1e30;
  for (int r = 0; r < kReps; ++r) {
    const Timer t;
    for (const auto& f : files) (void)load_document(f);
    best_extract = std::min(best_extract, t.seconds());
  }
  double best_tool = 1e30;
  bool tool_ok = true;
  for (int r = 0; r < kReps && tool_ok; ++r) {
    const Timer t;
    for (const auto& f : files) {
      const std::string cmd = "pdftotext '" + f.string() + "' /dev/null 2>/dev/null";
      tool_ok = tool_ok && std::system(cmd.c_str()) == 0;
    }
    best_tool = std::min(best_tool, t.seconds());
  }
  const double hearth_pps = double(pages) / best_hearth;
  const double tool_pps = tool_ok ? double(pages) / best_tool : 0.0;
  std::printf("\n| PDF (%zu files, %zu pages, %.1f MB) | pages/s |\n|---|---|\n", files.size(),
              pages, double(bytes) / 1e6);
  std::printf("| hearth ingest (extract + chunk + store) | %.1f |\n", hearth_pps);
  std::printf("| hearth extraction alone | %.1f |\n", double(pages) / best_extract);
  if (tool_ok) {
    std::printf("| pdftotext (one process per file) | %.1f |\n", tool_pps);
    std::printf("| ratio hearth / pdftotext | %.2fx |\n", hearth_pps / tool_pps);
  } else {
    std::printf("| pdftotext | not available |\n");
  }
  return {{"files", files.size()},
          {"pages", pages},
          {"hearth_pages_per_s", hearth_pps},
          {"hearth_extract_pages_per_s", double(pages) / best_extract},
          {"pdftotext_pages_per_s", tool_pps},
          {"ratio", tool_ok ? hearth_pps / tool_pps : 0.0}};
}

// Exact dense top-10 over rows x dim synthetic f32 vectors, beside the time to stream the same
// matrix through the cores (the measured memory bandwidth).
nlohmann::json bench_dense(const BenchRagOptions& o) {
  const std::size_t n = o.dense_rows;
  const std::size_t dim = o.dense_dim;
  if (dim == 0) throw Error(ErrorCode::kInvalidArgument, "--dense-dim must be positive");
  std::vector<float> rows(n * dim);
  ThreadPool pool(o.threads);
  pool.parallel_for(n, [&](std::size_t b, std::size_t e) {
    std::mt19937 rng(static_cast<unsigned>(b));
    std::normal_distribution<float> nd;
    for (std::size_t i = b * dim; i < e * dim; ++i) rows[i] = nd(rng);
    normalize_rows(rows.data() + b * dim, e - b, dim);
  });
  std::vector<float> q(rows.begin() + static_cast<std::ptrdiff_t>((n / 2) * dim),
                       rows.begin() + static_cast<std::ptrdiff_t>((n / 2 + 1) * dim));
  const double gb = double(n * dim * sizeof(float)) / 1e9;
  constexpr int kReps = 7;
  double best_read = 1e30;
  std::vector<double> sums(pool.size());
  for (int r = 0; r < kReps; ++r) {
    const Timer t;
    std::atomic<std::size_t> slot{0};
    pool.parallel_for(n * dim / 16, [&](std::size_t b, std::size_t e) {
      // Four independent accumulators of four lanes: enough to be memory-bound.
      float acc[16] = {};
      for (std::size_t i = b * 16; i < e * 16; i += 16) {
        for (int k = 0; k < 16; ++k) acc[k] += rows[i + static_cast<std::size_t>(k)];
      }
      double s = 0;
      for (const float a : acc) s += a;
      sums[slot++ % sums.size()] = s;
    });
    best_read = std::min(best_read, t.seconds());
  }
  double best_topk = 1e30;
  std::size_t found = 0;
  for (int r = 0; r < kReps; ++r) {
    const Timer t;
    const auto top = top_k_dense(rows.data(), n, dim, q.data(), 10, nullptr, o.threads);
    best_topk = std::min(best_topk, t.seconds());
    found = top.empty() ? 0 : top[0].second;
  }
  const double bw = gb / best_read;
  std::printf("\n| dense exact top-10 (%zu x %zu f32, %.2f GB, %zu threads) | value |\n|---|---|\n",
              n, dim, gb, pool.size());
  std::printf("| measured read bandwidth | %.1f GB/s (%.2f ms per pass) |\n", bw, best_read * 1e3);
  std::printf("| top-10 | %.2f ms (%.1f GB/s) |\n", best_topk * 1e3, gb / best_topk);
  std::printf("| ratio top-10 / read | %.2fx |\n", best_topk / best_read);
  if (found != n / 2) std::printf("| warning | the query row was not ranked first |\n");
  return {{"rows", n},
          {"dim", dim},
          {"threads", pool.size()},
          {"read_ms", best_read * 1e3},
          {"bandwidth_gb_s", bw},
          {"topk_ms", best_topk * 1e3},
          {"ratio", best_topk / best_read},
          {"simd", to_string(simd_level())}};
}

}  // namespace

BenchRagResult run_bench_rag(const BenchRagOptions& o) {
  if (o.beir.empty() && o.pdfs.empty() && o.dense_rows == 0) {
    throw Error(ErrorCode::kInvalidArgument, "give --beir DIR, --pdf PATH and/or --dense-rows N");
  }
  BenchRagResult result;
  nlohmann::json& j = result.json;
  if (!o.beir.empty()) {
    const nlohmann::json modes = bench_beir(o, result);
    j["beir"] = modes.front();
    if (modes.size() > 1) j["beir_modes"] = modes;
  }
  if (!o.pdfs.empty()) j["pdf"] = bench_pdf(o);
  if (o.dense_rows > 0) j["dense"] = bench_dense(o);
  std::printf("\n```json\n%s\n```\n", j.dump(2).c_str());
  return result;
}

}  // namespace hearth::rag
