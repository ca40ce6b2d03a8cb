// Splitting loaded documents into the chunks a bank indexes. Every chunk is a byte range of the
// document's extracted text, with its pages and the path of headings above it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hearth/rag/loaders.hpp"

namespace hearth::rag {

struct ChunkingOptions {
  // kStructural: headings start chunks; paragraphs are packed up to the budget, then split on
  // sentences, then on whitespace. kCharacters: the original lab's fixed windows with overlap.
  enum class Mode { kStructural, kCharacters };
  Mode mode = Mode::kStructural;
  std::size_t budget = 1000;  // characters (Unicode code points) per chunk
  std::size_t overlap = 50;   // kCharacters only

  static ChunkingOptions original() { return {Mode::kCharacters, 256, 50}; }
  std::string describe() const;  // "structural/1000" or "characters/256/50"
};

struct Chunk {
  std::size_t begin = 0;  // byte range in LoadedDocument::text
  std::size_t end = 0;
  int page_first = 0;  // 0 when the document has no pages
  int page_last = 0;
  std::string heading_path;  // "Guide > Install > Linux"
  std::string text;
};

// Throws Error(kInvalidArgument) for a zero budget or an overlap not below the budget.
std::vector<Chunk> chunk_document(const LoadedDocument& doc, const ChunkingOptions& options);

// Sentence ranges [begin, end) of text (ends after the terminating punctuation).
std::vector<std::pair<std::size_t, std::size_t>> split_sentences(std::string_view text);

// Number of Unicode code points in valid UTF-8.
std::size_t count_chars(std::string_view s);

}  // namespace hearth::rag
