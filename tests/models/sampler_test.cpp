// Sampling and stop strings: what each setting keeps, repeatability from a seed, the draw's
// distribution, and that a stop string never reaches the text, not even in part.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/models/generate.hpp"
#include "hearth/models/sampler.hpp"

namespace hearth::models {
namespace {

std::vector<float> log_probs(std::initializer_list<double> p) {
  std::vector<float> out;
  for (const double x : p) out.push_back(static_cast<float>(std::log(x)));
  return out;
}

std::map<std::int32_t, int> draw(const SamplingParams& params, const std::vector<float>& logits,
                                 int n) {
  Sampler s(params);
  std::map<std::int32_t, int> counts;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits, {})];
  return counts;
}

TEST(Sampler, GreedyTakesTheLowestIdAmongEqualMaxima) {
  Sampler s(SamplingParams{});
  const std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.sample(logits, {}), 1);
  const std::vector<float> one{-3.0f};
  EXPECT_EQ(s.sample(one, {}), 0);
}

TEST(Sampler, DrawsFollowTheDistribution) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 7;
  const auto counts = draw(p, log_probs({0.5, 0.3, 0.2}), 20000);
  EXPECT_NEAR(counts.at(0) / 20000.0, 0.5, 0.02);
  EXPECT_NEAR(counts.at(1) / 20000.0, 0.3, 0.02);
  EXPECT_NEAR(counts.at(2) / 20000.0, 0.2, 0.02);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  SamplingParams p;
  p.seed = 3;
  p.temperature = 0.25f;  // p^4: 0.0625 vs 0.0081 vs 0.0016 -> the first ~87%
  const auto sharp = draw(p, log_probs({0.5, 0.3, 0.2}), 10000);
  EXPECT_NEAR(sharp.at(0) / 10000.0, 0.0625 / (0.0625 + 0.0081 + 0.0016), 0.02);
  p.temperature = 100.0f;  // nearly uniform
  const auto flat = draw(p, log_probs({0.5, 0.3, 0.2}), 10000);
  EXPECT_NEAR(flat.at(2) / 10000.0, 1.0 / 3.0, 0.03);
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  std::vector<float> logits(1000);
  for (std::size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  auto run = [&](std::uint64_t seed) {
    p.seed = seed;
    Sampler s(p);
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 50; ++i) ids.push_back(s.sample(logits, {}));
    return ids;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, TopKKeepsTheKMostLikely) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  const auto counts = draw(p, log_probs({0.2, 0.4, 0.1, 0.3}), 5000);
  EXPECT_EQ(counts.size(), 2U);
  EXPECT_NEAR(counts.at(1) / 5000.0, 0.4 / 0.7, 0.03);
  EXPECT_NEAR(counts.at(3) / 5000.0, 0.3 / 0.7, 0.03);
  p.top_k = 1;
  EXPECT_EQ(draw(p, log_probs({0.2, 0.4, 0.1, 0.3}), 200).size(), 1U);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.7f;  // 0.5 < 0.7 <= 0.5 + 0.3: the first two
  const auto counts = draw(p, log_probs({0.5, 0.3, 0.2}), 5000);
  EXPECT_EQ(counts.size(), 2U);
  EXPECT_NEAR(counts.at(0) / 5000.0, 0.5 / 0.8, 0.03);
  p.top_p = 0.01f;
  EXPECT_EQ(draw(p, log_probs({0.3, 0.5, 0.2}), 200), (std::map<std::int32_t, int>{{1, 200}}));
}

TEST(Sampler, TopPOverALargeVocabularyReachesPastTheFirstSortedBlock) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  std::vector<float> flat(2000, 0.0f);  // uniform: the nucleus is the first 1,800 ids
  Sampler s(p);
  std::int32_t highest = 0;
  for (int i = 0; i < 1000; ++i) highest = std::max(highest, s.sample(flat, {}));
  EXPECT_GT(highest, 1600);
  EXPECT_LT(highest, 1800);
}

TEST(Sampler, MinPDropsTokensBelowTheFractionOfTheTop) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.5f;  // keeps p >= 0.25: tokens 0 and 1
  const auto counts = draw(p, log_probs({0.5, 0.3, 0.2}), 5000);
  EXPECT_EQ(counts.size(), 2U);
  EXPECT_EQ(counts.count(2), 0U);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p;
  p.repetition_penalty = 1.2f;
  Sampler s(p);
  const std::vector<float> logits{2.0f, 1.9f};
  const std::vector<std::int32_t> seen{0, 0};
  EXPECT_EQ(s.sample(logits, seen), 1);  // 2 / 1.2 < 1.9
  EXPECT_EQ(s.sample(logits, {}), 0);
  const std::vector<float> negative{-1.0f, -1.1f};
  EXPECT_EQ(s.sample(negative, seen), 1);  // -1.2 < -1.1
  p.repeat_last_n = 1;                     // the penalty looks at the last token only
  Sampler recent(p);
  const std::vector<std::int32_t> old{0, 1};
  EXPECT_EQ(recent.sample(logits, old), 0);
}

TEST(Sampler, OutOfRangeSettingsAreRefusedByName) {
  auto refused = [](SamplingParams p, const char* word) {
    try {
      Sampler s(p);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted " << word;
  };
  SamplingParams p;
  p.temperature = -1.0f;
  refused(p, "temperature");
  p = {};
  p.top_p = 0.0f;
  refused(p, "top-p");
  p = {};
  p.min_p = 1.0f;
  refused(p, "min-p");
  p = {};
  p.top_k = -2;
  refused(p, "top-k");
  p = {};
  p.repetition_penalty = 0.0f;
  refused(p, "penalty");
  p = {};
  p.temperature = NAN;
  refused(p, "temperature");
}

TEST(StopScanner, AStopStringSplitAcrossPiecesNeverReachesTheText) {
  StopScanner s({"<|end|>"});
  std::string out;
  for (const char* piece : {"Hel", "lo<|", "end", "|>more"}) out += s.push(piece);
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.matched(), "<|end|>");
  EXPECT_EQ(out, "Hello");
  EXPECT_EQ(s.push("after"), "");
}

TEST(StopScanner, AHeldBackPrefixIsReleasedWhenItDoesNotComplete) {
  StopScanner s({"<|end|>", "\n\n"});
  EXPECT_EQ(s.push("a<|"), "a");
  EXPECT_EQ(s.push("x\n"), "<|x");
  EXPECT_EQ(s.push("y"), "\ny");
  EXPECT_EQ(s.push("z\n"), "z");
  EXPECT_EQ(s.finish(), "\n");
  EXPECT_FALSE(s.stopped());
}

TEST(StopScanner, TheEarliestOfSeveralStopsWins) {
  StopScanner s({"BB", "A"});
  EXPECT_EQ(s.push("xBBA"), "x");
  EXPECT_EQ(s.matched(), "BB");
  StopScanner none({});
  EXPECT_EQ(none.push("anything"), "anything");
}

}  // namespace
}  // namespace hearth::models
