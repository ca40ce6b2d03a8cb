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

// LanguageModel::random quantizes with hearth's quantizer. A 40-token prompt in one batch (4 and 8
// bits: the tiled int8 GEMM from QuantGemm::min_rows rows, 9 on AVX-512 VNNI and 32 on AVX2)
// against the same tokens one at a time (the GEMV / decode kernels), at each level with int8
// kernels, and both against the same model at the scalar level (f32 kernels, exact activations).
// Per linear layer the two paths multiply the same int8 activations by the same integers and
// differ only in f32 summation order (tests/kernels/quant_gemm_test.cpp bounds that), but an
// activation within that rounding of a rounding boundary of its int8 block rounds the other way
// in a later layer (a step of d = max|x| / 127), and the KV cache carries it on to later positions:
// after such a flip the two paths are two roundings of the same kind, each as far from the exact
// logits as the other, and their difference tends to sqrt(2) times that distance in RMS. Measured
// here (max / RMS of prefill - decode against decode - exact): 0.51 / 0.18 and 0.80 / 0.80 (4
// bits, AVX2 / AVX-512), 0.49 / 0.22 and 0.19 / 0.06 (8 bits); over seeds 7-16 up to 1.03 / 0.90.
// So the test asserts what holds whatever the flips: prefill is as close to the exact logits as
// decode (RMS within 1.25x), the two differ by at most 1.2x decode's RMS error and 1.5x its max,
// and decode's error is within the activation-rounding bound of the torch test above (3 eps
// sqrt(4 L + 1) stddev). A wrong kernel is off by the logits' own scale. 5 bits runs the f32
// kernels both ways: bit-identical. (The absolute bounds this replaced, max 0.06 and RMS 0.01,
// held for 12 tokens only while the prefill GEMV shared the decode kernels' lane order; the
// tiles' order differs, and 40 tokens, to reach the AVX2 tiles, reach 0.063 / 0.015.)
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
  const auto ids = testing::random_ids(40, 320, 4);
  const auto logits = [&](const LanguageModel& model, bool one_by_one) {
    Session s(model);
    std::vector<float> out;
    if (!one_by_one) {
      s.feed(ids, &out);
      return out;
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto row = s.feed(std::span(&ids[i], 1));
      out.insert(out.end(), row.begin(), row.end());
    }
    return out;
  };
  struct Diff {
    double max = 0.0, rms = 0.0;
  };
  const auto diff = [](const std::vector<float>& a, const std::vector<float>& b) {
    Diff d;
    for (std::size_t j = 0; j < a.size(); ++j) {
      const double e = std::fabs(double{a[j]} - b[j]);
      d.max = std::max(d.max, e);
      d.rms += e * e;
    }
    d.rms = std::sqrt(d.rms / static_cast<double>(a.size()));
    return d;
  };
  std::vector<SimdLevel> levels = {SimdLevel::kAvx2, SimdLevel::kAvx512};
  std::erase_if(levels, [](SimdLevel l) { return l > simd_level(); });
  for (const int bits : {4, 8, 5}) {
    LlmOptions o;
    o.threads = 2;
    o.kv_dtype = DType::kF32;
    o.level = SimdLevel::kScalar;  // f32 kernels: exact activations, prefill = decode bit for bit
    const auto exact = logits(*LanguageModel::random(c, WeightFormat::mlx(bits, 64), 7, o), false);
    double mean = 0.0, sq = 0.0;
    for (const float v : exact) mean += v;
    mean /= static_cast<double>(exact.size());
    for (const float v : exact) sq += (v - mean) * (v - mean);
    const double sd = std::sqrt(sq / static_cast<double>(exact.size()));
    for (const SimdLevel level : levels) {
      SCOPED_TRACE(::testing::Message() << to_string(level) << " " << bits << " bits");
      o.level = level;
      const auto model = LanguageModel::random(c, WeightFormat::mlx(bits, 64), 7, o);
      EXPECT_EQ(model->config().weight_bits, bits);
      const auto prefill = logits(*model, false), decode = logits(*model, true);
      const Diff pd = diff(prefill, decode), pe = diff(prefill, exact), de = diff(decode, exact);
      std::printf(
          "[ mlx-pd  ] %-6s %d bits: prefill-decode max %.4f rms %.5f; against exact "
          "activations: prefill max %.4f rms %.5f, decode max %.4f rms %.5f\n",
          to_string(level), bits, pd.max, pd.rms, pe.max, pe.rms, de.max, de.rms);
      if (bits == 5) {  // the f32 kernels at every level and row count
        EXPECT_EQ(pd.max, 0.0);
        continue;
      }
      EXPECT_LE(de.rms, 3.0 * 0.0048 * std::sqrt(4.0 * c.layers + 1.0) * sd);
      EXPECT_LE(pe.rms, 1.25 * de.rms);
      EXPECT_LE(pd.rms, 1.2 * de.rms);
      EXPECT_LE(pd.max, 1.5 * de.max);
    }
  }
}

}  // namespace
}  // namespace hearth::models
