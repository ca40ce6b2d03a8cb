#include "hearth/models/llm_bench.hpp"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "hearth/core/cpu.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/peak.hpp"
#include "hearth/models/decoder.hpp"

namespace hearth::models {

namespace {

using i64 = std::int64_t;

DecoderConfig phi3_mini(i64 layers) {
  DecoderConfig c;
  c.architecture = "phi3";
  c.vocab = 32064;
  c.hidden = 3072;
  c.layers = layers;
  c.heads = 32;
  c.kv_heads = 32;
  c.head_dim = 96;
  c.ffn = 8192;
  c.context = 4096;
  c.rms_eps = 1e-5;
  c.rope.dims = 96;
  c.fused_qkv = true;
  c.fused_gate_up = true;
  return c;
}

// Each window: prefill, the bandwidth probe, then decode, so that the probe sees the machine as
// the decode does (other work on a shared machine changes both); the best of each is kept.
void measure(const LanguageModel& model, const LlmBenchOptions& o, ThreadPool& pool,
             LlmBenchRow& row) {
  const DecoderConfig& c = model.config();
  std::vector<std::int32_t> prompt;
  for (i64 i = 0; i < o.prompt; ++i)
    prompt.push_back(static_cast<std::int32_t>((i * 7919 + 13) % c.vocab));
  Session s(model, o.prompt + o.decode + 1);
  double best_prefill = 1e30, best_decode = 1e30;
  for (int r = 0; r < std::max(o.repeats, 1); ++r) {
    s.truncate(0);
    Timer t;
    auto logits = s.feed(prompt);
    best_prefill = std::min(best_prefill, t.seconds());
    row.bandwidth_gbs = std::max(row.bandwidth_gbs, kernels::measure_read_bandwidth_gbs(pool));
    std::int32_t next =
        static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    t.reset();
    for (i64 i = 0; i < o.decode; ++i) {
      logits = s.feed(std::span(&next, 1));
      next = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) -
                                       logits.begin());
    }
    best_decode = std::min(best_decode, t.seconds());
  }
  row.prefill_tokens_per_s = static_cast<double>(o.prompt) / best_prefill;
  row.decode_tokens_per_s = static_cast<double>(o.decode) / best_decode;
  // Matrix FLOPs only (2 per weight element per token); attention is a few percent here.
  const double flops =
      2.0 * static_cast<double>(c.parameters - c.vocab * c.hidden * (c.tied_embeddings ? 0 : 1)) *
      static_cast<double>(o.prompt);
  row.prefill_gflops = flops / best_prefill / 1e9;
  row.weight_bytes_per_token = model.weight_bytes_per_token();
}

}  // namespace

LlmBenchReport run_llm_bench(const LlmBenchOptions& o) {
  if (o.prompt < 2 || o.decode < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "the benchmark needs a prompt of 2+ tokens and 1+ decode steps");
  }
  LlmBenchReport report;
  report.cpu = describe_cpu();
  report.threads = o.threads;
  auto pool = std::make_shared<ThreadPool>(o.threads);
  report.threads = pool->size();
  if (simd_level() >= SimdLevel::kAvx2)
    report.peak_gflops = kernels::measure_fma_peak_gflops(*pool);
  LlmOptions lo;
  lo.pool = pool;
  lo.kv_dtype = o.kv_dtype;
  const auto add_row = [&](const LanguageModel& model, const std::string& name, double load_s) {
    LlmBenchRow row;
    row.model = name;
    const DecoderConfig& mc = model.config();
    row.dtype = mc.weight_bits > 0 ? "mlx" + std::to_string(mc.weight_bits) + "-g" +
                                         std::to_string(mc.weight_group_size)
                                   : std::string(dtype_name(mc.weight_dtype));
    row.load_seconds = load_s;
    report.backend = model.backend_name();
    measure(model, o, *pool, row);
    report.bandwidth_gbs = std::max(report.bandwidth_gbs, row.bandwidth_gbs);
    row.limit_tokens_per_s =
        row.bandwidth_gbs * 1e9 / static_cast<double>(row.weight_bytes_per_token);
    row.decode_fraction = row.decode_tokens_per_s / row.limit_tokens_per_s;
    row.peak_rss = peak_rss_bytes();
    report.rows.push_back(row);
  };
  if (!o.model.empty()) {
    const Timer t;
    const auto model = LanguageModel::load(o.model, lo);
    add_row(*model, model->name(), t.seconds());
    return report;
  }
  for (const DType dt : o.dtypes) {
    const Timer t;
    const auto model = LanguageModel::random(phi3_mini(o.layers), dt, 1, lo);
    add_row(*model, "phi3-mini shape (" + std::to_string(o.layers) + " layers, random)",
            t.seconds());
  }
  return report;
}

std::string to_text(const LlmBenchReport& r) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "cpu: %s\nbackend: %s, %zu threads\nbest read bandwidth: %.1f GB/s; FMA peak: "
                "%.0f GFLOP/s\n\n",
                r.cpu.c_str(), r.backend.c_str(), r.threads, r.bandwidth_gbs, r.peak_gflops);
  out += line;
  out +=
      "| model | weights | load s | prefill tok/s | prefill GFLOP/s | decode tok/s | bandwidth "
      "GB/s | limit tok/s | decode / limit | GB per token | peak RSS |\n";
  out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const LlmBenchRow& row : r.rows) {
    std::snprintf(line, sizeof line,
                  "| %s | %s | %.2f | %.1f | %.0f | %.2f | %.1f | %.2f | %.0f%% | %.2f | %s |\n",
                  row.model.c_str(), row.dtype.c_str(), row.load_seconds, row.prefill_tokens_per_s,
                  row.prefill_gflops, row.decode_tokens_per_s, row.bandwidth_gbs,
                  row.limit_tokens_per_s, 100.0 * row.decode_fraction,
                  static_cast<double>(row.weight_bytes_per_token) / 1e9,
                  format_bytes(row.peak_rss).c_str());
    out += line;
  }
  return out;
}

nlohmann::json to_json(const LlmBenchReport& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const LlmBenchRow& row : r.rows) {
    rows.push_back({{"model", row.model},
                    {"dtype", row.dtype},
                    {"load_seconds", row.load_seconds},
                    {"prefill_tokens_per_s", row.prefill_tokens_per_s},
                    {"prefill_gflops", row.prefill_gflops},
                    {"decode_tokens_per_s", row.decode_tokens_per_s},
                    {"bandwidth_gbs", row.bandwidth_gbs},
                    {"limit_tokens_per_s", row.limit_tokens_per_s},
                    {"decode_fraction", row.decode_fraction},
                    {"weight_bytes_per_token", row.weight_bytes_per_token},
                    {"peak_rss", row.peak_rss}});
  }
  return {{"cpu", r.cpu},
          {"backend", r.backend},
          {"threads", r.threads},
          {"bandwidth_gbs", r.bandwidth_gbs},
          {"peak_gflops", r.peak_gflops},
          {"rows", rows}};
}

}  // namespace hearth::models
