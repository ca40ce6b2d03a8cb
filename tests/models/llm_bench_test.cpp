// bench-cli llm and the benchmark behind it: the arithmetic of the limits, the shapes and weight
// formats it knows, llama-bench's JSON as a peer (a fake llama-bench script stands in for the real
// one), and runs of the command on tiny models (figures are not asserted, their consistency is).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/models/llm_bench.hpp"
#include "hearth/models/llm_peer.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

using testing::cat;
using testing::quote;

std::string bench_cli() {
  return quote(testing::tools_dir() / "bench-cli");
}

// Runs a command line in a scratch folder (where bench-cli writes its dated report folders);
// output receives its stdout only (the progress line goes to stderr).
int stdout_of(const std::string& command, std::string* output) {
  static const testing::TempDir scratch;
  return testing::run_command(
      "{ cd " + quote(scratch.path()) + " && " + command + " 2>/dev/null; }", output);
}

// Fast under ASan: tiny shapes, one repetition, small probes.
const char* const kQuick = " -p 8 -n 4 -r 1 -t 1 --probe-mib 4";

// Every weight element of a decoder of shape c, counted from the architecture's definition
// (embedding, per layer q/k/v/o, gate/up/down, two norms and biases; the final norm; lm_head).
double parameters_of(const DecoderConfig& c) {
  const double h = static_cast<double>(c.hidden);
  const double q = static_cast<double>(c.heads * c.head_dim);
  const double kv = static_cast<double>(c.kv_heads * c.head_dim);
  double layer = h * q + 2.0 * h * kv + q * h + 3.0 * h * static_cast<double>(c.ffn) + 2.0 * h;
  if (c.qkv_bias) layer += q + 2.0 * kv;
  const double embedding = static_cast<double>(c.vocab) * h;
  return embedding * (c.tied_embeddings ? 1.0 : 2.0) + static_cast<double>(c.layers) * layer + h;
}

TEST(LlmBench, ShapesAreTheRealModels) {
  // The parameter counts the model cards state.
  EXPECT_NEAR(parameters_of(random_shape("phi3-mini")) / 1e9, 3.82, 0.01);
  EXPECT_NEAR(parameters_of(random_shape("llama3-8b")) / 1e9, 8.03, 0.01);
  EXPECT_NEAR(parameters_of(random_shape("qwen2-0.5b")) / 1e9, 0.494, 0.001);
  ASSERT_GE(random_shapes().size(), 4u);
  try {
    random_shape("gpt5");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("phi3-mini"), std::string::npos) << e.what();
  }
  // The tiny shape builds, and the builder counts what parameters_of counts.
  LlmOptions o;
  o.threads = 1;
  const auto model = find_random_weights("bf16").make(random_shape("tiny"), 1, o);
  EXPECT_EQ(static_cast<double>(model->config().parameters), parameters_of(model->config()));
  EXPECT_EQ(model->config().weight_dtype, DType::kBF16);
}

TEST(LlmBench, WeightFormatsAreOneTableWithClearAnswersForMissingOnes) {
  std::vector<std::string> names;
  for (const RandomWeights& w : random_weights()) names.push_back(w.name);
  for (const char* want :
       {"f16", "bf16", "f32", "q4_0", "q4_k", "q4_k_m", "q8_0", "mlx4", "mlx8"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  for (const char* built : {"f16", "bf16", "f32"})
    EXPECT_NE(find_random_weights(built).make, nullptr);
  for (const RandomWeights& w : random_weights()) {
    if (w.make != nullptr) continue;
    try {
      find_random_weights(w.name);
      FAIL() << w.name;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
      EXPECT_NE(std::string(e.what()).find("not in this build"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(find_random_weights("q3_z"), Error);
}

TEST(LlmBench, SampleStatsAreLlamaBenchs) {
  const std::vector<double> v = {2, 4, 4, 4, 5, 5, 7, 9};
  const SampleStats s = sample_stats(v);
  EXPECT_DOUBLE_EQ(s.mean, 5.0);
  EXPECT_NEAR(s.stddev, std::sqrt(32.0 / 7.0), 1e-12);  // n - 1
  const std::vector<double> one = {3.5};
  EXPECT_DOUBLE_EQ(sample_stats(one).mean, 3.5);
  EXPECT_DOUBLE_EQ(sample_stats(one).stddev, 0.0);
}

TEST(LlmBench, LimitArithmetic) {
  DecoderConfig c = random_shape("tiny");  // 2 layers, 2 KV heads of 16
  // K and V, 2 x 16 x 2 heads, 2 bytes: 128 bytes per position per layer. Tokens 1..4 read 1..4
  // positions: 10 per layer, 20 in all, over 4 tokens.
  EXPECT_DOUBLE_EQ(mean_kv_bytes_per_decoded_token(c, DType::kF16, 4), 128.0 * 20 / 4);
  EXPECT_DOUBLE_EQ(mean_kv_bytes_per_decoded_token(c, DType::kF32, 4), 256.0 * 20 / 4);
  c.sliding_window = 2;  // 1, 2, 2, 2 positions
  EXPECT_DOUBLE_EQ(mean_kv_bytes_per_decoded_token(c, DType::kF16, 4), 128.0 * 14 / 4);
  c.sliding_layers = {true, false};  // 7 + 10
  EXPECT_DOUBLE_EQ(mean_kv_bytes_per_decoded_token(c, DType::kF16, 4), 128.0 * 17 / 4);

  // Prefill: 2 FLOPs per projection weight per token, the output layer once, and 4 x 64 FLOPs
  // per (query, key) pair for QK and AV: 8 tokens have 36 pairs.
  const DecoderConfig t = random_shape("tiny");
  const double projections = 64.0 * (64 + 2 * 32) + 64.0 * 64 + 3.0 * 64 * 172;
  EXPECT_DOUBLE_EQ(prefill_flops(t, 8),
                   2.0 * 8 * 2 * projections + 2 * 4.0 * 64 * 36 + 2.0 * 64 * 320);

  // 7.64 GB streamed per token at 20 GB/s: 2.62 tokens/s at best.
  EXPECT_NEAR(bandwidth_limit_tokens_per_s(20.0, 7.64e9), 20.0 / 7.64, 1e-12);
  EXPECT_EQ(bandwidth_limit_tokens_per_s(20.0, 0.0), 0.0);
}

TEST(LlmBench, RunReportsConsistentFigures) {
  LlmBenchOptions o;
  o.random_shape = "tiny";
  o.weights = {"f16", "f32"};
  o.prompts = {8, 0};
  o.gens = {4};
  o.repetitions = 2;
  o.threads = 1;
  o.probe_bytes = 4 << 20;
  o.peak_seconds = 0.02;
  std::size_t calls = 0, last_total = 0;
  o.progress = [&](const std::string&, std::size_t done, std::size_t total) {
    EXPECT_EQ(done, calls);
    last_total = total;
    ++calls;
  };
  const LlmBenchReport r = run_llm_bench(o);
  EXPECT_EQ(calls, last_total);
  EXPECT_EQ(calls, 2u * (1 + 2 * (1 + 2)));  // per model: load, per test: warm-up + repetitions
  ASSERT_EQ(r.models.size(), 2u);
  EXPECT_EQ(r.models[1].weights, "f32");
  ASSERT_EQ(r.rows.size(), 4u);
  EXPECT_EQ(r.rows[0].test, "pp8");
  EXPECT_EQ(r.rows[1].test, "tg4");
  EXPECT_EQ(r.rows[3].model, 1u);
  EXPECT_GT(r.bandwidth_gbs, 0.0);
  for (const LlmBenchModel& m : r.models) {
    EXPECT_GT(m.first_token_seconds, m.load_seconds);
    EXPECT_GT(m.peak_rss, 0u);
  }
  for (const LlmBenchRow& row : r.rows) {
    ASSERT_EQ(row.seconds.size(), 2u);
    const double n = static_cast<double>(row.n_prompt + row.n_gen);
    EXPECT_DOUBLE_EQ(row.tokens_per_s[1], n / row.seconds[1]);
    EXPECT_DOUBLE_EQ(row.stats.mean, (row.tokens_per_s[0] + row.tokens_per_s[1]) / 2);
    if (row.n_gen > 0) {
      const LlmBenchModel& m = r.models[row.model];
      EXPECT_DOUBLE_EQ(row.bytes_per_token,
                       static_cast<double>(m.weight_bytes_per_token) + 128.0 * 2 * 10 / 4);
      EXPECT_LE(row.bandwidth_gbs, r.bandwidth_gbs);
      EXPECT_DOUBLE_EQ(row.limit_tokens_per_s, row.bandwidth_gbs * 1e9 / row.bytes_per_token);
    } else if (row.peak_gflops > 0.0) {
      EXPECT_DOUBLE_EQ(row.limit_tokens_per_s, row.peak_gflops * 1e9 / row.flops_per_token);
    }
    if (row.limit_tokens_per_s > 0.0) {
      EXPECT_DOUBLE_EQ(row.fraction, row.stats.mean / row.limit_tokens_per_s);
    }
  }
  const std::string text = to_text(r);
  EXPECT_NE(text.find("| pp8 |"), std::string::npos) << text;
  EXPECT_NE(text.find("| open to first token s |"), std::string::npos) << text;
  EXPECT_EQ(text.find("llama-bench"), std::string::npos);
}

TEST(LlmBench, OptionsAreCheckedBeforeAnythingRuns) {
  LlmBenchOptions o;
  EXPECT_THROW(check_llm_bench_options(o), Error);  // neither model nor shape
  o.random_shape = "tiny";
  check_llm_bench_options(o);
  o.model = "x.gguf";
  EXPECT_THROW(check_llm_bench_options(o), Error);  // both
  o.model.clear();
  o.repetitions = 0;
  EXPECT_THROW(check_llm_bench_options(o), Error);
  o.repetitions = 1;
  o.prompts = {0};
  o.gens = {0};
  EXPECT_THROW(check_llm_bench_options(o), Error);
  o.gens = {-1};
  EXPECT_THROW(check_llm_bench_options(o), Error);
}

// Two tests as llama-bench b4748 prints them with -o json (fields it adds are ignored).
std::string llama_bench_json(double pp_ts, double tg_ts) {
  nlohmann::json pp = {{"build_commit", "c392e5094"},
                       {"build_number", 4748},
                       {"backends", "CPU"},
                       {"model_type", "llama ?B all F32"},
                       {"n_threads", 1},
                       {"n_prompt", 8},
                       {"n_gen", 0},
                       {"avg_ts", pp_ts},
                       {"stddev_ts", 0.0},
                       {"samples_ns", {8e9 / pp_ts}},
                       {"samples_ts", {pp_ts}}};
  nlohmann::json tg = pp;
  tg["n_prompt"] = 0;
  tg["n_gen"] = 4;
  tg["avg_ts"] = tg_ts;
  tg["samples_ns"] = {4e9 / tg_ts};
  tg["samples_ts"] = {tg_ts};
  return nlohmann::json::array({pp, tg}).dump(2);
}

TEST(LlmPeer, ParsesLlamaBenchJsonAndRefusesMalformedOutput) {
  const LlamaBenchRun run =
      parse_llama_bench_json("some log line\n" + llama_bench_json(400.0, 50.0), "lb");
  EXPECT_EQ(run.info.version, "build c392e5094 (4748)");
  EXPECT_EQ(run.info.backend, "CPU");
  ASSERT_EQ(run.tests.size(), 2u);
  EXPECT_EQ(run.tests[0].n_prompt, 8);
  EXPECT_EQ(run.tests[1].n_gen, 4);
  EXPECT_DOUBLE_EQ(run.tests[1].avg_ts, 50.0);
  ASSERT_EQ(run.tests[1].samples_ns.size(), 1u);
  EXPECT_DOUBLE_EQ(run.tests[1].samples_ns[0], 8e7);

  const auto refused = [](const std::string& text, const std::string& what) {
    SCOPED_TRACE(text);
    try {
      parse_llama_bench_json(text, "/opt/llama-bench");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat);
      const std::string m = e.what();
      EXPECT_NE(m.find("/opt/llama-bench"), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
  };
  refused("| model | size |", "not a JSON array");
  refused("[{\"n_prompt\": 8", "not a JSON array");
  refused("[3]", "non-object");
  nlohmann::json j = nlohmann::json::parse(llama_bench_json(400.0, 50.0));
  j[0].erase("avg_ts");
  refused(j.dump(), "avg_ts");
  j = nlohmann::json::parse(llama_bench_json(400.0, 50.0));
  j[1]["samples_ts"] = {1.0, 2.0};
  refused(j.dump(), "different lengths");
  j[1]["samples_ts"] = {"fast"};
  refused(j.dump(), "non-number");
}

TEST(LlmPeer, AttachesRatiosAndFractionsToMatchingRows) {
  LlmBenchReport r;
  r.models.push_back({});
  LlmBenchRow pp;
  pp.test = "pp8";
  pp.n_prompt = 8;
  pp.stats.mean = 1000.0;
  pp.limit_tokens_per_s = 4000.0;
  LlmBenchRow tg = pp;
  tg.test = "tg4";
  tg.n_prompt = 0;
  tg.n_gen = 4;
  tg.stats.mean = 60.0;
  tg.limit_tokens_per_s = 100.0;
  LlmBenchRow tg16 = tg;
  tg16.test = "tg16";
  tg16.n_gen = 16;
  r.rows = {pp, tg, tg16};
  attach_peer(r, parse_llama_bench_json(llama_bench_json(400.0, 50.0), "lb"));
  ASSERT_TRUE(r.peer);
  ASSERT_TRUE(r.rows[0].peer);
  EXPECT_DOUBLE_EQ(r.rows[0].peer->ratio, 2.5);
  EXPECT_DOUBLE_EQ(r.rows[0].peer->fraction, 0.1);
  ASSERT_TRUE(r.rows[1].peer);
  EXPECT_DOUBLE_EQ(r.rows[1].peer->ratio, 1.2);
  EXPECT_DOUBLE_EQ(r.rows[1].peer->fraction, 0.5);
  EXPECT_DOUBLE_EQ(r.rows[1].peer->seconds[0], 0.08);
  EXPECT_FALSE(r.rows[2].peer);  // llama-bench ran no tg16
  const std::string text = to_text(r);
  EXPECT_NE(text.find("hearth / llama-bench"), std::string::npos) << text;
  EXPECT_NE(text.find("1.20x"), std::string::npos) << text;
  EXPECT_EQ(to_json(r)["rows"][1]["peer"]["ratio"], 1.2);
}

TEST(LlmPeer, SpecsAndCommandLine) {
  const LlmPeer p = parse_peer_spec("llama-bench=/opt/lb");
  EXPECT_EQ(p.name, "llama-bench");
  EXPECT_EQ(p.path, "/opt/lb");
  EXPECT_THROW(parse_peer_spec("llama-bench"), Error);
  EXPECT_THROW(parse_peer_spec("llama-bench="), Error);
  EXPECT_THROW(parse_peer_spec("vllm=/x"), Error);
  LlmBenchOptions o;
  o.model = "/m.gguf";
  o.prompts = {128, 512};
  o.gens = {0};
  o.repetitions = 3;
  o.kv_dtype = DType::kF32;
  const std::vector<std::string> want = {
      "/opt/lb", "-m",   "/m.gguf", "-p",   "128,512", "-n",   "0", "-r", "3",   "-t",
      "2",       "-ctk", "f32",     "-ctv", "f32",     "-ngl", "0", "-o", "json"};
  EXPECT_EQ(llama_bench_command(p, o, 2), want);
}

// ---- bench-cli llm as a user runs it ----

TEST(BenchCliLlm, ArgumentErrorsSayWhatIsWrong) {
  testing::TempDir tmp;
  testing::make_model("--arch llama --format hf --out " + quote(tmp / "hf"));
  ASSERT_FALSE(HasFatalFailure());
  const struct {
    std::string args;
    int status;
    const char* message;
  } cases[] = {
      {"", 2, "give a model"},
      {" --random tiny " + quote(tmp / "hf"), 2, "not both"},
      {" --random tiny --weights q4_k_m", 2, "not in this build"},
      {" --random tiny --weights int3", 2, "unknown --weights 'int3'"},
      {" --random gpt5", 2, "unknown --random shape"},
      {" --random tiny -r 0", 2, "--repetitions"},
      {" --random tiny -p 0 -n 0", 2, "nothing to measure"},
      {" --random tiny --peer llama-bench=/bin/true", 2, "not on --random weights"},
      {" " + quote(tmp / "hf") + " --peer llama-bench=/bin/true", 2, "GGUF files only"},
      {" --random tiny --peer vllm=/x", 2, "--peer takes llama-bench=PATH"},
      {" " + quote(tmp / "hf") + " --weights f16", 2, "--weights is for --random"},
      {" " + quote(tmp / "missing.gguf"), 1, "no such file or folder"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    std::string out;
    EXPECT_EQ(testing::run_command(bench_cli() + " llm" + c.args + " 2>&1", &out), c.status);
    EXPECT_NE(out.find(c.message), std::string::npos) << out;
  }
}

TEST(BenchCliLlm, TinyRandomModelAsJson) {
  std::string out;
  ASSERT_EQ(stdout_of(cat({bench_cli(), " llm --random tiny --weights bf16 --json", kQuick}), &out),
            0)
      << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  for (const char* key : {"cpu", "simd", "logical_cpus", "memory_bytes"}) {
    EXPECT_TRUE(j["machine"].contains(key)) << key;
  }
  EXPECT_GT(j["machine"]["logical_cpus"].get<int>(), 0);
  EXPECT_GT(j["bandwidth_gbs"].get<double>(), 0.0);
  EXPECT_EQ(j["threads"], 1);
  EXPECT_EQ(j["repetitions"], 1);
  ASSERT_EQ(j["models"].size(), 1u);
  EXPECT_EQ(j["models"][0]["weights"], "bf16");
  EXPECT_EQ(j["models"][0]["source"], "random tiny");
  EXPECT_GT(j["models"][0]["first_token_seconds"].get<double>(), 0.0);
  EXPECT_GT(j["models"][0]["peak_rss_bytes"].get<double>(), 0.0);
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0]["test"], "pp8");
  EXPECT_EQ(j["rows"][0]["limit"], "fma_peak");
  EXPECT_EQ(j["rows"][1]["test"], "tg4");
  EXPECT_EQ(j["rows"][1]["limit"], "bandwidth");
  for (const auto& row : j["rows"]) {
    ASSERT_EQ(row["samples_seconds"].size(), 1u);
    EXPECT_GT(row["tokens_per_s"].get<double>(), 0.0);
    EXPECT_FALSE(row.contains("peer"));
  }
  const auto& tg = j["rows"][1];
  EXPECT_NEAR(tg["fraction_of_limit"].get<double>(),
              tg["tokens_per_s"].get<double>() / tg["limit_tokens_per_s"].get<double>(), 1e-9);
  EXPECT_NEAR(tg["limit_tokens_per_s"].get<double>(),
              tg["bandwidth_gbs"].get<double>() * 1e9 / tg["bytes_per_token"].get<double>(), 1e-6);
}

// A file that mixes block types per tensor, as llama.cpp's Q4_K_M does, is named by all its
// types, not by the type of its first matrix. (The tiny model's rows are not whole K super-blocks,
// so its Q4_K_M falls back to q5_0 / q8_0 with f16 where llama.cpp's quantizer would.)
TEST(BenchCliLlm, MixedTypesFileIsNamedByItsTypes) {
  testing::TempDir tmp;
  const auto model = tmp / "tiny-q4_k_m.gguf";
  testing::make_model("--arch llama --format gguf --dtype q4_k_m --out " + quote(model));
  ASSERT_FALSE(HasFatalFailure());
  std::string out;
  ASSERT_EQ(stdout_of(cat({bench_cli(), " llm ", quote(model), kQuick, " --json"}), &out), 0)
      << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  ASSERT_EQ(j["models"].size(), 1u);
  const std::string weights = j["models"][0]["weights"];
  std::vector<std::string> parts;
  for (std::size_t at = 0; at <= weights.size();) {
    const std::size_t plus = std::min(weights.find('+', at), weights.size());
    parts.push_back(weights.substr(at, plus - at));
    at = plus + 1;
  }
  EXPECT_EQ(parts, (std::vector<std::string>{"q5_0", "f16", "q8_0"})) << weights;
}

TEST(BenchCliLlm, PeerRunsWithTheSameTestsAndShowsTheRatio) {
  testing::TempDir tmp;
  const auto model = tmp / "tiny.gguf";
  testing::make_model("--arch llama --format gguf --out " + quote(model));
  ASSERT_FALSE(HasFatalFailure());
  {
    std::ofstream(tmp / "out.json") << llama_bench_json(400.0, 50.0);
    std::ofstream script(tmp / "llama-bench");
    script << "#!/bin/sh\necho \"$@\" > " << quote(tmp / "args") << "\necho loading >&2\nexec cat "
           << quote(tmp / "out.json") << "\n";
  }
  ASSERT_EQ(testing::run_command("chmod +x " + quote(tmp / "llama-bench")), 0);
  std::string out;
  ASSERT_EQ(stdout_of(cat({bench_cli(), " llm ", quote(model), kQuick,
                           " --json --peer llama-bench=", quote(tmp / "llama-bench")}),
                      &out),
            0)
      << out;
  std::ifstream args(tmp / "args");
  std::string line;
  std::getline(args, line);
  EXPECT_EQ(line, "-m " + model.string() + " -p 8 -n 4 -r 1 -t 1 -ctk f16 -ctv f16 -ngl 0 -o json");
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["peer"]["name"], "llama-bench");
  EXPECT_EQ(j["peer"]["version"], "build c392e5094 (4748)");
  ASSERT_EQ(j["rows"].size(), 2u);
  for (const auto& row : j["rows"]) {
    ASSERT_TRUE(row.contains("peer")) << row.dump();
    const double peer = row["n_gen"] == 4 ? 50.0 : 400.0;
    EXPECT_EQ(row["peer"]["tokens_per_s"], peer);
    EXPECT_NEAR(row["peer"]["ratio"].get<double>(), row["tokens_per_s"].get<double>() / peer, 1e-9);
  }
  // The table has the peer's columns.
  ASSERT_EQ(stdout_of(cat({bench_cli(), " llm ", quote(model), kQuick,
                           " --peer llama-bench=", quote(tmp / "llama-bench")}),
                      &out),
            0);
  EXPECT_NE(out.find("hearth / llama-bench"), std::string::npos) << out;

  // A peer that fails: its last stderr line in the error, exit status 1.
  {
    std::ofstream script(tmp / "broken");
    script << "#!/bin/sh\necho 'error: failed to load model' >&2\nexit 3\n";
  }
  ASSERT_EQ(testing::run_command("chmod +x " + quote(tmp / "broken")), 0);
  EXPECT_EQ(testing::run_command(cat({bench_cli(), " llm ", quote(model), kQuick,
                                      " --peer llama-bench=", quote(tmp / "broken"), " 2>&1"}),
                                 &out),
            1);
  EXPECT_NE(out.find("exited with status 3: error: failed to load model"), std::string::npos)
      << out;
}

TEST(BenchCliLlm, CtrlCStopsCleanly) {
  // SIGINT into a decode run that would take minutes, and into a peer that hangs. Five seconds
  // in, not one: a SIGINT before bench-cli has set its handler (a slow sanitizer start on a loaded
  // machine) kills it with the same status 130 but without the message.
  testing::TempDir tmp;
  std::string out;
  EXPECT_EQ(testing::run_command(cat({"timeout --preserve-status -s INT 5 ", bench_cli(),
                                      " llm --random tiny -p 0 -n 100000 -r 100 -t 1 "
                                      "--probe-mib 4 2>&1"}),
                                 &out),
            130)
      << out;
  EXPECT_NE(out.find("bench-cli: error: interrupted"), std::string::npos) << out;
  const auto model = tmp / "tiny.gguf";
  testing::make_model("--arch llama --format gguf --out " + quote(model));
  ASSERT_FALSE(HasFatalFailure());
  {
    std::ofstream script(tmp / "llama-bench");
    script << "#!/bin/sh\nexec sleep 60\n";
  }
  ASSERT_EQ(testing::run_command("chmod +x " + quote(tmp / "llama-bench")), 0);
  const Timer t;
  EXPECT_EQ(testing::run_command(
                cat({"timeout --preserve-status -s INT 2 ", bench_cli(), " llm ", quote(model),
                     kQuick, " --peer llama-bench=", quote(tmp / "llama-bench"), " 2>&1"}),
                &out),
            130)
      << out;
  EXPECT_LT(t.seconds(), 30.0);  // the peer was stopped, not waited for
}

}  // namespace
}  // namespace hearth::models
