// Behaviour of the tokenizer pipeline: pairs and truncation, added tokens, streaming, hostile
// input (random bytes, invalid UTF-8) and malformed or unsupported tokenizer files.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/tokenize/pipeline.hpp"
#include "hearth/tokenize/regex.hpp"
#include "hearth/tokenize/tokenizer.hpp"
#include "hearth/tokenize/unicode.hpp"
#include "support/fixtures.hpp"

namespace hearth::tokenize {
namespace {

using Ids = std::vector<std::int32_t>;

// A tiny BERT-style tokenizer.json whose ids are easy to reason about.
constexpr const char* kTinyBert = R"({
  "added_tokens": [
    {"id": 0, "content": "[PAD]", "special": true, "normalized": false},
    {"id": 1, "content": "[UNK]", "special": true, "normalized": false},
    {"id": 2, "content": "[CLS]", "special": true, "normalized": false},
    {"id": 3, "content": "[SEP]", "special": true, "normalized": false},
    {"id": 13, "content": "<x>", "special": false, "normalized": false, "lstrip": true, "rstrip": true}
  ],
  "normalizer": {"type": "BertNormalizer", "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {
    "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "b": 5, "c": 6, "d": 7, "e": 8,
    "##b": 9, "##c": 10, ".": 11, "cafe": 12, "<x>": 13}}
})";

TEST(Tokenizer, PairEncodingHasTypeIds) {
  const Tokenizer t = Tokenizer::from_json(kTinyBert);
  const Encoding e = t.encode_pair("a bc", "d E");
  EXPECT_EQ(e.ids, (Ids{2, 4, 5, 10, 3, 7, 8, 3}));
  EXPECT_EQ(e.type_ids, (Ids{0, 0, 0, 0, 0, 1, 1, 1}));
  const Encoding plain = t.encode_pair("a", "d", false);
  EXPECT_EQ(plain.ids, (Ids{4, 7}));
  EXPECT_EQ(plain.type_ids, (Ids{0, 1}));
  EXPECT_EQ(t.encode("Café.").ids, (Ids{2, 12, 11, 3}));  // accents stripped, punctuation split
  EXPECT_EQ(t.encode("zzz a").ids, (Ids{2, 1, 4, 3}));
  EXPECT_EQ(t.decode(t.encode("a bc .").ids), "a bc.");
  EXPECT_EQ(t.decode(t.encode("a").ids, false), "[CLS] a [SEP]");
}

TEST(Tokenizer, TruncationStrategies) {
  const Tokenizer t = Tokenizer::from_json(kTinyBert);
  const std::string ten = "a b c d e a b c d e";
  const std::string three = "e d c";
  // longest_first: 10 + 3 tokens into 10 - 3 specials = 7: the longer side gives way.
  Encoding e = t.encode_pair(ten, three, true, {10, TruncationStrategy::kLongestFirst});
  EXPECT_EQ(e.ids, (Ids{2, 4, 5, 6, 7, 3, 8, 7, 6, 3}));
  // Both long: split evenly, the odd token to the second.
  e = t.encode_pair(ten, ten, true, {10, TruncationStrategy::kLongestFirst});
  EXPECT_EQ(e.ids, (Ids{2, 4, 5, 6, 3, 4, 5, 6, 7, 3}));
  e = t.encode_pair(three, ten, true, {10, TruncationStrategy::kOnlySecond});
  EXPECT_EQ(e.ids, (Ids{2, 8, 7, 6, 3, 4, 5, 6, 7, 3}));
  EXPECT_EQ(e.type_ids, (Ids{0, 0, 0, 0, 0, 1, 1, 1, 1, 1}));
  e = t.encode_pair(ten, three, true, {10, TruncationStrategy::kOnlyFirst});
  EXPECT_EQ(e.ids, (Ids{2, 4, 5, 6, 7, 3, 8, 7, 6, 3}));
  e = t.encode(ten, true, {4});
  EXPECT_EQ(e.ids, (Ids{2, 4, 5, 3}));
  EXPECT_EQ(t.encode("a b", true, {10}).ids, (Ids{2, 4, 5, 3}));  // short enough: unchanged
  EXPECT_THROW(t.encode_pair(three, ten, true, {6, TruncationStrategy::kOnlyFirst}), Error);
  EXPECT_THROW(t.encode(ten, true, {4, TruncationStrategy::kOnlySecond}), Error);
  EXPECT_THROW(t.encode(ten, true, {1}), Error);
}

TEST(Tokenizer, AddedTokensMatchBeforeTheModel) {
  const Tokenizer t = Tokenizer::from_json(kTinyBert);
  // [SEP] in the text is the special token; <x> strips the spaces around it.
  EXPECT_EQ(t.encode("a[SEP]b", false).ids, (Ids{4, 3, 5}));
  EXPECT_EQ(t.encode("a  <x>  b", false).ids, (Ids{4, 13, 5}));
  // Not parsing specials: "[SEP]" becomes ordinary text ([ and ] are not in the vocabulary).
  EXPECT_EQ(
      t.encode("a[SEP]", EncodeOptions{.add_special_tokens = false, .parse_special = false}).ids,
      (Ids{4, 1, 1, 1}));
  EXPECT_EQ(t.token_to_id("<x>"), 13);
  EXPECT_TRUE(t.is_special(3));
  EXPECT_FALSE(t.is_special(13));
  EXPECT_EQ(t.id_to_token(12), "cafe");
  EXPECT_EQ(t.id_to_token(999), "");
}

TEST(Tokenizer, InvalidUtf8BecomesReplacementCharacters) {
  // Documented rule: each maximal invalid subpart becomes one U+FFFD before tokenization.
  EXPECT_EQ(unicode::sanitize("a\xFF"
                              "b"),
            "a\uFFFD"
            "b");
  EXPECT_EQ(unicode::sanitize("\xE2\x82"), "\uFFFD");        // truncated 3-byte sequence: one
  EXPECT_EQ(unicode::sanitize("\xC0\xAF"), "\uFFFD\uFFFD");  // overlong: two
  EXPECT_EQ(unicode::sanitize("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // surrogate
  HEARTH_REQUIRE_FIXTURE(gpt2, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
  const Tokenizer t = Tokenizer::load(gpt2);
  EXPECT_EQ(t.encode("x\xF0\x9F\x98 y").ids, t.encode("x\uFFFD y").ids);
  EXPECT_EQ(t.decode(t.encode("x\xF0\x9F\x98 y").ids), "x\uFFFD y");
}

std::string random_bytes(std::mt19937& rng, std::size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) {
    const auto r = rng();
    // Bias towards bytes that form (and break) multi-byte sequences.
    c = static_cast<char>(r % 3 == 0 ? 0x80 + (r >> 8) % 0x80 : (r >> 8) & 0xFF);
  }
  return s;
}

std::vector<std::string> pre_tokenize(const detail::PreTokenizer& p, std::string text) {
  std::vector<std::string> pieces{std::move(text)};
  p.split(pieces, true);
  return pieces;
}

TEST(PreTokenizer, WhitespaceAndPunctuationFollowHuggingFace) {
  using V = std::vector<std::string>;
  // \w is Unicode (letters, marks, digits, connector punctuation) as in Rust's regex crate.
  EXPECT_EQ(
      pre_tokenize(*detail::make_whitespace_pre_tokenizer(), "Hello, w\u00f6rld!!  000\u1e37x_y"),
      (V{"Hello", ",", "w\u00f6rld", "!!", "000\u1e37x_y"}));
  // Each punctuation character is its own piece (a char predicate split, Isolated).
  EXPECT_EQ(pre_tokenize(*detail::make_punctuation_pre_tokenizer(detail::SplitBehavior::kIsolated),
                         "a,b!!\u2026\u00bf c"),
            (V{"a", ",", "b", "!", "!", "\u2026", "\u00bf", " c"}));
  EXPECT_EQ(pre_tokenize(*detail::make_bert_pre_tokenizer(), " Don't\tstop-me\u3000now$ "),
            (V{"Don", "'", "t", "stop", "-", "me", "now", "$"}));
}

TEST(PreTokenizer, SplitBehaviorsMatchHuggingFaceDocumentation) {
  using V = std::vector<std::string>;
  using B = detail::SplitBehavior;
  auto split = [](B behavior, bool invert = false) {
    return pre_tokenize(*detail::make_split_pre_tokenizer("-", false, behavior, invert),
                        "the-final--countdown");
  };
  // The examples of tokenizers' SplitDelimiterBehavior documentation.
  EXPECT_EQ(split(B::kRemoved), (V{"the", "final", "countdown"}));
  EXPECT_EQ(split(B::kIsolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split(B::kMergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split(B::kMergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split(B::kContiguous), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(split(B::kRemoved, true), (V{"-", "-", "-"}));
  EXPECT_EQ(pre_tokenize(*detail::make_split_pre_tokenizer("\\d+", true, B::kMergedWithNext, false),
                         "ab12cd3"),
            (V{"ab", "12cd", "3"}));
}

TEST(Unicode, NormalizationFormsAroundAscii) {
  using unicode::Form;
  EXPECT_EQ(unicode::normalize("cafe\u0301 ok", Form::kNFC),
            "caf\u00e9 ok");  // ASCII base composes
  EXPECT_EQ(unicode::normalize("caf\u00e9 ok", Form::kNFD), "cafe\u0301 ok");
  EXPECT_EQ(unicode::normalize("a\u0323\u0302 x", Form::kNFC), "\u1ead x");  // reordered, composed
  EXPECT_EQ(unicode::normalize("a\u0302\u0323", Form::kNFD), "a\u0323\u0302");
  EXPECT_EQ(unicode::normalize("\uFB01x \u2460", Form::kNFKC), "fix 1");
  EXPECT_EQ(unicode::normalize("\uAC00", Form::kNFD), "\u1100\u1161");
  EXPECT_EQ(unicode::normalize("plain ascii", Form::kNFKD), "plain ascii");
  EXPECT_EQ(unicode::normalize("x\xFF"
                               "e\u0301",
                               Form::kNFC),
            "x\uFFFD\u00e9");
  EXPECT_EQ(unicode::lowercase("\u0130A\u03A3"), "i\u0307a\u03c3");
}

TEST(Tokenizer, RandomBytesNeverCrashAndByteLevelRoundTrips) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/llamacpp-vocab");
  std::mt19937 rng(7);
  for (const char* name : {"bert-bge", "gpt-2", "llama-spm", "phi-3"}) {
    const Tokenizer t = Tokenizer::load(dir / (std::string("ggml-vocab-") + name + ".gguf"));
    for (int i = 0; i < 300; ++i) {
      const std::string bytes = random_bytes(rng, 1 + rng() % 64);
      const Encoding e = t.encode(bytes);
      const std::string text = t.decode(e.ids);
      EXPECT_TRUE(is_valid_utf8(text)) << name;
      if (std::string(name) == "gpt-2") {
        EXPECT_EQ(text, unicode::sanitize(bytes));
      }
      if (std::string(name) == "llama-spm") {
        // Byte fallback makes SentencePiece lossless too.
        EXPECT_EQ(text, unicode::sanitize(bytes));
      }
    }
  }
}

TEST(Tokenizer, SharedAcrossThreadsGivesTheSameIds) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/llamacpp-vocab");
  const Tokenizer shared = Tokenizer::load(dir / "ggml-vocab-gpt-2.gguf");
  std::vector<std::string> texts;
  std::mt19937 rng(11);
  for (int i = 0; i < 200; ++i) {
    texts.push_back("word" + std::to_string(rng() % 50) + " text " + std::to_string(rng() % 7) +
                    " caf\u00e9 \U0001F999");
  }
  std::vector<Ids> expected;
  for (const auto& t : texts) expected.push_back(shared.encode(t).ids);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      const Tokenizer copy = shared;  // copies share the pipeline
      for (int round = 0; round < 3; ++round) {
        for (std::size_t i = 0; i < texts.size(); ++i) {
          const std::size_t j = (i * 7 + static_cast<std::size_t>(k)) % texts.size();
          if (copy.encode(texts[j]).ids != expected[j]) ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Tokenizer, LongRunsDoNotOverflow) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/llamacpp-vocab");
  const Tokenizer gpt2 = Tokenizer::load(dir / "ggml-vocab-gpt-2.gguf");
  const std::string letters(100000, 'a');
  EXPECT_GT(gpt2.encode(letters).ids.size(), 1000u);
  const std::string spaces = std::string(100000, ' ') + "x";
  EXPECT_EQ(gpt2.decode(gpt2.encode(spaces).ids), spaces);
  const Tokenizer bert = Tokenizer::load(dir / "ggml-vocab-bert-bge.gguf");
  EXPECT_EQ(bert.encode(letters, false).ids, (Ids{100}));  // over 100 chars: [UNK]
}

void expect_streams(const Tokenizer& t, const std::string& text) {
  const Encoding e = t.encode(text, false);
  StreamDecoder stream(t);
  std::string joined;
  std::size_t held = 0;
  for (const auto id : e.ids) {
    const std::string piece = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(piece)) << printable(piece);
    held += piece.empty();
    joined += piece;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, t.decode(e.ids)) << text;
  EXPECT_GT(held, 0u) << "some ids end inside a character and must hold text back";
}

TEST(StreamDecoder, YieldsOnlyCompleteCharacters) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/llamacpp-vocab");
  const std::string text = " Hello 🦙 world, 中文字符 and 😶‍🌫️ done.";
  expect_streams(Tokenizer::load(dir / "ggml-vocab-gpt-2.gguf"), text);
  expect_streams(Tokenizer::load(dir / "ggml-vocab-llama-spm.gguf"), text);
}

TEST(Tokenizer, UnigramPicksTheBestSegmentation) {
  const Tokenizer t = Tokenizer::from_json(R"({
    "normalizer": null,
    "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
    "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
    "model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0], ["▁", -1], ["▁he", -2],
              ["llo", -2.5], ["h", -3], ["e", -3], ["l", -3], ["o", -3], ["hello", -10]]}
  })");
  EXPECT_EQ(t.encode("hello").ids, (Ids{2, 3}));
  EXPECT_EQ(t.encode("hexx hello").ids, (Ids{2, 0, 2, 3}));  // unknown "xx" fuses into one <unk>
  EXPECT_EQ(t.decode(Ids{2, 3, 2, 3}), "hello hello");
}

void expect_error(const std::string& json, ErrorCode code, const std::string& needle) {
  try {
    Tokenizer::from_json(json, "bad/tokenizer.json");
    ADD_FAILURE() << "no error for " << json;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad/tokenizer.json"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, MalformedAndUnsupportedFilesAreClearErrors) {
  expect_error("{\"model\": {", ErrorCode::kFormat, "malformed");
  expect_error("[1, 2]", ErrorCode::kFormat, "not a JSON object");
  expect_error(R"({"normalizer": null})", ErrorCode::kFormat, "model");
  expect_error(R"({"model": {"type": "WordLevel", "vocab": {}}})", ErrorCode::kUnsupported,
               "WordLevel");
  expect_error(
      R"({"normalizer": {"type": "Precompiled"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
      ErrorCode::kFormat, "precompiled_charsmap");
  expect_error(
      R"({"pre_tokenizer": {"type": "UnicodeScripts"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
      ErrorCode::kUnsupported, "UnicodeScripts");
  expect_error(
      R"({"decoder": {"type": "CTC"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
      ErrorCode::kUnsupported, "CTC");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})",
               ErrorCode::kFormat, "not in the vocabulary");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})",
               ErrorCode::kFormat, "vocab id");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 4000000000}, "merges": []}})",
               ErrorCode::kFormat, "vocab id");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})", ErrorCode::kFormat,
               "[UNK]");
  expect_error(
      R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a)\\1"}, "behavior": "Isolated"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
      ErrorCode::kUnsupported, "backreference");
}

TEST(Tokenizer, MalformedGgufVocabulariesAreClearErrors) {
  auto expect_gguf_error = [](formats::GGUFWriter& w, ErrorCode code, const std::string& needle) {
    const auto bytes = w.serialize();
    const auto f = formats::GGUFFile::parse(bytes, "vocab.gguf");
    try {
      Tokenizer::from_gguf(f);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("vocab.gguf"), std::string::npos) << e.what();
    }
  };
  formats::GGUFWriter none;
  none.set("general.architecture", "llama");
  expect_gguf_error(none, ErrorCode::kNotFound, "tokenizer.ggml.model");
  formats::GGUFWriter t5;
  t5.set("tokenizer.ggml.model", "t5");
  t5.set("tokenizer.ggml.tokens", formats::GGUFArray{std::vector<std::string>{"a"}});
  expect_gguf_error(t5, ErrorCode::kFormat, "tokenizer.ggml.scores");
  formats::GGUFWriter rwkv;
  rwkv.set("tokenizer.ggml.model", "rwkv");
  rwkv.set("tokenizer.ggml.tokens", formats::GGUFArray{std::vector<std::string>{"a"}});
  expect_gguf_error(rwkv, ErrorCode::kUnsupported, "'rwkv'");
  formats::GGUFWriter scores;
  scores.set("tokenizer.ggml.model", "llama");
  scores.set("tokenizer.ggml.tokens", formats::GGUFArray{std::vector<std::string>{"a", "b"}});
  scores.set("tokenizer.ggml.scores", formats::GGUFArray{std::vector<float>{0.0f}});
  expect_gguf_error(scores, ErrorCode::kFormat, "tokenizer.ggml.scores");
  formats::GGUFWriter bos;
  bos.set("tokenizer.ggml.model", "llama");
  bos.set("tokenizer.ggml.tokens", formats::GGUFArray{std::vector<std::string>{"a"}});
  bos.set("tokenizer.ggml.scores", formats::GGUFArray{std::vector<float>{0.0f}});
  bos.set("tokenizer.ggml.bos_token_id", std::uint32_t{7});
  expect_gguf_error(bos, ErrorCode::kFormat, "out of range");
  formats::GGUFWriter pre;
  pre.set("tokenizer.ggml.model", "gpt2");
  pre.set("tokenizer.ggml.pre", "mystery");
  pre.set("tokenizer.ggml.tokens", formats::GGUFArray{std::vector<std::string>{"a"}});
  pre.set("tokenizer.ggml.merges", formats::GGUFArray{std::vector<std::string>{}});
  expect_gguf_error(pre, ErrorCode::kUnsupported, "mystery");
}

TEST(Regex, MatchesTheLlama3Pattern) {
  const Regex re(
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  const std::u32string text = U"I'LL pay 12345 now!!\n\n  ok";
  std::vector<std::u32string> parts;
  std::size_t from = 0;
  while (auto m = re.find(text, from)) {
    parts.push_back(text.substr(m->first, m->second - m->first));
    from = m->second;
  }
  EXPECT_EQ(parts, (std::vector<std::u32string>{U"I", U"'LL", U" pay", U" ", U"123", U"45", U" now",
                                                U"!!\n\n", U" ", U" ok"}));
  // Exponential backtracking stops with an error instead of hanging.
  const Regex evil("(a|a)*b");
  EXPECT_THROW(evil.find(std::u32string(40, U'a'), 0), Error);
  EXPECT_THROW(Regex("a{3,1}"), Error);
  EXPECT_THROW(Regex("(?<name>a)"), Error);
  EXPECT_THROW(Regex("\\p{Greek}"), Error);
}

// The GPT-2, Llama-3 and Qwen2 patterns are split by hand-written scanners; the same pattern
// wrapped in a group goes through the generic matcher. Both must cut every text identically.
TEST(Regex, FastScannersAgreeWithTheMatcher) {
  const std::vector<std::string> patterns = {
      detail::kGpt2Pattern,
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
  // Characters chosen to hit every branch: contractions in both cases, letters, digits and
  // other numbers, punctuation, every kind of whitespace and line break, marks, CJK, emoji.
  const std::vector<std::string> pool = {
      "'",          "s",  "S",      "t",      "re",     "RE",     "ve",     "m",      "ll",
      "LL",         "d",  "D",      "a",      "Z",      "\u00e9", "\u0416", "\u4e2d", "\u3042",
      "0",          "7",  "\u00bd", "\u2163", "\u0663", " ",      " ",      "  ",     "\t",
      "\n",         "\r", "\r\n",   "\u00a0", "\u3000", "\u2028", "\u0085", "\u000b", "!",
      ".",          "-",  "(",      "\"",     "\u2014", "\u00bf", "\u0301", "\u200d", "\U0001F600",
      "\U0001F3FD", "_",  "$",      "+",      "\u00b2", "x",      "'s",     "'t"};
  std::mt19937 rng(99);
  for (const auto& pattern : patterns) {
    const auto fast =
        detail::make_split_pre_tokenizer(pattern, true, detail::SplitBehavior::kIsolated, false);
    const auto slow = detail::make_split_pre_tokenizer("(?:" + pattern + ")", true,
                                                       detail::SplitBehavior::kIsolated, false);
    for (int n = 0; n < 3000; ++n) {
      std::string text;
      for (std::size_t k = 1 + rng() % 24; k > 0; --k) text += pool[rng() % pool.size()];
      std::vector<std::string_view> a, b;
      ASSERT_TRUE(fast->split_views(text, a));
      ASSERT_TRUE(slow->split_views(text, b));
      ASSERT_EQ(a, b) << pattern << "\n" << text;
    }
  }
}

}  // namespace
}  // namespace hearth::tokenize
