#include "hearth/models/embed_bench.hpp"

#include <algorithm>
#include <cstdio>
#include <random>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/peak.hpp"
#include "hearth/models/bert.hpp"

namespace hearth::models {

namespace {

using i64 = std::int64_t;

BertConfig minilm_shape() {
  BertConfig c;
  c.vocab = 30522;
  c.hidden = 384;
  c.layers = 6;
  c.heads = 12;
  c.ffn = 1536;
  c.max_positions = 512;
  c.type_vocab = 2;
  return c;
}

// FLOPs of one forward pass over batch sequences of len tokens (multiply-add = 2).
double model_flops(const BertConfig& c, i64 batch, i64 len) {
  const double n = static_cast<double>(batch * len);
  const double h = static_cast<double>(c.hidden);
  const double linears = 2.0 * n * (4.0 * h * h + 2.0 * h * static_cast<double>(c.ffn));
  const double attention =
      4.0 * static_cast<double>(batch) * static_cast<double>(len) * static_cast<double>(len) * h;
  return static_cast<double>(c.layers) * (linears + attention);
}

std::string cpu_name() {
  return cpu_model_name() + ", " + describe_cpu();
}

double gemm_gflops(kernels::Backend& be, i64 m, i64 n, i64 k, double seconds) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  std::vector<float> a(static_cast<std::size_t>(m * k)), w(static_cast<std::size_t>(n * k));
  std::vector<float> bias(static_cast<std::size_t>(n)), c(static_cast<std::size_t>(m * n));
  for (float& x : a) x = dist(rng);
  for (float& x : w) x = dist(rng);
  const auto lin = be.make_linear(w.data(), bias.data(), n, k);
  be.linear(*lin, a.data(), m, c.data());
  int reps = 0;
  const Timer t;
  do {
    be.linear(*lin, a.data(), m, c.data());
    ++reps;
  } while (t.seconds() < seconds);
  return 2.0 * static_cast<double>(m * n * k) * reps / t.seconds() / 1e9;
}

}  // namespace

EmbedBenchReport run_embed_bench(const EmbedBenchOptions& options) {
  EmbedBenchReport report;
  BertOptions bo;
  bo.pool = std::make_shared<ThreadPool>(options.threads);
  bo.gemm = options.gemm;
  bo.max_batch = 1;
  for (const int b : options.batches) bo.max_batch = std::max<std::size_t>(bo.max_batch, b);
  bo.max_batch_tokens = std::size_t{1} << 30;
  std::unique_ptr<BertModel> model;
  if (options.model.empty()) {
    model = BertModel::random(minilm_shape(), 1, bo);
    report.model = "MiniLM shape (hidden 384, 6 layers, 12 heads, FFN 1536), random weights";
  } else {
    model = BertModel::load(options.model, bo);
    report.model = options.model.string();
  }
  const BertConfig& c = model->config();
  report.backend = model->backend_name();
  report.cpu = cpu_name();
  report.threads = bo.pool->size();
  report.repeats = std::max(options.repeats, 1);
  for (int r = 0; r < report.repeats; ++r) {
    report.peak_gflops =
        std::max(report.peak_gflops,
                 kernels::measure_fma_peak_gflops(*bo.pool, std::min(options.seconds, 0.5)));
  }

  std::mt19937 rng(7);
  std::uniform_int_distribution<int> id(0, static_cast<int>(c.vocab) - 1);
  kernels::Backend& be = model->backend();
  for (const int len : options.lengths) {
    if (len <= 0 || len > model->max_length()) {
      throw Error(ErrorCode::kInvalidArgument, "input length " + std::to_string(len) +
                                                   " outside 1.." +
                                                   std::to_string(model->max_length()));
    }
    for (const int batch : options.batches) {
      if (batch <= 0) throw Error(ErrorCode::kInvalidArgument, "batch sizes must be positive");
      std::vector<TokenIds> seqs(static_cast<std::size_t>(batch));
      for (TokenIds& s : seqs) {
        for (int t = 0; t < len; ++t) s.ids.push_back(id(rng));
      }
      model->embed(seqs);  // warm up
      EmbedBenchRow row;
      row.batch = batch;
      row.length = len;
      for (int r = 0; r < report.repeats; ++r) {
        be.reset_linear_stats();
        be.count_linear(true);
        i64 done = 0;
        const Timer t;
        do {
          if (cancel_requested()) throw Error(ErrorCode::kCancelled, "cancelled");
          model->embed(seqs);
          done += batch;
        } while (t.seconds() < options.seconds);
        const double wall = t.seconds();
        be.count_linear(false);
        const double rate = static_cast<double>(done) / wall;
        if (rate <= row.sentences_per_s) continue;
        row.sentences_per_s = rate;
        row.tokens_per_s = rate * len;
        row.model_gflops = model_flops(c, done, len) / wall / 1e9;
        const kernels::LinearStats& st = be.linear_stats();
        row.gemm_gflops = st.seconds > 0 ? st.flops / st.seconds / 1e9 : 0.0;
        row.gemm_share = st.seconds / wall;
      }
      report.rows.push_back(row);
    }
  }
  if (options.compare_gemm) {
    auto own = kernels::make_cpu_backend(*bo.pool, simd_level(), kernels::GemmImpl::kOwn);
    auto blas = kernels::make_cpu_backend(*bo.pool, simd_level(), kernels::GemmImpl::kOpenBlas);
    const i64 h = c.hidden;
    const double secs = std::min(options.seconds, 0.3);
    // The row counts the benchmark just ran: batch x length.
    std::vector<i64> ms;
    for (const int len : options.lengths) {
      for (const int batch : options.batches) ms.push_back(static_cast<i64>(batch) * len);
    }
    std::sort(ms.begin(), ms.end());
    ms.erase(std::unique(ms.begin(), ms.end()), ms.end());
    for (const i64 m : ms) {
      for (const auto& [n, k] :
           {std::pair{3 * h, h}, std::pair{h, h}, std::pair{c.ffn, h}, std::pair{h, c.ffn}}) {
        GemmShapeRow g{m, n, k, 0.0, 0.0};
        for (int r = 0; r < report.repeats; ++r) {  // alternate, so both see the same noise
          g.hearth_gflops = std::max(g.hearth_gflops, gemm_gflops(*own, m, n, k, secs));
          g.openblas_gflops = std::max(g.openblas_gflops, gemm_gflops(*blas, m, n, k, secs));
        }
        report.gemm.push_back(g);
      }
    }
  }
  return report;
}

std::string to_text(const EmbedBenchReport& r) {
  std::string out;
  char line[256];
  out += "model:   " + r.model + "\n";
  out += "backend: " + r.backend + ", " + std::to_string(r.threads) + " threads\n";
  out += "cpu:     " + r.cpu + "\n";
  std::snprintf(line, sizeof line, "peak:    %.1f GFLOP/s (f32 FMA probe, %zu threads)\n",
                r.peak_gflops, r.threads);
  out += line;
  std::snprintf(line, sizeof line, "figures: best of %d windows each\n\n", r.repeats);
  out += line;
  out +=
      "batch  tokens  sentences/s   tokens/s  model GFLOP/s  GEMM GFLOP/s  GEMM %peak  "
      "GEMM time\n";
  for (const EmbedBenchRow& row : r.rows) {
    std::snprintf(line, sizeof line, "%5d  %6d  %11.1f  %9.0f  %13.1f  %12.1f  %9.0f%%  %8.0f%%\n",
                  row.batch, row.length, row.sentences_per_s, row.tokens_per_s, row.model_gflops,
                  row.gemm_gflops, 100.0 * row.gemm_gflops / r.peak_gflops, 100.0 * row.gemm_share);
    out += line;
  }
  if (!r.gemm.empty()) {
    out += "\nf32 GEMM at the model's shapes (C[m,n] = A[m,k] W[n,k]^T + b), GFLOP/s:\n";
    out += "     m      n      k   hearth  openblas  faster\n";
    for (const GemmShapeRow& g : r.gemm) {
      std::snprintf(line, sizeof line, "%6lld %6lld %6lld  %7.1f  %8.1f  %s\n",
                    static_cast<long long>(g.m), static_cast<long long>(g.n),
                    static_cast<long long>(g.k), g.hearth_gflops, g.openblas_gflops,
                    g.hearth_gflops >= g.openblas_gflops ? "hearth" : "openblas");
      out += line;
    }
  }
  return out;
}

nlohmann::json to_json(const EmbedBenchReport& r) {
  nlohmann::json j = {{"model", r.model},
                      {"backend", r.backend},
                      {"cpu", r.cpu},
                      {"threads", r.threads},
                      {"repeats", r.repeats},
                      {"peak_gflops", r.peak_gflops},
                      {"rows", nlohmann::json::array()},
                      {"gemm", nlohmann::json::array()}};
  for (const EmbedBenchRow& row : r.rows) {
    j["rows"].push_back({{"batch", row.batch},
                         {"length", row.length},
                         {"sentences_per_s", row.sentences_per_s},
                         {"tokens_per_s", row.tokens_per_s},
                         {"model_gflops", row.model_gflops},
                         {"gemm_gflops", row.gemm_gflops},
                         {"gemm_fraction_of_peak", row.gemm_gflops / r.peak_gflops},
                         {"gemm_time_share", row.gemm_share}});
  }
  for (const GemmShapeRow& g : r.gemm) {
    j["gemm"].push_back({{"m", g.m},
                         {"n", g.n},
                         {"k", g.k},
                         {"hearth_gflops", g.hearth_gflops},
                         {"openblas_gflops", g.openblas_gflops}});
  }
  return j;
}

}  // namespace hearth::models
