// The generation loop on a real trained model (stories260K): greedy text equal to the golden
// ids, cached prefixes reused across calls, logits rows as documented, stop strings, token
// limits, a full context, Ctrl+C, and a prompt too long for the context.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/models/generate.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

std::vector<std::int32_t> golden_ids(const std::filesystem::path& stories) {
  const auto j = nlohmann::json::parse(std::ifstream(stories / "golden_greedy.json"));
  return j.at("token_ids").get<std::vector<std::int32_t>>();
}

#define STORIES(var)                                       \
  HEARTH_REQUIRE_FIXTURE(var##_dir, "models/stories260K"); \
  const auto var = LanguageModel::load(var##_dir / "stories260K-f32.gguf");

TEST(Generate, GreedyFromBosReproducesTheGoldenIdsAndText) {
  STORIES(model);
  const std::vector<std::int32_t> golden = golden_ids(model_dir);
  Session session(*model);
  GenerateOptions o;
  o.max_tokens = static_cast<std::int64_t>(golden.size());
  std::string streamed;
  const std::int32_t bos[1] = {1};
  const Generation g = generate(session, bos, o, [&](std::string_view p) { streamed += p; });
  EXPECT_EQ(g.token_ids, golden);
  EXPECT_EQ(g.finish, FinishReason::kLength);
  EXPECT_EQ(streamed, g.text);
  EXPECT_EQ(g.text.rfind("Once upon a time, there was a little girl named Lily.", 0), 0U) << g.text;
  // BOS, then every generated token (the last one too, so that a next turn can reuse it).
  EXPECT_EQ(g.timings.prefill_tokens + g.timings.decode_tokens,
            static_cast<std::int64_t>(1 + golden.size()));
  EXPECT_EQ(session.tokens().size(), 1 + golden.size());
}

TEST(Generate, AContinuedConversationPrefillsOnlyItsNewTokens) {
  STORIES(model);
  Session session(*model);
  GenerateOptions o;
  o.max_tokens = 10;
  const std::int32_t bos[1] = {1};
  const Generation first = generate(session, bos, o);
  std::vector<std::int32_t> next{1};
  next.insert(next.end(), first.token_ids.begin(), first.token_ids.end());
  const std::vector<std::int32_t> more = model->tokenizer().encode(" and a dog", false).ids;
  next.insert(next.end(), more.begin(), more.end());
  const Generation second = generate(session, next, o);
  EXPECT_EQ(second.reused_tokens, 1 + first.token_ids.size());
  EXPECT_EQ(second.timings.prefill_tokens + second.timings.decode_tokens,
            static_cast<std::int64_t>(more.size() + second.token_ids.size()));
  // The same as a fresh session.
  Session fresh(*model);
  const Generation again = generate(fresh, next, o);
  EXPECT_EQ(again.reused_tokens, 0U);
  EXPECT_EQ(again.token_ids, second.token_ids);
}

TEST(Generate, LogitsRowsArePromptPlusGeneratedAndChoseEachToken) {
  STORIES(model);
  Session session(*model);
  std::vector<float> rows;
  GenerateOptions o;
  o.max_tokens = 8;
  o.logits = &rows;
  const std::vector<std::int32_t> prompt = model->tokenizer().encode("Once upon a time").ids;
  const Generation g = generate(session, prompt, o);
  const std::size_t vocab = 512;
  ASSERT_EQ(rows.size(), (prompt.size() + g.token_ids.size()) * vocab);
  for (std::size_t k = 0; k < g.token_ids.size(); ++k) {
    const float* row = rows.data() + (prompt.size() - 1 + k) * vocab;
    EXPECT_EQ(std::max_element(row, row + vocab) - row, g.token_ids[k]) << k;
  }
}

TEST(Generate, StopStringsEndTheTextBeforeThem) {
  STORIES(model);
  Session session(*model);
  GenerateOptions o;
  o.max_tokens = 100;
  o.stop = {" girl"};
  const std::int32_t bos[1] = {1};
  std::string streamed;
  const Generation g = generate(session, bos, o, [&](std::string_view p) { streamed += p; });
  EXPECT_EQ(g.finish, FinishReason::kStop);
  EXPECT_EQ(g.text, "Once upon a time, there was a little");
  EXPECT_EQ(streamed, g.text);
}

TEST(Generate, SeededSamplingRepeatsAndSeedsDiffer) {
  STORIES(model);
  auto run = [&](std::uint64_t seed) {
    Session session(*model);
    GenerateOptions o;
    o.max_tokens = 40;
    o.sampling.temperature = 1.0f;
    o.sampling.top_p = 0.95f;
    o.sampling.seed = seed;
    const std::int32_t bos[1] = {1};
    return generate(session, bos, o).token_ids;
  };
  EXPECT_EQ(run(5), run(5));
  EXPECT_NE(run(5), run(6));
}

TEST(Generate, AFullContextEndsTheAnswerAndALongPromptIsRefused) {
  STORIES(model);
  Session session(*model, 16);
  GenerateOptions o;
  o.max_tokens = 0;
  const std::int32_t bos[1] = {1};
  const Generation g = generate(session, bos, o);
  EXPECT_EQ(g.finish, FinishReason::kContext);
  EXPECT_EQ(g.token_ids.size(), 16U);
  EXPECT_EQ(session.tokens().size(), 16U);
  const std::vector<std::int32_t> long_prompt(17, 300);
  try {
    generate(session, long_prompt, o);
    ADD_FAILURE() << "a 17-token prompt ran in a 16-token context";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("17 tokens and the context holds 16"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(session.tokens().size(), 16U);
}

TEST(Generate, CtrlCStopsAtOnceAndKeepsTheText) {
  STORIES(model);
  install_cancel_handler();
  Session session(*model);
  GenerateOptions o;
  o.max_tokens = 200;
  const std::int32_t bos[1] = {1};
  int pieces = 0;
  const Generation g = generate(session, bos, o, [&](std::string_view) {
    if (++pieces == 3) std::raise(SIGINT);
  });
  reset_cancel();
  EXPECT_EQ(g.finish, FinishReason::kCancelled);
  EXPECT_GE(g.token_ids.size(), 3U);
  EXPECT_LT(g.token_ids.size(), 10U);
  EXPECT_FALSE(g.text.empty());
  // The cache holds BOS and the generated tokens, less the one whose run Ctrl+C cut short.
  EXPECT_GE(session.tokens().size(), g.token_ids.size());
  EXPECT_LE(session.tokens().size(), 1 + g.token_ids.size());
}

}  // namespace
}  // namespace hearth::models
