// Exactness against independent references: llama.cpp's tokenizer suite (expected ids produced
// by the original Hugging Face tokenizers), and the same vocabulary in two encodings
// (tokenizer.json vs GGUF vs vocab.txt) giving the same ids.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "hearth/formats/file_io.hpp"
#include "hearth/tokenize/tokenizer.hpp"
#include "support/fixtures.hpp"

namespace hearth::tokenize {
namespace {

struct Case {
  std::string text;
  std::vector<std::int32_t> ids;
};

// NAME.gguf.inp: strings each followed by "\n__ggml_vocab_test__\n"; NAME.gguf.out: one line of
// space-separated ids per string.
std::vector<Case> read_suite(const std::filesystem::path& gguf) {
  const std::string inp = formats::read_text_file(gguf.string() + ".inp");
  const std::string out = formats::read_text_file(gguf.string() + ".out");
  static const std::string kSep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  std::size_t start = 0;
  while (start < inp.size()) {
    const std::size_t end = inp.find(kSep, start);
    if (end == std::string::npos) break;
    cases.push_back({inp.substr(start, end - start), {}});
    start = end + kSep.size();
  }
  std::istringstream lines(out);
  std::string line;
  std::size_t i = 0;
  while (std::getline(lines, line) && i < cases.size()) {
    std::istringstream ids(line);
    std::int32_t id;
    while (ids >> id) cases[i].ids.push_back(id);
    ++i;
  }
  EXPECT_EQ(i, cases.size()) << "the .out file has fewer lines than the .inp has strings";
  return cases;
}

std::vector<std::string> suite_texts(const std::filesystem::path& gguf) {
  std::vector<std::string> texts;
  for (auto& c : read_suite(gguf)) texts.push_back(std::move(c.text));
  return texts;
}

void run_llamacpp_suite(const std::string& name) {
  HEARTH_REQUIRE_FIXTURE(path, "tokenizers/llamacpp-vocab/ggml-vocab-" + name + ".gguf");
  const Tokenizer tok = Tokenizer::load(path);
  const auto cases = read_suite(path);
  ASSERT_GE(cases.size(), 40u);
  std::size_t passed = 0;
  for (const auto& c : cases) {
    const Encoding e =
        tok.encode(c.text, EncodeOptions{.add_special_tokens = false, .parse_special = false});
    EXPECT_EQ(e.ids, c.ids) << "text: '" << c.text << "'";
    passed += e.ids == c.ids;
  }
  EXPECT_EQ(passed, cases.size());
}

TEST(LlamaCppSuite, BertBge) {
  run_llamacpp_suite("bert-bge");
}
TEST(LlamaCppSuite, LlamaSpm) {
  run_llamacpp_suite("llama-spm");
}
TEST(LlamaCppSuite, Phi3) {
  run_llamacpp_suite("phi-3");
}
TEST(LlamaCppSuite, Gpt2) {
  run_llamacpp_suite("gpt-2");
}

const std::vector<std::string> kExtra = {
    "[CLS] already special [SEP] inside",
    "Ünïcödé façade — naïve café; ÀÉÎÕÜ",
    "中文字符和日本語のテキスト、한국어",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic space",
    "zero\u200bwidth\u200djoiner and \u0007 bell \u0000 nul",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "email me: someone@example.com, price $3.50 (20% off!)",
    "",
    "   ",
};

TEST(SameVocabulary, MiniLmJsonVocabTxtAndBertBgeGgufAgree) {
  HEARTH_REQUIRE_FIXTURE(minilm, "tokenizers/minilm");
  HEARTH_REQUIRE_FIXTURE(gguf, "tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf");
  const Tokenizer json = Tokenizer::load(minilm / "tokenizer.json");
  const Tokenizer txt = Tokenizer::load(minilm / "vocab.txt");
  const Tokenizer gg = Tokenizer::load(gguf);
  EXPECT_EQ(json.vocab_size(), 30522u);
  EXPECT_EQ(gg.vocab_size(), json.vocab_size());
  for (std::int32_t id = 0; id < static_cast<std::int32_t>(json.vocab_size()); ++id) {
    ASSERT_EQ(gg.id_to_token(id), json.id_to_token(id)) << "id " << id;
  }
  auto texts = suite_texts(gguf);
  texts.insert(texts.end(), kExtra.begin(), kExtra.end());
  for (const auto& t : texts) {
    const Encoding a = json.encode(t);
    EXPECT_EQ(a.ids, gg.encode(t).ids) << t;
    EXPECT_EQ(a.ids, txt.encode(t).ids) << t;
    EXPECT_EQ(a.type_ids, gg.encode(t).type_ids) << t;
    EXPECT_EQ(json.encode_pair(t, "second part").ids, gg.encode_pair(t, "second part").ids) << t;
  }
}

TEST(SameVocabulary, Stories260KJsonAndGgufAgree) {
  HEARTH_REQUIRE_FIXTURE(hf, "models/stories260K/hf/tokenizer.json");
  HEARTH_REQUIRE_FIXTURE(gguf, "models/stories260K/stories260K-f32.gguf");
  HEARTH_REQUIRE_FIXTURE(spm, "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
  const Tokenizer json = Tokenizer::load(hf);
  const Tokenizer gg = Tokenizer::load(gguf);
  EXPECT_EQ(json.vocab_size(), 512u);
  auto texts = suite_texts(spm);
  texts.insert(texts.end(), kExtra.begin(), kExtra.end());
  texts.push_back(
      "Once upon a time, there was a little girl named Lily. She loved to play outside.");
  texts.push_back("<s>Once</s> upon <unk> a time");
  for (const auto& t : texts) {
    const Encoding a = json.encode(t);
    EXPECT_EQ(a.ids, gg.encode(t).ids) << t;
    EXPECT_EQ(json.decode(a.ids), gg.decode(a.ids)) << t;
  }
}

}  // namespace
}  // namespace hearth::tokenize
