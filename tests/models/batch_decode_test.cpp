// Batched decode (decode_step): several sessions of one model, each at its own position, run one
// token each in one step; every session's logits must equal what the session alone gives
// (Session::feed of the same token), for f32, GGUF block-quantized and mlx affine weights, with
// sessions joining and leaving the batch, and a bad entry (a full context, a bad id) must leave
// every session as it was.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/models/decoder.hpp"
#include "support/llm.hpp"

namespace hearth::models {
namespace {

// Rows of 256 inputs (whole q4_k super-blocks) and 512 in the FFN's down projection.
DecoderConfig tiny(const std::string& arch) {
  DecoderConfig c;
  c.architecture = arch;
  c.vocab = 300;
  c.hidden = 256;
  c.layers = 2;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = 64;
  c.ffn = 512;
  c.context = 64;
  c.rope.dims = 64;
  c.rope.style = arch == "llama" ? RopeStyle::kNormal : RopeStyle::kNeox;
  c.fused_qkv = c.fused_gate_up = arch == "phi3";
  c.qk_norm = arch == "qwen3";
  if (arch == "mistral") c.sliding_window = 5;
  if (arch == "phi3") {  // sessions longer than 32 tokens rotate by the long factors
    c.rope.scaling = RopeScaling::kLongRope;
    c.rope.original_context = 32;
    c.rope.short_factors.assign(32, 1.0f);
    c.rope.long_factors.assign(32, 3.0f);
    c.rope.attention_factor = 1.1;
  }
  return c;
}

LlmOptions options() {
  LlmOptions o;
  o.threads = 2;
  o.kv_dtype = DType::kF32;
  return o;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0.0f;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::abs(a[i] - b[i]));
  }
  return worst;
}

std::int32_t argmax(std::span<const float> v) {
  return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Format {
  const char* name;
  WeightFormat weights;
};

// Of the logits' spread (max - min), the most a batched session's logits may differ from its own
// alone. f32 projections may differ only by float rounding. Q4_0 and 4-bit mlx layers run 2 to 8
// rows through the batched kernels (kernels/quant_batch.hpp), whose f32 sums go in another order
// than the one-row kernels'; with quantized weights x is itself quantized to 8 bits per block, so
// a rounding difference of one ulp can move an activation by a whole quantization step. Measured
// max |batched - alone|: q4_0 1e-6, mlx4 0.014 (logits spread above 1), the others 0.
float tolerance(const Format& f) {
  return f.weights.dtype == DType::kF32 && f.weights.mlx_bits == 0 ? 1e-4f : 1e-2f;
}

class BatchDecode : public ::testing::TestWithParam<std::tuple<const char*, Format>> {};

// Four sessions with prompts of 1 to 20 tokens (so at different positions, and for phi3 with
// different rotary factors: contexts 24 and 48 on either side of the original 32) decode eight
// steps; C joins at step 2, A leaves at step 5. A twin of each session runs the same tokens alone
// through feed(); each step's logits of every batched session must match its twin's.
TEST_P(BatchDecode, EachSessionMatchesItsselfAlone) {
  const auto& [arch, format] = GetParam();
  const auto model = LanguageModel::random(tiny(arch), format.weights, 5, options());
  const std::int64_t vocab = model->config().vocab;
  const std::vector<int> prompt_lengths = {3, 9, 1, 20};
  const std::vector<std::int64_t> contexts = {24, 24, 48, 48};
  std::vector<std::unique_ptr<Session>> batched, alone;
  std::vector<std::vector<float>> last;  // each twin's latest logits
  for (std::size_t i = 0; i < prompt_lengths.size(); ++i) {
    const auto prompt = testing::random_ids(prompt_lengths[i], static_cast<int>(vocab),
                                            static_cast<unsigned>(10 + i));
    batched.push_back(std::make_unique<Session>(*model, contexts[i]));
    alone.push_back(std::make_unique<Session>(*model, contexts[i]));
    batched.back()->feed(prompt);
    const auto logits = alone.back()->feed(prompt);
    last.emplace_back(logits.begin(), logits.end());
    batched.back()->reset_timings();
  }
  float worst = 0.0f, spread = 0.0f;
  for (int step = 0; step < 8; ++step) {
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < batched.size(); ++i) {
      if (i == 2 && step < 2) continue;   // C joins at step 2
      if (i == 0 && step >= 5) continue;  // A leaves after step 4
      members.push_back(i);
    }
    std::vector<Session*> sessions;
    std::vector<std::int32_t> tokens;
    for (const std::size_t i : members) {
      sessions.push_back(batched[i].get());
      tokens.push_back(argmax(last[i]));  // the twin's choice drives both
    }
    const auto got = decode_step(sessions, tokens);
    ASSERT_EQ(got.size(), members.size());
    for (std::size_t j = 0; j < members.size(); ++j) {
      const std::size_t i = members[j];
      const auto want = alone[i]->feed(std::span(&tokens[j], 1));
      last[i].assign(want.begin(), want.end());
      worst = std::max(worst, max_abs_diff(got[j], want));
      spread = std::max(spread, *std::max_element(want.begin(), want.end()) -
                                    *std::min_element(want.begin(), want.end()));
      EXPECT_EQ(batched[i]->tokens(), alone[i]->tokens()) << "session " << i << " step " << step;
    }
  }
  EXPECT_GT(spread, 1.0f);  // the logits are not flat
  EXPECT_LE(worst, tolerance(format) * spread)
      << "max |batched - alone| over every step and session";
  RecordProperty("max_abs_diff", std::to_string(worst));
  for (std::size_t i = 0; i < batched.size(); ++i) {
    EXPECT_EQ(batched[i]->timings().decode_tokens, i == 0 ? 5 : i == 2 ? 6 : 8);
  }
  // The batched sessions go on alone: their caches hold what their twins' hold (up to the same
  // tolerance: the batched kernels wrote them).
  for (std::size_t i = 0; i < batched.size(); ++i) {
    const std::int32_t next = argmax(last[i]);
    EXPECT_LE(
        max_abs_diff(batched[i]->feed(std::span(&next, 1)), alone[i]->feed(std::span(&next, 1))),
        tolerance(format) * spread);
  }
}

const Format kFormats[] = {
    {"f32", DType::kF32},
    {"q4_0", DType::kQ4_0},
    {"q8_0", DType::kQ8_0},
    {"q4_k", DType::kQ4_K},
    {"mlx4", WeightFormat::mlx(4, 64)},
};

INSTANTIATE_TEST_SUITE_P(Phi3EveryFormat, BatchDecode,
                         ::testing::Combine(::testing::Values("phi3"),
                                            ::testing::ValuesIn(kFormats)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" +
                                  std::get<1>(info.param).name;
                         });
INSTANTIATE_TEST_SUITE_P(OtherArchs, BatchDecode,
                         ::testing::Combine(::testing::Values("llama", "mistral", "qwen3"),
                                            ::testing::Values(kFormats[0], kFormats[1])),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" +
                                  std::get<1>(info.param).name;
                         });

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;  // nothing thrown
}

// A bad entry anywhere in the batch is refused before anything runs: every session keeps its
// tokens, and the next good step gives what the sessions alone give.
TEST(BatchDecodeErrors, BadEntriesChangeNoSession) {
  const auto model = LanguageModel::random(tiny("llama"), DType::kF32, 3, options());
  const auto other = LanguageModel::random(tiny("llama"), DType::kF32, 3, options());
  Session a(*model, 16), full(*model, 4), b(*model, 16), foreign(*other, 16);
  a.feed(std::vector<std::int32_t>{1, 2, 3});
  full.feed(std::vector<std::int32_t>{1, 2, 3, 4});
  b.feed(std::vector<std::int32_t>{7});
  foreign.feed(std::vector<std::int32_t>{7});
  const auto refused = [&](std::vector<Session*> sessions, std::vector<std::int32_t> tokens,
                           const std::string& says) {
    try {
      decode_step(sessions, tokens);
      ADD_FAILURE() << "decode_step() accepted a batch that should fail with: " << says;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    EXPECT_EQ(a.tokens().size(), 3u);
    EXPECT_EQ(full.tokens().size(), 4u);
    EXPECT_EQ(b.tokens().size(), 1u);
  };
  refused({&a, &full, &b}, {5, 5, 5}, "batch entry 1: the session's context of 4 tokens is full");
  refused({&a, &b}, {5, 300}, "batch entry 1: token id 300 outside the vocabulary");
  refused({&a, &b}, {-1, 5}, "batch entry 0: token id -1");
  refused({&a, &b, &a}, {5, 5, 5}, "batch entry 2: the same session as entry 0");
  refused({&a, &foreign}, {5, 5}, "batch entry 1: the session belongs to another model");
  refused({&a, nullptr}, {5, 5}, "batch entry 1: a null session");
  refused({&a, &b}, {5}, "2 sessions and 1 tokens");
  refused({}, {}, "at least one session");
  EXPECT_EQ(foreign.tokens().size(), 1u);

  Session a_alone(*model, 16), b_alone(*model, 16);
  a_alone.feed(std::vector<std::int32_t>{1, 2, 3});
  b_alone.feed(std::vector<std::int32_t>{7});
  std::vector<Session*> both = {&a, &b};
  const std::vector<std::int32_t> tokens = {5, 6};
  const auto got = decode_step(both, tokens);
  EXPECT_LE(max_abs_diff(got[0], a_alone.feed(std::span(&tokens[0], 1))), 1e-4f);
  EXPECT_LE(max_abs_diff(got[1], b_alone.feed(std::span(&tokens[1], 1))), 1e-4f);
  // A session one short of its context takes its last token in a batch, then is full.
  Session nearly(*model, 4);
  nearly.feed(std::vector<std::int32_t>{1, 2, 3});
  std::vector<Session*> last = {&a, &nearly};
  decode_step(last, tokens);
  EXPECT_EQ(nearly.tokens().size(), 4u);
  EXPECT_EQ(code_of([&] { decode_step(last, tokens); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(a.tokens().size(), 5u);
}

// Ctrl+C during a step: Error(kCancelled), every session keeps its tokens and then decodes as if
// nothing had happened.
TEST(BatchDecodeErrors, CancelledStepLeavesEverySessionAsItWas) {
  const auto model = LanguageModel::random(tiny("qwen3"), DType::kQ8_0, 4, options());
  Session a(*model), b(*model), a_alone(*model), b_alone(*model);
  for (Session* s : {&a, &a_alone}) s->feed(std::vector<std::int32_t>{1, 2, 3, 4});
  for (Session* s : {&b, &b_alone}) s->feed(std::vector<std::int32_t>{9, 8});
  std::vector<Session*> both = {&a, &b};
  const std::vector<std::int32_t> tokens = {11, 12};
  install_cancel_handler();
  reset_cancel();
  std::raise(SIGINT);
  EXPECT_EQ(code_of([&] { decode_step(both, tokens); }), ErrorCode::kCancelled);
  reset_cancel();
  EXPECT_EQ(a.tokens().size(), 4u);
  EXPECT_EQ(b.tokens().size(), 2u);
  const auto got = decode_step(both, tokens);
  const std::vector<float> got_a(got[0].begin(), got[0].end());
  EXPECT_LE(max_abs_diff(got_a, a_alone.feed(std::span(&tokens[0], 1))), 1e-4f);
  EXPECT_LE(max_abs_diff(got[1], b_alone.feed(std::span(&tokens[1], 1))), 1e-4f);
}

}  // namespace
}  // namespace hearth::models
