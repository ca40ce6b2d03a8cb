#include "hearth/tokenize/regex.hpp"

#include <algorithm>
#include <bitset>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize {
namespace {

struct ClassItem {
  enum Kind { kRange, kCategory, kSpace, kDigit, kWord } kind = kRange;
  char32_t lo = 0, hi = 0;
  std::string category;  // one or two letters
  bool negated = false;
};

bool item_matches(const ClassItem& item, char32_t c, bool icase) {
  bool m = false;
  switch (item.kind) {
    case ClassItem::kRange:
      m = (c >= item.lo && c <= item.hi);
      if (!m && icase) {
        const char32_t l = unicode::simple_lower(c);
        m = (l >= item.lo && l <= item.hi) ||
            (unicode::simple_lower(item.lo) == l && item.lo == item.hi);
      }
      break;
    case ClassItem::kCategory:
      if (item.category.size() == 1) {
        switch (item.category[0]) {
          case 'L':
            m = unicode::is_letter(c);
            break;
          case 'N':
            m = unicode::is_number(c);
            break;
          case 'P':
            m = unicode::is_punctuation(c);
            break;
          case 'S':
            m = unicode::is_symbol(c);
            break;
          case 'M':
            m = unicode::has_category(c, "Mn") || unicode::has_category(c, "Mc") ||
                unicode::has_category(c, "Me");
            break;
          case 'Z':
            m = unicode::has_category(c, "Zs") || unicode::has_category(c, "Zl") ||
                unicode::has_category(c, "Zp");
            break;
          case 'C':
            m = unicode::is_other(c);
            break;
          default:
            break;
        }
      } else {
        m = unicode::has_category(c, item.category);
      }
      break;
    case ClassItem::kSpace:
      m = unicode::is_whitespace(c);
      break;
    case ClassItem::kDigit:
      m = unicode::has_category(c, "Nd");
      break;
    case ClassItem::kWord:
      m = c == '_' || unicode::is_letter(c) || unicode::is_number(c) ||
          unicode::has_category(c, "Mn") || unicode::has_category(c, "Mc") ||
          unicode::has_category(c, "Pc");
      break;
  }
  return m != item.negated;
}

struct Node;
using Seq = std::vector<Node>;

struct Node {
  enum Kind { kChar, kClass, kAny, kGroup, kLook, kBol, kEol } kind = kChar;
  char32_t ch = 0;
  bool icase = false;
  std::vector<ClassItem> items;  // kClass
  bool negated = false;          // kClass: [^...]; kLook: (?!...)
  std::vector<Seq> alts;         // kGroup, kLook
  std::size_t min = 1, max = 1;
  bool greedy = true;

  // matches() for every ASCII character, filled by precompute() after parsing.
  std::bitset<128> ascii;

  bool single() const { return kind == kChar || kind == kClass || kind == kAny; }
  bool matches(char32_t c) const { return c < 128 ? ascii[c] : slow_matches(c); }
  void precompute() {
    if (single()) {
      for (char32_t c = 0; c < 128; ++c) ascii[c] = slow_matches(c);
    }
    for (auto& alt : alts) {
      for (auto& n : alt) n.precompute();
    }
  }
  bool slow_matches(char32_t c) const {
    switch (kind) {
      case kChar:
        return c == ch || (icase && unicode::simple_lower(c) == unicode::simple_lower(ch));
      case kAny:
        return c != '\n';
      case kClass: {
        bool any = false;
        for (const auto& item : items) {
          if (item_matches(item, c, icase)) {
            any = true;
            break;
          }
        }
        return any != negated;
      }
      default:
        return false;
    }
  }
};

constexpr std::size_t kUnbounded = static_cast<std::size_t>(-1);
// Iterations of a quantified group beyond this count stop (bounds the recursion depth).
constexpr std::size_t kMaxGroupRepeats = 4096;

class Parser {
 public:
  explicit Parser(std::string_view pattern) : p_(unicode::decode(pattern)), source_(pattern) {}

  std::vector<Seq> parse() {
    auto alts = parse_alts(false);
    if (i_ != p_.size()) fail("unbalanced ')'");
    return alts;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::kUnsupported, "regex /" + std::string(source_) + "/: " + what +
                                             " at character " + std::to_string(i_));
  }
  bool eof() const { return i_ >= p_.size(); }
  char32_t peek() const { return p_[i_]; }

  std::vector<Seq> parse_alts(bool icase) {
    std::vector<Seq> alts(1);
    while (!eof() && peek() != ')') {
      if (peek() == '|') {
        ++i_;
        alts.emplace_back();
        continue;
      }
      Node n = parse_atom(icase);
      parse_quantifier(n);
      alts.back().push_back(std::move(n));
    }
    return alts;
  }

  void parse_quantifier(Node& n) {
    if (eof()) return;
    const char32_t c = peek();
    if (c == '*') {
      n.min = 0, n.max = kUnbounded, ++i_;
    } else if (c == '+') {
      n.min = 1, n.max = kUnbounded, ++i_;
    } else if (c == '?') {
      n.min = 0, n.max = 1, ++i_;
    } else if (c == '{') {
      std::size_t save = i_++;
      auto number = [&]() -> std::optional<std::size_t> {
        std::size_t v = 0;
        bool any = false;
        while (!eof() && peek() >= '0' && peek() <= '9') {
          v = v * 10 + (peek() - '0');
          if (v > 100000) fail("repeat count too large");
          any = true;
          ++i_;
        }
        return any ? std::optional<std::size_t>(v) : std::nullopt;
      };
      const auto lo = number();
      if (!lo) {
        i_ = save;  // a literal '{'
        return;
      }
      std::size_t hi = *lo;
      if (!eof() && peek() == ',') {
        ++i_;
        const auto h = number();
        hi = h ? *h : kUnbounded;
      }
      if (eof() || peek() != '}') fail("malformed {n,m}");
      ++i_;
      if (hi < *lo) fail("{n,m} with m < n");
      n.min = *lo, n.max = hi;
    } else {
      return;
    }
    if (n.kind == Node::kBol || n.kind == Node::kEol || n.kind == Node::kLook) {
      fail("quantifier on an assertion");
    }
    if (!eof() && peek() == '?') {
      n.greedy = false;
      ++i_;
    } else if (!eof() && peek() == '+') {
      fail("possessive quantifier");
    }
  }

  char32_t parse_hex(std::size_t digits) {
    char32_t v = 0;
    for (std::size_t k = 0; k < digits; ++k) {
      if (eof()) fail("truncated hex escape");
      const char32_t c = peek();
      int d;
      if (c >= '0' && c <= '9')
        d = static_cast<int>(c - '0');
      else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        d = static_cast<int>((c | 0x20) - 'a' + 10);
      else
        fail("bad hex digit");
      v = v * 16 + static_cast<char32_t>(d);
      ++i_;
    }
    return v;
  }

  // After a backslash: either a class item (\s, \p{L}, ...) or a literal character.
  bool parse_escape(ClassItem& item, char32_t& literal) {
    if (eof()) fail("trailing backslash");
    const char32_t c = p_[i_++];
    switch (c) {
      case 'r':
        literal = '\r';
        return false;
      case 'n':
        literal = '\n';
        return false;
      case 't':
        literal = '\t';
        return false;
      case 'f':
        literal = '\f';
        return false;
      case 'v':
        literal = '\v';
        return false;
      case '0':
        literal = 0;
        return false;
      case 'x':
        if (!eof() && peek() == '{') {
          ++i_;
          char32_t v = 0;
          while (!eof() && peek() != '}') {
            v = v * 16 + parse_hex(1);
            if (v > 0x10FFFF) fail("code point out of range");
          }
          if (eof()) fail("unterminated \\x{");
          ++i_;
          literal = v;
        } else {
          literal = parse_hex(2);
        }
        return false;
      case 'u':
        literal = parse_hex(4);
        return false;
      case 's':
      case 'S':
        item = {ClassItem::kSpace, 0, 0, "", c == 'S'};
        return true;
      case 'd':
      case 'D':
        item = {ClassItem::kDigit, 0, 0, "", c == 'D'};
        return true;
      case 'w':
      case 'W':
        item = {ClassItem::kWord, 0, 0, "", c == 'W'};
        return true;
      case 'p':
      case 'P': {
        std::string name;
        if (!eof() && peek() == '{') {
          ++i_;
          while (!eof() && peek() != '}') name += static_cast<char>(p_[i_++] & 0x7F);
          if (eof()) fail("unterminated \\p{");
          ++i_;
        } else if (!eof()) {
          name = static_cast<char>(p_[i_++] & 0x7F);
        }
        bool negated = c == 'P';
        if (!name.empty() && name[0] == '^') {
          negated = !negated;
          name.erase(0, 1);
        }
        const bool one =
            name.size() == 1 && std::string_view("LNPSMZC").find(name[0]) != std::string_view::npos;
        if (!one && !unicode::is_known_category(name)) {
          fail("unsupported property \\p{" + name + "}");
        }
        item = {ClassItem::kCategory, 0, 0, name, negated};
        return true;
      }
      default:
        if (c < 0x80 && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')) {
          fail(std::string("unsupported escape \\") + static_cast<char>(c));
        }
        if (c >= '1' && c <= '9') fail("backreference");
        literal = c;
        return false;
    }
  }

  Node parse_class(bool icase) {
    Node n;
    n.kind = Node::kClass;
    n.icase = icase;
    if (!eof() && peek() == '^') {
      n.negated = true;
      ++i_;
    }
    bool first = true;
    while (true) {
      if (eof()) fail("unterminated character class");
      char32_t c = peek();
      if (c == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      if (c == '[') fail("nested character class");
      ++i_;
      char32_t lo = c;
      if (c == '\\') {
        ClassItem item;
        if (parse_escape(item, lo)) {
          n.items.push_back(item);
          continue;
        }
      }
      char32_t hi = lo;
      if (i_ + 1 < p_.size() && peek() == '-' && p_[i_ + 1] != ']') {
        ++i_;
        hi = p_[i_++];
        if (hi == '\\') {
          ClassItem item;
          if (parse_escape(item, hi)) fail("class escape as a range end");
        }
        if (hi < lo) fail("reversed range");
      }
      n.items.push_back({ClassItem::kRange, lo, hi, "", false});
    }
    return n;
  }

  Node parse_atom(bool icase) {
    const char32_t c = p_[i_++];
    Node n;
    n.icase = icase;
    switch (c) {
      case '(': {
        n.kind = Node::kGroup;
        bool inner_icase = icase;
        if (!eof() && peek() == '?') {
          ++i_;
          if (eof()) fail("truncated group");
          const char32_t k = p_[i_++];
          if (k == ':') {
          } else if (k == '=' || k == '!') {
            n.kind = Node::kLook;
            n.negated = k == '!';
          } else if (k == 'i' && !eof() && peek() == ':') {
            ++i_;
            inner_icase = true;
          } else {
            fail("unsupported group kind");
          }
        }
        n.alts = parse_alts(inner_icase);
        if (eof() || peek() != ')') fail("unterminated group");
        ++i_;
        return n;
      }
      case '[':
        return parse_class(icase);
      case '.':
        n.kind = Node::kAny;
        return n;
      case '^':
        n.kind = Node::kBol;
        return n;
      case '$':
        n.kind = Node::kEol;
        return n;
      case '*':
      case '+':
      case '?':
        fail("quantifier without an operand");
      case '\\': {
        ClassItem item;
        char32_t literal = 0;
        if (parse_escape(item, literal)) {
          n.kind = Node::kClass;
          n.items.push_back(item);
        } else {
          n.kind = Node::kChar;
          n.ch = literal;
        }
        return n;
      }
      default:
        n.kind = Node::kChar;
        n.ch = c;
        return n;
    }
  }

  std::u32string p_;
  std::string_view source_;
  std::size_t i_ = 0;
};

struct Cont {
  const Seq* seq = nullptr;
  std::size_t idx = 0;
  const Node* rep = nullptr;  // a quantified group's next iteration
  std::size_t count = 0;
  std::size_t rep_start = 0;
  const Cont* next = nullptr;
};

class Matcher {
 public:
  Matcher(std::u32string_view text, std::size_t budget, const std::string& pattern)
      : t_(text), budget_(budget), pattern_(pattern) {}

  bool seq(const Seq& s, std::size_t i, std::size_t pos, const Cont* k, std::size_t& end) const {
    if (++steps_ > budget_) {
      throw Error(ErrorCode::kUnsupported, "regex /" + pattern_ +
                                               "/ backtracks too much on this input (over " +
                                               std::to_string(budget_) + " steps)");
    }
    if (i == s.size()) return resume(k, pos, end);
    const Node& n = s[i];
    if (n.single()) {
      std::size_t m = 0;
      while (m < n.max && pos + m < t_.size() && n.matches(t_[pos + m])) ++m;
      if (m < n.min) return false;
      if (n.greedy) {
        for (std::size_t c = m + 1; c-- > n.min;) {
          if (seq(s, i + 1, pos + c, k, end)) return true;
        }
      } else {
        for (std::size_t c = n.min; c <= m; ++c) {
          if (seq(s, i + 1, pos + c, k, end)) return true;
        }
      }
      return false;
    }
    switch (n.kind) {
      case Node::kBol:
        return pos == 0 && seq(s, i + 1, pos, k, end);
      case Node::kEol:
        return pos == t_.size() && seq(s, i + 1, pos, k, end);
      case Node::kLook: {
        bool found = false;
        for (const auto& alt : n.alts) {
          std::size_t e = 0;
          if (seq(alt, 0, pos, nullptr, e)) {
            found = true;
            break;
          }
        }
        return found != n.negated && seq(s, i + 1, pos, k, end);
      }
      default: {
        const Cont after{&s, i + 1, nullptr, 0, 0, k};
        return repeat(n, 0, pos, pos + 1, &after, end);
      }
    }
  }

 private:
  // Iteration `count` of group n (count iterations done so far) at pos.
  bool repeat(const Node& n, std::size_t count, std::size_t pos, std::size_t last_start,
              const Cont* after, std::size_t& end) const {
    const bool may_more = count < n.max && count < kMaxGroupRepeats && pos != last_start;
    const bool may_stop = count >= n.min;
    auto more = [&] {
      if (!may_more) return false;
      const Cont c{nullptr, 0, &n, count + 1, pos, after};
      for (const auto& alt : n.alts) {
        if (seq(alt, 0, pos, &c, end)) return true;
      }
      return false;
    };
    if (n.greedy) return more() || (may_stop && resume(after, pos, end));
    return (may_stop && resume(after, pos, end)) || more();
  }

  bool resume(const Cont* k, std::size_t pos, std::size_t& end) const {
    if (k == nullptr) {
      end = pos;
      return true;
    }
    if (k->rep != nullptr) return repeat(*k->rep, k->count, pos, k->rep_start, k->next, end);
    return seq(*k->seq, k->idx, pos, k->next, end);
  }

  std::u32string_view t_;
  std::size_t budget_;
  const std::string& pattern_;
  mutable std::size_t steps_ = 0;
};

// The ASCII characters a match of seq can start with; nullable when it can match empty (or
// starts with something this analysis does not look through).
void first_set(const Seq& seq, std::bitset<128>& first, bool& nullable) {
  for (const Node& n : seq) {
    if (n.single()) {
      first |= n.ascii;
      if (n.min > 0) return;
      continue;
    }
    if (n.kind == Node::kGroup) {
      bool any_nullable = false;
      for (const auto& alt : n.alts) {
        bool alt_nullable = false;
        first_set(alt, first, alt_nullable);
        any_nullable = any_nullable || alt_nullable;
      }
      if (!any_nullable && n.min > 0) return;
      continue;
    }
    // Assertions match empty: look through them (this only widens the set).
  }
  nullable = true;
}

}  // namespace

struct Regex::Impl {
  std::string pattern;
  Seq root;  // a single group node holding the alternatives
  // Per top-level alternative: the ASCII characters it can start with, and whether it may
  // match empty. Alternatives that cannot start at a position are not tried there.
  std::vector<std::bitset<128>> first;
  std::vector<bool> nullable;
};

Regex::Regex(std::string_view pattern) : impl_(std::make_unique<Impl>()) {
  impl_->pattern = std::string(pattern);
  Node group;
  group.kind = Node::kGroup;
  group.alts = Parser(pattern).parse();
  group.precompute();
  for (const auto& alt : group.alts) {
    std::bitset<128> first;
    bool nullable = false;
    first_set(alt, first, nullable);
    impl_->first.push_back(first);
    impl_->nullable.push_back(nullable);
  }
  impl_->root.push_back(std::move(group));
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

const std::string& Regex::pattern() const {
  return impl_->pattern;
}

std::optional<std::pair<std::size_t, std::size_t>> Regex::find(std::u32string_view text,
                                                               std::size_t from) const {
  // Patterns that backtrack exponentially (a hostile tokenizer.json) stop with an error instead
  // of hanging: the real pre-tokenizer patterns take a few steps per character.
  const Matcher m(text, 1000000 + 1000 * (text.size() - std::min(from, text.size())),
                  impl_->pattern);
  const auto& alts = impl_->root[0].alts;
  for (std::size_t pos = from; pos <= text.size(); ++pos) {
    const char32_t c = pos < text.size() ? text[pos] : 0x110000;
    for (std::size_t a = 0; a < alts.size(); ++a) {
      if (c < 128 && !impl_->first[a][c] && !impl_->nullable[a]) continue;
      std::size_t end = 0;
      if (m.seq(alts[a], 0, pos, nullptr, end)) return std::make_pair(pos, end);
    }
  }
  return std::nullopt;
}

}  // namespace hearth::tokenize
