#include "hearth/rag/chunker.hpp"

#include <gtest/gtest.h>

#include "hearth/core/error.hpp"

namespace hearth::rag {
namespace {

TEST(Chunker, CharacterModeMatchesTheOriginalWindows) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text += static_cast<char>('a' + i % 26);
  const LoadedDocument d = parse_text(text);
  const auto chunks = chunk_document(d, ChunkingOptions::original());
  // Python: [text[i:i+256] for i in range(0, len(text), 206)] stopping once the end is reached.
  ASSERT_EQ(chunks.size(), 5u);
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].begin, i * 206);
    EXPECT_EQ(chunks[i].text, text.substr(i * 206, 256));
  }
  EXPECT_EQ(chunks.back().end, 1000u);
}

TEST(Chunker, CharacterModeCountsCodePointsNotBytes) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "\xC3\xA9";  // é, two bytes each
  const auto chunks = chunk_document(parse_text(text), ChunkingOptions::original());
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(count_chars(chunks[0].text), 256u);
  EXPECT_EQ(chunks[1].begin, 206u * 2);
}

TEST(Chunker, RejectsNonsenseOptions) {
  const LoadedDocument d = parse_text("abc");
  EXPECT_THROW(chunk_document(d, {ChunkingOptions::Mode::kCharacters, 10, 10}), Error);
  EXPECT_THROW(chunk_document(d, {ChunkingOptions::Mode::kStructural, 0, 0}), Error);
}

TEST(Chunker, StructuralPacksParagraphsAndSplitsSentences) {
  const std::string para1 = "Alpha one. Alpha two.";
  const std::string para2 = "Beta one is here. Beta two is here. Beta three is here.";
  const LoadedDocument d = parse_text(para1 + "\n\n" + para2);
  const auto chunks = chunk_document(d, {ChunkingOptions::Mode::kStructural, 38, 0});
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].text, para1);
  EXPECT_EQ(chunks[1].text, "Beta one is here. Beta two is here.");
  EXPECT_EQ(chunks[2].text, "Beta three is here.");
  const auto big = chunk_document(d, {ChunkingOptions::Mode::kStructural, 1000, 0});
  ASSERT_EQ(big.size(), 1u);
  EXPECT_EQ(big[0].text, para1 + "\n\n" + para2);
}

TEST(Chunker, ChunksRecordPagesAndByteRanges) {
  LoadedDocument d = parse_text("Page one text.\n\nMore on one.");
  d.page_starts = {0};
  const std::size_t second = d.text.size() + 2;
  d.text += "\n\nPage two text.";
  d.blocks.push_back({0, second, d.text.size()});
  d.page_starts.push_back(second);
  const auto chunks = chunk_document(d, {ChunkingOptions::Mode::kStructural, 20, 0});
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].page_first, 1);
  EXPECT_EQ(chunks[2].page_first, 2);
  EXPECT_EQ(chunks[2].text, "Page two text.");
  EXPECT_EQ(d.text.substr(chunks[2].begin, chunks[2].end - chunks[2].begin), chunks[2].text);
  const auto one = chunk_document(d, {ChunkingOptions::Mode::kStructural, 1000, 0});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].page_first, 1);
  EXPECT_EQ(one[0].page_last, 2);
}

// One token per space-separated word: enough to test the budget arithmetic.
std::size_t words(std::string_view s) {
  std::size_t n = 0;
  bool in_word = false;
  for (const char c : s) {
    const bool w = c != ' ' && c != '\n';
    n += w && !in_word ? 1 : 0;
    in_word = w;
  }
  return n;
}

TEST(Chunker, TokenBudgetPacksAndSplitsByTheModelsCount) {
  const std::string para1 = "One two three. Four five.";
  const std::string para2 =
      "a b c d e f g h i j k l m n o p q r s t u v w x y z and on without a stop";
  const LoadedDocument d = parse_text(para1 + "\n\n" + para2);
  const auto chunks = chunk_document(d, ChunkingOptions::tokens(6), words);
  ASSERT_GE(chunks.size(), 6u);
  EXPECT_EQ(chunks[0].text, para1) << "two sentences of 5 words fit one 6-token chunk";
  std::string joined;
  for (const Chunk& c : chunks) {
    EXPECT_LE(words(c.text), 6u) << c.text;
    EXPECT_GE(words(c.text), 1u);
    EXPECT_EQ(c.text, d.text.substr(c.begin, c.end - c.begin));
    joined += c.text + " ";
  }
  EXPECT_EQ(words(joined), words(d.text)) << "every word lands in exactly one chunk";
  EXPECT_EQ(ChunkingOptions::tokens(6).describe(), "structural/6-tokens");
  // A token budget without a counter is refused, not measured in characters.
  EXPECT_THROW(chunk_document(d, ChunkingOptions::tokens(6)), Error);
}

// Text without spaces or sentence ends (Chinese, base64) under a token budget: the tokenizer
// must see each character a bounded number of times, not once per chunk before it.
TEST(Chunker, TokenBudgetOnSpaceFreeTextTokenizesEachCharacterBoundedTimes) {
  std::string text;
  for (int i = 0; i < 160000; ++i) {
    const char32_t cp = 0x4E00 + static_cast<char32_t>(i * 7919 % 0x5000);
    text += static_cast<char>(0xE0 | (cp >> 12));
    text += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    text += static_cast<char>(0x80 | (cp & 0x3F));
  }
  const LoadedDocument d = parse_text(text);
  std::size_t seen = 0;  // characters handed to the tokenizer
  const TokenCounter one_per_char = [&](std::string_view s) {
    seen += count_chars(s);
    return count_chars(s);
  };
  const auto chunks = chunk_document(d, ChunkingOptions::tokens(256), one_per_char);
  ASSERT_EQ(chunks.size(), 625u);
  for (const Chunk& c : chunks) EXPECT_EQ(count_chars(c.text), 256u);
  EXPECT_EQ(chunks.back().end, text.size());
  // Quadratic cutting hands over ~n^2 / (2 * 256) = 50M characters here.
  EXPECT_LT(seen, 16u * 160000u) << seen / 160000 << " times each character";
}

TEST(Sentences, SplitsOnTerminalPunctuationOnly) {
  const std::string t = "Dr. Who? yes. e.g. this stays. Last one!\n\nNew para";
  std::vector<std::string> got;
  for (auto [b, e] : split_sentences(t)) got.push_back(t.substr(b, e - b));
  // "yes. e.g." continues: a lower-case word after the period does not start a sentence.
  const std::vector<std::string> want = {"Dr.", "Who? yes. e.g. this stays.", "Last one!",
                                         "New para"};
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace hearth::rag
