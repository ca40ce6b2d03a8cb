// The decoder test tools themselves: hearth-make-model's Llama / Mistral / Phi-3 / Qwen2 / Qwen3
// folders and GGUF files (configs, keys, tensor layouts, the same weights in every encoding), and
// tools/llm_reference.py (the independent torch reference) against real outputs: the stories260K
// golden greedy ids and llama.cpp's logits in ../shared/fixtures/models/llamacpp-logits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/rag/npz_import.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::cat;
using testing::quote;
using testing::TempDir;

const fs::path kRepo = fs::path(__FILE__).parent_path().parent_path().parent_path();
constexpr const char* kPython = "/usr/bin/python3";

bool have_torch() {
  static const bool ok =
      testing::run_command(std::string(kPython) + " -c 'import torch, numpy' 2>/dev/null") == 0;
  return ok;
}

#define REQUIRE_TORCH()                                                                           \
  if (!have_torch()) {                                                                            \
    GTEST_SKIP() << "the reference needs Debian's python3-torch and python3-numpy at " << kPython \
                 << " (apt install python3-torch python3-numpy)";                                 \
  }

void make_model(const std::string& args) {
  std::string out;
  const std::string cmd = cat({quote(testing::tools_dir() / "hearth-make-model"), " ", args});
  ASSERT_EQ(testing::run_command(cmd, &out), 0) << cmd << "\n" << out;
}

// A model with the stories260K tokenizer (vocab 512) in both encodings: DIR (HF) and DIR.gguf.
void make_pair(const fs::path& dir, const std::string& args) {
  const fs::path st = testing::fixture("models/stories260K");
  make_model(cat({args, " --format hf --tokenizer-dir ", quote(st / "hf"), " --out ", quote(dir)}));
  make_model(cat({args, " --format gguf --gguf-vocab ", quote(st / "stories260K-f32.gguf"),
                  " --out ", quote(dir.string() + ".gguf")}));
}

struct RefRun {
  std::vector<int> prompt_ids;
  std::vector<int> greedy_ids;
  int final_argmax = -1;
  json config;
  std::vector<std::size_t> shape;
  std::vector<double> logits;  // [shape[0], shape[1]]
  double at(std::size_t row, std::size_t col) const { return logits[row * shape[1] + col]; }
};

struct Job {
  fs::path model;
  std::vector<int> ids;
  int steps = 0;
  std::string dtype = "float64";
};

// Runs the reference once over every job (one Python start-up) and reads the outputs.
std::vector<RefRun> reference(const std::vector<Job>& jobs, const TempDir& tmp) {
  json list = json::array();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    list.push_back({{"model", jobs[i].model.string()},
                    {"ids", jobs[i].ids},
                    {"steps", jobs[i].steps},
                    {"dtype", jobs[i].dtype},
                    {"out", (tmp / cat({"run", std::to_string(i)})).string()}});
  }
  std::ofstream(tmp / "jobs.json") << list.dump();
  std::string log;
  const std::string cmd = cat({kPython, " ", quote(kRepo / "tools/llm_reference.py"), " --jobs ",
                               quote(tmp / "jobs.json")});
  const int rc = testing::run_command(cmd, &log);
  EXPECT_EQ(rc, 0) << cmd << "\n" << log;
  std::vector<RefRun> runs;
  if (rc != 0) return runs;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const fs::path prefix = tmp / cat({"run", std::to_string(i)});
    const json j = json::parse(std::ifstream(prefix.string() + ".json"));
    RefRun r;
    r.prompt_ids = j["prompt_ids"].get<std::vector<int>>();
    r.greedy_ids = j["greedy_ids"].get<std::vector<int>>();
    r.final_argmax = j["final_argmax"].get<int>();
    r.config = j["config"];
    const auto bytes = testing::read_bytes(prefix.string() + ".logits.npy");
    rag::NpyArray a =
        rag::parse_npy(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    r.shape = a.shape;
    r.logits = std::move(a.floats);
    runs.push_back(std::move(r));
  }
  return runs;
}

double max_abs_diff(const RefRun& a, const RefRun& b, std::size_t row0 = 0,
                    std::size_t row1 = SIZE_MAX) {
  EXPECT_EQ(a.shape, b.shape);
  if (a.shape != b.shape) return INFINITY;
  double worst = 0.0;
  for (std::size_t r = row0; r < std::min(row1, a.shape[0]); ++r) {
    for (std::size_t c = 0; c < a.shape[1]; ++c) {
      worst = std::max(worst, std::fabs(a.at(r, c) - b.at(r, c)));
    }
  }
  return worst;
}

double stddev(const RefRun& r) {
  double s = 0, s2 = 0;
  for (const double v : r.logits) {
    s += v;
    s2 += v * v;
  }
  const double n = static_cast<double>(r.logits.size());
  return std::sqrt(s2 / n - (s / n) * (s / n));
}

std::vector<int> random_ids(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(3, vocab - 1);
  std::vector<int> ids = {1};
  while (static_cast<int>(ids.size()) < n) ids.push_back(id(rng));
  return ids;
}

std::vector<float> f32_values(const TensorView& v) {
  std::vector<float> out(static_cast<std::size_t>(numel(v.shape)));
  std::memcpy(out.data(), v.data, out.size() * 4);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The maker's files, read with hearth's own format readers (no Python needed).

TEST(LlmMaker, HfConfigsAreWhatTransformersWrites) {
  HEARTH_REQUIRE_FIXTURE(st, "models/stories260K");
  TempDir tmp;
  struct Case {
    std::string args, architecture, model_type;
  };
  for (const Case& c :
       std::vector<Case>{{"--arch llama --rope-scaling llama3", "LlamaForCausalLM", "llama"},
                         {"--arch mistral", "MistralForCausalLM", "mistral"},
                         {"--arch phi3 --rope-scaling longrope", "Phi3ForCausalLM", "phi3"},
                         {"--arch qwen2", "Qwen2ForCausalLM", "qwen2"},
                         {"--arch qwen3", "Qwen3ForCausalLM", "qwen3"}}) {
    const fs::path dir = tmp / c.model_type;
    make_model(
        cat({c.args, " --format hf --tokenizer-dir ", quote(st / "hf"), " --out ", quote(dir)}));
    if (HasFatalFailure()) return;
    const auto m = formats::ModelFolder::open(dir);
    EXPECT_EQ(m.architecture(), c.architecture);
    EXPECT_EQ(m.model_type(), c.model_type);
    const json& cfg = m.config();
    EXPECT_EQ(cfg["vocab_size"], 512) << "the tokenizer's vocabulary";
    ASSERT_TRUE(m.generation_config().has_value());
    EXPECT_EQ((*m.generation_config())["eos_token_id"], json::array({2}));
    EXPECT_TRUE(fs::exists(dir / "tokenizer.json"));
    EXPECT_TRUE(fs::exists(dir / "tokenizer_config.json"));
    ASSERT_EQ(m.shards().size(), 1u);
    const auto& shard = *m.shards()[0];
    if (c.model_type == "llama") {
      EXPECT_EQ(cfg["rope_scaling"]["rope_type"], "llama3");
      EXPECT_EQ(cfg["rope_scaling"]["original_max_position_embeddings"], 64);
      EXPECT_EQ(cfg["head_dim"], 16);
      EXPECT_NE(shard.find_tensor("lm_head.weight"), nullptr);
    }
    if (c.model_type == "mistral") {
      EXPECT_EQ(cfg["sliding_window"], 16);
    }
    if (c.model_type == "phi3") {
      EXPECT_EQ(cfg["rope_scaling"]["type"], "longrope");
      EXPECT_EQ(cfg["rope_scaling"]["long_factor"].size(), 8u);
      EXPECT_EQ(cfg["rope_scaling"]["short_factor"].size(), 8u);
      EXPECT_EQ(cfg["original_max_position_embeddings"], 64);
      EXPECT_EQ(shard.find_tensor("model.layers.0.self_attn.qkv_proj.weight")->shape,
                (Shape{64 + 2 * 32, 64}));
      EXPECT_EQ(shard.find_tensor("model.layers.1.mlp.gate_up_proj.weight")->shape,
                (Shape{2 * 172, 64}));
      EXPECT_EQ(shard.find_tensor("model.layers.0.self_attn.q_proj.weight"), nullptr);
    }
    if (c.model_type == "qwen2") {
      EXPECT_EQ(cfg["tie_word_embeddings"], true);
      EXPECT_EQ(cfg["use_sliding_window"], false);
      EXPECT_EQ(shard.find_tensor("lm_head.weight"), nullptr);
      EXPECT_EQ(shard.find_tensor("model.layers.0.self_attn.k_proj.bias")->shape, (Shape{32}));
    }
    if (c.model_type == "qwen3") {
      EXPECT_EQ(cfg["head_dim"], 32);  // != hidden / heads
      EXPECT_EQ(shard.find_tensor("model.layers.0.self_attn.q_proj.weight")->shape,
                (Shape{4 * 32, 64}));
      EXPECT_EQ(shard.find_tensor("model.layers.0.self_attn.q_norm.weight")->shape, (Shape{32}));
      EXPECT_EQ(shard.find_tensor("model.layers.0.self_attn.q_proj.bias"), nullptr);
    }
  }
}

TEST(LlmMaker, GgufKeysAndTensorsFollowLlamaCppsConverter) {
  HEARTH_REQUIRE_FIXTURE(vocab, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  TempDir tmp;
  // A Phi-3 with the real 32,064-token Phi-3 vocabulary (its tokenizer keys copied).
  const fs::path phi3 = tmp / "phi3.gguf";
  make_model(
      cat({"--arch phi3 --rope-scaling longrope --context 256 --original-context 64 "
           "--layers 1 --format gguf --dtype f16 --gguf-vocab ",
           quote(vocab), " --out ", quote(phi3)}));
  if (HasFatalFailure()) return;
  const auto g = formats::GGUFFile::open(phi3);
  EXPECT_EQ(g.architecture(), "phi3");
  EXPECT_EQ(g.get_int("phi3.rope.scaling.original_context_length"), 64);
  EXPECT_EQ(g.get_int("phi3.context_length"), 256);
  EXPECT_NEAR(g.get_number("phi3.rope.scaling.attn_factor"),
              std::sqrt(1.0 + std::log(4.0) / std::log(64.0)), 1e-6);
  EXPECT_EQ(g.get_int("general.file_type"), 1);
  EXPECT_EQ(g.get_array("tokenizer.ggml.tokens").size(), 32064u);
  EXPECT_NE(g.find("tokenizer.chat_template"), nullptr);
  EXPECT_EQ(g.find_tensor("token_embd.weight")->shape, (Shape{32064, 64}));
  EXPECT_EQ(g.find_tensor("token_embd.weight")->dtype, DType::kF16);
  EXPECT_EQ(g.find_tensor("blk.0.attn_qkv.weight")->shape, (Shape{128, 64}));
  EXPECT_EQ(g.find_tensor("blk.0.ffn_up.weight")->shape, (Shape{344, 64}));  // gate | up
  EXPECT_EQ(g.find_tensor("blk.0.ffn_gate.weight"), nullptr);
  EXPECT_EQ(g.find_tensor("blk.0.attn_norm.weight")->dtype, DType::kF32);
  EXPECT_EQ(g.find_tensor("rope_factors_long.weight")->shape, (Shape{8}));
  EXPECT_EQ(g.find_tensor("rope_factors_short.weight")->shape, (Shape{8}));

  const fs::path llama = tmp / "llama.gguf";
  make_model("--arch llama --rope-scaling llama3 --format gguf --out " + quote(llama));
  const auto l = formats::GGUFFile::open(llama);
  EXPECT_EQ(l.architecture(), "llama");
  EXPECT_EQ(l.get_int("llama.rope.dimension_count"), 16);
  EXPECT_EQ(l.get_int("llama.vocab_size"), 320);
  ASSERT_NE(l.find_tensor("rope_freqs.weight"), nullptr);
  const auto divisors = f32_values(l.view(*l.find_tensor("rope_freqs.weight")));
  ASSERT_EQ(divisors.size(), 8u);
  EXPECT_EQ(divisors.front(), 1.0f);  // the highest frequency is kept
  EXPECT_EQ(divisors.back(), 8.0f);   // the lowest is divided by the factor

  const fs::path qwen3 = tmp / "qwen3.gguf";
  make_model("--arch qwen3 --format gguf --out " + quote(qwen3));
  const auto q = formats::GGUFFile::open(qwen3);
  EXPECT_EQ(q.architecture(), "qwen3");
  EXPECT_EQ(q.get_int("qwen3.attention.key_length"), 32);
  EXPECT_EQ(q.find_tensor("output.weight"), nullptr);  // tied
  EXPECT_EQ(q.find_tensor("blk.1.attn_k_norm.weight")->shape, (Shape{32}));
  EXPECT_EQ(q.find_tensor("blk.1.attn_q.weight")->shape, (Shape{128, 64}));
}

TEST(LlmMaker, SameSeedSameWeightsWithLlamaQkRowsPermutedInGguf) {
  TempDir tmp;
  for (const std::string arch : {"llama", "qwen2"}) {
    make_model("--arch " + arch + " --seed 7 --format hf --out " + quote(tmp / arch));
    make_model("--arch " + arch + " --seed 7 --format gguf --out " + quote(tmp / (arch + ".gguf")));
    if (HasFatalFailure()) return;
    const auto hf = formats::SafetensorsFile::open(tmp / arch / "model.safetensors");
    const auto gg = formats::GGUFFile::open(tmp / (arch + ".gguf"));
    for (const auto& [hf_name, gguf_name, heads] :
         std::vector<std::tuple<std::string, std::string, int>>{
             {"model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight", 4},
             {"model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 2},
             {"model.layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight", 0},
             {"model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight", 0}}) {
      const auto a = f32_values(hf.view(*hf.find_tensor(hf_name)));
      const auto b = f32_values(gg.view(*gg.find_tensor(gguf_name)));
      ASSERT_EQ(a.size(), b.size()) << hf_name;
      const std::int64_t cols = hf.find_tensor(hf_name)->shape[1];
      const std::int64_t rows = hf.find_tensor(hf_name)->shape[0];
      const bool permuted = arch == "llama" && heads > 0;
      std::int64_t mismatches = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        // GGUF row h*d + 2i + j holds HF row h*d + j*d/2 + i (llama.cpp's converter permute).
        const std::int64_t d = permuted ? rows / heads : 1;
        const std::int64_t rem = r % d;
        const std::int64_t src = permuted ? r - rem + (rem % 2) * (d / 2) + rem / 2 : r;
        for (std::int64_t c = 0; c < cols; ++c) mismatches += b[r * cols + c] != a[src * cols + c];
      }
      EXPECT_EQ(mismatches, 0) << arch << " " << hf_name;
      if (permuted) {
        EXPECT_NE(a, b) << "the permutation must move rows";
      }
    }
  }
}

TEST(LlmMaker, ShardedFolderHasAnIndexAndTheSameTensors) {
  TempDir tmp;
  make_model("--arch qwen2 --format hf --out " + quote(tmp / "one"));
  make_model("--arch qwen2 --format hf --shard-mb 0.1 --out " + quote(tmp / "sharded"));
  if (HasFatalFailure()) return;
  const json index = json::parse(std::ifstream(tmp / "sharded" / "model.safetensors.index.json"));
  const auto m = formats::ModelFolder::open(tmp / "sharded");
  EXPECT_GE(m.shards().size(), 3u);
  const auto one = formats::SafetensorsFile::open(tmp / "one" / "model.safetensors");
  std::uint64_t total = 0;
  for (const auto& shard : m.shards()) {
    for (const auto& t : shard->tensors()) {
      total += t.nbytes;
      const auto* ref = one.find_tensor(t.name);
      ASSERT_NE(ref, nullptr) << t.name;
      EXPECT_EQ(index["weight_map"][t.name], fs::path(shard->source()).filename().string());
      EXPECT_EQ(f32_values(shard->view(t)), f32_values(one.view(*ref))) << t.name;
    }
  }
  EXPECT_EQ(index["metadata"]["total_size"], total);
  std::uint64_t one_total = 0;
  for (const auto& t : one.tensors()) one_total += t.nbytes;
  EXPECT_EQ(total, one_total);  // every tensor once
}

TEST(LlmMaker, RefusesContradictoryOptions) {
  TempDir tmp;
  std::string out;
  const std::string bin = quote(testing::tools_dir() / "hearth-make-model");
  EXPECT_NE(testing::run_command(
                bin + " --arch llama --rope-scaling longrope --out " + quote(tmp / "x.gguf"), &out),
            0);
  EXPECT_NE(out.find("longrope is a phi3 rope scaling"), std::string::npos) << out;
  EXPECT_NE(testing::run_command(
                bin + " --arch qwen2 --heads 3 --kv-heads 2 --out " + quote(tmp / "y.gguf"), &out),
            0);
  EXPECT_NE(out.find("multiple of kv heads"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(tmp / "x.gguf"));
}

// ---------------------------------------------------------------------------------------------
// The reference on the maker's files, and on real outputs.

TEST(LlmReference, HfAndGgufEncodingsGiveTheSameLogitsForEveryArchitecture) {
  REQUIRE_TORCH();
  HEARTH_REQUIRE_FIXTURE(st, "models/stories260K");
  TempDir tmp;
  const std::vector<std::string> cases = {
      "--arch llama",
      "--arch llama --tied --rope-scaling linear",
      "--arch llama --rope-scaling llama3",
      "--arch phi3 --rope-scaling longrope",
      "--arch qwen2",
      "--arch qwen3",
  };
  std::vector<Job> jobs;
  const auto ids = random_ids(40, 512, 5);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const fs::path dir = tmp / cat({"m", std::to_string(i)});
    make_pair(dir, cases[i]);
    if (HasFatalFailure()) return;
    jobs.push_back({dir, ids, 8});
    jobs.push_back({dir.string() + ".gguf", ids, 8});
  }
  const auto runs = reference(jobs, tmp);
  ASSERT_EQ(runs.size(), jobs.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const RefRun& hf = runs[2 * i];
    const RefRun& gguf = runs[2 * i + 1];
    EXPECT_EQ(hf.shape, (std::vector<std::size_t>{48, 512})) << cases[i];
    EXPECT_EQ(gguf.config["rope_style"], gguf.config["arch"] == "llama" ? "norm" : "neox");
    const double diff = max_abs_diff(hf, gguf);
    EXPECT_LE(diff, 1e-5) << cases[i];
    EXPECT_EQ(hf.greedy_ids, gguf.greedy_ids) << cases[i];
    EXPECT_EQ(hf.final_argmax, gguf.final_argmax) << cases[i];
    const double s = stddev(hf);
    EXPECT_GT(s, 2.0) << cases[i];  // logits neither flat nor exploding
    EXPECT_LT(s, 4.0) << cases[i];
    std::printf("[ llm-ref ] %-42s HF vs GGUF max |diff| %.3g, logits std %.2f\n", cases[i].c_str(),
                diff, s);
  }
  // The rope scalings change the outputs (each is really applied).
  EXPECT_GT(max_abs_diff(runs[0], runs[4]), 0.1) << "llama3 rope had no effect";
  EXPECT_EQ(runs[6].config["longrope_factors"], "long");  // context 256 > original 64
  EXPECT_NEAR(runs[6].config["attn_factor"].get<double>(),
              std::sqrt(1.0 + std::log(4.0) / std::log(64.0)), 1e-12);
}

TEST(LlmReference, MistralSlidingWindowMasksOnlyPastTheWindow) {
  REQUIRE_TORCH();
  HEARTH_REQUIRE_FIXTURE(st, "models/stories260K");
  TempDir tmp;
  // The HF folder has sliding_window 16; llama.cpp's converter writes Mistral as `llama` without
  // it, so its GGUF is the same weights with full causal attention.
  make_pair(tmp / "m", "--arch mistral");
  if (HasFatalFailure()) return;
  const auto ids = random_ids(40, 512, 6);
  const auto runs = reference({{tmp / "m", ids, 0}, {tmp / "m.gguf", ids, 0}}, tmp);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_LE(max_abs_diff(runs[0], runs[1], 0, 16), 1e-5) << "within the window nothing changes";
  EXPECT_GT(max_abs_diff(runs[0], runs[1], 16, 17), 1e-3) << "position 16 loses key 0";
}

TEST(LlmReference, ReducedPrecisionStaysCloseAndF16EncodingsAgree) {
  REQUIRE_TORCH();
  TempDir tmp;
  for (const std::string dtype : {"f32", "f16", "bf16"}) {
    make_model("--arch phi3 --seed 3 --format hf --dtype " + dtype + " --out " +
               quote(tmp / dtype));
  }
  make_model("--arch phi3 --seed 3 --format gguf --dtype f16 --out " + quote(tmp / "f16.gguf"));
  if (HasFatalFailure()) return;
  const auto ids = random_ids(24, 320, 7);
  const auto runs = reference({{tmp / "f32", ids, 0},
                               {tmp / "f16", ids, 0},
                               {tmp / "bf16", ids, 0},
                               {tmp / "f16.gguf", ids, 0}},
                              tmp);
  ASSERT_EQ(runs.size(), 4u);
  const double f16 = max_abs_diff(runs[0], runs[1]);
  const double bf16 = max_abs_diff(runs[0], runs[2]);
  std::printf("[ llm-ref ] phi3 max |f32 - f16| %.3g, |f32 - bf16| %.3g\n", f16, bf16);
  EXPECT_GT(f16, 0.0) << "f16 weights must be rounded";
  EXPECT_LT(f16, 2e-2);
  EXPECT_GT(bf16, f16) << "bf16 keeps fewer mantissa bits than f16";
  EXPECT_LT(bf16, 2e-1);
  // HF stores the norm gains in f16 too and GGUF in f32: the maker's 1-D values sit on the bf16
  // grid, so both encodings hold exactly the same numbers.
  EXPECT_LE(max_abs_diff(runs[1], runs[3]), 1e-6);
}

// The GGUF encoding of stories260K is covered by MatchesLlamaCppLogitsOnItsF32Fixtures (the same
// `llama` layout) and by the HF-vs-GGUF test above; 200 greedy steps from the HF folder here.
TEST(LlmReference, ReproducesStories260KGoldenGreedyFromTheHfFolder) {
  REQUIRE_TORCH();
  HEARTH_REQUIRE_FIXTURE(st, "models/stories260K");
  TempDir tmp;
  const json golden = json::parse(std::ifstream(st / "golden_greedy.json"));
  const auto expected = golden["token_ids"].get<std::vector<int>>();
  ASSERT_EQ(expected.size(), 200u);
  const auto runs = reference({{st / "hf", {1}, 200, "float32"}}, tmp);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].greedy_ids, expected);
}

TEST(LlmReference, MatchesLlamaCppLogitsOnItsF32Fixtures) {
  REQUIRE_TORCH();
  HEARTH_REQUIRE_FIXTURE(dir, "models/llamacpp-logits");
  TempDir tmp;
  std::vector<Job> jobs;
  std::vector<json> meta;
  for (const std::string m : {"llama", "phi3", "qwen2"}) {
    meta.push_back(json::parse(std::ifstream(dir / (m + "-f32.json"))));
    jobs.push_back(
        {dir / (m + "-f32.gguf"), meta.back()["prompt_ids"].get<std::vector<int>>(), 32});
  }
  const auto runs = reference(jobs, tmp);
  ASSERT_EQ(runs.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const std::string name = meta[i]["file"];
    EXPECT_EQ(runs[i].greedy_ids, meta[i]["greedy_ids"].get<std::vector<int>>()) << name;
    EXPECT_EQ(runs[i].final_argmax, meta[i]["final_argmax"].get<int>()) << name;
    // llama.cpp's rows: the last 16 prompt positions, then the 32 decode steps.
    const auto bytes = testing::read_bytes(dir / (name.substr(0, name.size() - 5) + ".logits.npy"));
    const rag::NpyArray want =
        rag::parse_npy(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    ASSERT_EQ(want.shape, (std::vector<std::size_t>{48, 4096}));
    const std::size_t first = runs[i].prompt_ids.size() - 16;
    double worst = 0.0;
    for (std::size_t r = 0; r < 48; ++r) {
      for (std::size_t c = 0; c < 4096; ++c) {
        worst = std::max(worst, std::fabs(runs[i].at(first + r, c) - want.floats[r * 4096 + c]));
      }
    }
    EXPECT_LE(worst, 1e-4) << name;
    std::printf("[ llm-ref ] %s: max |reference - llama.cpp| = %.3g over 48 x 4096 logits\n",
                name.c_str(), worst);
  }
}

TEST(LlmReference, RefusesWhatItDoesNotImplement) {
  REQUIRE_TORCH();
  TempDir tmp;
  fs::create_directories(tmp / "m");
  std::ofstream(tmp / "m" / "config.json") << R"({"architectures": ["GemmaForCausalLM"]})";
  std::string out;
  EXPECT_NE(
      testing::run_command(cat({kPython, " ", quote(kRepo / "tools/llm_reference.py"), " --model ",
                                quote(tmp / "m"), " --ids 1 --out ", quote(tmp / "r")}),
                           &out),
      0);
  EXPECT_NE(out.find("unsupported architectures"), std::string::npos) << out;
}

}  // namespace
}  // namespace hearth::models
