// FLUX.1's two tokenizers (the real files of the FLUX.1-schnell repository in
// fixtures/tokenizers/flux) against reference implementations, and the pipelines' padding:
//  - T5 (tokenizer_2/tokenizer.json, SentencePiece Unigram) against libsentencepiece on the
//    fixture's spiece.model (Debian's python3-sentencepiece) and against @lenml/tokenizers;
//  - CLIP (tokenizer/: vocab.json + merges.txt + tokenizer_config.json, no tokenizer.json) read by
//    hearth's CLIPTokenizer loader against @lenml/tokenizers on the tokenizer.json that Hugging
//    Face's converter (CLIPConverter) writes for those files, transcribed here from its source.
// Each on 1,000 strings: generated ones (every script and symbol class of text_gen.hpp) and
// prompt-like English. Skips, saying why, without the fixtures, python3-sentencepiece or node.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/models/flux_text.hpp"
#include "hearth/tokenize/tokenizer.hpp"
#include "support/fixtures.hpp"
#include "tokenize/node_support.hpp"
#include "tokenize/text_gen.hpp"

namespace hearth::tokenize {
namespace {

constexpr std::size_t kStrings = 1000;

void write_text(const std::filesystem::path& path, const std::string& text) {
  testing::write_bytes(
      path, std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                   reinterpret_cast<const std::byte*>(text.data()) + text.size()));
}

// Image prompts: words, weights, numbers, punctuation and a few long ones (over 77 CLIP tokens).
std::string prompt(Gen& gen) {
  static const std::vector<std::string> kWords = {"a",
                                                  "photo",
                                                  "of",
                                                  "cat",
                                                  "wearing",
                                                  "astronaut",
                                                  "helmet",
                                                  "Cinematic",
                                                  "lighting",
                                                  "8k",
                                                  "ultra-detailed",
                                                  "portrait",
                                                  "(masterpiece:1.2)",
                                                  "by",
                                                  "Greg",
                                                  "Rutkowski",
                                                  "trending",
                                                  "on",
                                                  "ArtStation",
                                                  "isn't",
                                                  "they're",
                                                  "we'll",
                                                  "I'd",
                                                  "I'm",
                                                  "you've",
                                                  "it's",
                                                  "sunset,",
                                                  "neon",
                                                  "city",
                                                  "rain",
                                                  "reflections",
                                                  "f/1.8",
                                                  "35mm",
                                                  "HDR",
                                                  "watercolor",
                                                  "oil-painting",
                                                  "café",
                                                  "naïve",
                                                  "Zürich",
                                                  "TOKYO",
                                                  "2024",
                                                  "1920s",
                                                  "#art",
                                                  "@user",
                                                  "100%",
                                                  "<|endoftext|>",
                                                  "</s>",
                                                  "<extra_id_3>"};
  std::string s;
  const std::size_t words = gen.below(10) == 0 ? 60 + gen.below(60) : 1 + gen.below(20);
  for (std::size_t i = 0; i < words; ++i) {
    if (!s.empty()) s += gen.below(8) == 0 ? "  " : " ";
    s += gen.pick(kWords);
  }
  return s;
}

std::vector<std::string> corpus(std::uint32_t seed) {
  Gen gen(seed);
  std::vector<std::string> texts = {"",
                                    " ",
                                    "a photo of a cat",
                                    "A PHOTO OF A CAT!!!",
                                    "hello\tworld\n\nnew  line",
                                    "don't stop",
                                    "’quoted’"};
  while (texts.size() < kStrings) {
    texts.push_back(texts.size() % 2 == 0 ? gen.text() : prompt(gen));
  }
  return texts;
}

// Runs lenml_reference.js on tokenizer_json over texts; returns [{ids, text}].
nlohmann::json lenml(const std::filesystem::path& tokenizer_json,
                     const std::vector<std::string>& texts, const testing::TempDir& tmp) {
  write_text(tmp / "strings.json", nlohmann::json(texts).dump());
  std::string output;
  const int rc = testing::run_command(
      "NODE_PATH=" + testing::quote(node::modules()) + " node " +
          testing::quote(testing::source_dir() / "tests/tokenize/lenml_reference.js") + " " +
          testing::quote(tokenizer_json) + " " + testing::quote(tmp / "strings.json") + " " +
          testing::quote(tmp / "out.json"),
      &output);
  EXPECT_EQ(rc, 0) << output;
  if (rc != 0) return nlohmann::json::array();
  return nlohmann::json::parse(formats::read_text_file(tmp / "out.json"));
}

void compare(const Tokenizer& tok, const std::vector<std::string>& texts,
             const nlohmann::json& results) {
  ASSERT_EQ(results.size(), texts.size());
  std::size_t id_mismatches = 0, text_mismatches = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto expected = results[i].at("ids").get<std::vector<std::int32_t>>();
    const Encoding e = tok.encode(texts[i]);
    if (e.ids != expected && ++id_mismatches <= 5) {
      ADD_FAILURE() << "ids differ for " << nlohmann::json(texts[i]).dump(-1, ' ', true)
                    << "\n  hearth: " << nlohmann::json(e.ids).dump()
                    << "\n  lenml:  " << nlohmann::json(expected).dump();
    }
    const std::string decoded = tok.decode(e.ids);
    if (decoded != results[i].at("text").get<std::string>() && ++text_mismatches <= 5) {
      ADD_FAILURE() << "decoded text differs for " << nlohmann::json(texts[i]).dump()
                    << "\n  hearth: " << nlohmann::json(decoded).dump()
                    << "\n  lenml:  " << results[i].at("text").dump();
    }
  }
  EXPECT_EQ(id_mismatches, 0u) << "of " << texts.size() << " strings";
  EXPECT_EQ(text_mismatches, 0u) << "of " << texts.size() << " strings";
}

std::vector<std::vector<std::int32_t>> sentencepiece_ids(const std::filesystem::path& model,
                                                         const std::vector<std::string>& texts,
                                                         const testing::TempDir& tmp) {
  write_text(tmp / "sp_strings.json", nlohmann::json(texts).dump());
  std::string output;
  const int rc = testing::run_command(
      "/usr/bin/python3 " +
          testing::quote(testing::source_dir() / "tests/tokenize/sentencepiece_encode.py") + " " +
          testing::quote(model) + " " + testing::quote(tmp / "sp_strings.json") + " " +
          testing::quote(tmp / "sp_out.json"),
      &output);
  EXPECT_EQ(rc, 0) << output;
  if (rc != 0) return {};
  return nlohmann::json::parse(formats::read_text_file(tmp / "sp_out.json"))
      .get<std::vector<std::vector<std::int32_t>>>();
}

// hearth on tokenizer.json against libsentencepiece on spiece.model; then against
// @lenml/tokenizers on the same tokenizer.json, where transformers.js may depart from
// SentencePiece only where SentencePiece itself says it does (its Precompiled normalizer looks
// grapheme clusters up, SentencePiece byte prefixes: docs/tokenize.md), so every string where
// hearth and lenml differ must be one where hearth equals SentencePiece and lenml does not.
TEST(FluxT5Tokenizer, MatchesLibSentencePieceAndLenml) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/flux/tokenizer_2");
  if (testing::run_command("/usr/bin/python3 -c 'import sentencepiece'") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with sentencepiece (python3-sentencepiece) is not available";
  }
  const Tokenizer tok = Tokenizer::load(dir);
  EXPECT_EQ(tok.model_type(), "Unigram");
  // SentencePiece parses no special-token text; the tokenizer.json layout strips a trailing
  // U+0085 that SentencePiece keeps (docs/tokenize.md): both left out of this comparison.
  std::vector<std::string> texts;
  for (const std::uint32_t seed : {21u, 22u}) {
    for (const std::string& t : corpus(seed)) {
      if (t.find("\u0085") == std::string::npos && t.find("</s>") == std::string::npos &&
          t.find("<extra_id") == std::string::npos && t.find("<pad>") == std::string::npos &&
          t.find("<unk>") == std::string::npos) {
        texts.push_back(t);
      }
    }
  }
  ASSERT_GE(texts.size(), 1600u);
  testing::TempDir tmp;
  const auto expected = sentencepiece_ids(dir / "spiece.model", texts, tmp);
  ASSERT_EQ(expected.size(), texts.size());
  std::vector<std::vector<std::int32_t>> ours;
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    ours.push_back(tok.encode(texts[i]).ids);
    if (ours.back() != expected[i] && ++mismatches <= 5) {
      ADD_FAILURE() << "ids differ for " << nlohmann::json(texts[i]).dump(-1, ' ', true)
                    << "\n  hearth:        " << nlohmann::json(ours.back()).dump()
                    << "\n  sentencepiece: " << nlohmann::json(expected[i]).dump();
    }
  }
  EXPECT_EQ(mismatches, 0u) << "of " << texts.size() << " strings against libsentencepiece";
  if (const std::string why = node::ensure(); !why.empty()) {
    GTEST_SKIP() << "the comparison with @lenml/tokenizers is skipped: " << why;
  }
  const auto results = lenml(dir / "tokenizer.json", texts, tmp);
  ASSERT_EQ(results.size(), texts.size());
  std::size_t differ = 0, unexplained = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto theirs = results[i].at("ids").get<std::vector<std::int32_t>>();
    if (theirs == ours[i]) continue;
    ++differ;
    if (ours[i] != expected[i] && ++unexplained <= 5) {
      ADD_FAILURE() << "hearth and lenml differ where SentencePiece does not side with hearth: "
                    << nlohmann::json(texts[i]).dump(-1, ' ', true);
    }
  }
  EXPECT_EQ(unexplained, 0u);
  EXPECT_LT(differ, texts.size() / 100) << "strings where transformers.js departs";
}

// The tokenizer.json transformers' CLIPConverter writes for a CLIPTokenizer's vocab.json and
// merges.txt (convert_slow_tokenizer.py), with tokenizer_config.json's added tokens.
nlohmann::json converter_tokenizer_json(const std::filesystem::path& dir) {
  using nlohmann::json;
  const json vocab = json::parse(formats::read_text_file(dir / "vocab.json"));
  json merges = json::array();
  {
    const std::string text = formats::read_text_file(dir / "merges.txt");
    std::size_t start = text.find('\n') + 1;  // after "#version: 0.2"
    while (start < text.size()) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      if (end > start) merges.push_back(text.substr(start, end - start));
      start = end + 1;
    }
  }
  const json config = json::parse(formats::read_text_file(dir / "tokenizer_config.json"));
  json added = json::array();
  for (const auto& [id, t] : config.at("added_tokens_decoder").items()) {
    json a = t;
    a["id"] = std::stoi(id);
    added.push_back(a);
  }
  json j = json::parse(R"({
    "version": "1.0",
    "truncation": null,
    "padding": null,
    "normalizer": {"type": "Sequence", "normalizers": [
      {"type": "NFC"},
      {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
      {"type": "Lowercase"}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split",
       "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
       "behavior": "Removed", "invert": true},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
    "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 49407],
                       "cls": ["<|startoftext|>", 49406], "trim_offsets": false,
                       "add_prefix_space": false},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
              "continuing_subword_prefix": "", "end_of_word_suffix": "</w>", "fuse_unk": false,
              "byte_fallback": false}
  })");
  j["added_tokens"] = added;
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = merges;
  return j;
}

TEST(FluxClipTokenizer, FolderWithoutTokenizerJsonMatchesLenmlTokenizers) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/flux/tokenizer");
  HEARTH_REQUIRE_NODE();
  const Tokenizer tok = Tokenizer::load(dir);
  EXPECT_EQ(tok.model_type(), "BPE");
  EXPECT_EQ(tok.vocab_size(), 49408u);
  EXPECT_EQ(tok.encode("a photo of a cat").ids,
            (std::vector<std::int32_t>{49406, 320, 1125, 539, 320, 2368, 49407}));
  testing::TempDir tmp;
  nlohmann::json converted = converter_tokenizer_json(dir);
  write_text(tmp / "tokenizer.json", converted.dump());
  write_text(tmp / "tokenizer_config.json", formats::read_text_file(dir / "tokenizer_config.json"));
  const auto texts = corpus(23);
  const auto results = lenml(tmp / "tokenizer.json", texts, tmp);
  compare(tok, texts, results);
  // hearth on the converter's tokenizer.json agrees with its own reading of the folder.
  const Tokenizer from_json = Tokenizer::load(tmp / "tokenizer.json");
  for (std::size_t i = 0; i < texts.size(); i += 7) {
    ASSERT_EQ(from_json.encode(texts[i]).ids, tok.encode(texts[i]).ids) << texts[i];
  }
}

TEST(FluxClipTokenizer, OtherSlowTokenizerClassesAreRefusedNamingTheFile) {
  testing::TempDir tmp;
  write_text(tmp / "vocab.json", R"({"a": 0, "b": 1})");
  write_text(tmp / "merges.txt", "#version: 0.2\na b\n");
  write_text(tmp / "tokenizer_config.json", R"({"tokenizer_class": "GPT2Tokenizer"})");
  try {
    Tokenizer::load(tmp.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("GPT2Tokenizer"), std::string::npos) << e.what();
    EXPECT_NE(e.where().file.find("tokenizer_config.json"), std::string::npos) << e.where().file;
  }
  write_text(tmp / "tokenizer_config.json", R"({"tokenizer_class": "CLIPTokenizer"})");
  try {
    Tokenizer::load(tmp.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("<|startoftext|>"), std::string::npos) << e.what();
    EXPECT_NE(e.where().file.find("vocab.json"), std::string::npos) << e.where().file;
  }
  write_text(tmp / "tokenizer_config.json",
             R"({"tokenizer_class": "CLIPTokenizer", "added_tokens_decoder": {"x1": {}}})");
  try {
    Tokenizer::load(tmp.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_EQ(e.where().key, "added_tokens_decoder");
  }
}

TEST(FluxPromptTokens, ClipPadsWithEndOfTextAndTruncatesKeepingIt) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/flux/tokenizer");
  const Tokenizer tok = Tokenizer::load(dir);
  const std::string pad = models::tokenizer_pad_token(dir, "");
  EXPECT_EQ(pad, "<|endoftext|>");
  const auto p = models::flux_prompt_tokens(tok, "a photo of a cat", models::kFluxClipTokens, pad);
  ASSERT_EQ(p.ids.size(), 77u);
  EXPECT_EQ(p.used, 7u);
  EXPECT_FALSE(p.truncated());
  EXPECT_EQ(p.ids[0], 49406);
  EXPECT_EQ(p.ids[5], 2368);
  for (std::size_t i = 6; i < 77; ++i) ASSERT_EQ(p.ids[i], 49407) << i;
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "cat ";
  const auto t = models::flux_prompt_tokens(tok, long_prompt, models::kFluxClipTokens, pad);
  EXPECT_TRUE(t.truncated());
  EXPECT_EQ(t.needed, 102u);
  EXPECT_EQ(t.used, 77u);
  EXPECT_EQ(t.ids.front(), 49406);
  EXPECT_EQ(t.ids[75], 2368);
  EXPECT_EQ(t.ids.back(), 49407);
}

TEST(FluxPromptTokens, T5PadsWithPadAfterEndOfSequence) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/flux/tokenizer_2");
  const Tokenizer tok = Tokenizer::load(dir);
  const std::string pad = models::tokenizer_pad_token(dir, "");
  EXPECT_EQ(pad, "<pad>");
  for (const std::size_t limit : {models::kFluxT5TokensSchnell, models::kFluxT5TokensDev}) {
    const auto p = models::flux_prompt_tokens(tok, "a photo of a cat", limit, pad);
    ASSERT_EQ(p.ids.size(), limit);
    EXPECT_FALSE(p.truncated());
    ASSERT_GE(p.used, 2u);
    EXPECT_EQ(p.ids[p.used - 1], 1);  // </s>
    for (std::size_t i = p.used; i < limit; ++i) ASSERT_EQ(p.ids[i], 0) << i;
  }
  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += "cat ";
  const auto t = models::flux_prompt_tokens(tok, long_prompt, models::kFluxT5TokensSchnell, pad);
  EXPECT_TRUE(t.truncated());
  EXPECT_GT(t.needed, 256u);
  EXPECT_EQ(t.used, 256u);
  EXPECT_EQ(t.ids.back(), 1);
  EXPECT_THROW(models::flux_prompt_tokens(tok, "x", 1, pad), Error);
  EXPECT_THROW(models::flux_prompt_tokens(tok, "x", 16, "<no such token>"), Error);
}

}  // namespace
}  // namespace hearth::tokenize
