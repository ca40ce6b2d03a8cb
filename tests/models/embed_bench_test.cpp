// The benchmark behind `bench-cli embed` on a tiny model (figures are not asserted, their
// consistency is), and random-weight models.
#include <gtest/gtest.h>

#include <string>

#include "hearth/core/error.hpp"
#include "hearth/models/bert.hpp"
#include "hearth/models/embed_bench.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

TEST(EmbedBench, ReportsEveryBatchAndLengthWithConsistentFigures) {
  testing::TempDir tmp;
  const std::string cmd = (testing::tools_dir() / "hearth-make-model").string() +
                          " --arch bert --format hf --out " + (tmp / "m").string();
  std::string log;
  ASSERT_EQ(testing::run_command(cmd, &log), 0) << log;
  EmbedBenchOptions o;
  o.model = tmp / "m";
  o.threads = 2;
  o.batches = {1, 3};
  o.lengths = {5, 17};
  o.seconds = 0.01;
  o.repeats = 2;
  const EmbedBenchReport r = run_embed_bench(o);
  EXPECT_EQ(r.threads, 2u);
  EXPECT_EQ(r.repeats, 2);
  EXPECT_GT(r.peak_gflops, 0.0);
  ASSERT_EQ(r.rows.size(), 4u);
  EXPECT_EQ(r.rows[3].batch, 3);
  EXPECT_EQ(r.rows[3].length, 17);
  for (const EmbedBenchRow& row : r.rows) {
    EXPECT_GT(row.sentences_per_s, 0.0);
    EXPECT_NEAR(row.tokens_per_s, row.sentences_per_s * row.length, 1e-6 * row.tokens_per_s);
    EXPECT_GT(row.gemm_gflops, 0.0);
    EXPECT_GT(row.gemm_share, 0.0);
    EXPECT_LE(row.gemm_share, 1.0);
  }
  EXPECT_EQ(r.gemm.size(), 16u);  // 4 row counts (batch x length) x 4 weight shapes
  EXPECT_EQ(r.gemm.front().m, 5);
  EXPECT_EQ(r.gemm.back().m, 51);
  const std::string text = to_text(r);
  EXPECT_NE(text.find("tokens/s"), std::string::npos);
  EXPECT_NE(text.find("openblas"), std::string::npos);
  const auto j = to_json(r);
  EXPECT_EQ(j["rows"].size(), 4u);
  EXPECT_TRUE(j["rows"][0].contains("gemm_fraction_of_peak"));

  o.lengths = {129};  // the tiny model takes 128 tokens
  EXPECT_THROW(run_embed_bench(o), Error);
  o.lengths = {4};
  o.batches = {0};
  EXPECT_THROW(run_embed_bench(o), Error);
}

TEST(BertRandom, BuildsAWorkingModelOfTheGivenShape) {
  BertConfig c;
  c.vocab = 50;
  c.hidden = 16;
  c.layers = 2;
  c.heads = 2;
  c.ffn = 24;
  c.max_positions = 20;
  c.type_vocab = 2;
  BertOptions o;
  o.threads = 1;
  auto m = BertModel::random(c, 3, o);
  EXPECT_TRUE(m->normalize());
  const std::vector<TokenIds> seqs = {{{1, 2, 3}, {}}, {{4}, {}}};
  const auto e = m->embed(seqs);
  ASSERT_EQ(e.size(), 2u);
  double norm = 0.0;
  for (const float v : e[0]) norm += static_cast<double>(v) * v;
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_NE(e[0], e[1]);
  c.num_labels = 1;
  auto ce = BertModel::random(c, 3, o);
  EXPECT_EQ(ce->classify(seqs).size(), 2u);
  c.hidden = 15;
  EXPECT_THROW(BertModel::random(c, 3, o), Error);
}

}  // namespace
}  // namespace hearth::models
