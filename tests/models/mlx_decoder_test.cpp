// mlx-quantized decoders (issue 11): tiny random hearth-make-model folders at every width against
// the torch reference, which dequantizes the packed weights itself (tools/llm_reference.py,
// written from MLX's description) and runs in float64. hearth reads the packed codes in place.
//
// The bound. At the scalar level (f32 kernels: codes unpacked to floats, activations exact)
// hearth computes what the reference computes, in f32: within 1e-4. At the default level 4 and 8
// bits run the int8 kernels, whose only extra error is the activations' rounding to int8 per
// block of 32 (quant_mlx.hpp): x_i -> d xq_i with |x_i - d xq_i| <= d / 2, d = max|x| / 127. For
// Gaussian-like activations max|x| over 32 is about 2.1 sigma, so the rounding is uniform noise of
// RMS d / sqrt(12) = 0.0048 sigma: each quantized linear layer sees its input with a relative RMS
// error eps = 0.0048. The logits collect that from 4 quantized inputs per layer (qkv, o, gate/up,
// down) and the head, independently, so their predicted RMS error is
//   P = eps * sqrt(4 L + 1) * stddev(reference logits)
// times the network's error gain g. Measured here: g = 1.1 to 2.5 (RMS difference / P), and the
// largest of the 32 x 512 to 96 x 512 logits differences is 4.4 to 6.3 times their RMS. The test
// asserts RMS <= 3 P and max <= 7 * 3 P (+ 1e-4). Greedy decoding must agree at every step where
// the reference's top-2 margin exceeds twice the max bound (a larger margin cannot flip); after the
// first step where the tokens differ the two runs follow different tokens and are no longer
// compared.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/models/decoder.hpp"
#include "support/llm.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::LogitRows;
using testing::ReferenceJob;
using testing::ReferenceRun;

constexpr int kPrompt = 32;
constexpr int kSteps = 64;
constexpr int kLayers = 2;

struct Case {
  std::string name;
  std::string args;
  int bits;
};

TEST(MlxDecoder, EveryWidthMatchesTheTorchReferenceOnDequantizedWeights) {
  HEARTH_REQUIRE_TORCH();
  HEARTH_REQUIRE_FIXTURE(st, "models/stories260K");
  const std::string shape = " --hidden 128 --ffn 256 --layers 2 --seed 3";
  const std::vector<Case> cases = {
      {"llama 2-bit g64", "--arch llama --dtype f16 --mlx-bits 2 --group-size 64", 2},
      {"llama 3-bit g64", "--arch llama --dtype f16 --mlx-bits 3 --group-size 64", 3},
      {"phi3 4-bit g64", "--arch phi3 --dtype f16 --mlx-bits 4 --group-size 64", 4},
      {"llama 4-bit g32 tied", "--arch llama --tied --dtype f16 --mlx-bits 4 --group-size 32", 4},
      {"qwen2 4-bit g128 bf16", "--arch qwen2 --dtype bf16 --mlx-bits 4 --group-size 128", 4},
      {"llama 5-bit g64", "--arch llama --dtype f16 --mlx-bits 5 --group-size 64", 5},
      {"llama 6-bit g64", "--arch llama --dtype f16 --mlx-bits 6 --group-size 64", 6},
      {"llama 8-bit g128 f32", "--arch llama --mlx-bits 8 --group-size 128", 8},
      {"phi3 8-bit g32", "--arch phi3 --dtype f16 --mlx-bits 8 --group-size 32", 8},
  };
  testing::TempDir tmp;
  std::vector<ReferenceJob> jobs;
  const auto prompt = testing::random_ids(kPrompt, 512, 20261202);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const fs::path dir = tmp / testing::cat({"m", std::to_string(i)});
    testing::make_stories_decoder(dir, testing::cat({cases[i].args, shape}), true, false);
    if (HasFatalFailure()) return;
    jobs.push_back({dir, prompt, kSteps, "float64", 0});
  }
  const std::vector<ReferenceRun> refs = testing::run_reference(jobs, tmp);
  ASSERT_EQ(refs.size(), cases.size());

  const double eps = 0.0048;
  std::printf("[ mlx-ref ] %-24s %-8s %10s %10s %10s %6s\n", "case", "level", "max|diff|", "bound",
              "rms", "agree");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const ReferenceRun& ref = refs[i];
    SCOPED_TRACE(c.name);
    ASSERT_EQ(ref.rows(), static_cast<std::size_t>(kPrompt + kSteps));
    const double sd = testing::logits_stddev(ref);
    EXPECT_GT(sd, 1.0);
    EXPECT_LT(sd, 6.0);
    for (const SimdLevel level : {SimdLevel::kScalar, simd_level()}) {
      const bool int8 = kernels::affine_kernels(level, c.bits).int8();
      if (level != SimdLevel::kScalar && !int8) continue;  // same f32 kernels, vectorised
      LlmOptions options;
      options.threads = 2;
      options.kv_dtype = DType::kF32;
      options.level = level;
      const auto model = LanguageModel::load(jobs[i].model, options);
      const DecoderConfig& cfg = model->config();
      EXPECT_EQ(cfg.weight_dtype, DType::kU32);
      EXPECT_EQ(cfg.weight_bits, c.bits);
      const LogitRows got = testing::run_hearth(*model, prompt, kSteps);
      const double rms_bound = int8 ? 3.0 * eps * std::sqrt(4.0 * kLayers + 1.0) * sd : 0.0;
      const double bound = 1e-4 + 7.0 * rms_bound;
      // Rows compared: the prompt, and decode steps while both runs hold the same tokens (row
      // kPrompt + k follows greedy_ids[k]; margins[k] is the margin that chose greedy_ids[k]).
      std::size_t agree = 0;
      while (agree < static_cast<std::size_t>(kSteps) &&
             got.greedy_ids[agree] == ref.greedy_ids[agree]) {
        ++agree;
      }
      if (agree < static_cast<std::size_t>(kSteps)) {
        EXPECT_LE(ref.margins[agree], 2 * bound)
            << "greedy step " << agree << " differs although the reference's margin "
            << ref.margins[agree] << " exceeds twice the bound " << bound;
      }
      const std::size_t rows = kPrompt + agree;
      const double diff = testing::diff_rows(got, ref, 0, rows).max;
      EXPECT_LE(diff, bound) << to_string(level);
      double ss = 0;
      for (std::size_t j = 0; j < rows * ref.vocab; ++j) {
        ss += (got.logits[j] - ref.logits[j]) * (got.logits[j] - ref.logits[j]);
      }
      const double rms = std::sqrt(ss / static_cast<double>(rows * ref.vocab));
      if (int8) {
        EXPECT_LE(rms, rms_bound);
      }
      std::printf("[ mlx-ref ] %-24s %-8s %10.3g %10.3g %10.3g %6zu\n", c.name.c_str(),
                  to_string(level), diff, bound, rms, agree);
    }
  }
}

TEST(MlxDecoder, StreamsTheStoredBytesAndTiesAQuantizedHead) {
  testing::TempDir tmp;
  const fs::path dir = tmp / "q4";
  std::string out;
  ASSERT_EQ(testing::run_command(
                testing::cat({(testing::tools_dir() / "hearth-make-model").string(),
                              " --arch phi3 --format hf --hidden 128 --ffn 256 --dtype f16"
                              " --mlx-bits 4 --group-size 64 --out ",
                              dir.string()}),
                &out),
            0)
      << out;
  const auto folder = formats::ModelFolder::open(dir);
  std::uint64_t stored = 0;  // every projection and the head: packed codes, scales, biases
  for (const auto& t : folder.tensors()) {
    const std::string& n = t.info->name;
    if (n.find("norm") != std::string::npos || n.starts_with("model.embed_tokens")) continue;
    stored += t.info->nbytes;
  }
  const auto model = LanguageModel::load(dir);
  EXPECT_EQ(model->weight_bytes_per_token(), stored);
  EXPECT_EQ(model->config().weight_group_size, 64);
  Session session(*model);
  const std::vector<std::int32_t> ids = {1, 5, 9, 200};
  const auto logits = session.feed(ids);
  ASSERT_EQ(logits.size(), 320u);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

TEST(MlxDecoder, ModelMakerOverridesPerModule) {
  testing::TempDir tmp;
  const fs::path dir = tmp / "mixed";
  const fs::path overrides = tmp / "overrides.json";
  std::ofstream(overrides) << R"({"lm_head": {"bits": 8, "group_size": 32},
                                  "model.layers.0.mlp.down_proj": false})";
  std::string out;
  ASSERT_EQ(testing::run_command(
                testing::cat({(testing::tools_dir() / "hearth-make-model").string(),
                              " --arch llama --format hf --hidden 128 --ffn 256 --dtype bf16"
                              " --mlx-bits 3 --group-size 64 --mlx-override ",
                              overrides.string(), " --out ", dir.string()}),
                &out),
            0)
      << out;
  const auto folder = formats::ModelFolder::open(dir);
  const formats::QuantizedWeight* head = folder.find_quantized("lm_head");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->spec.bits, 8);
  EXPECT_EQ(head->spec.group_size, 32);
  EXPECT_EQ(head->scales.info->dtype, DType::kBF16);
  EXPECT_EQ(folder.find_quantized("model.layers.0.mlp.down_proj"), nullptr);
  const formats::QuantizedWeight* down = folder.find_quantized("model.layers.1.mlp.down_proj");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->spec.bits, 3);
  EXPECT_EQ(folder.find_tensor("model.layers.0.mlp.down_proj.weight")->info->dtype, DType::kBF16);
  const auto model = LanguageModel::load(dir);
  Session session(*model);
  const std::vector<std::int32_t> ids = {1, 7, 9};
  for (float v : session.feed(ids)) ASSERT_TRUE(std::isfinite(v));
}

// LanguageModel::random quantizes with hearth's quantizer; batched prefill (the GEMM path) and
// token-by-token decode (GEMV) round each x row alike, but the AVX-512 decode kernels sum in
// another order, so an activation within f32 rounding of a rounding boundary of its int8 block can
// round the other way in a later layer (a step of d = max|x| / 127 of that block), and the KV
// cache carries it to later positions. Measured on this model: max 0.018 / 0.024 and RMS 0.0022 /
// 0.0035 (4 / 8 bits; logits of stddev about 3), against an RMS of 0.05-0.11 that the activation
// rounding itself costs (docs/llm.md); bit-identical where both paths are the same kernels (5 bits,
// and every width below AVX-512). A wrong kernel is off by far more than these bounds.
TEST(MlxDecoder, RandomModelsPrefillEqualsDecode) {
  DecoderConfig c;
  c.architecture = "llama";
  c.vocab = 320;
  c.hidden = 128;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 32;
  c.ffn = 256;
  c.context = 64;
  c.rope.dims = 32;
  for (const int bits : {4, 8, 5}) {
    LlmOptions o;
    o.threads = 2;
    o.kv_dtype = DType::kF32;
    const auto model = LanguageModel::random(c, WeightFormat::mlx(bits, 64), 7, o);
    EXPECT_EQ(model->config().weight_bits, bits);
    const auto ids = testing::random_ids(12, 320, 4);
    Session batched(*model);
    std::vector<float> all;
    batched.feed(ids, &all);
    Session single(*model);
    double sq = 0.0, worst = 0.0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto row = single.feed(std::span(&ids[i], 1));
      for (std::size_t j = 0; j < row.size(); ++j) {
        const double d = std::fabs(double{row[j]} - all[i * 320 + j]);
        sq += d * d;
        worst = std::max(worst, d);
      }
    }
    const double rms = std::sqrt(sq / static_cast<double>(ids.size() * 320));
    std::printf("[ mlx-pd  ] %d bits: prefill vs decode max %.5f rms %.6f\n", bits, worst, rms);
    EXPECT_LT(worst, 0.06) << bits << " bits";
    EXPECT_LT(rms, 0.01) << bits << " bits";
  }
}

}  // namespace
}  // namespace hearth::models
