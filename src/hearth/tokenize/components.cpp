// Normalizers, pre-tokenizers and decoders (see pipeline.hpp).
#include <algorithm>
#include <array>
#include <utility>

#include "hearth/tokenize/pipeline.hpp"
#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize::detail {
namespace {

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool is_bert_punctuation(char32_t c) {
  if (c < 0x80) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  }
  return unicode::is_punctuation(c);
}

// Byte ranges [begin, end) of the matches of regex in s.
std::vector<std::pair<std::size_t, std::size_t>> regex_matches(const Regex& re,
                                                               std::string_view s) {
  std::u32string text;
  std::vector<std::size_t> offset;  // byte offset of each code point, plus the end
  text.reserve(s.size());
  offset.reserve(s.size() + 1);
  std::size_t i = 0;
  while (i < s.size()) {
    offset.push_back(i);
    text.push_back(unicode::next(s, i));
  }
  offset.push_back(s.size());
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t from = 0;
  while (from <= text.size()) {
    const auto m = re.find(text, from);
    if (!m) break;
    if (m->second == m->first) {  // empty matches split nothing
      from = m->first + 1;
      continue;
    }
    out.emplace_back(offset[m->first], offset[m->second]);
    from = m->second;
  }
  return out;
}

// Hand-written scanners for the pre-tokenization patterns of GPT-2, Llama-3 and Qwen2: the same
// leftmost-first, greedy semantics as the Regex matcher, with \p{L}, \p{N} and \s from the same
// Unicode tables, on UTF-8 directly with an ASCII table. Every position starts a match of these
// patterns, so the matches tile the text.
enum class FastPattern { kNone, kGpt2, kLlama3, kQwen2 };

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class FastScanner {
 public:
  FastScanner(FastPattern kind, std::string_view s) : kind_(kind), s_(s) {}

  void run(std::vector<std::pair<std::size_t, std::size_t>>& out) const {
    std::size_t pos = 0;
    while (pos < s_.size()) {
      const std::size_t end = kind_ == FastPattern::kGpt2 ? gpt2_at(pos) : llama3_at(pos);
      out.emplace_back(pos, end);
      pos = end;
    }
  }

 private:
  enum Class : std::uint8_t { kL, kN, kS, kO, kEnd };
  struct Ch {
    Class cls;
    std::size_t len;
    char32_t cp;
  };
  static Class classify(char32_t c) {
    return unicode::is_letter(c)       ? kL
           : unicode::is_number(c)     ? kN
           : unicode::is_whitespace(c) ? kS
                                       : kO;
  }
  static const std::array<Class, 128>& ascii() {
    static const std::array<Class, 128> table = [] {
      std::array<Class, 128> t{};
      for (char32_t c = 0; c < 128; ++c) t[c] = classify(c);
      return t;
    }();
    return table;
  }
  Ch at(std::size_t i) const {
    if (i >= s_.size()) return {kEnd, 0, 0};
    const auto b = static_cast<unsigned char>(s_[i]);
    if (b < 0x80) return {ascii()[b], 1, b};
    std::size_t j = i;
    const char32_t c = unicode::next(s_, j);
    return {classify(c), j - i, c};
  }
  // End of the run of class cls starting at i.
  std::size_t run_end(std::size_t i, Class cls) const {
    const auto& table = ascii();
    while (i < s_.size()) {
      const auto b = static_cast<unsigned char>(s_[i]);
      if (b < 0x80) {
        if (table[b] != cls) return i;
        ++i;
        continue;
      }
      const Ch c = at(i);
      if (c.cls != cls) return i;
      i += c.len;
    }
    return i;
  }
  std::size_t newlines_end(std::size_t i) const {
    while (i < s_.size() && (s_[i] == '\r' || s_[i] == '\n')) ++i;
    return i;
  }
  // 's 't 're 've 'm 'll 'd after the apostrophe at i - 1: the length matched, or 0.
  std::size_t contraction(std::size_t i, bool icase) const {
    auto ch = [&](std::size_t k) -> char {
      if (i + k >= s_.size()) return '\0';
      const char c = s_[i + k];
      return icase && c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
    };
    const char a = ch(0);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 1;
    const char b = ch(1);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 2;
    return 0;
  }
  // The whitespace run [pos, run_to): \s+(?!\S), else \s+.
  std::size_t whitespace_at(std::size_t pos, std::size_t run_to) const {
    if (run_to == s_.size()) return run_to;
    std::size_t last = run_to - 1;  // the start of the run's last character
    while (last > pos && (static_cast<unsigned char>(s_[last]) & 0xC0) == 0x80) --last;
    return last > pos ? last : run_to;
  }

  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  std::size_t gpt2_at(std::size_t pos) const {
    const Ch c = at(pos);
    if (c.cp == '\'') {
      if (const std::size_t n = contraction(pos + 1, false)) return pos + 1 + n;
    }
    const std::size_t q = pos + c.len;
    if (c.cp == ' ') {
      const Ch d = at(q);
      if (d.cls == kL || d.cls == kN || d.cls == kO) return run_end(q + d.len, d.cls);
    }
    if (c.cls != kS) return run_end(q, c.cls);
    return whitespace_at(pos, run_end(q, kS));
  }

  std::size_t llama3_at(std::size_t pos) const {
    const Ch c = at(pos);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (c.cp == '\'') {
      if (const std::size_t n = contraction(pos + 1, true)) return pos + 1 + n;
    }
    const std::size_t q = pos + c.len;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c.cls == kL) return run_end(q, kL);
    if (c.cls != kN && c.cp != '\r' && c.cp != '\n') {
      const Ch d = at(q);
      if (d.cls == kL) return run_end(q + d.len, kL);
    }
    // \p{N}{1,3} (Qwen2: \p{N})
    if (c.cls == kN) {
      std::size_t e = q;
      for (int k = 1; k < (kind_ == FastPattern::kLlama3 ? 3 : 1); ++k) {
        const Ch d = at(e);
        if (d.cls != kN) break;
        e += d.len;
      }
      return e;
    }
    //  ?[^\s\p{L}\p{N}]+[\r\n]*
    if (c.cp == ' ') {
      const Ch d = at(q);
      if (d.cls == kO) return newlines_end(run_end(q + d.len, kO));
    }
    if (c.cls == kO) return newlines_end(run_end(q, kO));
    // c is whitespace. \s*[\r\n]+ ends after the run's last line break; then \s+(?!\S), \s+.
    const std::size_t run_to = run_end(q, kS);
    for (std::size_t k = run_to; k > pos; --k) {
      if (s_[k - 1] == '\r' || s_[k - 1] == '\n') return k;
    }
    return whitespace_at(pos, run_to);
  }

  FastPattern kind_;
  std::string_view s_;
};

FastPattern fast_pattern(std::string_view pattern) {
  if (pattern == kGpt2Pattern) return FastPattern::kGpt2;
  if (pattern == kLlama3Pattern) return FastPattern::kLlama3;
  if (pattern == kQwen2Pattern) return FastPattern::kQwen2;
  return FastPattern::kNone;
}

// The matches of re (or of the equivalent fast scanner) in s, as byte ranges.
std::vector<std::pair<std::size_t, std::size_t>> pattern_matches(const Regex& re, FastPattern fast,
                                                                 std::string_view s) {
  if (fast == FastPattern::kNone) return regex_matches(re, s);
  std::vector<std::pair<std::size_t, std::size_t>> out;
  FastScanner(fast, s).run(out);
  return out;
}

std::vector<std::pair<std::size_t, std::size_t>> literal_matches(std::string_view s,
                                                                 std::string_view pattern) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  if (pattern.empty()) return out;
  std::size_t from = 0;
  while (true) {
    const std::size_t at = s.find(pattern, from);
    if (at == std::string_view::npos) break;
    out.emplace_back(at, at + pattern.size());
    from = at + pattern.size();
  }
  return out;
}

template <class Pred>
std::vector<std::pair<std::size_t, std::size_t>> char_matches(std::string_view s, Pred pred) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t start = i;
    const char32_t c = unicode::next(s, i);
    if (pred(c)) out.emplace_back(start, i);
  }
  return out;
}

// Applies HF's SplitDelimiterBehavior to s given its matches; appends the pieces' byte ranges
// (possibly empty) to result.
void split_ranges(std::string_view s,
                  const std::vector<std::pair<std::size_t, std::size_t>>& matches,
                  SplitBehavior behavior, bool invert,
                  std::vector<std::pair<std::size_t, std::size_t>>& result) {
  struct Seg {
    std::size_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
  std::size_t pos = 0;
  for (const auto& [b, e] : matches) {
    if (b > pos) segs.push_back({pos, b, false});
    segs.push_back({b, e, true});
    pos = e;
  }
  if (pos < s.size()) segs.push_back({pos, s.size(), false});
  if (invert) {
    for (auto& g : segs) g.match = !g.match;
  }
  bool previous = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& g : segs) {
        if (!g.match) result.emplace_back(g.b, g.e);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const auto& g : segs) result.emplace_back(g.b, g.e);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& g : segs) {
        if (g.match && !previous && !result.empty()) {
          result.back().second = g.e;
        } else {
          result.emplace_back(g.b, g.e);
        }
        previous = g.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->match && !previous && !result.empty()) {
          result.back().first = it->b;
        } else {
          result.emplace_back(it->b, it->e);
        }
        previous = it->match;
      }
      std::reverse(result.begin(), result.end());
      break;
    case SplitBehavior::kContiguous:
      for (const auto& g : segs) {
        if (g.match == previous && !result.empty()) {
          result.back().second = g.e;
        } else {
          result.emplace_back(g.b, g.e);
        }
        previous = g.match;
      }
      break;
  }
}

void split_by(std::string_view s, const std::vector<std::pair<std::size_t, std::size_t>>& matches,
              SplitBehavior behavior, bool invert, std::vector<std::string>& out) {
  std::vector<std::pair<std::size_t, std::size_t>> result;
  split_ranges(s, matches, behavior, invert, result);
  for (const auto& [b, e] : result) {
    if (e > b) out.emplace_back(s.substr(b, e - b));
  }
}

template <class F>
void split_each(std::vector<std::string>& pieces, F&& f) {
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const auto& p : pieces) f(p, out);
  pieces = std::move(out);
}

std::string replace_all(std::string_view s, std::string_view pattern, std::string_view content) {
  if (pattern.empty()) return std::string(s);
  std::string out;
  std::size_t from = 0;
  while (true) {
    const std::size_t at = s.find(pattern, from);
    if (at == std::string_view::npos) break;
    out.append(s.substr(from, at - from));
    out.append(content);
    from = at + pattern.size();
  }
  out.append(s.substr(from));
  return out;
}

class Replacer {
 public:
  Replacer(std::string pattern, bool is_regex, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {
    if (is_regex) regex_.emplace(pattern_);
  }
  std::string apply(std::string_view s) const {
    if (!regex_) return replace_all(s, pattern_, content_);
    std::string out;
    std::size_t pos = 0;
    for (const auto& [b, e] : regex_matches(*regex_, s)) {
      out.append(s.substr(pos, b - pos));
      out.append(content_);
      pos = e;
    }
    out.append(s.substr(pos));
    return out;
  }

 private:
  std::string pattern_;
  std::string content_;
  std::optional<Regex> regex_;
};

// ---- normalizers ----------------------------------------------------------------------------

class BertNormalizer final : public Normalizer {
 public:
  BertNormalizer(bool clean, bool chinese, bool strip, bool lower)
      : clean_(clean), chinese_(chinese), strip_(strip), lower_(lower) {
    // What each ASCII byte becomes: controls dropped, \t \n \r -> space, A-Z lowered.
    for (int b = 0; b < 128; ++b) {
      int c = b;
      if (clean_) {
        if (b == 0 || (b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7F) c = kDrop;
        if (b == '\t' || b == '\n' || b == '\r') c = ' ';
      }
      if (lower_ && c >= 'A' && c <= 'Z') c += 32;
      ascii_[b] = static_cast<std::uint16_t>(c);
    }
  }
  void normalize(std::string& s) const override {
    // Non-ASCII runs go through the Unicode steps; ASCII characters are NFD starters, so
    // handling the runs separately gives exactly the result of handling the whole text.
    std::string out, run;
    out.reserve(s.size() + 8);
    auto flush_run = [&] {
      if (run.empty()) return;
      if (strip_) {
        const std::string nfd = unicode::normalize(run, unicode::Form::kNFD);
        run.clear();
        std::size_t j = 0;
        while (j < nfd.size()) {
          const char32_t c = unicode::next(nfd, j);
          if (!unicode::is_mark_nonspacing(c)) unicode::append_utf8(run, c);
        }
      }
      out += lower_ ? unicode::lowercase(run) : run;
      run.clear();
    };
    std::size_t i = 0;
    while (i < s.size()) {
      const auto b = static_cast<unsigned char>(s[i]);
      if (b < 0x80) {
        flush_run();
        // The whole ASCII run through the table, dropped characters squeezed out.
        std::size_t j = i;
        while (j < s.size() && static_cast<unsigned char>(s[j]) < 0x80) ++j;
        const std::size_t at = out.size();
        out.resize(at + (j - i));
        char* d = out.data() + at;
        std::size_t w = 0;
        for (std::size_t k = i; k < j; ++k) {
          const std::uint16_t c = ascii_[static_cast<unsigned char>(s[k])];
          d[w] = static_cast<char>(c);
          w += c != kDrop ? 1 : 0;
        }
        out.resize(at + w);
        i = j;
        continue;
      }
      char32_t c = unicode::next(s, i);
      if (clean_) {
        if (c == 0xFFFD || unicode::is_other(c)) continue;
        if (unicode::is_whitespace(c)) {
          flush_run();
          out.push_back(' ');
          continue;
        }
      }
      if (chinese_ && unicode::is_cjk_ideograph(c)) {
        flush_run();
        out.push_back(' ');
        unicode::append_utf8(run, c);  // NFD maps compatibility ideographs (U+F900...)
        flush_run();
        out.push_back(' ');
      } else {
        unicode::append_utf8(run, c);
      }
    }
    flush_run();
    s = std::move(out);
  }

 private:
  static constexpr std::uint16_t kDrop = 0x100;
  bool clean_, chinese_, strip_, lower_;
  std::uint16_t ascii_[128] = {};
};

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(unicode::Form form) : form_(form) {}
  void normalize(std::string& s) const override { s = unicode::normalize(s, form_); }

 private:
  unicode::Form form_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  void normalize(std::string& s) const override { s = unicode::lowercase(s); }
};

class StripAccentsNormalizer final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    if (is_ascii(s)) return;
    std::string out;
    std::size_t i = 0;
    while (i < s.size()) {
      const char32_t c = unicode::next(s, i);
      if (!unicode::has_category(c, "Mn") && !unicode::has_category(c, "Mc") &&
          !unicode::has_category(c, "Me")) {
        unicode::append_utf8(out, c);
      }
    }
    s = std::move(out);
  }
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  explicit ReplaceNormalizer(Replacer r) : r_(std::move(r)) {}
  void normalize(std::string& s) const override { s = r_.apply(s); }

 private:
  Replacer r_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    std::size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        std::size_t j = b;
        if (!unicode::is_whitespace(unicode::next(s, j))) break;
        b = j;
      }
    }
    if (right_) {
      while (e > b) {
        std::size_t start = e - 1;
        while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        std::size_t j = start;
        if (!unicode::is_whitespace(unicode::next(s, j))) break;
        e = start;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<NormalizerPtr> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<NormalizerPtr> parts_;
};

// ---- pre-tokenizers -------------------------------------------------------------------------

class BertPreTokenizer final : public PreTokenizer {
 public:
  void split(std::vector<std::string>& pieces, bool) const override {
    std::vector<std::string> out;
    std::vector<std::string_view> views;
    for (const auto& p : pieces) {
      views.clear();
      split_views(p, views);
      for (const auto v : views) out.emplace_back(v);
    }
    pieces = std::move(out);
  }

  bool split_views(std::string_view p, std::vector<std::string_view>& out) const override {
    // ASCII classes: 0 word, 1 space, 2 punctuation.
    static const std::array<std::uint8_t, 128> kClass = [] {
      std::array<std::uint8_t, 128> t{};
      for (char32_t b = 0; b < 128; ++b) {
        t[b] = (b == ' ' || (b >= 0x09 && b <= 0x0D)) ? 1 : is_bert_punctuation(b) ? 2 : 0;
      }
      return t;
    }();
    std::size_t i = 0, start = 0;
    auto flush = [&](std::size_t end) {
      if (end > start) out.push_back(p.substr(start, end - start));
    };
    while (i < p.size()) {
      const std::size_t at = i;
      const auto b = static_cast<unsigned char>(p[i]);
      bool space, punct;
      if (b < 0x80) {
        ++i;
        const std::uint8_t k = kClass[b];
        if (k == 0) continue;
        space = k == 1;
        punct = k == 2;
      } else {
        const char32_t c = unicode::next(p, i);
        space = unicode::is_whitespace(c);
        punct = !space && is_bert_punctuation(c);
      }
      if (space) {
        flush(at);
        start = i;
      } else if (punct) {
        flush(at);
        out.push_back(p.substr(at, i - at));
        start = i;
      }
    }
    flush(p.size());
    return true;
  }
};

class RegexSplitPreTokenizer final : public PreTokenizer {
 public:
  RegexSplitPreTokenizer(std::string pattern, bool is_regex, SplitBehavior behavior, bool invert)
      : literal_(std::move(pattern)), behavior_(behavior), invert_(invert) {
    if (is_regex) {
      regex_.emplace(literal_);
      fast_ = fast_pattern(literal_);
    }
  }
  void split(std::vector<std::string>& pieces, bool) const override {
    split_each(pieces, [&](const std::string& p, std::vector<std::string>& out) {
      split_by(p, regex_ ? pattern_matches(*regex_, fast_, p) : literal_matches(p, literal_),
               behavior_, invert_, out);
    });
  }
  bool split_views(std::string_view s, std::vector<std::string_view>& out) const override {
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    split_ranges(s, regex_ ? pattern_matches(*regex_, fast_, s) : literal_matches(s, literal_),
                 behavior_, invert_, ranges);
    for (const auto& [b, e] : ranges) {
      if (e > b) out.push_back(s.substr(b, e - b));
    }
    return true;
  }

 private:
  std::string literal_;
  std::optional<Regex> regex_;
  FastPattern fast_ = FastPattern::kNone;
  SplitBehavior behavior_;
  bool invert_;
};

class WhitespaceSplitPreTokenizer final : public PreTokenizer {
 public:
  void split(std::vector<std::string>& pieces, bool) const override {
    split_each(pieces, [](const std::string& p, std::vector<std::string>& out) {
      split_by(p, char_matches(p, unicode::is_whitespace), SplitBehavior::kRemoved, false, out);
    });
  }
};

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex) : prefix_(add_prefix_space) {
    if (use_regex) regex_.emplace(kGpt2Pattern);
    for (int b = 0; b < 256; ++b) {
      const std::string& u = byte_to_unicode(static_cast<std::uint8_t>(b));
      length_[b] = u.size();
      u.copy(table_[b], u.size());
    }
  }
  bool split_mapped(std::string_view p, std::string& buf,
                    std::vector<std::pair<std::size_t, std::size_t>>& spans) const override {
    std::string prefixed;
    std::string_view s = p;
    if (prefix_ && (p.empty() || p[0] != ' ')) {
      prefixed = ' ' + std::string(p);
      s = prefixed;
    }
    auto emit = [&](std::string_view piece) {
      const std::size_t start = buf.size();
      buf.resize(start + 2 * piece.size());  // each byte becomes one or two
      char* d = buf.data() + start;
      for (char ch : piece) {
        const auto b = static_cast<std::uint8_t>(ch);
        d[0] = table_[b][0];
        d[1] = table_[b][1];
        d += length_[b];
      }
      buf.resize(static_cast<std::size_t>(d - buf.data()));
      spans.emplace_back(start, buf.size());
    };
    isolated_pieces(s, emit);
    return true;
  }

  void split(std::vector<std::string>& pieces, bool) const override {
    split_each(pieces, [&](const std::string& p, std::vector<std::string>& out) {
      std::string prefixed;
      std::string_view s = p;
      if (prefix_ && (p.empty() || p[0] != ' ')) {
        prefixed = ' ' + p;
        s = prefixed;
      }
      auto emit = [&](std::string_view piece) {
        std::string mapped;
        mapped.reserve(piece.size() * 2);
        for (char ch : piece) {
          const auto b = static_cast<std::uint8_t>(ch);
          mapped.append(table_[b], length_[b]);
        }
        out.push_back(std::move(mapped));
      };
      isolated_pieces(s, emit);
    });
  }

 private:
  // Calls emit on every match of the pattern in s and on every gap between matches (Isolated);
  // on the whole of s when there is no pattern.
  template <class Emit>
  void isolated_pieces(std::string_view s, Emit&& emit) const {
    if (!regex_) {
      if (!s.empty()) emit(s);
      return;
    }
    std::size_t pos = 0;
    for (const auto& [b, e] : pattern_matches(*regex_, FastPattern::kGpt2, s)) {
      if (b > pos) emit(s.substr(pos, b - pos));
      emit(s.substr(b, e - b));
      pos = e;
    }
    if (pos < s.size()) emit(s.substr(pos));
  }

  bool prefix_;
  std::optional<Regex> regex_;
  char table_[256][2] = {};  // UTF-8 of the char standing for each byte (at most 2 bytes)
  std::size_t length_[256] = {};
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void split(std::vector<std::string>& pieces, bool first) const override {
    std::vector<std::string> out;
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      std::string s = replace_all(pieces[k], " ", rep_);
      const bool prepend = scheme_ == PrependScheme::kAlways ||
                           (scheme_ == PrependScheme::kFirst && first && k == 0);
      // Hugging Face prepends through the first character: an empty piece stays empty.
      if (prepend && !s.empty() && s.compare(0, rep_.size(), rep_) != 0) s.insert(0, rep_);
      if (split_) {
        split_by(s, literal_matches(s, rep_), SplitBehavior::kMergedWithNext, false, out);
      } else if (!s.empty()) {
        out.push_back(std::move(s));
      }
    }
    pieces = std::move(out);
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

class DigitsPreTokenizer final : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void split(std::vector<std::string>& pieces, bool) const override {
    split_each(pieces, [&](const std::string& p, std::vector<std::string>& out) {
      split_by(p, char_matches(p, [](char32_t c) { return c >= '0' && c <= '9'; }),
               individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, out);
    });
  }

 private:
  bool individual_;
};

class PunctuationPreTokenizer final : public PreTokenizer {
 public:
  explicit PunctuationPreTokenizer(SplitBehavior behavior) : behavior_(behavior) {}
  void split(std::vector<std::string>& pieces, bool) const override {
    split_each(pieces, [&](const std::string& p, std::vector<std::string>& out) {
      split_by(p, char_matches(p, is_bert_punctuation), behavior_, false, out);
    });
  }

 private:
  SplitBehavior behavior_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<PreTokenizerPtr> parts) : parts_(std::move(parts)) {}
  void split(std::vector<std::string>& pieces, bool first) const override {
    for (const auto& p : parts_) p->split(pieces, first);
  }
  bool split_views(std::string_view s, std::vector<std::string_view>& out) const override {
    std::vector<std::string_view> last;
    // Probe the last part on an empty text before cutting the real one.
    if (parts_.empty() || !parts_.back()->split_views({}, last)) return false;
    if (!cut_all_but_last(s, last)) return false;
    for (const auto v : last) {
      if (!parts_.back()->split_views(v, out)) return false;  // fails on the first, adding none
    }
    return true;
  }
  bool split_mapped(std::string_view s, std::string& buf,
                    std::vector<std::pair<std::size_t, std::size_t>>& spans) const override {
    std::vector<std::string_view> last;
    std::string probe;
    std::vector<std::pair<std::size_t, std::size_t>> probe_spans;
    if (parts_.empty() || !parts_.back()->split_mapped({}, probe, probe_spans)) return false;
    if (!cut_all_but_last(s, last)) return false;
    for (const auto v : last) {
      if (!parts_.back()->split_mapped(v, buf, spans)) return false;
    }
    return true;
  }

 private:
  // The pieces that the parts before the last make of s, when they all only cut.
  bool cut_all_but_last(std::string_view s, std::vector<std::string_view>& pieces) const {
    if (parts_.empty()) return false;
    pieces.assign(1, s);
    std::vector<std::string_view> next;
    for (std::size_t k = 0; k + 1 < parts_.size(); ++k) {
      next.clear();
      for (const auto v : pieces) {
        if (!parts_[k]->split_views(v, next)) return false;
      }
      pieces.swap(next);
    }
    return true;
  }

 public:
 private:
  std::vector<PreTokenizerPtr> parts_;
};

// ---- decoders -------------------------------------------------------------------------------

class WordPieceDecoder final : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup)
      : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void decode(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0) {
          t.erase(0, prefix_.size());
        } else {
          t = ' ' + t;
        }
      }
      if (cleanup_) t = cleanup_tokenization(std::move(t));
    }
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class ByteLevelDecoder final : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const std::size_t mark = bytes.size();
      std::size_t i = 0;
      bool all = true;
      while (i < t.size()) {
        const auto b = unicode_to_byte(unicode::next(t, i));
        if (!b) {
          all = false;
          break;
        }
        bytes.push_back(static_cast<char>(*b));
      }
      if (!all) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, unicode::sanitize(bytes));
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : rep_(std::move(replacement)), scheme_(scheme) {}
  void decode(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(tokens[i], rep_, " ");
      if (i == 0 && scheme_ != PrependScheme::kNever && !tokens[i].empty() && tokens[i][0] == ' ') {
        tokens[i].erase(0, 1);
      }
    }
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
};

std::optional<std::uint8_t> byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return std::nullopt;
  int v = 0;
  for (std::size_t k = 3; k < 5; ++k) {
    const char c = t[k];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return std::nullopt;
    v = v * 16 + d;
  }
  return static_cast<std::uint8_t>(v);
}

class ByteFallbackDecoder final : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (unicode::sanitize(pending) == pending) {
        out.push_back(pending);
      } else {
        for (std::size_t k = 0; k < pending.size(); ++k) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (auto& t : tokens) {
      if (const auto b = byte_token(t)) {
        pending.push_back(static_cast<char>(*b));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (auto& t : tokens) {
      std::size_t b = 0, e = t.size();
      for (std::size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0; ++k) {
        b += content_.size();
      }
      for (std::size_t k = 0; k < stop_ && e >= b + content_.size() &&
                              t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k) {
        e -= content_.size();
      }
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  explicit ReplaceDecoder(Replacer r) : r_(std::move(r)) {}
  void decode(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = r_.apply(t);
  }

 private:
  Replacer r_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<DecoderPtr> parts) : parts_(std::move(parts)) {}
  void decode(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode(tokens);
  }

 private:
  std::vector<DecoderPtr> parts_;
};

struct ByteTables {
  std::array<std::string, 256> to_unicode;
  std::array<std::int16_t, 324> to_byte{};  // chars 0..323 cover the whole table
  ByteTables() {
    to_byte.fill(-1);
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const char32_t c = printable ? static_cast<char32_t>(b) : extra++;
      to_unicode[static_cast<std::size_t>(b)] = unicode::to_utf8(c);
      to_byte[c] = static_cast<std::int16_t>(b);
    }
  }
};

const ByteTables& byte_tables() {
  static const ByteTables tables;
  return tables;
}

}  // namespace

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const std::string& byte_to_unicode(std::uint8_t b) {
  return byte_tables().to_unicode[b];
}

std::optional<std::uint8_t> unicode_to_byte(char32_t c) {
  const auto& t = byte_tables().to_byte;
  if (c >= t.size() || t[c] < 0) return std::nullopt;
  return static_cast<std::uint8_t>(t[c]);
}

std::string cleanup_tokenization(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},    {" ,", ","},
      {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},  {" do not", " don't"},
      {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    if (s.find(from) != std::string::npos) s = replace_all(s, from, to);
  }
  return s;
}

std::size_t PostProcessor::added(bool is_pair) const {
  std::size_t n = 0;
  for (const auto& p : is_pair ? pair : single) {
    if (!p.is_sequence) n += p.ids.size();
  }
  return n;
}

NormalizerPtr make_bert_normalizer(bool clean_text, bool chinese_chars, bool strip_accents,
                                   bool lowercase) {
  return std::make_unique<BertNormalizer>(clean_text, chinese_chars, strip_accents, lowercase);
}
NormalizerPtr make_unicode_normalizer(std::string_view form) {
  const unicode::Form f = form == "NFC"    ? unicode::Form::kNFC
                          : form == "NFD"  ? unicode::Form::kNFD
                          : form == "NFKC" ? unicode::Form::kNFKC
                                           : unicode::Form::kNFKD;
  return std::make_unique<UnicodeNormalizer>(f);
}
NormalizerPtr make_lowercase_normalizer() {
  return std::make_unique<LowercaseNormalizer>();
}
NormalizerPtr make_strip_accents_normalizer() {
  return std::make_unique<StripAccentsNormalizer>();
}
NormalizerPtr make_prepend_normalizer(std::string prefix) {
  return std::make_unique<PrependNormalizer>(std::move(prefix));
}
NormalizerPtr make_replace_normalizer(std::string pattern, bool is_regex, std::string content) {
  return std::make_unique<ReplaceNormalizer>(
      Replacer(std::move(pattern), is_regex, std::move(content)));
}
NormalizerPtr make_strip_normalizer(bool left, bool right) {
  return std::make_unique<StripNormalizer>(left, right);
}
NormalizerPtr make_sequence_normalizer(std::vector<NormalizerPtr> parts) {
  return std::make_unique<SequenceNormalizer>(std::move(parts));
}

PreTokenizerPtr make_bert_pre_tokenizer() {
  return std::make_unique<BertPreTokenizer>();
}
PreTokenizerPtr make_whitespace_pre_tokenizer() {
  return std::make_unique<RegexSplitPreTokenizer>(R"(\w+|[^\w\s]+)", true, SplitBehavior::kRemoved,
                                                  true);
}
PreTokenizerPtr make_whitespace_split_pre_tokenizer() {
  return std::make_unique<WhitespaceSplitPreTokenizer>();
}
PreTokenizerPtr make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, use_regex);
}
PreTokenizerPtr make_metaspace_pre_tokenizer(std::string replacement, PrependScheme scheme,
                                             bool split) {
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}
PreTokenizerPtr make_split_pre_tokenizer(std::string pattern, bool is_regex, SplitBehavior behavior,
                                         bool invert) {
  return std::make_unique<RegexSplitPreTokenizer>(std::move(pattern), is_regex, behavior, invert);
}
PreTokenizerPtr make_digits_pre_tokenizer(bool individual) {
  return std::make_unique<DigitsPreTokenizer>(individual);
}
PreTokenizerPtr make_punctuation_pre_tokenizer(SplitBehavior behavior) {
  return std::make_unique<PunctuationPreTokenizer>(behavior);
}
PreTokenizerPtr make_sequence_pre_tokenizer(std::vector<PreTokenizerPtr> parts) {
  return std::make_unique<SequencePreTokenizer>(std::move(parts));
}

DecoderPtr make_wordpiece_decoder(std::string prefix, bool cleanup) {
  return std::make_unique<WordPieceDecoder>(std::move(prefix), cleanup);
}
DecoderPtr make_byte_level_decoder() {
  return std::make_unique<ByteLevelDecoder>();
}
DecoderPtr make_metaspace_decoder(std::string replacement, PrependScheme scheme) {
  return std::make_unique<MetaspaceDecoder>(std::move(replacement), scheme);
}
DecoderPtr make_byte_fallback_decoder() {
  return std::make_unique<ByteFallbackDecoder>();
}
DecoderPtr make_fuse_decoder() {
  return std::make_unique<FuseDecoder>();
}
DecoderPtr make_strip_decoder(std::string content, std::size_t start, std::size_t stop) {
  return std::make_unique<StripDecoder>(std::move(content), start, stop);
}
DecoderPtr make_replace_decoder(std::string pattern, bool is_regex, std::string content) {
  return std::make_unique<ReplaceDecoder>(
      Replacer(std::move(pattern), is_regex, std::move(content)));
}
DecoderPtr make_sequence_decoder(std::vector<DecoderPtr> parts) {
  return std::make_unique<SequenceDecoder>(std::move(parts));
}

}  // namespace hearth::tokenize::detail
