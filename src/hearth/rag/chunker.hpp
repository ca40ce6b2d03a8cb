// Splitting loaded documents into the chunks a bank indexes. Every chunk is a byte range of the
// document's extracted text, with its pages and the path of headings above it.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hearth/rag/loaders.hpp"

namespace hearth::rag {

struct ChunkingOptions {
  // kStructural: headings start chunks; paragraphs are packed up to the budget, then split on
  // sentences, then on whitespace. kCharacters: the original lab's fixed windows with overlap.
  // kTokens (structural only): the budget counts the embedding model's tokens.
  enum class Mode { kStructural, kCharacters };
  enum class Unit { kCharacters, kTokens };
  Mode mode = Mode::kStructural;
  std::size_t budget = 1000;  // characters (Unicode code points) or tokens per chunk
  std::size_t overlap = 50;   // kCharacters only
  Unit unit = Unit::kCharacters;

  static ChunkingOptions original() { return {Mode::kCharacters, 256, 50}; }
  static ChunkingOptions tokens(std::size_t budget) {
    return {Mode::kStructural, budget, 0, Unit::kTokens};
  }
  // "structural/1000", "structural/256-tokens" or "characters/256/50".
  std::string describe() const;
};

// Counts the tokens of a piece of text (without special tokens) for kTokens budgets.
using TokenCounter = std::function<std::size_t(std::string_view)>;

struct Chunk {
  std::size_t begin = 0;  // byte range in LoadedDocument::text
  std::size_t end = 0;
  int page_first = 0;  // 0 when the document has no pages
  int page_last = 0;
  std::string heading_path;  // "Guide > Install > Linux"
  std::string text;
};

// Throws Error(kInvalidArgument) for a zero budget, an overlap not below the budget, or a token
// budget without count_tokens.
std::vector<Chunk> chunk_document(const LoadedDocument& doc, const ChunkingOptions& options,
                                  const TokenCounter& count_tokens = {});

// Sentence ranges [begin, end) of text (ends after the terminating punctuation).
std::vector<std::pair<std::size_t, std::size_t>> split_sentences(std::string_view text);

// Number of Unicode code points in valid UTF-8.
std::size_t count_chars(std::string_view s);

}  // namespace hearth::rag
