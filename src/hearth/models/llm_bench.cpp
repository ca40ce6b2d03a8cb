#include "hearth/models/llm_bench.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hearth/core/cancel.hpp"
#include "hearth/core/cpu.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/peak.hpp"

namespace hearth::models {

namespace {

using i64 = std::int64_t;

// ---- Shapes (config.json of the real models; tiny is hearth-make-model's tiny llama) ----

DecoderConfig tiny_shape() {
  DecoderConfig c;
  c.architecture = "llama";
  c.vocab = 320;
  c.hidden = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 16;
  c.ffn = 172;
  c.context = 256;
  return c;
}

DecoderConfig phi3_mini_shape() {
  DecoderConfig c;
  c.architecture = "phi3";
  c.vocab = 32064;
  c.hidden = 3072;
  c.layers = 32;
  c.heads = 32;
  c.kv_heads = 32;
  c.head_dim = 96;
  c.ffn = 8192;
  c.context = 4096;
  c.sliding_window = 2047;
  c.fused_qkv = true;
  c.fused_gate_up = true;
  return c;
}

DecoderConfig llama3_8b_shape() {
  DecoderConfig c;
  c.architecture = "llama";
  c.vocab = 128256;
  c.hidden = 4096;
  c.layers = 32;
  c.heads = 32;
  c.kv_heads = 8;
  c.head_dim = 128;
  c.ffn = 14336;
  c.context = 8192;
  c.rope.base = 500000.0;
  return c;
}

DecoderConfig qwen2_05b_shape() {
  DecoderConfig c;
  c.architecture = "qwen2";
  c.vocab = 151936;
  c.hidden = 896;
  c.layers = 24;
  c.heads = 14;
  c.kv_heads = 2;
  c.head_dim = 64;
  c.ffn = 4864;
  c.context = 32768;
  c.rms_eps = 1e-6;
  c.rope.base = 1000000.0;
  c.qkv_bias = true;
  c.tied_embeddings = true;
  return c;
}

constexpr RandomShape kShapes[] = {
    {"tiny", "hearth-make-model's tiny llama: hidden 64, 2 layers, 4 heads (2 KV), vocab 320",
     tiny_shape},
    {"phi3-mini", "Phi-3-mini (3.8 B): hidden 3072, 32 layers, 32 heads, FFN 8192, vocab 32064",
     phi3_mini_shape},
    {"llama3-8b",
     "Llama-3-8B (8.0 B): hidden 4096, 32 layers, 32 heads (8 KV), FFN 14336, vocab 128256",
     llama3_8b_shape},
    {"qwen2-0.5b",
     "Qwen2-0.5B (0.5 B): hidden 896, 24 layers, 14 heads (2 KV), FFN 4864, vocab 151936, tied",
     qwen2_05b_shape},
};

// ---- Weight formats ----

template <DType D>
std::unique_ptr<LanguageModel> make_random(const DecoderConfig& c, unsigned seed,
                                           const LlmOptions& o) {
  return LanguageModel::random(c, D, seed, o);
}

template <int Bits>
std::unique_ptr<LanguageModel> make_random_mlx(const DecoderConfig& c, unsigned seed,
                                               const LlmOptions& o) {
  return LanguageModel::random(c, WeightFormat::mlx(Bits, 64), seed, o);
}

// One entry per format. A quantized format's make stays null until this build can make random
// weights of it; the entry then names what random() takes (a block DType such as
// make_random<DType::kQ4_0>, or the MLX affine format).
constexpr RandomWeights kWeights[] = {
    {"f16", "IEEE half precision (16 bits per weight)", make_random<DType::kF16>},
    {"bf16", "bfloat16 (16 bits per weight)", make_random<DType::kBF16>},
    {"f32", "single precision (32 bits per weight)", make_random<DType::kF32>},
    {"q4_0", "GGUF Q4_0 blocks (4.5 bits per weight)", make_random<DType::kQ4_0>},
    {"q4_k", "GGUF Q4_K blocks (4.5 bits per weight)", make_random<DType::kQ4_K>},
    {"q4_k_m", "GGUF Q4_K_M: llama.cpp's mix of Q4_K and Q6_K tensors", nullptr},
    {"q8_0", "GGUF Q8_0 blocks (8.5 bits per weight)", make_random<DType::kQ8_0>},
    {"mlx4", "MLX affine 4-bit, group 64 (4.5 bits per weight)", make_random_mlx<4>},
    {"mlx8", "MLX affine 8-bit, group 64 (8.5 bits per weight)", make_random_mlx<8>},
};

std::string names_of(bool built_only) {
  std::string out;
  for (const RandomWeights& w : kWeights) {
    if (built_only && w.make == nullptr) continue;
    out += (out.empty() ? "" : ", ") + std::string(w.name);
  }
  return out;
}

std::string test_name(i64 n_prompt, i64 n_gen) {
  return n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
}

struct Test {
  i64 n_prompt = 0, n_gen = 0;
};

// llama-bench's order: every prefill test, then every decode test.
std::vector<Test> tests_of(const LlmBenchOptions& o) {
  std::vector<Test> tests;
  for (const i64 p : o.prompts) {
    if (p > 0) tests.push_back({p, 0});
  }
  for (const i64 n : o.gens) {
    if (n > 0) tests.push_back({0, n});
  }
  return tests;
}

std::vector<std::int32_t> prompt_ids(i64 n, i64 vocab) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i)
    ids[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7919 + 13) % vocab);
  return ids;
}

std::int32_t argmax(std::span<const float> logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Runs the probes and the model's tests; keeps the peak RSS of the model's own work (the probes'
// buffers are left out where the OS lets the peak be reset).
class Runner {
 public:
  Runner(const LlmBenchOptions& o, LlmBenchReport& report)
      : o_(o),
        report_(report),
        tests_(tests_of(o)),
        pool_(std::make_shared<ThreadPool>(o.threads)) {
    report_.threads = pool_->size();
    can_reset_rss_ = reset_peak_rss();
  }

  std::size_t total_steps(std::size_t models) const {
    return models * (1 + tests_.size() * (1 + static_cast<std::size_t>(o_.repetitions)));
  }

  const std::shared_ptr<ThreadPool>& pool() const { return pool_; }

  void step(const std::string& what) {
    if (o_.progress) o_.progress(what, done_, total_);
    ++done_;
    throw_if_cancelled();
  }
  void set_total(std::size_t total) { total_ = total; }

  double bandwidth() {
    return probe([&] { return kernels::measure_read_bandwidth_gbs(*pool_, o_.probe_bytes); },
                 report_.bandwidth_gbs);
  }
  double peak() {
    if (simd_level() < SimdLevel::kAvx2) return 0.0;
    return probe([&] { return kernels::measure_fma_peak_gflops(*pool_, o_.peak_seconds); },
                 report_.peak_gflops);
  }

  void start_model() {
    model_peak_ = 0;
    if (can_reset_rss_) reset_peak_rss();
  }
  std::uint64_t model_peak_rss() {
    note_rss();
    return can_reset_rss_ ? model_peak_ : peak_rss_bytes();
  }

  // load: makes or opens the model (its time is the load time).
  void run_model(const std::string& source, const std::string& weights,
                 const std::function<std::unique_ptr<LanguageModel>()>& load) {
    start_model();
    step("loading " + source);
    const Timer t;
    const auto model = load();
    LlmBenchModel rec;
    rec.load_seconds = t.seconds();
    const DecoderConfig& c = model->config();
    i64 context = 2;
    for (const Test& test : tests_) context = std::max(context, test.n_prompt + test.n_gen + 1);
    Session s(*model, context);
    const std::int32_t first = model->bos_id() >= 0 ? model->bos_id() : 1;
    s.feed(std::span(&first, 1));
    rec.first_token_seconds = t.seconds();
    rec.name = model->name();
    rec.source = source;
    if (!weights.empty()) {
      rec.weights = weights;
    } else if (c.weight_bits > 0) {
      rec.weights =
          "mlx" + std::to_string(c.weight_bits) + "-g" + std::to_string(c.weight_group_size);
    } else {
      rec.weights =
          c.weight_types.empty() ? std::string(dtype_name(c.weight_dtype)) : c.weight_types;
    }
    rec.architecture = c.architecture;
    rec.parameters = c.parameters;
    rec.weight_bytes_per_token = model->weight_bytes_per_token();
    report_.backend = model->backend_name();
    const std::size_t index = report_.models.size();
    report_.models.push_back(rec);
    for (const Test& test : tests_) {
      LlmBenchRow row;
      row.model = index;
      row.test = test_name(test.n_prompt, test.n_gen);
      row.n_prompt = test.n_prompt;
      row.n_gen = test.n_gen;
      measure(*model, s, row);
      report_.rows.push_back(std::move(row));
    }
    report_.models[index].peak_rss = model_peak_rss();
  }

 private:
  template <class F>
  double probe(F&& f, double& best_of_run) {
    note_rss();
    const double v = f();
    if (can_reset_rss_) reset_peak_rss();
    best_of_run = std::max(best_of_run, v);
    return v;
  }
  void note_rss() {
    if (can_reset_rss_) model_peak_ = std::max(model_peak_, resettable_peak_rss_bytes());
  }

  void measure(const LanguageModel& model, Session& s, LlmBenchRow& row) {
    const DecoderConfig& c = model.config();
    const bool prefill = row.n_prompt > 0;
    const auto prompt = prompt_ids(row.n_prompt, c.vocab);
    const auto run = [&](i64 n_gen) {
      s.truncate(0);
      const Timer t;
      if (prefill) {
        s.feed(prompt);
      } else {
        std::int32_t next = 1;
        for (i64 i = 0; i < n_gen; ++i) next = argmax(s.feed(std::span(&next, 1)));
      }
      return t.seconds();
    };
    // The warm-up llama-bench runs: the whole prompt, or one decoded token.
    step(row.test + " warm-up");
    run(1);
    double best_probe = 0.0;
    for (int r = 0; r < o_.repetitions; ++r) {
      step(row.test + " " + std::to_string(r + 1) + "/" + std::to_string(o_.repetitions));
      const double sec = run(row.n_gen);
      row.seconds.push_back(sec);
      row.tokens_per_s.push_back(static_cast<double>(prefill ? row.n_prompt : row.n_gen) / sec);
      best_probe = std::max(best_probe, prefill ? peak() : bandwidth());
    }
    row.stats = sample_stats(row.tokens_per_s);
    if (prefill) {
      row.flops_per_token = prefill_flops(c, row.n_prompt) / static_cast<double>(row.n_prompt);
      row.gflops = row.stats.mean * row.flops_per_token / 1e9;
      row.peak_gflops = best_probe;
      row.limit_tokens_per_s = best_probe * 1e9 / row.flops_per_token;
    } else {
      row.bytes_per_token = static_cast<double>(model.weight_bytes_per_token()) +
                            mean_kv_bytes_per_decoded_token(c, model.kv_dtype(), row.n_gen);
      row.bandwidth_gbs = best_probe;
      row.limit_tokens_per_s = bandwidth_limit_tokens_per_s(best_probe, row.bytes_per_token);
    }
    row.fraction = row.limit_tokens_per_s > 0.0 ? row.stats.mean / row.limit_tokens_per_s : 0.0;
  }

  const LlmBenchOptions& o_;
  LlmBenchReport& report_;
  std::vector<Test> tests_;
  std::shared_ptr<ThreadPool> pool_;
  bool can_reset_rss_ = false;
  std::uint64_t model_peak_ = 0;
  std::size_t done_ = 0, total_ = 0;
};

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string percent(double fraction) {
  return fraction > 0.0 ? fixed(100.0 * fraction, 0) + "%" : "-";
}

// Decimal bytes, as bandwidth is counted: "7.64 GB", "223 kB".
std::string decimal_bytes(double v) {
  const char* unit = v >= 1e9 ? "GB" : v >= 1e6 ? "MB" : "kB";
  const double scaled = v / (v >= 1e9 ? 1e9 : v >= 1e6 ? 1e6 : 1e3);
  return fixed(scaled, scaled >= 100.0 ? 0 : scaled >= 10.0 ? 1 : 2) + " " + unit;
}

// Tokens/s to a precision that suits its size.
std::string rate(double v) {
  return fixed(v, v >= 1000.0 ? 0 : v >= 100.0 ? 1 : 2);
}

}  // namespace

std::span<const RandomShape> random_shapes() {
  return kShapes;
}

DecoderConfig random_shape(std::string_view name) {
  std::string known;
  for (const RandomShape& s : kShapes) {
    if (name == s.name) return s.config();
    known += (known.empty() ? "" : ", ") + std::string(s.name);
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown --random shape '" + std::string(name) + "' (known: " + known + ")");
}

std::span<const RandomWeights> random_weights() {
  return kWeights;
}

const RandomWeights& find_random_weights(std::string_view name) {
  for (const RandomWeights& w : kWeights) {
    if (name != w.name) continue;
    if (w.make == nullptr) {
      throw Error(ErrorCode::kUnsupported, "--weights " + std::string(name) + " (" + w.description +
                                               ") is not in this build; random weights here are " +
                                               names_of(true));
    }
    return w;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown --weights '" + std::string(name) + "' (known: " + names_of(false) + ")");
}

SampleStats sample_stats(std::span<const double> samples) {
  SampleStats s;
  if (samples.empty()) return s;
  double sum = 0.0;
  for (const double v : samples) sum += v;
  s.mean = sum / static_cast<double>(samples.size());
  if (samples.size() < 2) return s;
  double sq = 0.0;
  for (const double v : samples) sq += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(sq / static_cast<double>(samples.size() - 1));
  return s;
}

double mean_kv_bytes_per_decoded_token(const DecoderConfig& c, DType kv_dtype, i64 n_gen) {
  if (n_gen <= 0) return 0.0;
  const double per_position =
      2.0 * static_cast<double>(c.kv_heads * c.head_dim) * (kv_dtype == DType::kF32 ? 4.0 : 2.0);
  double positions = 0.0;  // summed over layers and decoded tokens
  for (i64 l = 0; l < c.layers; ++l) {
    const bool sliding = c.sliding_layers.empty() || c.sliding_layers[static_cast<std::size_t>(l)];
    const i64 window = sliding ? c.sliding_window : 0;
    for (i64 p = 0; p < n_gen; ++p) {
      positions += static_cast<double>(window > 0 ? std::min(p + 1, window) : p + 1);
    }
  }
  return per_position * positions / static_cast<double>(n_gen);
}

double prefill_flops(const DecoderConfig& c, i64 n) {
  const double h = static_cast<double>(c.hidden);
  const double q = static_cast<double>(c.heads * c.head_dim);
  const double kv = static_cast<double>(c.kv_heads * c.head_dim);
  const double per_layer = h * (q + 2.0 * kv) + q * h + 3.0 * h * static_cast<double>(c.ffn);
  const double nn = static_cast<double>(n);
  double attention = 0.0;  // QK^T and AV: 4 * q per (query, key) pair, keys within the window
  for (i64 l = 0; l < c.layers; ++l) {
    const bool sliding = c.sliding_layers.empty() || c.sliding_layers[static_cast<std::size_t>(l)];
    const i64 window = sliding ? c.sliding_window : 0;
    double pairs = nn * (nn + 1.0) / 2.0;
    if (window > 0 && n > window) {
      const double w = static_cast<double>(window);
      pairs = w * (w + 1.0) / 2.0 + (nn - w) * w;
    }
    attention += 4.0 * q * pairs;
  }
  return 2.0 * nn * per_layer * static_cast<double>(c.layers) + attention +
         2.0 * h * static_cast<double>(c.vocab);
}

double bandwidth_limit_tokens_per_s(double bandwidth_gbs, double bytes_per_token) {
  return bytes_per_token > 0.0 ? bandwidth_gbs * 1e9 / bytes_per_token : 0.0;
}

MachineInfo machine_info() {
  MachineInfo m;
  m.cpu = cpu_model_name();
  m.simd = to_string(simd_level());
  m.features = describe_cpu();
  m.logical_cpus = ThreadPool::hardware_threads();
  m.memory_bytes = total_memory_bytes();
  return m;
}

nlohmann::json to_json(const MachineInfo& m) {
  return {{"cpu", m.cpu},
          {"simd", m.simd},
          {"features", m.features},
          {"logical_cpus", m.logical_cpus},
          {"memory_bytes", m.memory_bytes}};
}

void check_llm_bench_options(const LlmBenchOptions& o) {
  const auto bad = [](const std::string& what) { throw Error(ErrorCode::kInvalidArgument, what); };
  if (o.model.empty() == o.random_shape.empty()) {
    bad(o.model.empty() ? "give a model (a GGUF file or Hugging Face folder) or --random SHAPE"
                        : "give a model or --random, not both");
  }
  if (!o.model.empty() && !o.weights.empty()) {
    bad("--weights is for --random models (a file's weights are what it stores)");
  }
  if (!o.model.empty() && o.layers != 0) bad("--layers is for --random models");
  if (!o.random_shape.empty()) {
    random_shape(o.random_shape);
    for (const std::string& w : o.weights) find_random_weights(w);
  }
  if (o.layers < 0 || o.layers > 1024) bad("--layers must be 1 to 1024");
  if (o.repetitions < 1 || o.repetitions > 1000) bad("--repetitions must be 1 to 1000");
  for (const i64 n : o.prompts) {
    if (n < 0 || n > (i64{1} << 20)) bad("-p/--n-prompt values must be 0 to 1048576");
  }
  for (const i64 n : o.gens) {
    if (n < 0 || n > (i64{1} << 20)) bad("-n/--n-gen values must be 0 to 1048576");
  }
  if (tests_of(o).empty()) bad("nothing to measure: every -p and -n value is 0");
  if (o.kv_dtype != DType::kF16 && o.kv_dtype != DType::kF32) bad("the KV cache is f16 or f32");
  if (o.probe_bytes < (std::uint64_t{1} << 20)) bad("the bandwidth probe needs 1 MiB or more");
}

LlmBenchReport run_llm_bench(const LlmBenchOptions& o) {
  check_llm_bench_options(o);
  LlmBenchReport report;
  report.machine = machine_info();
  report.repetitions = o.repetitions;
  report.kv_dtype = std::string(dtype_name(o.kv_dtype));
  Runner runner(o, report);
  LlmOptions lo;
  lo.pool = runner.pool();
  lo.kv_dtype = o.kv_dtype;
  // The machine's figures before any model, so that they exist for every test mix.
  runner.bandwidth();
  runner.peak();
  if (!o.model.empty()) {
    runner.set_total(runner.total_steps(1));
    runner.run_model(o.model.string(), "", [&] { return LanguageModel::load(o.model, lo); });
    return report;
  }
  DecoderConfig shape = random_shape(o.random_shape);
  if (o.layers > 0) shape.layers = o.layers;
  const std::vector<std::string> weights =
      o.weights.empty() ? std::vector<std::string>{"f16"} : o.weights;
  runner.set_total(runner.total_steps(weights.size()));
  for (const std::string& w : weights) {
    const RandomWeights& format = find_random_weights(w);
    runner.run_model("random " + o.random_shape, w, [&] { return format.make(shape, 1, lo); });
  }
  return report;
}

std::string to_text(const LlmBenchReport& r) {
  std::string out = "cpu: " + r.machine.cpu + " (" + r.machine.features + ", " +
                    std::to_string(r.machine.logical_cpus) + " logical cpus, " +
                    format_bytes(r.machine.memory_bytes) + ")\n";
  out += "backend: " + r.backend + ", " + std::to_string(r.threads) + " threads, KV cache " +
         r.kv_dtype + ", " + std::to_string(r.repetitions) + " repetitions after a warm-up\n";
  out += "measured: read bandwidth " + fixed(r.bandwidth_gbs, 1) + " GB/s, FMA peak " +
         fixed(r.peak_gflops, 0) + " GFLOP/s (best probes of the run)\n";
  if (r.peer) {
    out += "peer: " + r.peer->name + " " + r.peer->version + " (" + r.peer->path + ")\n";
  }
  out +=
      "\n| model | weights | load s | open to first token s | peak RSS |\n"
      "|---|---|---:|---:|---:|\n";
  for (const LlmBenchModel& m : r.models) {
    out += "| " + m.name + " | " + m.weights + " | " + fixed(m.load_seconds, 2) + " | " +
           fixed(m.first_token_seconds, 2) + " | " + format_bytes(m.peak_rss) + " |\n";
  }
  out += "\n| model | weights | test | t/s | limit t/s | of limit | limit from |";
  if (r.peer) out += " " + r.peer->name + " t/s | of limit | hearth / " + r.peer->name + " |";
  out += "\n|---|---|---|---:|---:|---:|---|";
  if (r.peer) out += "---:|---:|---:|";
  out += "\n";
  for (const LlmBenchRow& row : r.rows) {
    const LlmBenchModel& m = r.models[row.model];
    const std::string from =
        row.n_gen > 0 ? decimal_bytes(row.bytes_per_token) + "/token at " +
                            fixed(row.bandwidth_gbs, 1) + " GB/s"
                      : fixed(row.gflops, 0) + " of " + fixed(row.peak_gflops, 0) + " GFLOP/s";
    out += "| " + m.name + " | " + m.weights + " | " + row.test + " | " + rate(row.stats.mean) +
           " ± " + rate(row.stats.stddev) + " | " + rate(row.limit_tokens_per_s) + " | " +
           percent(row.fraction) + " | " + from + " |";
    if (r.peer) {
      if (row.peer) {
        out += " " + rate(row.peer->stats.mean) + " ± " + rate(row.peer->stats.stddev) + " | " +
               percent(row.peer->fraction) + " | " + fixed(row.peer->ratio, 2) + "x |";
      } else {
        out += " - | - | - |";
      }
    }
    out += "\n";
  }
  return out;
}

nlohmann::json to_json(const LlmBenchReport& r) {
  nlohmann::json models = nlohmann::json::array();
  for (const LlmBenchModel& m : r.models) {
    models.push_back({{"name", m.name},
                      {"source", m.source},
                      {"weights", m.weights},
                      {"architecture", m.architecture},
                      {"parameters", m.parameters},
                      {"weight_bytes_per_token", m.weight_bytes_per_token},
                      {"load_seconds", m.load_seconds},
                      {"first_token_seconds", m.first_token_seconds},
                      {"peak_rss_bytes", m.peak_rss}});
  }
  nlohmann::json rows = nlohmann::json::array();
  for (const LlmBenchRow& row : r.rows) {
    const LlmBenchModel& m = r.models[row.model];
    nlohmann::json j = {{"model", m.name},
                        {"weights", m.weights},
                        {"test", row.test},
                        {"n_prompt", row.n_prompt},
                        {"n_gen", row.n_gen},
                        {"tokens_per_s", row.stats.mean},
                        {"tokens_per_s_stddev", row.stats.stddev},
                        {"samples_tokens_per_s", row.tokens_per_s},
                        {"samples_seconds", row.seconds},
                        {"limit", row.n_gen > 0 ? "bandwidth" : "fma_peak"},
                        {"limit_tokens_per_s", row.limit_tokens_per_s},
                        {"fraction_of_limit", row.fraction}};
    if (row.n_gen > 0) {
      j["bytes_per_token"] = row.bytes_per_token;
      j["bandwidth_gbs"] = row.bandwidth_gbs;
    } else {
      j["flops_per_token"] = row.flops_per_token;
      j["gflops"] = row.gflops;
      j["peak_gflops"] = row.peak_gflops;
    }
    if (row.peer) {
      j["peer"] = {{"tokens_per_s", row.peer->stats.mean},
                   {"tokens_per_s_stddev", row.peer->stats.stddev},
                   {"samples_tokens_per_s", row.peer->tokens_per_s},
                   {"samples_seconds", row.peer->seconds},
                   {"fraction_of_limit", row.peer->fraction},
                   {"ratio", row.peer->ratio}};
    }
    rows.push_back(std::move(j));
  }
  nlohmann::json out = {{"benchmark", "llm"},
                        {"hearth_version", HEARTH_VERSION},
                        {"machine", to_json(r.machine)},
                        {"backend", r.backend},
                        {"threads", r.threads},
                        {"repetitions", r.repetitions},
                        {"kv_cache", r.kv_dtype},
                        {"bandwidth_gbs", r.bandwidth_gbs},
                        {"peak_gflops", r.peak_gflops},
                        {"models", models},
                        {"rows", rows}};
  if (r.peer) {
    out["peer"] = {{"name", r.peer->name},
                   {"path", r.peer->path},
                   {"version", r.peer->version},
                   {"backend", r.peer->backend},
                   {"model_type", r.peer->model_type}};
  }
  return out;
}

}  // namespace hearth::models
