// BERT against the independent torch reference (tools/bert_reference.py on Debian's
// python3-torch), HF vs GGUF, batched vs one-at-a-time, every SIMD level, threads, bad input, and
// (when HEARTH_MINILM_DIR / HEARTH_MSMARCO_DIR point at real models) the published values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/models/bert.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

void make_model(const std::string& args) {
  testing::make_model("--arch bert " + args);
}

// count sequences with lengths spread over 1..max_len (both ends included), random ids below
// vocab; with pairs, segment ids 0 then 1 like a (query, passage) input.
std::vector<TokenIds> random_sequences(int count, int max_len, int vocab, unsigned seed,
                                       bool pairs = false) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  std::vector<TokenIds> out(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const int len = 1 + static_cast<int>((static_cast<long>(i) * 7919) % max_len);
    for (int t = 0; t < len; ++t) out[i].ids.push_back(id(rng));
    if (pairs) {
      const int split = len / 2;
      for (int t = 0; t < len; ++t) out[i].type_ids.push_back(t < split ? 0 : 1);
    }
  }
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

struct Reference {
  std::vector<std::vector<double>> embeddings;
  std::vector<std::vector<double>> logits;
};

Reference run_reference(const fs::path& model, const std::vector<TokenIds>& seqs,
                        const TempDir& tmp) {
  nlohmann::json in = {{"sequences", nlohmann::json::array()}};
  for (const TokenIds& s : seqs)
    in["sequences"].push_back({{"ids", s.ids}, {"type_ids", s.type_ids}});
  const fs::path in_path = tmp / "ids.json";
  const fs::path out_path = tmp / "ref.json";
  std::ofstream(in_path) << in.dump();
  std::string log;
  const std::string cmd = std::string(testing::kSystemPython) + " " +
                          (testing::source_dir() / "tools/bert_reference.py").string() +
                          " --model " + model.string() + " --input " + in_path.string() +
                          " --output " + out_path.string();
  const int rc = testing::run_command(cmd, &log);
  EXPECT_EQ(rc, 0) << cmd << "\n" << log;
  Reference r;
  if (rc != 0) return r;
  const auto j = nlohmann::json::parse(std::ifstream(out_path));
  r.embeddings = j["embeddings"].get<std::vector<std::vector<double>>>();
  if (j.contains("logits")) r.logits = j["logits"].get<std::vector<std::vector<double>>>();
  return r;
}

template <class A, class B>
double max_abs_diff(const std::vector<std::vector<A>>& a, const std::vector<std::vector<B>>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    EXPECT_EQ(a[i].size(), b[i].size()) << "row " << i;
    for (std::size_t j = 0; j < std::min(a[i].size(), b[i].size()); ++j) {
      worst =
          std::max(worst, std::fabs(static_cast<double>(a[i][j]) - static_cast<double>(b[i][j])));
    }
  }
  return worst;
}

BertOptions opts(SimdLevel level = simd_level(), std::size_t threads = 2) {
  BertOptions o;
  o.threads = threads;
  o.level = level;
  return o;
}

TEST(Bert, TinyF32EmbeddingsMatchTorchOver200SequencesAtEveryLevel) {
  HEARTH_REQUIRE_TORCH();
  TempDir tmp;
  make_model("--format hf --out " + (tmp / "m").string());
  if (HasFatalFailure()) return;
  const auto seqs = random_sequences(200, 128, 1000, 1);
  const Reference ref = run_reference(tmp / "m", seqs, tmp);
  ASSERT_EQ(ref.embeddings.size(), seqs.size());
  std::vector<SimdLevel> levels = {SimdLevel::kScalar};
  if (cpu_features().avx2) levels.push_back(SimdLevel::kAvx2);
  if (cpu_features().avx512) levels.push_back(SimdLevel::kAvx512);
  for (const SimdLevel level : levels) {
    auto model = BertModel::load(tmp / "m", opts(level));
    EXPECT_EQ(model->pooling(), formats::PoolingMode::kMean);
    EXPECT_TRUE(model->normalize());
    EXPECT_EQ(model->max_length(), 128);
    const auto got = model->embed(seqs);
    const double diff = max_abs_diff(got, ref.embeddings);
    EXPECT_LE(diff, 1e-5) << to_string(level);
    std::printf("[ bert ] tiny f32 %s: max |hearth - torch| = %.3g over %zu sequences\n",
                to_string(level), diff, seqs.size());
  }
}

TEST(Bert, PoolingModesClsAndMaxWithoutNormalize) {
  HEARTH_REQUIRE_TORCH();
  TempDir tmp;
  for (const std::string pooling : {"cls", "max"}) {
    const fs::path dir = tmp / pooling;
    make_model("--format hf --pooling " + pooling + " --no-normalize --seed 3 --out " +
               dir.string());
    if (HasFatalFailure()) return;
    const auto seqs = random_sequences(40, 60, 1000, 2);
    const Reference ref = run_reference(dir, seqs, tmp);
    auto model = BertModel::load(dir, opts());
    EXPECT_FALSE(model->normalize());
    EXPECT_EQ(model->pooling(),
              pooling == "cls" ? formats::PoolingMode::kCls : formats::PoolingMode::kMax);
    EXPECT_LE(max_abs_diff(model->embed(seqs), ref.embeddings), 1e-5) << pooling;
  }
}

TEST(Bert, HalfPrecisionWeightsMatchTorch) {
  HEARTH_REQUIRE_TORCH();
  TempDir tmp;
  for (const std::string dtype : {"f16", "bf16"}) {
    const fs::path dir = tmp / dtype;
    make_model("--format hf --dtype " + dtype + " --out " + dir.string());
    if (HasFatalFailure()) return;
    const auto seqs = random_sequences(60, 100, 1000, 4);
    const Reference ref = run_reference(dir, seqs, tmp);
    auto model = BertModel::load(dir, opts());
    // The reference reads the same rounded weights, so the f32 bound holds (spec: 2e-3).
    EXPECT_LE(max_abs_diff(model->embed(seqs), ref.embeddings), 1e-5) << dtype;
  }
}

TEST(Bert, CrossEncoderLogitsMatchTorch) {
  HEARTH_REQUIRE_TORCH();
  TempDir tmp;
  make_model("--format hf --classifier --seed 5 --out " + (tmp / "ce").string());
  if (HasFatalFailure()) return;
  const auto pairs = random_sequences(120, 128, 1000, 6, true);
  const Reference ref = run_reference(tmp / "ce", pairs, tmp);
  ASSERT_EQ(ref.logits.size(), pairs.size());
  auto ce = CrossEncoder::load(tmp / "ce", opts());
  const auto scores = ce.score_ids(pairs);
  double worst = 0.0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    worst = std::max(worst, std::fabs(scores[i] - ref.logits[i][0]));
  }
  EXPECT_LE(worst, 1e-4);
  std::printf("[ bert ] tiny cross-encoder: max |logit - torch| = %.3g over %zu pairs\n", worst,
              pairs.size());
  const auto probs = ce.score_ids(pairs, true);
  for (std::size_t i = 0; i < probs.size(); ++i) {
    EXPECT_NEAR(probs[i], 1.0 / (1.0 + std::exp(-ref.logits[i][0])), 1e-5);
  }
}

TEST(Bert, MiniLmShapeMatchesTorch) {
  HEARTH_REQUIRE_TORCH();
  TempDir tmp;
  // One cross-encoder checks both outputs: its mean-pooled states (no modules.json: mean, not
  // normalised) and its logits. A small vocabulary keeps the test quick under ASan.
  make_model("--format hf --shape minilm --classifier --seed 9 --out " + (tmp / "ce").string());
  if (HasFatalFailure()) return;
  auto ce = CrossEncoder::load(tmp / "ce", opts());
  const BertConfig& c = ce.model().config();
  EXPECT_EQ(c.hidden, 384);
  EXPECT_EQ(c.layers, 6);
  EXPECT_EQ(c.heads, 12);
  EXPECT_EQ(c.ffn, 1536);
  EXPECT_EQ(c.num_labels, 1);
  // Few, short pairs: this runs in the ASan build too (lengths 1..40 still cover padding).
  const auto pairs = random_sequences(4, 40, static_cast<int>(c.vocab), 8, true);
  const Reference ref = run_reference(tmp / "ce", pairs, tmp);
  ASSERT_EQ(ref.logits.size(), pairs.size());
  EXPECT_LE(max_abs_diff(ce.model().embed(pairs), ref.embeddings), 1e-5);
  const auto scores = ce.score_ids(pairs);
  for (std::size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(scores[i], ref.logits[i][0], 1e-4);
}

TEST(Bert, MakerUsesTheRealVocabularyWhenGiven) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/minilm");
  TempDir tmp;
  make_model("--format hf --out " + (tmp / "m").string() + " --tokenizer-dir " + dir.string());
  make_model("--format gguf --out " + (tmp / "m.gguf").string() + " --tokenizer-dir " +
             dir.string());
  if (HasFatalFailure()) return;
  for (const char* f : {"vocab.txt", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(tmp / "m" / f)) << f;
  }
  auto hf = BertModel::load(tmp / "m", opts());
  auto gguf = BertModel::load(tmp / "m.gguf", opts());
  EXPECT_EQ(hf->config().vocab, 30522);
  const std::vector<TokenIds> hello = {{{101, 7592, 2088, 102}, {}}};  // [CLS] hello world [SEP]
  EXPECT_EQ(hf->embed(hello), gguf->embed(hello));
}

TEST(Bert, GgufAndHfFoldersGiveTheSameVectors) {
  TempDir tmp;
  for (const std::string dtype : {"f32", "f16"}) {
    for (const bool classifier : {false, true}) {
      const std::string extra = " --dtype " + dtype + (classifier ? " --classifier" : "");
      const fs::path hf = tmp / ("hf" + dtype + std::to_string(classifier));
      const fs::path gguf = tmp / ("m" + dtype + std::to_string(classifier) + ".gguf");
      make_model("--format hf --seed 11 --out " + hf.string() + extra);
      make_model("--format gguf --seed 11 --out " + gguf.string() + extra);
      if (HasFatalFailure()) return;
      auto a = BertModel::load(hf, opts());
      auto b = BertModel::load(gguf, opts());
      EXPECT_EQ(a->config().vocab, b->config().vocab);
      EXPECT_EQ(a->config().num_labels, b->config().num_labels);
      const auto seqs = random_sequences(30, 100, 1000, 12, classifier);
      if (classifier) {
        EXPECT_EQ(a->classify(seqs), b->classify(seqs)) << dtype;
      } else {
        EXPECT_EQ(a->normalize(), b->normalize());
        EXPECT_EQ(a->embed(seqs), b->embed(seqs)) << dtype;
      }
    }
  }
}

TEST(Bert, BatchedEqualsOneAtATime) {
  TempDir tmp;
  make_model("--format hf --out " + (tmp / "m").string());
  if (HasFatalFailure()) return;
  auto model = BertModel::load(tmp / "m", opts());
  const auto seqs = random_sequences(70, 128, 1000, 13);
  const auto batched = model->embed(seqs);
  std::vector<std::vector<float>> single;
  for (const TokenIds& s : seqs) single.push_back(model->embed(std::span(&s, 1))[0]);
  EXPECT_LE(max_abs_diff(batched, single), 1e-6);
  const auto states = model->hidden_states(seqs);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(states[i].size(), seqs[i].ids.size() * 32);
  }
}

TEST(Bert, SafeFromSeveralThreads) {
  TempDir tmp;
  make_model("--format hf --out " + (tmp / "m").string());
  if (HasFatalFailure()) return;
  auto model = BertModel::load(tmp / "m", opts());
  const auto seqs = random_sequences(20, 50, 1000, 14);
  const auto want = model->embed(seqs);
  std::vector<std::vector<std::vector<float>>> got(3);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] { got[t] = model->embed(seqs); });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(Bert, RejectsBadInputWithClearErrors) {
  TempDir tmp;
  make_model("--format hf --out " + (tmp / "m").string());
  if (HasFatalFailure()) return;
  auto model = BertModel::load(tmp / "m", opts());
  const auto expect_error = [&](std::vector<TokenIds> seqs, const std::string& words) {
    try {
      model->embed(seqs);
      ADD_FAILURE() << "no error for " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_error({TokenIds{}}, "empty");
  expect_error({TokenIds{{1, 1000}, {}}}, "outside the vocabulary");
  expect_error({TokenIds{{1, -1}, {}}}, "outside the vocabulary");
  expect_error({TokenIds{{1, 2}, {0, 2}}}, "type id");
  expect_error({TokenIds{{1, 2}, {0}}}, "differ in length");
  expect_error({TokenIds{std::vector<std::int32_t>(129, 5), {}}}, "exceed");
  EXPECT_THROW(model->classify(random_sequences(1, 5, 100, 1)), Error);
  EXPECT_THROW(CrossEncoder::load(tmp / "m", opts()), Error);
  EXPECT_EQ(model->embed(std::vector<TokenIds>{}).size(), 0u);
}

TEST(Bert, RejectsBrokenModels) {
  TempDir tmp;
  make_model("--format hf --out " + (tmp / "m").string());
  if (HasFatalFailure()) return;
  auto config = nlohmann::json::parse(std::ifstream(tmp / "m" / "config.json"));
  const auto expect_load_error = [&](const nlohmann::json& cfg, ErrorCode code,
                                     const std::string& words) {
    std::ofstream(tmp / "m" / "config.json") << cfg.dump();
    try {
      BertModel::load(tmp / "m", opts());
      ADD_FAILURE() << "loaded a broken model: " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  auto c = config;
  c["num_attention_heads"] = 5;
  expect_load_error(c, ErrorCode::kFormat, "multiple of the head count");
  c = config;
  c["hidden_size"] = 64;
  c["num_attention_heads"] = 4;
  expect_load_error(c, ErrorCode::kFormat, "shape");
  c = config;
  c["num_hidden_layers"] = 3;
  expect_load_error(c, ErrorCode::kNotFound, "encoder.layer.2");
  c = config;
  c["model_type"] = "llama";
  expect_load_error(c, ErrorCode::kUnsupported, "not bert");
  c = config;
  c["hidden_act"] = "swish";
  expect_load_error(c, ErrorCode::kUnsupported, "hidden_act");
  c = config;
  c["intermediate_size"] = -1;
  expect_load_error(c, ErrorCode::kFormat, "out of range");
  c = config;
  c.erase("hidden_size");
  expect_load_error(c, ErrorCode::kNotFound, "hidden_size");
  c = config;
  c["max_position_embeddings"] = "many";
  expect_load_error(c, ErrorCode::kFormat, "integer");

  make_model("--format gguf --out " + (tmp / "m.gguf").string());
  EXPECT_THROW(Embedder::load(tmp / "nothing.gguf", opts()), Error);
  EXPECT_NO_THROW(Embedder::load(tmp / "m.gguf", opts()));
  std::string log;
  ASSERT_EQ(
      testing::run_command((testing::tools_dir() / "hearth-make-model").string() +
                               " --arch llama --format gguf --out " + (tmp / "llama.gguf").string(),
                           &log),
      0)
      << log;
  try {
    BertModel::load(tmp / "llama.gguf", opts());
    ADD_FAILURE() << "loaded a llama GGUF as BERT";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("llama.gguf"), std::string::npos) << e.what();
  }
}

// Token ids of the published examples in bert-base-uncased's vocabulary (looked up in the
// fixture's vocab.txt: every word there is a whole token).
std::vector<std::int32_t> ids_of(const std::vector<std::string>& words, const fs::path& vocab_txt) {
  std::ifstream in(vocab_txt);
  std::vector<std::string> vocab;
  for (std::string line; std::getline(in, line);) vocab.push_back(line);
  std::vector<std::int32_t> out;
  for (const std::string& w : words) {
    const auto it = std::find(vocab.begin(), vocab.end(), w);
    EXPECT_NE(it, vocab.end()) << w;
    out.push_back(static_cast<std::int32_t>(it - vocab.begin()));
  }
  return out;
}

TEST(Bert, PublishedMiniLmEmbedding) {
  const char* dir = std::getenv("HEARTH_MINILM_DIR");
  if (dir == nullptr) {
    GTEST_SKIP() << "set HEARTH_MINILM_DIR to an all-MiniLM-L6-v2 folder to check the published "
                    "vector (../shared/fixtures/models/REFERENCE_VALUES.md); none can be "
                    "downloaded here";
  }
  auto e = Embedder::load(dir, opts());
  const TokenIds hello{ids_of({"[CLS]", "hello", "world", "[SEP]"}, fs::path(dir) / "vocab.txt"),
                       {}};
  const auto v = e.embed_ids(std::span(&hello, 1))[0];
  const float want[] = {-0.034478f, 0.03102f, 0.00673f, 0.02611f, -0.039362f};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(v[i], want[i], 1e-3) << i;
}

TEST(Bert, PublishedMsMarcoScores) {
  const char* dir = std::getenv("HEARTH_MSMARCO_DIR");
  if (dir == nullptr) {
    GTEST_SKIP() << "set HEARTH_MSMARCO_DIR to a cross-encoder/ms-marco-MiniLM-L-6-v2 folder to "
                    "check the published scores (../shared/fixtures/models/REFERENCE_VALUES.md)";
  }
  auto ce = CrossEncoder::load(dir, opts());
  const fs::path vocab = fs::path(dir) / "vocab.txt";
  const auto query =
      ids_of({"[CLS]", "what", "is", "the", "capital", "of", "france", "?", "[SEP]"}, vocab);
  const auto pair = [&](const std::vector<std::string>& doc) {
    TokenIds t{query, std::vector<std::int32_t>(query.size(), 0)};
    for (const std::int32_t id : ids_of(doc, vocab)) {
      t.ids.push_back(id);
      t.type_ids.push_back(1);
    }
    return t;
  };
  const std::vector<TokenIds> pairs = {
      pair({"paris", "is", "the", "capital", "of", "france", ".", "[SEP]"}),
      pair({"berlin", "is", "the", "capital", "of", "germany", ".", "[SEP]"})};
  const auto scores = ce.score_ids(pairs);
  EXPECT_NEAR(scores[0], 8.500708, 1e-3);
  EXPECT_NEAR(scores[1], -2.541011, 1e-3);
}

}  // namespace
}  // namespace hearth::models
