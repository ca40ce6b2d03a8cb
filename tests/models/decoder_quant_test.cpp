// Decoders over GGUF block-quantized weights: llama.cpp's own quantized fixture files (written by
// llama-quantize from f32 files) must lose no more accuracy than llama.cpp does, and random
// models quantized in memory must run and count their stored bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/models/decoder.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "support/fixtures.hpp"
#include "support/llm.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

// A float32 [rows, cols] C-order .npy file.
std::vector<float> read_npy(const fs::path& p, std::int64_t& rows, std::int64_t& cols) {
  const std::vector<std::byte> bytes = testing::read_bytes(p);
  std::uint16_t header_len = 0;
  std::memcpy(&header_len, bytes.data() + 8, 2);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 10, header_len);
  EXPECT_NE(header.find("'<f4'"), std::string::npos) << header;
  const std::size_t open = header.find("'shape': (");
  rows = std::stoll(header.substr(open + 10));
  cols = std::stoll(header.substr(header.find(',', open + 10) + 1));
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  EXPECT_EQ(bytes.size(), 10u + header_len + out.size() * 4);
  std::memcpy(out.data(), bytes.data() + 10 + header_len, out.size() * 4);
  return out;
}

// A json value that the fixture wrote either as a number or as a printed dict.
double json_number(const nlohmann::json& meta, const std::string& key) {
  return meta.at(key).get<double>();
}

class QuantizedFixture : public ::testing::TestWithParam<const char*> {};

// Teacher-forced on the f32 file's tokens (its prompt in one batch, then its 32 greedy ids one
// at a time: prefill and decode kernels both), the RMS of hearth's logits minus the f32 logits
// over the fixture's 48 rows must be at most 1.1 x llama.cpp's own (rms_vs_f32_npy_rows).
TEST_P(QuantizedFixture, LosesNoMoreThanLlamaCpp) {
  const std::string name = GetParam();
  HEARTH_REQUIRE_FIXTURE(dir, "models/llamacpp-logits");
  const std::string base = name.substr(0, name.find('-'));
  const auto f32_meta = read_json(dir / (base + "-f32.json"));
  const auto meta = read_json(dir / (name + ".json"));
  std::int64_t rows = 0, cols = 0;
  const std::vector<float> ref = read_npy(dir / (base + "-f32.logits.npy"), rows, cols);
  ASSERT_EQ(rows, 48);

  LlmOptions o;
  o.threads = 2;
  o.kv_dtype = DType::kF32;  // as the fixture ran llama.cpp
  const auto model = LanguageModel::load(dir / (name + ".gguf"), o);
  EXPECT_TRUE(ggml::supported(model->config().weight_dtype)) << name;
  EXPECT_LT(model->weight_bytes_per_token(), fs::file_size(dir / (name + ".gguf")));

  const auto prompt = f32_meta["prompt_ids"].get<std::vector<std::int32_t>>();
  const auto greedy = f32_meta["greedy_ids"].get<std::vector<std::int32_t>>();
  Session s(*model);
  std::vector<float> all;
  s.feed(prompt, &all);
  const auto n = static_cast<std::int64_t>(prompt.size());
  double sum = 0.0;
  const auto add = [&](std::span<const float> got, std::int64_t row) {
    for (std::int64_t c = 0; c < cols; ++c) {
      const double d = got[static_cast<std::size_t>(c)] - ref[row * cols + c];
      sum += d * d;
    }
  };
  for (std::int64_t r = 0; r < 16; ++r) add(std::span(all.data() + (n - 16 + r) * cols, cols), r);
  for (int step = 0; step < 32; ++step) {
    const std::int32_t id = greedy[static_cast<std::size_t>(step)];
    add(s.feed(std::span(&id, 1)), 16 + step);
  }
  const double rms = std::sqrt(sum / static_cast<double>(48 * cols));
  const double llamacpp = json_number(meta, "rms_vs_f32_npy_rows");
  std::printf("%-14s rms vs f32: hearth %.4f, llama.cpp %.4f (ratio %.3f)\n", name.c_str(), rms,
              llamacpp, rms / llamacpp);
  EXPECT_LE(rms, 1.1 * llamacpp) << name;
  // Far below it would mean the f32 weights were read by mistake.
  EXPECT_GE(rms, 0.5 * llamacpp) << name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, QuantizedFixture,
                         ::testing::Values("llama-q4_0", "llama-q4_1", "llama-q5_0", "llama-q5_1",
                                           "llama-q8_0", "phi3-q2_k", "phi3-q3_k_m", "phi3-q4_k_m",
                                           "phi3-q5_k_m", "phi3-q6_k", "qwen2-iq4_nl",
                                           "qwen2-iq4_xs", "qwen2-q4_k_s", "qwen2-q8_0"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) ch = ch == '-' ? '_' : ch;
                           return s;
                         });

// Tiny random models written by hearth-make-model (hearth's quantizer, llama-quantize's type
// rules), run by hearth and by the torch reference on the weights it dequantizes itself
// (tools/llm_reference.py, float64). Only hearth's 8-bit activation blocks separate them. Bound:
// a linear layer's 8-bit input rounding has a relative RMS error of about
// (2.1 sigma / 127) / sqrt(12) / sigma = 0.5% for Gaussian blocks of 32 (measured 0.53%, see
// QuantLinear.ActivationRoundingErrorIsAboutOnePercent); the logits carry that of the output
// layer plus what the 2 layers' 7 matmuls pass on, independent errors adding in quadrature:
// about 0.005 sqrt(8) = 1.4% of the logits' spread as an RMS, and the largest of 64 x 512
// logits within 4.5 RMS of it: 0.064 x std(logits). The bound is 0.08 x std(logits).
// Greedy ids must agree while the reference's top-2 margin exceeds twice the bound (either of
// the two logits may move by the bound).
TEST(QuantizedReference, EveryTypeMatchesTheReferenceOnItsDequantizedWeights) {
  HEARTH_REQUIRE_TORCH();
  const testing::TempDir tmp;
  const std::vector<std::string> types = {"q4_0",   "q4_1",   "q5_0",   "q5_1",  "q8_0",
                                          "q2_k",   "q3_k",   "q4_k",   "q5_k",  "q6_k",
                                          "iq4_nl", "iq4_xs", "q4_k_m", "q5_k_m"};
  const std::vector<std::int32_t> prompt = testing::random_ids(12, 512, 4);
  std::vector<testing::ReferenceJob> jobs;
  for (std::size_t i = 0; i < types.size(); ++i) {
    const std::string arch = i % 2 == 0 ? "llama" : "phi3";
    testing::make_model(testing::cat(
        {"--arch ", arch, " --shape tiny --format gguf --vocab 512 --hidden 256 --heads 4 ",
         arch == "llama" ? "--kv-heads 2" : "--kv-heads 4", " --ffn 512 --layers 2 --dtype ",
         types[i], " --seed ", std::to_string(20 + i), " --out ",
         (tmp / (types[i] + ".gguf")).string()}));
    if (HasFatalFailure()) return;
    jobs.push_back({tmp / (types[i] + ".gguf"), prompt, 64});
  }
  const auto refs = testing::run_reference(jobs, tmp);
  ASSERT_EQ(refs.size(), types.size());
  for (std::size_t i = 0; i < types.size(); ++i) {
    SCOPED_TRACE(types[i]);
    LlmOptions o;
    o.threads = 2;
    o.kv_dtype = DType::kF32;
    const auto model = LanguageModel::load(tmp / (types[i] + ".gguf"), o);
    const testing::LogitRows got = testing::run_hearth(*model, prompt, 64);
    const testing::ReferenceRun& ref = refs[i];
    const double bound = 0.08 * testing::logits_stddev(ref);
    // Rows up to the first greedy divergence follow the same tokens.
    std::size_t same = 0;
    while (same < 64 && got.greedy_ids[same] == ref.greedy_ids[same]) ++same;
    const testing::RowsDiff d = testing::diff_rows(got, ref, 0, prompt.size() + same);
    std::printf("%-7s max |hearth - reference| %.4f (bound %.4f), greedy agree %zu/64\n",
                types[i].c_str(), d.max, bound, same);
    EXPECT_LE(d.max, bound) << "row " << d.row;
    for (std::size_t k = 0; k < 64 && ref.margins[k] > 2 * bound; ++k) {
      ASSERT_EQ(got.greedy_ids[k], ref.greedy_ids[k]) << "step " << k;
    }
  }
}

DecoderConfig tiny_config() {
  DecoderConfig c;
  c.architecture = "llama";
  c.vocab = 300;
  c.hidden = 256;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 64;
  c.ffn = 512;
  c.context = 64;
  return c;
}

TEST(RandomQuantized, EveryTypeRunsAndCountsItsStoredBytes) {
  const std::vector<std::int32_t> ids = {1, 5, 9, 200};
  LlmOptions o;
  o.threads = 2;
  const auto f32 = LanguageModel::random(tiny_config(), DType::kF32, 3, o);
  std::vector<float> want;
  Session(*f32).feed(ids, &want);
  for (const DType t :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,
        DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const auto model = LanguageModel::random(tiny_config(), t, 3, o);
    EXPECT_EQ(model->config().weight_dtype, t);
    const DecoderConfig c = tiny_config();
    // Projections and the output layer: out x in elements per matrix, at the type's bytes.
    const std::int64_t per_layer = c.hidden * (c.heads + 2 * c.kv_heads) * c.head_dim +
                                   c.heads * c.head_dim * c.hidden + 3 * c.ffn * c.hidden;
    const std::int64_t elements = c.layers * per_layer + c.vocab * c.hidden;
    EXPECT_EQ(
        model->weight_bytes_per_token(),
        static_cast<std::uint64_t>(elements / static_cast<std::int64_t>(dtype_info(t).block_size) *
                                   dtype_info(t).block_bytes));
    std::vector<float> got;
    Session(*model).feed(ids, &got);
    ASSERT_EQ(got.size(), want.size());
    // The same random values, quantized: the logits stay close to the f32 model's (relative to
    // their spread), closer for the finer types.
    double num = 0.0, den = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      num += (got[i] - want[i]) * (got[i] - want[i]);
      den += want[i] * want[i];
    }
    EXPECT_LT(std::sqrt(num / den), t == DType::kQ2_K ? 0.6 : t == DType::kQ3_K ? 0.45 : 0.3);
  }
  DecoderConfig odd = tiny_config();
  odd.hidden = 160;
  odd.head_dim = 40;
  EXPECT_THROW(LanguageModel::random(odd, DType::kQ4_K, 1, o), Error);
}

}  // namespace
}  // namespace hearth::models
