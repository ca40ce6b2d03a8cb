// Decoder models against references that no one on this project wrote: stories260K's golden
// greedy ids (GGUF and HF folder), llama.cpp's logits for tiny random llama / phi3 / qwen2 GGUF
// files; then the engine's own invariants (cached decode = full recompute, batched prefill =
// token by token, prefix reuse, f16 cache close to f32, every SIMD level, every architecture's
// skeleton) and hostile files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/models/decoder.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// A float32 .npy file ([rows, cols], C order).
std::vector<float> read_npy(const fs::path& p, std::int64_t& rows, std::int64_t& cols) {
  const std::vector<std::byte> bytes = testing::read_bytes(p);
  EXPECT_GT(bytes.size(), 10u);
  std::uint16_t header_len = 0;
  std::memcpy(&header_len, bytes.data() + 8, 2);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 10, header_len);
  EXPECT_NE(header.find("'<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  const std::size_t open = header.find("'shape': (");
  rows = std::stoll(header.substr(open + 10));
  cols = std::stoll(header.substr(header.find(',', open + 10) + 1));
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  EXPECT_EQ(bytes.size(), 10u + header_len + out.size() * 4);
  std::memcpy(out.data(), bytes.data() + 10 + header_len, out.size() * 4);
  return out;
}

std::int32_t argmax(std::span<const float> v) {
  return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0.0f;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
  }
  return m;
}

LlmOptions f32_cache(std::size_t threads = 2) {
  LlmOptions o;
  o.threads = threads;
  o.kv_dtype = DType::kF32;
  return o;
}

// Greedy ids from BOS alone.
std::vector<std::int32_t> greedy_from_bos(const LanguageModel& model, int n) {
  Session s(model);
  std::vector<std::int32_t> out;
  std::int32_t next = model.bos_id();
  for (int i = 0; i < n; ++i) {
    next = argmax(s.feed(std::span(&next, 1)));
    out.push_back(next);
  }
  return out;
}

TEST(Stories260K, GreedyFromBosMatchesGoldenFromGgufAndHf) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  const auto golden = read_json(dir / "golden_greedy.json")["token_ids"].get<std::vector<int>>();
  ASSERT_EQ(golden.size(), 200u);
  for (const fs::path& path : {dir / "stories260K-f32.gguf", dir / "hf"}) {
    SCOPED_TRACE(path.string());
    const auto model = LanguageModel::load(path, f32_cache());
    const DecoderConfig& c = model->config();
    EXPECT_EQ(c.architecture, "llama");
    EXPECT_EQ(c.vocab, 512);
    EXPECT_EQ(c.hidden, 64);
    EXPECT_EQ(c.layers, 5);
    EXPECT_EQ(c.heads, 8);
    EXPECT_EQ(c.kv_heads, 4);
    EXPECT_TRUE(c.tied_embeddings);
    EXPECT_EQ(c.rope.style, path.extension() == ".gguf" ? RopeStyle::kNormal : RopeStyle::kNeox);
    EXPECT_EQ(model->bos_id(), 1);
    EXPECT_TRUE(model->add_bos());
    EXPECT_NE(std::find(model->eos_ids().begin(), model->eos_ids().end(), 2),
              model->eos_ids().end());
    EXPECT_EQ(model->bos_token(), "<s>");
    const auto ids = greedy_from_bos(*model, 200);
    EXPECT_EQ(std::vector<int>(ids.begin(), ids.end()), golden);
  }
}

TEST(Stories260K, F16CacheKeepsTheGoldenIds) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  const auto golden = read_json(dir / "golden_greedy.json")["token_ids"].get<std::vector<int>>();
  LlmOptions o;
  o.threads = 2;
  const auto model = LanguageModel::load(dir / "stories260K-f32.gguf", o);
  EXPECT_EQ(model->kv_dtype(), DType::kF16);
  const auto ids = greedy_from_bos(*model, 200);
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.end()), golden);
}

// The golden sequence through both encodings and every SIMD level: the same logits.
TEST(Stories260K, HfAndGgufAndEverySimdLevelGiveTheSameLogits) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K");
  auto ids = read_json(dir / "golden_greedy.json")["token_ids"].get<std::vector<std::int32_t>>();
  ids.insert(ids.begin(), 1);
  ids.resize(64);
  std::vector<float> ref;
  {
    const auto model = LanguageModel::load(dir / "hf", f32_cache());
    Session s(*model);
    s.feed(ids, &ref);
  }
  std::vector<SimdLevel> levels = {SimdLevel::kScalar};
  if (simd_level() >= SimdLevel::kAvx2) levels.push_back(SimdLevel::kAvx2);
  if (simd_level() >= SimdLevel::kAvx512) levels.push_back(SimdLevel::kAvx512);
  for (const SimdLevel level : levels) {
    SCOPED_TRACE(to_string(level));
    LlmOptions o = f32_cache(1);
    o.level = level;
    const auto model = LanguageModel::load(dir / "stories260K-f32.gguf", o);
    Session s(*model);
    std::vector<float> got;
    s.feed(ids, &got);
    EXPECT_LT(max_abs_diff(got, ref), 1e-4f);
  }
}

class LlamaCppLogits : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaCppLogits, PromptIdsGreedyIdsAndLogitsMatch) {
  const std::string base = GetParam();
  HEARTH_REQUIRE_FIXTURE(dir, "models/llamacpp-logits");
  const auto meta = read_json(dir / (base + "-f32.json"));
  std::int64_t rows = 0, cols = 0;
  const std::vector<float> ref = read_npy(dir / (base + "-f32.logits.npy"), rows, cols);
  ASSERT_EQ(rows, 48);
  const auto model = LanguageModel::load(dir / (base + "-f32.gguf"), f32_cache());
  ASSERT_EQ(model->config().vocab, cols);
  EXPECT_EQ(model->add_bos(), meta["add_bos"].get<bool>());

  tokenize::EncodeOptions eo;
  eo.add_special_tokens = true;
  eo.parse_special = false;
  const auto prompt = model->tokenizer().encode(meta["prompt"].get<std::string>(), eo).ids;
  ASSERT_EQ(prompt, meta["prompt_ids"].get<std::vector<std::int32_t>>());

  Session s(*model);
  std::vector<float> all;
  s.feed(prompt, &all);
  const auto n = static_cast<std::int64_t>(prompt.size());
  float worst = 0.0f;
  for (std::int64_t r = 0; r < 16; ++r) {
    const std::span<const float> got(all.data() + (n - 16 + r) * cols, cols);
    worst = std::max(worst, max_abs_diff(got, std::span(ref.data() + r * cols, cols)));
  }
  const auto greedy = meta["greedy_ids"].get<std::vector<std::int32_t>>();
  std::int32_t next = argmax(std::span(all.data() + (n - 1) * cols, cols));
  std::vector<std::int32_t> ids;
  for (int step = 0; step < 32; ++step) {
    ids.push_back(next);
    const auto logits = s.feed(std::span(&next, 1));
    worst = std::max(worst, max_abs_diff(logits, std::span(ref.data() + (16 + step) * cols, cols)));
    next = argmax(logits);
  }
  EXPECT_EQ(ids, greedy);
  EXPECT_EQ(next, meta["final_argmax"].get<std::int32_t>());
  EXPECT_LT(worst, 1e-3f) << "max |hearth - llama.cpp| over the 48 rows";
  RecordProperty("max_abs_diff", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaCppLogits, ::testing::Values("llama", "phi3", "qwen2"),
                         [](const auto& info) { return std::string(info.param); });

// A small config of each architecture with random weights.
DecoderConfig tiny(const std::string& arch) {
  DecoderConfig c;
  c.architecture = arch;
  c.vocab = 300;
  c.hidden = 64;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = arch == "phi3" ? 4 : 2;
  c.head_dim = arch == "qwen3" ? 24 : 16;  // qwen3: head_dim != hidden / heads
  c.ffn = 96;
  c.context = 128;
  c.rope.dims = c.head_dim;
  c.rope.style = arch == "llama" ? RopeStyle::kNormal : RopeStyle::kNeox;
  c.fused_qkv = c.fused_gate_up = arch == "phi3";
  c.qkv_bias = arch == "qwen2";
  c.qk_norm = arch == "qwen3";
  c.tied_embeddings = arch == "qwen2";
  if (arch == "mistral") c.sliding_window = 7;
  if (arch == "phi3") {
    c.rope.scaling = RopeScaling::kLongRope;
    c.rope.original_context = 64;
    c.rope.short_factors.assign(8, 1.0f);
    c.rope.long_factors.assign(8, 2.5f);
    c.rope.attention_factor = 1.1;
  }
  return c;
}

std::vector<std::int32_t> some_ids(int n, int vocab) {
  std::vector<std::int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back((i * 37 + 11) % vocab);
  return ids;
}

class EveryArch : public ::testing::TestWithParam<std::tuple<const char*, DType>> {};

// Prefill in one batch (GEMM, through two prefill chunks) = token by token (GEMV) = prefix reuse.
TEST_P(EveryArch, BatchedPrefillEqualsTokenByTokenAndPrefixReuse) {
  const auto [arch, dtype] = GetParam();
  const auto model = LanguageModel::random(tiny(arch), dtype, 7, f32_cache());
  EXPECT_EQ(model->config().weight_dtype, dtype);
  const auto ids = some_ids(300, 300);
  const auto& c = model->config();
  EXPECT_GT(c.parameters, c.vocab * c.hidden);
  Session batched(*model, 320);
  std::vector<float> all;
  batched.feed(ids, &all);
  Session single(*model, 320);
  float worst = 0.0f;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto logits = single.feed(std::span(&ids[i], 1));
    worst = std::max(worst, max_abs_diff(logits, std::span(all.data() + i * c.vocab, c.vocab)));
  }
  EXPECT_LT(worst, 2e-4f);
  EXPECT_EQ(single.timings().decode_tokens, 300);
  EXPECT_EQ(batched.timings().prefill_tokens, 300);
  // Truncate to a prefix and feed the rest again: the same last logits.
  batched.truncate(120);
  EXPECT_EQ(batched.common_prefix(ids), 120u);
  const auto again = batched.feed(std::span(ids).subspan(120));
  EXPECT_LT(max_abs_diff(again, std::span(all.data() + 299 * c.vocab, c.vocab)), 2e-4f);
  // Logits are finite and not all equal.
  EXPECT_TRUE(std::all_of(again.begin(), again.end(), [](float x) { return std::isfinite(x); }));
  EXPECT_GT(*std::max_element(again.begin(), again.end()),
            *std::min_element(again.begin(), again.end()) + 1e-3f);
}

INSTANTIATE_TEST_SUITE_P(
    Random, EveryArch,
    ::testing::Combine(::testing::Values("llama", "mistral", "phi3", "qwen2", "qwen3"),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kBF16)),
    [](const auto& info) {
      return std::string(std::get<0>(info.param)) + "_" +
             std::string(dtype_name(std::get<1>(info.param)));
    });

TEST(Decoder, SlidingWindowChangesOnlyPositionsPastTheWindow) {
  DecoderConfig c = tiny("mistral");
  c.sliding_window = 0;
  const auto full = LanguageModel::random(c, DType::kF32, 3, f32_cache());
  c.sliding_window = 7;
  const auto windowed = LanguageModel::random(c, DType::kF32, 3, f32_cache());
  const auto ids = some_ids(20, 300);
  std::vector<float> a, b;
  Session(*full).feed(ids, &a);
  Session(*windowed).feed(ids, &b);
  const auto row = [&](const std::vector<float>& v, int r) {
    return std::span(v.data() + r * c.vocab, c.vocab);
  };
  for (int r = 0; r < 7; ++r) EXPECT_EQ(max_abs_diff(row(a, r), row(b, r)), 0.0f) << r;
  EXPECT_GT(max_abs_diff(row(a, 19), row(b, 19)), 1e-3f);
}

TEST(Decoder, F16CacheIsCloseToF32) {
  const auto f32 = LanguageModel::random(tiny("llama"), DType::kF32, 5, f32_cache());
  LlmOptions o;
  o.threads = 2;
  const auto f16 = LanguageModel::random(tiny("llama"), DType::kF32, 5, o);
  const auto ids = some_ids(100, 300);
  std::vector<float> a, b;
  Session(*f32).feed(ids, &a);
  Session(*f16).feed(ids, &b);
  const float d = max_abs_diff(a, b);
  EXPECT_GT(d, 0.0f);
  EXPECT_LT(d, 2e-2f);
}

TEST(Decoder, ContextOverflowAndBadIdsAreErrorsThatKeepTheCache) {
  const auto model = LanguageModel::random(tiny("qwen2"), DType::kF32, 1, f32_cache());
  Session s(*model, 16);
  EXPECT_EQ(s.context(), 16);
  const auto ids = some_ids(10, 300);
  s.feed(ids);
  EXPECT_THROW(s.feed(ids), Error);
  EXPECT_EQ(s.tokens().size(), 10u);
  const std::int32_t bad = 300;
  EXPECT_THROW(s.feed(std::span(&bad, 1)), Error);
  EXPECT_THROW(s.truncate(11), Error);
  EXPECT_EQ(s.tokens().size(), 10u);
  s.truncate(0);
  EXPECT_TRUE(s.tokens().empty());
  EXPECT_EQ(Session(*model).context(), 128);  // the model's
  EXPECT_THROW(Session(*model, -1), Error);
}

TEST(Decoder, CtrlCCancelsFeedAndKeepsTheCachedTokens) {
  const auto model = LanguageModel::random(tiny("llama"), DType::kF16, 2, f32_cache());
  Session s(*model);
  const auto ids = some_ids(20, 300);
  s.feed(std::span(ids).first(12));
  install_cancel_handler();
  reset_cancel();
  std::raise(SIGINT);
  try {
    s.feed(std::span(ids).subspan(12));
    ADD_FAILURE() << "feed() went on after Ctrl+C";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  reset_cancel();
  EXPECT_EQ(s.tokens().size(), 12u);
  // The session goes on where it was: same logits as an uninterrupted one.
  const auto resumed = s.feed(std::span(ids).subspan(12));
  const std::vector<float> got(resumed.begin(), resumed.end());
  Session fresh(*model);
  const auto want = fresh.feed(ids);
  EXPECT_LT(max_abs_diff(got, want), 2e-4f);
}

// ---- hearth-make-model's random decoders: HF folder and GGUF encodings of the same weights ----

// Writes a model with hearth-make-model; false when this build's tool makes no decoders.
bool make_decoder(const std::string& args, const fs::path& out) {
  std::string log;
  const std::string cmd = (testing::tools_dir() / "hearth-make-model").string() + " " + args +
                          " --seed 11 --out " + testing::quote(out);
  return testing::run_command(cmd, &log) == 0;
}

// Logits of a 64-token prompt and 32 greedy steps ([96, vocab]) and the greedy ids.
std::vector<float> prompt_and_greedy(const LanguageModel& model, std::vector<std::int32_t>& ids) {
  const std::int64_t vocab = model.config().vocab;
  Session s(model);
  std::vector<float> all;
  s.feed(some_ids(64, static_cast<int>(vocab)), &all);
  std::int32_t next = argmax(std::span(all.data() + 63 * vocab, vocab));
  for (int step = 0; step < 32; ++step) {
    ids.push_back(next);
    const auto logits = s.feed(std::span(&next, 1));
    all.insert(all.end(), logits.begin(), logits.end());
    next = argmax(logits);
  }
  return all;
}

class MadeModels : public ::testing::TestWithParam<std::tuple<const char*, const char*>> {};

TEST_P(MadeModels, HfAndGgufEncodingsGiveTheSameLogits) {
  const auto [arch, extra] = GetParam();
  TempDir dir;
  const std::string base = std::string("--arch ") + arch + " " + extra;
  // The tool before the decoder makers wrote only a format-test llama (q/k rows not permuted
  // for GGUF): a qwen3 folder tells the two apart.
  if (!make_decoder("--arch qwen3 --format hf", dir / "probe")) {
    GTEST_SKIP() << "this build's hearth-make-model writes no decoder architectures";
  }
  for (const char* dtype : {"f32", "f16"}) {
    SCOPED_TRACE(dtype);
    const std::string d = std::string(" --dtype ") + dtype;
    ASSERT_TRUE(make_decoder(base + d + " --format hf", dir / (std::string("hf-") + dtype)));
    ASSERT_TRUE(make_decoder(base + d + " --format gguf", dir / (std::string(dtype) + ".gguf")));
    const auto hf = LanguageModel::load(dir / (std::string("hf-") + dtype), f32_cache());
    const auto gguf = LanguageModel::load(dir / (std::string(dtype) + ".gguf"), f32_cache());
    // llama.cpp's converter writes Mistral as GGUF `llama`, without the window (llama.cpp runs
    // it without one): the window here (128) lies beyond the 96 positions compared.
    if (std::string(arch) == "mistral") {
      EXPECT_EQ(gguf->config().architecture, "llama");
      EXPECT_EQ(hf->config().sliding_window, 128);
    } else {
      EXPECT_EQ(hf->config().architecture, gguf->config().architecture);
    }
    EXPECT_EQ(hf->config().parameters, gguf->config().parameters);
    EXPECT_EQ(hf->config().rope.scaling, gguf->config().rope.scaling);
    EXPECT_EQ(hf->eos_ids(), gguf->eos_ids());
    std::vector<std::int32_t> hf_ids, gguf_ids;
    const auto a = prompt_and_greedy(*hf, hf_ids);
    const auto b = prompt_and_greedy(*gguf, gguf_ids);
    EXPECT_EQ(hf_ids, gguf_ids);
    EXPECT_LT(max_abs_diff(a, b), 1e-4f);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Tool, MadeModels,
    ::testing::Values(std::tuple{"llama", ""}, std::tuple{"llama", "--rope-scaling linear"},
                      std::tuple{"llama", "--rope-scaling llama3"},
                      std::tuple{"mistral", "--sliding-window 128"}, std::tuple{"phi3", ""},
                      std::tuple{"phi3",
                                 "--rope-scaling longrope --context 256 --original-context 64"},
                      std::tuple{"qwen2", "--shard-mb 0.1"}, std::tuple{"qwen3", ""}),
    [](const auto& info) {
      std::string name = std::get<0>(info.param);
      const std::string extra = std::get<1>(info.param);
      if (extra.find("linear") != std::string::npos) name += "_linear";
      if (extra.find("llama3") != std::string::npos) name += "_llama3";
      if (extra.find("longrope") != std::string::npos) name += "_longrope";
      if (extra.find("shard") != std::string::npos) name += "_sharded";
      return name;
    });

// ---- hostile and broken files ----

std::string error_of(const fs::path& path) {
  try {
    LanguageModel::load(path, f32_cache(1));
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A GGUF file of tiny llama shapes, f32 zeros (only the first two layers' tensors), optionally
// without blk.<skip_layer_tensor>.attn_k or with a mis-shaped blk.1.attn_v.
void write_gguf(const fs::path& path, std::int64_t layers, const std::string& arch = "llama",
                std::int64_t skip_layer_tensor = -1, bool bad_shape = false,
                std::uint32_t context = 64) {
  formats::GGUFWriter w;
  w.set("general.architecture", arch);
  w.set(arch + ".embedding_length", std::uint32_t{16});
  w.set(arch + ".block_count", static_cast<std::uint32_t>(layers));
  w.set(arch + ".attention.head_count", std::uint32_t{2});
  w.set(arch + ".attention.head_count_kv", std::uint32_t{2});
  w.set(arch + ".feed_forward_length", std::uint32_t{32});
  w.set(arch + ".context_length", context);
  static std::vector<float> zeros(64 * 32, 0.0f);
  const auto bytes = [&](std::int64_t n) {
    return std::span(reinterpret_cast<const std::byte*>(zeros.data()),
                     static_cast<std::size_t>(n) * 4);
  };
  w.add_tensor("token_embd.weight", DType::kF32, {64, 16}, bytes(64 * 16));
  w.add_tensor("output_norm.weight", DType::kF32, {16}, bytes(16));
  for (std::int64_t l = 0; l < std::min<std::int64_t>(layers, 2); ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_norm", "ffn_norm"})
      w.add_tensor(p + n + ".weight", DType::kF32, {16}, bytes(16));
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
      if (l == skip_layer_tensor && std::string(n) == "attn_k") continue;
      const bool wrong = bad_shape && l == 1 && std::string(n) == "attn_v";
      w.add_tensor(p + n + ".weight", DType::kF32, {16, wrong ? 8 : 16}, bytes(wrong ? 128 : 256));
    }
    for (const char* n : {"ffn_gate", "ffn_up"})
      w.add_tensor(p + n + ".weight", DType::kF32, {32, 16}, bytes(512));
    w.add_tensor(p + "ffn_down.weight", DType::kF32, {16, 32}, bytes(512));
  }
  w.write(path);
}

TEST(DecoderHostile, WellFormedTinyGgufLoadsAndRuns) {
  TempDir dir;
  write_gguf(dir / "ok.gguf", 2);
  const auto model = LanguageModel::load(dir / "ok.gguf", f32_cache(1));
  EXPECT_EQ(model->config().layers, 2);
  EXPECT_TRUE(model->config().tied_embeddings);
  Session s(*model);
  const std::int32_t id = 3;
  const auto logits = s.feed(std::span(&id, 1));
  EXPECT_EQ(logits.size(), 64u);
}

TEST(DecoderHostile, MissingAndMisShapedTensorsAreNamed) {
  TempDir dir;
  write_gguf(dir / "missing.gguf", 2, "llama", 1);
  const std::string missing = error_of(dir / "missing.gguf");
  EXPECT_NE(missing.find("blk.1.attn_k.weight"), std::string::npos) << missing;
  EXPECT_NE(missing.find("[16, 16]"), std::string::npos) << missing;
  EXPECT_NE(missing.find("missing.gguf"), std::string::npos) << missing;
  write_gguf(dir / "shape.gguf", 2, "llama", -1, true);
  const std::string shape = error_of(dir / "shape.gguf");
  EXPECT_NE(shape.find("blk.1.attn_v.weight"), std::string::npos) << shape;
  EXPECT_NE(shape.find("[16, 8]"), std::string::npos) << shape;
}

TEST(DecoderHostile, AbsurdDimsUnknownArchAndTruncationFailCleanly) {
  TempDir dir;
  write_gguf(dir / "layers.gguf", 1'000'000'000);
  EXPECT_NE(error_of(dir / "layers.gguf").find("layer count"), std::string::npos);
  write_gguf(dir / "many.gguf", 3000);  // in range, but blk.2 onwards is missing
  EXPECT_NE(error_of(dir / "many.gguf").find("blk.2."), std::string::npos);
  write_gguf(dir / "gpt.gguf", 2, "gpt2");
  const std::string arch = error_of(dir / "gpt.gguf");
  EXPECT_NE(arch.find("gpt2"), std::string::npos) << arch;
  write_gguf(dir / "ok.gguf", 2);
  auto bytes = testing::read_bytes(dir / "ok.gguf");
  bytes.resize(bytes.size() / 2);
  testing::write_bytes(dir / "cut.gguf", bytes);
  EXPECT_NE(error_of(dir / "cut.gguf"), "(no error)");
}

TEST(DecoderHostile, AbsurdContextIsCappedNotAllocated) {
  TempDir dir;
  write_gguf(dir / "ctx.gguf", 2, "llama", -1, false, 4'000'000'000u);
  const auto model = LanguageModel::load(dir / "ctx.gguf", f32_cache(1));
  EXPECT_EQ(model->config().context, 4'000'000'000);
  EXPECT_LT(model->default_context(), 4'000'000'000);
  EXPECT_NE(model->context_note().find("capped"), std::string::npos) << model->context_note();
  EXPECT_THROW(Session(*model, std::int64_t{1} << 40), Error);
}

TEST(DecoderHostile, HfFolderErrors) {
  TempDir dir;
  std::ofstream(dir / "config.json") << R"({"architectures": ["GPT2LMHeadModel"]})";
  const std::string unknown = error_of(dir.path());
  EXPECT_NE(unknown.find("GPT2LMHeadModel"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("LlamaForCausalLM"), std::string::npos) << unknown;
  std::ofstream(dir / "config.json", std::ios::trunc)
      << R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
             "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2,
             "intermediate_size": 8})";
  const std::string heads = error_of(dir.path());
  EXPECT_NE(heads.find("multiple of the KV head count"), std::string::npos) << heads;
  std::ofstream(dir / "config.json", std::ios::trunc)
      << R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
             "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
             "rope_scaling": {"rope_type": "yarn", "factor": 4}})";
  const std::string yarn = error_of(dir.path());
  EXPECT_NE(yarn.find("yarn"), std::string::npos) << yarn;
}

}  // namespace
}  // namespace hearth::models
