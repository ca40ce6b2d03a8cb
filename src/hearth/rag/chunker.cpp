#include "hearth/rag/chunker.hpp"

#include <algorithm>
#include <limits>

#include "hearth/core/error.hpp"

namespace hearth::rag {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}
bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// Byte offset after advancing n code points from pos (clamped to the end).
std::size_t advance_chars(std::string_view s, std::size_t pos, std::size_t n) {
  while (pos < s.size() && n > 0) {
    ++pos;
    while (pos < s.size() && is_continuation(s[pos])) ++pos;
    --n;
  }
  return pos;
}

// Heading paths in force from each heading block on.
class HeadingIndex {
 public:
  explicit HeadingIndex(const LoadedDocument& doc) {
    if (doc.title_in_headings) root_ = doc.title;
    std::vector<std::pair<int, std::string>> stack;
    for (const Block& b : doc.blocks) {
      if (b.heading_level == 0) continue;
      while (!stack.empty() && stack.back().first >= b.heading_level) stack.pop_back();
      stack.emplace_back(b.heading_level, doc.text.substr(b.begin, b.end - b.begin));
      std::string path = root_;
      for (const auto& [level, text] : stack) {
        if (!path.empty()) path += " > ";
        path += text;
      }
      starts_.push_back(b.begin);
      paths_.push_back(std::move(path));
    }
  }

  const std::string& at(std::size_t offset) const {
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), offset);
    if (it == starts_.begin()) return root_;
    return paths_[static_cast<std::size_t>(it - starts_.begin()) - 1];
  }

 private:
  std::string root_;  // the title when it leads every path
  std::vector<std::size_t> starts_;
  std::vector<std::string> paths_;
};

class Emitter {
 public:
  Emitter(const LoadedDocument& doc, const HeadingIndex& headings)
      : doc_(doc), headings_(headings) {}

  void emit(std::size_t begin, std::size_t end) {
    while (begin < end && is_space(doc_.text[begin])) ++begin;
    while (end > begin && is_space(doc_.text[end - 1])) --end;
    if (begin == end) return;
    Chunk c;
    c.begin = begin;
    c.end = end;
    c.page_first = doc_.page_at(begin);
    c.page_last = doc_.page_at(end - 1);
    c.heading_path = headings_.at(begin);
    c.text = doc_.text.substr(begin, end - begin);
    chunks_.push_back(std::move(c));
  }

  std::vector<Chunk> take() { return std::move(chunks_); }

 private:
  const LoadedDocument& doc_;
  const HeadingIndex& headings_;
  std::vector<Chunk> chunks_;
};

// How long a piece of text is: code points, or the embedding model's tokens.
class Measure {
 public:
  explicit Measure(const TokenCounter* tokens) : tokens_(tokens) {}

  std::size_t operator()(std::string_view s) const {
    return tokens_ != nullptr ? (*tokens_)(s) : count_chars(s);
  }

  // The end of the longest prefix of text[begin, end) within budget, in whole characters and at
  // least one: end itself when all of it fits. The tokenizer sees only prefixes a few times
  // the length of the one found: a first window, then probes where the tokens counted so far
  // put the budget's end (a little past it, to bracket it), then bisection of the bracket. So
  // cutting a long unpunctuated run costs time in proportion to its length.
  std::size_t fit(std::string_view text, std::size_t begin, std::size_t end,
                  std::size_t budget) const {
    if (tokens_ == nullptr) return std::min(advance_chars(text, begin, budget), end);
    std::size_t lo = 1;                                        // a prefix of lo characters fits
    std::size_t hi = std::numeric_limits<std::size_t>::max();  // none of hi or more does
    std::size_t probe = 4 * budget;
    int estimates = 0;
    for (;;) {
      const std::size_t cut = std::min(advance_chars(text, begin, probe), end);
      const std::size_t n = (*tokens_)(text.substr(begin, cut - begin));
      if (n <= budget) {
        if (cut == end) return end;
        lo = probe;
      } else {
        hi = probe;
      }
      if (hi - lo <= 1) break;
      const std::size_t step = std::max<std::size_t>(1, probe / 16);
      if (hi == std::numeric_limits<std::size_t>::max()) {
        // Grow at most twofold: no probe is more than about twice the prefix that fits.
        probe = std::min(std::max(probe * budget / std::max<std::size_t>(n, 1), probe) + step,
                         2 * probe);
      } else if (estimates++ < 3) {
        const std::size_t estimate = probe * budget / std::max<std::size_t>(n, 1);
        probe = n <= budget ? std::max(estimate, lo + step) : std::min(estimate, hi - step);
        probe = std::clamp(probe, lo + 1, hi - 1);
      } else {
        probe = lo + (hi - lo) / 2;
      }
    }
    return std::min(advance_chars(text, begin, lo), end);
  }

 private:
  const TokenCounter* tokens_;
};

// Pieces of [begin, end) within the budget: whole, else sentences, else windows cut at
// whitespace where possible.
void pieces_of(std::string_view text, std::size_t begin, std::size_t end, std::size_t budget,
               const Measure& measure, std::vector<std::pair<std::size_t, std::size_t>>& out) {
  if (measure(text.substr(begin, end - begin)) <= budget) {
    out.emplace_back(begin, end);
    return;
  }
  for (auto [sb, se] : split_sentences(text.substr(begin, end - begin))) {
    sb += begin;
    se += begin;
    while (se > sb) {
      const std::size_t limit = measure.fit(text, sb, se, budget);
      if (limit == se) {
        out.emplace_back(sb, se);
        break;
      }
      std::size_t cut = limit;
      const std::size_t half =
          advance_chars(text, sb, count_chars(text.substr(sb, limit - sb)) / 2);
      while (cut > half && !is_space(text[cut - 1])) --cut;
      if (cut <= half) cut = limit;
      out.emplace_back(sb, cut);
      sb = cut;
      while (sb < se && is_space(text[sb])) ++sb;
    }
  }
}

}  // namespace

std::string ChunkingOptions::describe() const {
  if (mode == Mode::kCharacters) {
    return "characters/" + std::to_string(budget) + "/" + std::to_string(overlap);
  }
  return "structural/" + std::to_string(budget) + (unit == Unit::kTokens ? "-tokens" : "");
}

std::size_t count_chars(std::string_view s) {
  std::size_t n = 0;
  for (const char c : s) n += is_continuation(c) ? 0 : 1;
  return n;
}

std::vector<std::pair<std::size_t, std::size_t>> split_sentences(std::string_view text) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t start = 0;
  while (start < text.size() && is_space(text[start])) ++start;
  for (std::size_t i = start; i < text.size(); ++i) {
    const char c = text[i];
    bool boundary = false;
    std::size_t end = i + 1;
    if (c == '.' || c == '!' || c == '?') {
      while (end < text.size() && (text[end] == '"' || text[end] == '\'' || text[end] == ')')) {
        ++end;
      }
      if (end == text.size()) {
        boundary = true;
      } else if (is_space(text[end])) {
        std::size_t next = end;
        while (next < text.size() && is_space(text[next])) ++next;
        boundary = next == text.size() || !(text[next] >= 'a' && text[next] <= 'z');
      }
    } else if (c == '\n' && i + 1 < text.size() && text[i + 1] == '\n') {
      boundary = true;
      end = i;
    }
    if (boundary) {
      if (end > start) out.emplace_back(start, end);
      start = std::max(end, i + 1);
      while (start < text.size() && is_space(text[start])) ++start;
      i = start == 0 ? 0 : start - 1;
    }
  }
  std::size_t end = text.size();
  while (end > start && is_space(text[end - 1])) --end;
  if (end > start) out.emplace_back(start, end);
  return out;
}

std::vector<Chunk> chunk_document(const LoadedDocument& doc, const ChunkingOptions& options,
                                  const TokenCounter& count_tokens) {
  if (options.budget == 0) {
    throw Error(ErrorCode::kInvalidArgument, "chunk size must be at least one character");
  }
  const bool tokens = options.unit == ChunkingOptions::Unit::kTokens;
  if (tokens && (options.mode != ChunkingOptions::Mode::kStructural || !count_tokens)) {
    throw Error(ErrorCode::kInvalidArgument,
                "a token budget needs structural chunking and an embedding model's tokenizer");
  }
  const Measure measure(tokens ? &count_tokens : nullptr);
  const HeadingIndex headings(doc);
  Emitter emitter(doc, headings);
  const std::string_view text = doc.text;
  if (options.mode == ChunkingOptions::Mode::kCharacters) {
    if (options.overlap >= options.budget) {
      throw Error(ErrorCode::kInvalidArgument, "chunk overlap must be smaller than the chunk size");
    }
    const std::size_t step = options.budget - options.overlap;
    for (std::size_t pos = 0; pos < text.size(); pos = advance_chars(text, pos, step)) {
      emitter.emit(pos, advance_chars(text, pos, options.budget));
      if (advance_chars(text, pos, options.budget) >= text.size()) break;
    }
    return emitter.take();
  }
  std::size_t cur_begin = 0;
  std::size_t cur_end = 0;
  std::size_t cur_size = 0;
  bool open = false;
  auto flush = [&] {
    if (open) emitter.emit(cur_begin, cur_end);
    open = false;
  };
  std::vector<std::pair<std::size_t, std::size_t>> pieces;
  for (const Block& b : doc.blocks) {
    if (b.heading_level > 0) {
      flush();
      continue;
    }
    pieces.clear();
    pieces_of(text, b.begin, b.end, options.budget, measure, pieces);
    for (const auto& [pb, pe] : pieces) {
      const std::size_t piece_size = measure(text.substr(pb, pe - pb));
      if (open) {
        const std::size_t joined = cur_size + measure(text.substr(cur_end, pb - cur_end));
        if (joined + piece_size > options.budget) {
          flush();
        } else {
          cur_size = joined + piece_size;
          cur_end = pe;
          continue;
        }
      }
      open = true;
      cur_begin = pb;
      cur_end = pe;
      cur_size = piece_size;
    }
  }
  flush();
  return emitter.take();
}

}  // namespace hearth::rag
