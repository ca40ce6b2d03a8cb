// Knowledge banks with hearth's own BERT models: the text front ends of the embedder and the
// cross-encoder, token-budget chunking, dense and hybrid search, reranking, and the rag-cli
// commands that use them. The models are tiny random ones written by hearth-make-model; their
// numerics are checked against torch in tests/models.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hearth/core/error.hpp"
#include "hearth/rag/bank.hpp"
#include "hearth/rag/neural.hpp"
#include "hearth/rag/search.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;
using models::Embedder;
using models::TokenIds;

using testing::cat;
using testing::quote;

// Writes a tiny BERT (hidden 32, max length 128, synthetic WordPiece vocabulary) with
// hearth-make-model.
void make_bert(const fs::path& out, const std::string& args) {
  std::string log;
  const int rc = testing::run_command(cat({quote(testing::tools_dir() / "hearth-make-model"),
                                           " --arch bert --out ", quote(out), " ", args}),
                                      &log);
  ASSERT_EQ(rc, 0) << log;
}

models::BertOptions opts() {
  models::BertOptions o;
  o.threads = 2;
  return o;
}

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// Notes long enough to need several chunks at a small token budget.
void write_notes(const fs::path& dir) {
  write_file(dir / "owls.md",
             "# Owls\n\nOwls hunt at night. Their soft feathers make their flight silent, and "
             "their large eyes gather the faint light of the moon.\n\n## Food\n\nOwls eat mice, "
             "voles, insects and sometimes fish. They swallow small prey whole and later bring "
             "up pellets of bone and fur.\n");
  write_file(dir / "pelicans.txt",
             "Pelicans scoop fish with the pouch under their bill. The pouch holds more water "
             "than the stomach does. Pelicans drain the water before they swallow.\n");
  write_file(dir / "cats.txt", "Cats sleep for most of the day and hunt at dawn and dusk.\n");
}

TEST(NeuralText, EmbedderTokenizesWithSpecialTokensAndTruncates) {
  testing::TempDir dir;
  make_bert(dir / "m", "--format hf --seed 2");
  if (HasFatalFailure()) return;
  Embedder e = Embedder::load(dir / "m", opts());
  EXPECT_EQ(e.name(), "m");
  const auto cls = e.tokenizer().token_to_id("[CLS]");
  const auto sep = e.tokenizer().token_to_id("[SEP]");
  ASSERT_TRUE(cls && sep);
  std::string long_text;
  for (int i = 0; i < 400; ++i) long_text += "the cat sat ";
  const std::vector<std::string> texts = {"Owls hunt at night.", long_text, ""};
  const std::vector<TokenIds> seqs = e.tokenize(texts);
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(seqs[0].ids.front(), *cls);
  EXPECT_EQ(seqs[0].ids.back(), *sep);
  EXPECT_EQ(seqs[0].ids.size(), e.count_tokens(texts[0]) + 2);
  // Truncated to the model's maximum length, still closed by [SEP].
  EXPECT_EQ(static_cast<std::int64_t>(seqs[1].ids.size()), e.model_max_length());
  EXPECT_EQ(seqs[1].ids.back(), *sep);
  EXPECT_EQ(seqs[2].ids, (std::vector<std::int32_t>{*cls, *sep}));
  // The text path is the id path on the tokenizer's ids.
  EXPECT_EQ(e.embed(texts), e.embed_ids(seqs));
  const auto one = e.embed(std::vector<std::string>{texts[1]});
  EXPECT_EQ(one[0], e.embed(texts)[1]) << "batched differs from one at a time";
}

TEST(NeuralText, CrossEncoderScoresPairsAndTruncatesLongestFirst) {
  testing::TempDir dir;
  make_bert(dir / "ce", "--format hf --classifier --seed 4");
  if (HasFatalFailure()) return;
  models::CrossEncoder ce = models::CrossEncoder::load(dir / "ce", opts());
  std::string long_passage;
  for (int i = 0; i < 300; ++i) long_passage += "pelicans scoop fish ";
  const std::vector<std::string> passages = {"Owls eat mice.", long_passage, "Cats sleep."};
  const std::string query = "what do owls eat";
  const std::vector<float> scores = ce.score(query, passages);
  ASSERT_EQ(scores.size(), 3u);
  std::vector<TokenIds> pairs;
  const tokenize::Truncation trunc{static_cast<std::size_t>(ce.model().max_length())};
  for (const std::string& p : passages) {
    auto enc = ce.tokenizer().encode_pair(query, p, true, trunc);
    pairs.push_back({enc.ids, enc.type_ids});
  }
  EXPECT_EQ(static_cast<std::int64_t>(pairs[1].ids.size()), ce.model().max_length());
  EXPECT_EQ(pairs[0].type_ids.back(), 1);
  EXPECT_EQ(scores, ce.score_ids(pairs));
  const std::vector<float> probs = ce.score(query, passages, true);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(probs[i], 1.0 / (1.0 + std::exp(-static_cast<double>(scores[i]))), 1e-6);
  }
}

TEST(NeuralText, FingerprintFollowsTheWeightsNotTheFormat) {
  testing::TempDir dir;
  make_bert(dir / "a", "--format hf --seed 7");
  make_bert(dir / "a.gguf", "--format gguf --seed 7");
  make_bert(dir / "b", "--format hf --seed 8");
  if (HasFatalFailure()) return;
  const auto a = BertEmbedding::load(dir / "a", opts());
  const auto a_gguf = BertEmbedding::load(dir / "a.gguf", opts());
  const auto b = BertEmbedding::load(dir / "b", opts());
  EXPECT_EQ(a->fingerprint(), a_gguf->fingerprint());
  EXPECT_NE(a->fingerprint(), b->fingerprint());
  EXPECT_EQ(a->id(), "a");
  EXPECT_EQ(a->embed({"owls hunt"}), a_gguf->embed({"owls hunt"}));
  // A cross-encoder is not an embedder and vice versa.
  make_bert(dir / "ce", "--format hf --classifier");
  if (HasFatalFailure()) return;
  EXPECT_THROW(BertEmbedding::load(dir / "ce", opts()), Error);
  EXPECT_THROW(CrossEncoderReranker::load(dir / "a", opts()), Error);
}

TEST(NeuralText, MissingTokenizerIsAClearError) {
  testing::TempDir dir;
  make_bert(dir / "m", "--format hf");
  if (HasFatalFailure()) return;
  fs::remove(dir / "m" / "vocab.txt");
  try {
    Embedder::load(dir / "m", opts());
    FAIL() << "loaded without a tokenizer";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
  }
}

TEST(NeuralBank, TokenBudgetChunksDenseHybridAndRerank) {
  testing::TempDir dir;
  make_bert(dir / "emb", "--format hf --seed 3");
  make_bert(dir / "emb.gguf", "--format gguf --seed 3");
  make_bert(dir / "other", "--format hf --seed 5");
  make_bert(dir / "ce", "--format hf --classifier --seed 6");
  if (HasFatalFailure()) return;
  write_notes(dir / "notes");
  auto emb = BertEmbedding::load(dir / "emb", opts());
  const std::size_t budget = 16;
  {
    auto bank = Bank::open(dir / "bank", emb.get(), true, ChunkingOptions::tokens(budget));
    IngestOptions io;
    const IngestReport r = bank->ingest({dir / "notes"}, io);
    EXPECT_EQ(r.added, 3u);
    EXPECT_GT(r.chunks, 5u) << "a 16-token budget splits these notes";
    EXPECT_EQ(bank->stats().vectors, static_cast<std::int64_t>(r.chunks));
    for (const auto& d : bank->documents()) {
      for (const ChunkInfo& c : bank->chunks_of(d.id)) {
        EXPECT_LE(emb->count_tokens(c.text), budget) << c.text;
      }
    }
  }
  EXPECT_EQ(Bank::open(dir / "bank", nullptr, false)->manifest().chunking.describe(),
            "structural/16-tokens");
  // The GGUF encoding of the same weights opens the bank; other weights do not.
  auto emb_gguf = BertEmbedding::load(dir / "emb.gguf", opts());
  auto other = BertEmbedding::load(dir / "other", opts());
  EXPECT_THROW(Bank::open(dir / "bank", other.get(), false), Error);
  auto bank = Bank::open(dir / "bank", emb_gguf.get(), false);
  // Dense search finds a chunk from its own text (cosine 1), and hybrid is the default.
  const auto docs = bank->documents("*pelicans.txt");
  ASSERT_EQ(docs.size(), 1u);
  const ChunkInfo target = bank->chunks_of(docs[0].id).back();
  SearchOptions so;
  so.mode = SearchMode::kDense;
  so.top_k = 3;
  auto hits = search({bank.get()}, target.text, so);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].chunk.id, target.id);
  EXPECT_NEAR(hits[0].score, 1.0, 1e-4);
  so.mode = SearchMode::kAuto;
  hits = search({bank.get()}, "pelican pouch water", so);
  ASSERT_FALSE(hits.empty());
  EXPECT_NE(hits[0].chunk.path.find("pelicans.txt"), std::string::npos);
  // Reranking orders the candidates by the cross-encoder's own scores.
  auto ce = CrossEncoderReranker::load(dir / "ce", opts());
  so.reranker = ce.get();
  so.candidates = 10;
  hits = search({bank.get()}, "pelican pouch water", so);
  ASSERT_EQ(hits.size(), 3u);
  std::vector<std::string> passages;
  for (const Hit& h : hits) passages.push_back(h.chunk.text);
  const std::vector<float> direct = ce->score("pelican pouch water", passages);
  for (std::size_t i = 0; i < hits.size(); ++i) {
    EXPECT_FLOAT_EQ(static_cast<float>(hits[i].score), direct[i]);
    if (i > 0) {
      EXPECT_GE(hits[i - 1].score, hits[i].score);
    }
  }
}

TEST(NeuralCli, EmbedRerankAndHybridIngest) {
  testing::TempDir dir;
  make_bert(dir / "emb", "--format hf --seed 3");
  make_bert(dir / "ce", "--format gguf --classifier --seed 6");
  if (HasFatalFailure()) return;
  write_notes(dir / "notes");
  const std::string cli = quote(testing::tools_dir() / "rag-cli");
  std::string out;
  ASSERT_EQ(
      testing::run_command(
          cli + " embed --json --model " + quote(dir / "emb") + " 'owls hunt' 'cats sleep'", &out),
      0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["embeddings"].size(), 2u);
  EXPECT_EQ(j["embeddings"][0].size(), j["dim"].get<std::size_t>());
  Embedder e = Embedder::load(dir / "emb", opts());
  const auto direct = e.embed(std::vector<std::string>{"owls hunt"});
  for (std::size_t i = 0; i < direct[0].size(); ++i) {
    EXPECT_FLOAT_EQ(j["embeddings"][0][i].get<float>(), direct[0][i]);
  }
  ASSERT_EQ(testing::run_command(cat({cli, " rerank --json --model ", quote(dir / "ce"),
                                      " 'owls' 'Owls eat mice.' 'Cats sleep.' 'Fish swim.'"}),
                                 &out),
            0)
      << out;
  const auto r = nlohmann::json::parse(out)["results"];
  ASSERT_EQ(r.size(), 3u);
  EXPECT_GE(r[0]["score"].get<double>(), r[1]["score"].get<double>());
  EXPECT_GE(r[1]["score"].get<double>(), r[2]["score"].get<double>());
  const std::string bank = cat({cli, " --bank ", quote(dir / "bank")});
  const std::string with_model = cat({bank, " --embedding-model ", quote(dir / "emb")});
  ASSERT_EQ(testing::run_command(cat({with_model, " ingest ", quote(dir / "notes")}), &out), 0)
      << out;
  ASSERT_EQ(testing::run_command(cat({bank, " stats --json"}), &out), 0) << out;
  const auto stats = nlohmann::json::parse(out)[0];
  EXPECT_EQ(stats["embedding_model"], "emb");
  EXPECT_EQ(stats["vectors"], stats["chunks"]);
  EXPECT_EQ(stats["chunking"], "structural/126-tokens");
  ASSERT_EQ(testing::run_command(cat({with_model, " --reranker ", quote(dir / "ce"),
                                      " search --json 'pelican pouch'"}),
                                 &out),
            0)
      << out;
  EXPECT_FALSE(nlohmann::json::parse(out)["hits"].empty());
  // Without the model the bank is still searchable (BM25), and says what it holds.
  ASSERT_EQ(testing::run_command(cat({bank, " search 'pelican pouch'"}), &out), 0) << out;
  EXPECT_NE(out.find("holds emb embeddings"), std::string::npos) << out;
  EXPECT_NE(out.find("pelicans.txt"), std::string::npos) << out;
  // Dense search without the model is refused, not silently lexical.
  EXPECT_EQ(testing::run_command(cat({bank, " search --mode dense 'pelican'"}), &out), 2) << out;
}

TEST(NeuralCli, Int8VectorsRemoveAndCompact) {
  testing::TempDir dir;
  make_bert(dir / "emb", "--format hf --seed 3");
  if (HasFatalFailure()) return;
  write_notes(dir / "notes");
  const std::string cli = quote(testing::tools_dir() / "rag-cli");
  const std::string bank = cat({cli, " --bank ", quote(dir / "bank")});
  const std::string with_model = cat({bank, " --embedding-model ", quote(dir / "emb")});
  std::string out;
  EXPECT_EQ(
      testing::run_command(cat({bank, " ingest --vectors int8 ", quote(dir / "notes")}), &out), 2)
      << "--vectors without a model is refused: " << out;
  EXPECT_EQ(
      testing::run_command(cat({with_model, " ingest --vectors f64 ", quote(dir / "notes")}), &out),
      2)
      << out;
  ASSERT_EQ(testing::run_command(cat({with_model, " ingest --vectors int8 ", quote(dir / "notes")}),
                                 &out),
            0)
      << out;
  EXPECT_TRUE(fs::exists(dir / "bank" / "vectors.int8"));
  ASSERT_EQ(testing::run_command(cat({bank, " stats --json"}), &out), 0) << out;
  auto stats = nlohmann::json::parse(out)[0];
  EXPECT_EQ(stats["vector_dtype"], "int8");
  const int chunks = stats["chunks"].get<int>();
  ASSERT_EQ(testing::run_command(cat({bank, " rm '*pelicans.txt'"}), &out), 0) << out;
  ASSERT_EQ(testing::run_command(cat({bank, " stats --json"}), &out), 0) << out;
  stats = nlohmann::json::parse(out)[0];
  const int dead = stats["vector_rows"].get<int>() - stats["vectors"].get<int>();
  ASSERT_EQ(testing::run_command(cat({bank, " compact"}), &out), 0) << out;
  EXPECT_NE(out.find(std::to_string(dead) + " dead vector rows reclaimed"), std::string::npos)
      << out;
  ASSERT_EQ(testing::run_command(cat({bank, " stats --json"}), &out), 0) << out;
  stats = nlohmann::json::parse(out)[0];
  EXPECT_EQ(stats["vector_rows"], stats["vectors"]);
  EXPECT_LT(stats["chunks"].get<int>(), chunks);
  ASSERT_EQ(testing::run_command(
                cat({with_model, " search --mode dense --top-k 100 --json 'owls hunt'"}), &out),
            0)
      << out;
  EXPECT_EQ(nlohmann::json::parse(out)["hits"].size(), stats["chunks"].get<std::size_t>());
}

}  // namespace
}  // namespace hearth::rag
