#include "hearth/bench/reports.hpp"

#include <algorithm>
#include <cstdio>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/core/utf8.hpp"

namespace hearth::bench {
namespace {

using nlohmann::json;

std::string join(const std::vector<int>& v) {
  std::string out;
  for (const int x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

constexpr Better kLower = Better::kLower;
constexpr Better kNeither = Better::kNeither;

void add(Report& r, std::string id, std::string label, std::string unit, double value,
         Better better = Better::kHigher) {
  r.figures.push_back({std::move(id), std::move(label), std::move(unit), value, better});
}

}  // namespace

Report embed_report(const models::EmbedBenchReport& r, const models::EmbedBenchOptions& o,
                    Machine machine) {
  Report out;
  out.subcommand = "embed";
  out.title = "sentence-embedding throughput";
  machine.peak_gflops = r.peak_gflops;
  out.machine = machine;
  out.settings = {{"model", r.model},
                  {"backend", r.backend},
                  {"threads", r.threads},
                  {"batch sizes", join(o.batches)},
                  {"lengths (tokens)", join(o.lengths)},
                  {"seconds per window", o.seconds},
                  {"windows (best shown)", r.repeats}};
  out.details = models::to_json(r);
  add(out, "fma_peak_gflops", "f32 FMA peak (this run)", "GFLOP/s", r.peak_gflops);

  std::vector<std::vector<std::string>> rows;
  BarChart tokens{"Tokens/s beside the FMA-peak limit", "tokens/s", {}, {}, {}, {}};
  tokens.series = {{"measured", {}, false}, {"limit (FMA peak / FLOPs per token)", {}, true}};
  BarChart flops{"Achieved GFLOP/s beside the FMA peak", "GFLOP/s", {}, {}, r.peak_gflops,
                 "FMA peak " + fixed(r.peak_gflops, 0)};
  flops.series = {{"whole model", {}, false}, {"GEMMs alone", {}, false}};
  for (const models::EmbedBenchRow& row : r.rows) {
    const std::string key = "b" + std::to_string(row.batch) + ".l" + std::to_string(row.length);
    const std::string what =
        "batch " + std::to_string(row.batch) + " x " + std::to_string(row.length) + " tokens";
    const double limit =
        row.model_gflops > 0 ? row.tokens_per_s * r.peak_gflops / row.model_gflops : 0.0;
    add(out, key + ".sentences_per_s", "sentences/s, " + what, "sentences/s", row.sentences_per_s);
    add(out, key + ".tokens_per_s", "tokens/s, " + what, "tokens/s", row.tokens_per_s);
    add(out, key + ".tokens_per_s_limit", "FMA-peak limit, " + what, "tokens/s", limit);
    add(out, key + ".model_gflops", "model GFLOP/s, " + what, "GFLOP/s", row.model_gflops);
    add(out, key + ".gemm_gflops", "GEMM GFLOP/s, " + what, "GFLOP/s", row.gemm_gflops);
    add(out, key + ".gemm_time_share", "time in GEMMs, " + what, "fraction", row.gemm_share,
        kNeither);
    rows.push_back({std::to_string(row.batch), std::to_string(row.length),
                    fixed(row.sentences_per_s, 1), fixed(row.tokens_per_s, 0), fixed(limit, 0),
                    fixed(row.model_gflops, 1), fixed(row.gemm_gflops, 1),
                    fixed(100 * row.gemm_gflops / r.peak_gflops, 0) + "%",
                    fixed(100 * row.gemm_share, 0) + "%"});
    tokens.categories.push_back(what);
    tokens.series[0].values.push_back(row.tokens_per_s);
    tokens.series[1].values.push_back(limit);
    flops.categories.push_back(what);
    flops.series[0].values.push_back(row.model_gflops);
    flops.series[1].values.push_back(row.gemm_gflops);
  }
  Section s{"Throughput",
            markdown_table({"batch", "tokens", "sentences/s", "tokens/s", "limit tokens/s",
                            "model GFLOP/s", "GEMM GFLOP/s", "GEMM of peak", "time in GEMMs"},
                           rows),
            {}};
  s.charts.push_back({"embed-tokens", tokens.title, render_bar_chart(tokens)});
  s.charts.push_back({"embed-gflops", flops.title, render_bar_chart(flops)});
  out.sections.push_back(std::move(s));
  if (!r.gemm.empty()) {
    rows.clear();
    BarChart g{"f32 GEMM at the model's shapes: hearth beside OpenBLAS", "GFLOP/s",     {},
               {{"hearth", {}, false}, {"OpenBLAS", {}, false}},         r.peak_gflops, "FMA peak"};
    for (const models::GemmShapeRow& row : r.gemm) {
      const std::string shape =
          std::to_string(row.m) + "x" + std::to_string(row.n) + "x" + std::to_string(row.k);
      add(out, "gemm." + shape + ".hearth_gflops", "hearth GEMM m x n x k " + shape, "GFLOP/s",
          row.hearth_gflops);
      add(out, "gemm." + shape + ".openblas_gflops", "OpenBLAS GEMM m x n x k " + shape, "GFLOP/s",
          row.openblas_gflops);
      rows.push_back({std::to_string(row.m), std::to_string(row.n), std::to_string(row.k),
                      fixed(row.hearth_gflops, 1), fixed(row.openblas_gflops, 1),
                      row.hearth_gflops >= row.openblas_gflops ? "hearth" : "OpenBLAS"});
      g.categories.push_back(shape);
      g.series[0].values.push_back(row.hearth_gflops);
      g.series[1].values.push_back(row.openblas_gflops);
    }
    Section gs{
        "f32 GEMM, C[m,n] = A[m,k] W[n,k]^T + b",
        markdown_table({"m", "n", "k", "hearth GFLOP/s", "OpenBLAS GFLOP/s", "faster"}, rows),
        {}};
    gs.charts.push_back({"embed-gemm", g.title, render_bar_chart(g)});
    out.sections.push_back(std::move(gs));
  }
  return out;
}

Report llm_report(const models::LlmBenchReport& r) {
  Report out;
  out.subcommand = "llm";
  out.title = "LLM prefill and decode";
  out.machine.cpu = r.machine.cpu;
  out.machine.simd = r.machine.simd;
  out.machine.features = r.machine.features;
  out.machine.logical_cpus = r.machine.logical_cpus;
  out.machine.memory_bytes = r.machine.memory_bytes;
  out.machine.threads = r.threads;
  out.machine.bandwidth_gbs = r.bandwidth_gbs;
  out.machine.peak_gflops = r.peak_gflops;
  out.settings = {{"backend", r.backend},
                  {"threads", r.threads},
                  {"repetitions (after a warm-up)", r.repetitions},
                  {"KV cache", r.kv_dtype}};
  if (r.peer)
    out.settings["peer"] = r.peer->name + " " + r.peer->version + " (" + r.peer->path + ")";
  out.details = models::to_json(r);
  for (const models::LlmBenchModel& m : r.models) {
    const std::string key = m.name + "." + m.weights;
    add(out, key + ".load_seconds", "load, " + m.name + " " + m.weights, "s", m.load_seconds,
        kLower);
    add(out, key + ".first_token_seconds", "first token, " + m.name + " " + m.weights, "s",
        m.first_token_seconds, kLower);
    add(out, key + ".peak_rss_bytes", "peak RSS, " + m.name + " " + m.weights, "bytes",
        static_cast<double>(m.peak_rss), kLower);
  }
  BarChart charts[2];  // prefill, decode
  for (int k = 0; k < 2; ++k) {
    charts[k].title = k == 0 ? "Prefill tokens/s beside the FMA-peak limit"
                             : "Decode tokens/s beside the read-bandwidth limit";
    charts[k].unit = "tokens/s";
    charts[k].series = {
        {"hearth (mean)", {}, false},
        {k == 0 ? "limit: FMA peak / FLOPs per token" : "limit: bandwidth / bytes per token",
         {},
         true}};
    if (r.peer) charts[k].series.push_back({r.peer->name + " (mean)", {}, false});
  }
  for (const models::LlmBenchRow& row : r.rows) {
    const models::LlmBenchModel& m = r.models[row.model];
    const std::string key = m.name + "." + m.weights + "." + row.test;
    const std::string what = m.name + " " + m.weights + " " + row.test;
    add(out, key + ".tokens_per_s", "tokens/s, " + what, "tokens/s", row.stats.mean);
    add(out, key + ".tokens_per_s_stddev", "tokens/s standard deviation, " + what, "tokens/s",
        row.stats.stddev, kLower);
    add(out, key + ".limit_tokens_per_s", "limit, " + what, "tokens/s", row.limit_tokens_per_s);
    add(out, key + ".fraction_of_limit", "of limit, " + what, "fraction", row.fraction);
    if (row.peer) {
      add(out, key + ".peer_tokens_per_s", r.peer->name + " tokens/s, " + what, "tokens/s",
          row.peer->stats.mean);
      add(out, key + ".ratio_to_peer", "hearth / " + r.peer->name + ", " + what, "ratio",
          row.peer->ratio);
    }
    BarChart& c = charts[row.n_gen > 0 ? 1 : 0];
    c.categories.push_back(what);
    c.series[0].values.push_back(row.stats.mean);
    c.series[1].values.push_back(row.limit_tokens_per_s);
    if (r.peer) {
      c.series[2].values.push_back(row.peer ? std::optional<double>(row.peer->stats.mean)
                                            : std::nullopt);
    }
  }
  // The tables of the text output, after its header lines (the machine is in its own table).
  const std::string text = models::to_text(r);
  Section s{"Results", text.substr(std::min(text.find("\n|"), text.size()) + 1), {}};
  if (!charts[0].categories.empty()) {
    s.charts.push_back({"llm-prefill", charts[0].title, render_bar_chart(charts[0])});
  }
  if (!charts[1].categories.empty()) {
    s.charts.push_back({"llm-decode", charts[1].title, render_bar_chart(charts[1])});
  }
  out.sections.push_back(std::move(s));
  return out;
}

Report rag_report(const rag::BenchRagResult& result, const rag::BenchRagOptions& o,
                  Machine machine) {
  Report out;
  out.subcommand = "rag";
  out.title = "retrieval quality and speed";
  out.machine = machine;
  out.details = result.json;
  const json& j = result.json;
  if (j.contains("beir")) {
    out.settings = {{"dataset", o.beir},      {"split", o.split},
                    {"modes", o.mode},        {"embedding model", o.embedding_model},
                    {"reranker", o.reranker}, {"max documents", o.max_docs}};
    const json modes = j.contains("beir_modes") ? j["beir_modes"] : json::array({j["beir"]});
    std::vector<std::vector<std::string>> rows;
    BarChart quality{"Retrieval quality per mode", "score (0 to 1)", {}, {}, {}, {}};
    quality.series = {{"nDCG@10", {}, false},
                      {"Recall@10", {}, false},
                      {"Recall@100", {}, false},
                      {"MRR@10", {}, false}};
    for (const json& m : modes) {
      const std::string mode = m["mode"].get<std::string>();
      const char* keys[] = {"ndcg@10", "recall@10", "recall@100", "mrr@10"};
      const char* labels[] = {"nDCG@10", "Recall@10", "Recall@100", "MRR@10"};
      for (int k = 0; k < 4; ++k) {
        add(out, mode + "." + keys[k], std::string(labels[k]) + ", " + mode, "score",
            m[keys[k]].get<double>());
        quality.series[static_cast<std::size_t>(k)].values.push_back(m[keys[k]].get<double>());
      }
      add(out, mode + ".latency_p50_ms", "query latency p50 (top 100 with texts), " + mode, "ms",
          m["latency_p50_ms"].get<double>(), kLower);
      add(out, mode + ".latency_p99_ms", "query latency p99 (top 100 with texts), " + mode, "ms",
          m["latency_p99_ms"].get<double>(), kLower);
      quality.categories.push_back(mode);
      rows.push_back({mode, fixed(m["ndcg@10"].get<double>(), 4),
                      fixed(m["recall@10"].get<double>(), 4),
                      fixed(m["recall@100"].get<double>(), 4), fixed(m["mrr@10"].get<double>(), 4),
                      fixed(m["latency_p50_ms"].get<double>(), 3),
                      fixed(m["latency_p99_ms"].get<double>(), 3)});
    }
    const json& b = j["beir"];
    add(out, "bm25_top10_p50_ms", "BM25 top-10 p50 (FTS5 query alone)", "ms",
        b["bm25_top10_p50_ms"].get<double>(), kLower);
    add(out, "bm25_top10_texts_p50_ms", "BM25 top-10 with texts p50", "ms",
        b["bm25_top10_texts_p50_ms"].get<double>(), kLower);
    add(out, "bm25_top10_texts_p99_ms", "BM25 top-10 with texts p99", "ms",
        b["bm25_top10_texts_p99_ms"].get<double>(), kLower);
    add(out, "ingest_docs_per_s", "ingest", "docs/s", b["ingest_docs_per_s"].get<double>());
    add(out, "ingest_mb_per_s", "ingest", "MB/s", b["ingest_mb_per_s"].get<double>());
    std::string md = std::to_string(b["queries"].get<std::size_t>()) + " queries, " +
                     std::to_string(b["documents"].get<std::size_t>()) + " documents; ingest " +
                     fixed(b["ingest_seconds"].get<double>(), 2) + " s (" +
                     fixed(b["ingest_docs_per_s"].get<double>(), 0) + " docs/s, " +
                     fixed(b["ingest_mb_per_s"].get<double>(), 2) + " MB/s).\n\n";
    md += markdown_table(
        {"mode", "nDCG@10", "Recall@10", "Recall@100", "MRR@10", "p50 ms", "p99 ms"}, rows);
    Section s{"BEIR retrieval", md, {}};
    s.charts.push_back({"rag-quality", quality.title, render_bar_chart(quality)});
    for (std::size_t i = 0; i < result.latencies_ms.size(); ++i) {
      const auto& [name, samples] = result.latencies_ms[i];
      Histogram h{"Query latency: " + name, "ms", samples, 30};
      s.charts.push_back({"rag-latency-" + std::to_string(i + 1), h.title, render_histogram(h)});
    }
    out.sections.push_back(std::move(s));
  }
  if (j.contains("pdf")) {
    const json& p = j["pdf"];
    add(out, "pdf.hearth_pages_per_s", "PDF ingest (extract + chunk + store)", "pages/s",
        p["hearth_pages_per_s"].get<double>());
    add(out, "pdf.hearth_extract_pages_per_s", "PDF extraction alone", "pages/s",
        p["hearth_extract_pages_per_s"].get<double>());
    const double tool = p["pdftotext_pages_per_s"].get<double>();
    BarChart c{
        "PDF pages/s",
        "pages/s",
        {"hearth ingest", "hearth extraction", "pdftotext"},
        {{"pages/s",
          {p["hearth_pages_per_s"].get<double>(), p["hearth_extract_pages_per_s"].get<double>(),
           tool > 0 ? std::optional<double>(tool) : std::nullopt},
          false}},
        {},
        {}};
    if (tool > 0) add(out, "pdf.pdftotext_pages_per_s", "pdftotext", "pages/s", tool);
    Section s{"PDF",
              std::to_string(p["files"].get<std::size_t>()) + " files, " +
                  std::to_string(p["pages"].get<std::size_t>()) + " pages.\n",
              {}};
    s.charts.push_back({"rag-pdf", c.title, render_bar_chart(c)});
    out.sections.push_back(std::move(s));
  }
  if (j.contains("dense")) {
    const json& d = j["dense"];
    const double read = d["read_ms"].get<double>(), topk = d["topk_ms"].get<double>();
    add(out, "dense.read_ms", "dense matrix read once", "ms", read, kLower);
    add(out, "dense.topk_ms", "exact dense top-10", "ms", topk, kLower);
    add(out, "dense.bandwidth_gb_s", "read bandwidth (dense matrix)", "GB/s",
        d["bandwidth_gb_s"].get<double>());
    BarChart c{"Exact dense top-10 beside one read of the matrix",
               "ms",
               {"exact top-10 of " + std::to_string(d["rows"].get<std::size_t>()) + " rows"},
               {{"time", {topk}, false}, {"limit: one read of the matrix", {read}, true}},
               {},
               {}};
    Section s{"Dense top-10",
              std::to_string(d["rows"].get<std::size_t>()) + " x " +
                  std::to_string(d["dim"].get<std::size_t>()) + " f32 rows: top-10 " +
                  fixed(topk, 2) + " ms, one read " + fixed(read, 2) + " ms (" +
                  fixed(d["ratio"].get<double>(), 2) + "x).\n",
              {}};
    s.charts.push_back({"rag-dense", c.title, render_bar_chart(c)});
    out.sections.push_back(std::move(s));
  }
  return out;
}

TokenizeBench run_tokenize_bench(const tokenize::Tokenizer& tok, const std::string& model,
                                 const std::string& text, const std::optional<std::string>& pair,
                                 bool add_special, double seconds) {
  TokenizeBench b;
  b.model = model;
  b.model_type = tok.model_type();
  const auto encode = [&] {
    return pair ? tok.encode_pair(text, *pair, add_special) : tok.encode(text, add_special);
  };
  b.encoding = encode();
  for (const auto id : b.encoding.ids) b.pieces.push_back(tok.id_to_token(id));
  b.text_bytes = text.size() + (pair ? pair->size() : 0);
  const Timer total;
  while (b.call_us.size() < 3 || total.seconds() < seconds) {
    throw_if_cancelled();
    const Timer t;
    const auto e = encode();
    b.call_us.push_back(t.seconds() * 1e6);
    if (e.ids.size() != b.encoding.ids.size()) {
      throw Error(ErrorCode::kInternal, "tokenize: the same text gave different token counts");
    }
    if (b.call_us.size() >= 1000000) break;
  }
  return b;
}

Report tokenize_report(const TokenizeBench& b, Machine machine) {
  Report out;
  out.subcommand = "tokenize";
  out.title = "tokenizer speed";
  out.machine = machine;
  out.settings = {{"model", b.model}, {"model type", b.model_type}, {"calls", b.call_us.size()}};
  json pieces = json::array();
  for (const std::string& p : b.pieces) pieces.push_back(p);
  out.details = {{"ids", b.encoding.ids},
                 {"type_ids", b.encoding.type_ids},
                 {"pieces", pieces},
                 {"call_microseconds", b.call_us}};
  std::vector<double> sorted = b.call_us;
  std::sort(sorted.begin(), sorted.end());
  const double p50 = std::max(1e-3, sorted[sorted.size() / 2]);  // µs; never 0 for the rates
  const double tokens = static_cast<double>(b.encoding.ids.size());
  add(out, "tokens", "tokens", "tokens", tokens, kNeither);
  add(out, "bytes", "text bytes", "bytes", static_cast<double>(b.text_bytes), kNeither);
  add(out, "encode_p50_us", "encode call p50", "µs", p50, kLower);
  add(out, "encode_min_us", "encode call fastest", "µs", sorted.front(), kLower);
  add(out, "tokens_per_s", "tokens/s (p50 call)", "tokens/s", tokens / (p50 * 1e-6));
  add(out, "mb_per_s", "MB/s (p50 call)", "MB/s", static_cast<double>(b.text_bytes) / p50);
  std::vector<std::vector<std::string>> rows;
  std::vector<double> piece_bytes;
  for (std::size_t i = 0; i < b.encoding.ids.size() && i < 200; ++i) {
    rows.push_back({std::to_string(i), std::to_string(b.encoding.ids[i]),
                    std::to_string(b.encoding.type_ids[i]), "`" + printable(b.pieces[i]) + "`"});
  }
  for (const std::string& p : b.pieces) piece_bytes.push_back(static_cast<double>(p.size()));
  std::string md = std::to_string(b.encoding.ids.size()) + " tokens from " +
                   std::to_string(b.text_bytes) + " bytes; " + std::to_string(b.call_us.size()) +
                   " encode calls, p50 " + fixed(p50, 1) + " µs (" +
                   fixed(tokens / (p50 * 1e-6), 0) + " tokens/s).\n\n";
  md += markdown_table({"#", "id", "type", "piece"}, rows);
  if (b.encoding.ids.size() > rows.size()) {
    md += "\n(" + std::to_string(b.encoding.ids.size() - rows.size()) + " more in results.json.)\n";
  }
  Section s{"Tokens", md, {}};
  s.charts.push_back({"tokenize-latency", "Encode call latency",
                      render_histogram({"Encode call latency", "µs", b.call_us, 30})});
  s.charts.push_back({"tokenize-pieces", "Token piece lengths",
                      render_histogram({"Token piece lengths", "bytes per piece", piece_bytes,
                                        std::max(1, static_cast<int>(std::min<std::size_t>(
                                                        20, b.pieces.size())))})});
  out.sections.push_back(std::move(s));
  return out;
}

}  // namespace hearth::bench
