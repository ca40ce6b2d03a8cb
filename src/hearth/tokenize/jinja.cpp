// The chat-template interpreter: preprocessing (trim_blocks / lstrip_blocks as transformers sets
// them), lexer, recursive-descent parser and tree-walking evaluator. The semantics follow
// @huggingface/jinja, the renderer transformers.js uses, including where it departs from Python
// Jinja (JavaScript number formatting and loose ==, strip() ignoring its argument, the output
// of a loop iteration ended by break / continue being dropped, dynamic scoping of macros).
#include "hearth/tokenize/jinja.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "hearth/core/error.hpp"
#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize::jinja {
namespace {

constexpr std::uint32_t kNoPos = std::numeric_limits<std::uint32_t>::max();

// An error inside the interpreter, positioned later (kNoPos until a node claims it).
struct JinjaError {
  ErrorCode code;
  std::string message;
  std::uint32_t pos = kNoPos;
};

[[noreturn]] void fail(std::string message, std::uint32_t pos = kNoPos,
                       ErrorCode code = ErrorCode::kInvalidArgument) {
  throw JinjaError{code, std::move(message), pos};
}

[[noreturn]] void unsupported(std::string message, std::uint32_t pos = kNoPos) {
  fail(std::move(message), pos, ErrorCode::kUnsupported);
}

// ---------------------------------------------------------------------------------------------
// Strings with trust, run by run.

struct TString {
  std::string s;
  std::vector<std::pair<std::size_t, bool>> runs;  // (end offset, trusted); neighbours differ

  TString() = default;
  TString(std::string text, bool trusted) : s(std::move(text)) {
    if (!s.empty()) runs.push_back({s.size(), trusted});
  }
  void append(std::string_view t, bool trusted) {
    if (t.empty()) return;
    s.append(t);
    if (!runs.empty() && runs.back().second == trusted) {
      runs.back().first = s.size();
    } else {
      runs.push_back({s.size(), trusted});
    }
  }
  void append(const TString& o) {
    std::size_t start = 0;
    for (const auto& [end, trusted] : o.runs) {
      append(std::string_view(o.s).substr(start, end - start), trusted);
      start = end;
    }
  }
  TString substr(std::size_t b, std::size_t e) const {
    TString out;
    std::size_t start = 0;
    for (const auto& [end, trusted] : runs) {
      const std::size_t lo = std::max(start, b), hi = std::min(end, e);
      if (lo < hi) out.append(std::string_view(s).substr(lo, hi - lo), trusted);
      start = end;
      if (start >= e) break;
    }
    return out;
  }
  bool all_trusted() const {
    return std::all_of(runs.begin(), runs.end(), [](const auto& r) { return r.second; });
  }
  // Each run mapped by f (a per-character transform keeps the runs).
  template <typename F>
  TString map_runs(F f) const {
    TString out;
    std::size_t start = 0;
    for (const auto& [end, trusted] : runs) {
      out.append(f(std::string_view(s).substr(start, end - start)), trusted);
      start = end;
    }
    return out;
  }
};

// ---------------------------------------------------------------------------------------------
// JavaScript string and number behaviour.

// JavaScript's WhiteSpace and LineTerminator (String.prototype.trim, /\s/).
bool is_js_space(char32_t c) {
  return c == 0x09 || c == 0x0A || c == 0x0B || c == 0x0C || c == 0x0D || c == 0x20 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

// [begin, end) of s without JavaScript whitespace on the chosen sides.
std::pair<std::size_t, std::size_t> js_trim_range(std::string_view s, bool left, bool right) {
  std::size_t b = 0, e = s.size();
  if (left) {
    while (b < e) {
      std::size_t j = b;
      if (!is_js_space(unicode::next(s, j))) break;
      b = j;
    }
  }
  if (right) {
    while (e > b) {
      std::size_t k = e - 1;
      while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
      std::size_t j = k;
      if (!is_js_space(unicode::next(s, j))) break;
      e = k;
    }
  }
  return {b, e};
}

TString js_trim(const TString& t, bool left, bool right) {
  const auto [b, e] = js_trim_range(t.s, left, right);
  return t.substr(b, e);
}

std::size_t utf16_length(std::string_view s) {
  std::size_t n = 0, i = 0;
  while (i < s.size()) n += unicode::next(s, i) >= 0x10000 ? 2 : 1;
  return n;
}

std::u16string to_utf16(std::string_view s) {
  std::u16string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t c = unicode::next(s, i);
    if (c >= 0x10000) {
      out.push_back(static_cast<char16_t>(0xD800 + ((c - 0x10000) >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + ((c - 0x10000) & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(c));
    }
  }
  return out;
}

// Byte offsets of each code point start, plus s.size().
std::vector<std::size_t> code_point_offsets(std::string_view s) {
  std::vector<std::size_t> at;
  std::size_t i = 0;
  while (i < s.size()) {
    at.push_back(i);
    unicode::next(s, i);
  }
  at.push_back(s.size());
  return at;
}

std::string js_upper(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const char32_t c = unicode::next(s, i);
    if (c == 0xDF) {
      out += "SS";
      continue;
    }
    unicode::append_utf8(out,
                         static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
  }
  return out;
}

bool is_ascii_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// value.replace(/\b\w/g, toUpperCase): ASCII word characters only.
std::string js_title(std::string_view s) {
  std::string out(s);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (is_ascii_word(out[i]) && (i == 0 || !is_ascii_word(out[i - 1])) && out[i] >= 'a' &&
        out[i] <= 'z') {
      out[i] = static_cast<char>(out[i] - 32);
    }
  }
  return out;
}

// Number.prototype.toString().
std::string js_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return "0";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const std::size_t epos = sci.find('e');
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp10 = std::stoi(sci.substr(epos + 1));
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;
  std::string out;
  if (k <= n && n <= 21) {
    out = digits + std::string(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out = digits.substr(0, static_cast<std::size_t>(n)) + "." +
          digits.substr(static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out = "0." + std::string(static_cast<std::size_t>(-n), '0') + digits;
  } else {
    out = digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += (n - 1 >= 0 ? "e+" : "e-") + std::to_string(std::abs(n - 1));
  }
  return sign + out;
}

// FloatValue.toString(): integral values keep one decimal (toFixed(1)).
std::string js_float(double v) {
  if (v == 0 && std::signbit(v)) return "-0.0";
  if (std::isfinite(v) && std::fmod(v, 1.0) == 0 && std::fabs(v) < 1e21) {
    char buf[400];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
  }
  return js_number(v);
}

// Number(string) for ==.
double js_to_number(std::string_view s) {
  const auto [b, e] = js_trim_range(s, true, true);
  const std::string t(s.substr(b, e - b));
  if (t.empty()) return 0;
  if (t == "Infinity" || t == "+Infinity") return INFINITY;
  if (t == "-Infinity") return -INFINITY;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    double v = 0;
    for (std::size_t i = 2; i < t.size(); ++i) {
      const char c = t[i];
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) return NAN;
      v = v * 16 + d;
    }
    return v;
  }
  for (const char c : t) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
      return NAN;
  }
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size() ? v : NAN;
}

// parseInt(s, 10) and parseFloat(s); NaN when no number starts the string.
double js_parse_int(std::string_view s) {
  std::size_t i = js_trim_range(s, true, false).first;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  double v = 0;
  bool any = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + (s[i++] - '0');
    any = true;
  }
  if (!any) return NAN;
  return neg ? -v : v;
}

double js_parse_float(std::string_view s) {
  std::size_t i = js_trim_range(s, true, false).first;
  const std::string_view rest = s.substr(i);
  std::size_t j = 0;
  if (j < rest.size() && (rest[j] == '+' || rest[j] == '-')) ++j;
  if (rest.substr(j).starts_with("Infinity")) return rest[0] == '-' ? -INFINITY : INFINITY;
  std::size_t digits = 0;
  while (j < rest.size() && rest[j] >= '0' && rest[j] <= '9') ++j, ++digits;
  if (j < rest.size() && rest[j] == '.') {
    ++j;
    while (j < rest.size() && rest[j] >= '0' && rest[j] <= '9') ++j, ++digits;
  }
  if (digits == 0) return NAN;
  if (j < rest.size() && (rest[j] == 'e' || rest[j] == 'E')) {
    std::size_t k = j + 1;
    if (k < rest.size() && (rest[k] == '+' || rest[k] == '-')) ++k;
    if (k < rest.size() && rest[k] >= '0' && rest[k] <= '9') {
      while (k < rest.size() && rest[k] >= '0' && rest[k] <= '9') ++k;
      j = k;
    }
  }
  return std::strtod(std::string(rest.substr(0, j)).c_str(), nullptr);
}

// JSON.stringify of a string.
void json_quote(std::string_view s, std::string& out) {
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

// Escapes U+007F and above as \uXXXX per UTF-16 unit (tojson(ensure_ascii=true)).
std::string ascii_safe(std::string_view s) {
  std::string out;
  for (const char16_t u : to_utf16(s)) {
    if (u >= 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
      out += buf;
    } else {
      out.push_back(static_cast<char>(u));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Preprocessing and lexing.

struct PText {
  std::string s;
  std::vector<std::uint32_t> at;  // original offset of each byte
  void push(char c, std::uint32_t pos) {
    s.push_back(c);
    at.push_back(pos);
  }
};

bool is_line_terminator_before(const PText& t, std::size_t i) {
  if (i == 0) return true;
  const char c = t.s[i - 1];
  if (c == '\n' || c == '\r') return true;
  // U+2028 / U+2029: E2 80 A8 / A9
  return i >= 3 && t.s.compare(i - 3, 2, "\xE2\x80") == 0 &&
         (t.s[i - 1] == '\xA8' || t.s[i - 1] == '\xA9');
}

std::size_t skip_js_space(std::string_view s, std::size_t i) {
  while (i < s.size()) {
    std::size_t j = i;
    if (!is_js_space(unicode::next(s, j))) break;
    i = j;
  }
  return i;
}

PText preprocess(std::string_view source) {
  PText in;
  for (std::size_t i = 0; i < source.size(); ++i) in.push(source[i], static_cast<std::uint32_t>(i));
  if (!in.s.empty() && in.s.back() == '\n') {
    in.s.pop_back();
    in.at.pop_back();
  }
  // lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1"
  PText a;
  for (std::size_t i = 0; i < in.s.size();) {
    if (is_line_terminator_before(in, i)) {
      std::size_t j = i;
      while (j < in.s.size() && (in.s[j] == ' ' || in.s[j] == '\t')) ++j;
      if (j + 1 < in.s.size() && in.s[j] == '{' &&
          (in.s[j + 1] == '#' || in.s[j + 1] == '%' || in.s[j + 1] == '-')) {
        a.push(in.s[j], in.at[j]);
        a.push(in.s[j + 1], in.at[j + 1]);
        i = j + 2;
        continue;
      }
    }
    a.push(in.s[i], in.at[i]);
    ++i;
  }
  // trim_blocks: /([#%-]})\n/g -> "$1"
  PText b;
  for (std::size_t i = 0; i < a.s.size();) {
    if (i + 2 < a.s.size() && (a.s[i] == '#' || a.s[i] == '%' || a.s[i] == '-') &&
        a.s[i + 1] == '}' && a.s[i + 2] == '\n') {
      b.push(a.s[i], a.at[i]);
      b.push(a.s[i + 1], a.at[i + 1]);
      i += 3;
      continue;
    }
    b.push(a.s[i], a.at[i]);
    ++i;
  }
  // transformers' {% generation %} / {% endgeneration %} tags are removed, with the whitespace
  // around them unless '-' asks for it to go.
  PText c;
  const std::string_view s = b.s;
  std::size_t copied = 0;
  for (std::size_t p = s.find("{%"); p != std::string_view::npos; p = s.find("{%", p + 1)) {
    if (p < copied) continue;
    std::size_t q = p + 2;
    const bool lstrip = q < s.size() && s[q] == '-';
    if (lstrip) ++q;
    q = skip_js_space(s, q);
    if (s.substr(q).starts_with("end")) q += 3;
    if (!s.substr(q).starts_with("generation")) continue;
    q = skip_js_space(s, q + 10);
    const bool rstrip = q < s.size() && s[q] == '-';
    if (rstrip) ++q;
    if (!s.substr(q).starts_with("%}")) continue;
    q += 2;
    std::size_t before = p;
    while (before > copied) {
      std::size_t k = before - 1;
      while (k > copied && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
      std::size_t j = k;
      if (!is_js_space(unicode::next(s, j))) break;
      before = k;
    }
    const std::size_t after = skip_js_space(s, q);
    for (std::size_t i = copied; i < before; ++i) c.push(s[i], b.at[i]);
    if (!lstrip)
      for (std::size_t i = before; i < p; ++i) c.push(s[i], b.at[i]);
    if (!rstrip)
      for (std::size_t i = q; i < after; ++i) c.push(s[i], b.at[i]);
    copied = after;
    p = after == 0 ? 0 : after - 1;
  }
  for (std::size_t i = copied; i < s.size(); ++i) c.push(s[i], b.at[i]);
  c.at.push_back(static_cast<std::uint32_t>(source.size()));
  return c;
}

enum class Tok {
  kText,
  kNumber,
  kString,
  kIdent,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenBracket,
  kCloseBracket,
  kOpenCurly,
  kCloseCurly,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditive,
  kMultiplicative,
  kPower,
  kComparison,
  kUnary,
  kComment,
};

const char* tok_name(Tok t) {
  switch (t) {
    case Tok::kText:
      return "text";
    case Tok::kNumber:
      return "number";
    case Tok::kString:
      return "string";
    case Tok::kIdent:
      return "identifier";
    case Tok::kEquals:
      return "'='";
    case Tok::kOpenParen:
      return "'('";
    case Tok::kCloseParen:
      return "')'";
    case Tok::kOpenStatement:
      return "'{%'";
    case Tok::kCloseStatement:
      return "'%}'";
    case Tok::kOpenExpression:
      return "'{{'";
    case Tok::kCloseExpression:
      return "'}}'";
    case Tok::kOpenBracket:
      return "'['";
    case Tok::kCloseBracket:
      return "']'";
    case Tok::kOpenCurly:
      return "'{'";
    case Tok::kCloseCurly:
      return "'}'";
    case Tok::kComma:
      return "','";
    case Tok::kDot:
      return "'.'";
    case Tok::kColon:
      return "':'";
    case Tok::kPipe:
      return "'|'";
    case Tok::kAdditive:
    case Tok::kMultiplicative:
    case Tok::kPower:
    case Tok::kComparison:
    case Tok::kUnary:
      return "operator";
    case Tok::kComment:
      return "comment";
  }
  return "token";
}

struct Token {
  Tok type;
  std::string value;
  std::uint32_t pos;
};

std::vector<Token> lex(const PText& src) {
  const std::string_view s = src.s;
  const std::size_t n = s.size();
  std::vector<Token> tokens;
  std::size_t cur = 0;
  std::size_t curly_depth = 0;
  auto pos_of = [&](std::size_t i) { return src.at[std::min(i, src.at.size() - 1)]; };
  auto is_digit = [&](std::size_t i) { return i < n && s[i] >= '0' && s[i] <= '9'; };
  auto strip_trailing = [&] {
    if (!tokens.empty() && tokens.back().type == Tok::kText) {
      Token& t = tokens.back();
      t.value.resize(js_trim_range(t.value, false, true).second);
      if (t.value.empty()) tokens.pop_back();
    }
  };
  auto consume_digits = [&] {
    const std::size_t b = cur;
    while (is_digit(cur)) ++cur;
    return std::string(s.substr(b, cur - b));
  };
  while (cur < n) {
    const Tok last = tokens.empty() ? Tok::kText : tokens.back().type;
    if (tokens.empty() || last == Tok::kCloseStatement || last == Tok::kCloseExpression ||
        last == Tok::kComment) {
      const std::size_t b = cur;
      while (cur < n && !(s[cur] == '{' && cur + 1 < n &&
                          (s[cur + 1] == '%' || s[cur + 1] == '{' || s[cur + 1] == '#'))) {
        ++cur;
      }
      if (cur > b) {
        tokens.push_back({Tok::kText, std::string(s.substr(b, cur - b)), pos_of(b)});
        continue;
      }
    }
    if (s[cur] == '{' && cur + 1 < n && s[cur + 1] == '#') {
      const std::size_t start = cur;
      cur += 2;
      const bool strip_before = cur < n && s[cur] == '-';
      if (strip_before) ++cur;
      const std::size_t b = cur;
      while (!(cur + 1 < n && s[cur] == '#' && s[cur + 1] == '}')) {
        if (cur + 2 >= n) fail("comment {# is not closed by #}", pos_of(start));
        ++cur;
      }
      std::string comment(s.substr(b, cur - b));
      const bool strip_after = !comment.empty() && comment.back() == '-';
      if (strip_after) comment.pop_back();
      if (strip_before) strip_trailing();
      tokens.push_back({Tok::kComment, std::move(comment), pos_of(start)});
      cur += 2;
      if (strip_after) cur = skip_js_space(s, cur);
      continue;
    }
    if (s.substr(cur, 3) == "{%-") {
      strip_trailing();
      tokens.push_back({Tok::kOpenStatement, "{%", pos_of(cur)});
      cur += 3;
      continue;
    }
    if (s.substr(cur, 3) == "{{-") {
      strip_trailing();
      tokens.push_back({Tok::kOpenExpression, "{{", pos_of(cur)});
      curly_depth = 0;
      cur += 3;
      continue;
    }
    cur = skip_js_space(s, cur);
    if (cur >= n) break;
    if (s.substr(cur, 3) == "-%}") {
      tokens.push_back({Tok::kCloseStatement, "%}", pos_of(cur)});
      cur = skip_js_space(s, cur + 3);
      continue;
    }
    if (s.substr(cur, 3) == "-}}") {
      tokens.push_back({Tok::kCloseExpression, "}}", pos_of(cur)});
      cur = skip_js_space(s, cur + 3);
      continue;
    }
    const char ch = s[cur];
    const std::uint32_t here = pos_of(cur);
    if (ch == '-' || ch == '+') {
      const Tok prev = tokens.empty() ? Tok::kText : tokens.back().type;
      if (prev == Tok::kText) fail(std::string("unexpected character '") + ch + "'", here);
      if (prev != Tok::kIdent && prev != Tok::kNumber && prev != Tok::kString &&
          prev != Tok::kCloseParen && prev != Tok::kCloseBracket) {
        ++cur;
        std::string num = consume_digits();
        if (!num.empty() && cur < n && s[cur] == '.' && is_digit(cur + 1)) {
          ++cur;
          num += "." + consume_digits();
        }
        tokens.push_back(
            {num.empty() ? Tok::kUnary : Tok::kNumber, std::string(1, ch) + num, here});
        continue;
      }
    }
    static const std::pair<std::string_view, Tok> kTable[] = {
        {"{%", Tok::kOpenStatement},  {"%}", Tok::kCloseStatement},
        {"{{", Tok::kOpenExpression}, {"}}", Tok::kCloseExpression},
        {"(", Tok::kOpenParen},       {")", Tok::kCloseParen},
        {"{", Tok::kOpenCurly},       {"}", Tok::kCloseCurly},
        {"[", Tok::kOpenBracket},     {"]", Tok::kCloseBracket},
        {",", Tok::kComma},           {".", Tok::kDot},
        {":", Tok::kColon},           {"|", Tok::kPipe},
        {"<=", Tok::kComparison},     {">=", Tok::kComparison},
        {"==", Tok::kComparison},     {"!=", Tok::kComparison},
        {"<", Tok::kComparison},      {">", Tok::kComparison},
        {"+", Tok::kAdditive},        {"-", Tok::kAdditive},
        {"~", Tok::kAdditive},        {"**", Tok::kPower},
        {"*", Tok::kMultiplicative},  {"//", Tok::kMultiplicative},
        {"/", Tok::kMultiplicative},  {"%", Tok::kMultiplicative},
        {"=", Tok::kEquals},
    };
    bool matched = false;
    for (const auto& [seq, type] : kTable) {
      if (seq == "}}" && curly_depth > 0) continue;
      if (s.substr(cur, seq.size()) == seq) {
        tokens.push_back({type, std::string(seq), here});
        if (type == Tok::kOpenExpression) curly_depth = 0;
        if (type == Tok::kOpenCurly) ++curly_depth;
        if (type == Tok::kCloseCurly) --curly_depth;
        cur += seq.size();
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (ch == '\'' || ch == '"') {
      ++cur;
      std::string str;
      while (true) {
        if (cur >= n) fail("string literal is not closed", here);
        if (s[cur] == ch) break;
        if (s[cur] == '\\') {
          ++cur;
          if (cur >= n) fail("string literal ends inside an escape", here);
          const char e = s[cur++];
          if (e == 'x' || e == 'u') {
            const std::size_t len = e == 'x' ? 2 : 4;
            const std::string_view hex = s.substr(cur, len);
            unsigned code = 0;
            const auto r = std::from_chars(hex.data(), hex.data() + hex.size(), code, 16);
            if (hex.size() != len || r.ptr != hex.data() + hex.size())
              fail("invalid escape \\" + std::string(1, e) + std::string(hex), here);
            unicode::append_utf8(str, (code >= 0xD800 && code <= 0xDFFF) ? 0xFFFD : code);
            cur += len;
            continue;
          }
          static const std::pair<char, char> kEsc[] = {{'n', '\n'},  {'t', '\t'}, {'r', '\r'},
                                                       {'b', '\b'},  {'f', '\f'}, {'v', '\v'},
                                                       {'\'', '\''}, {'"', '"'},  {'\\', '\\'}};
          bool ok = false;
          for (const auto& [k, v] : kEsc) {
            if (k == e) {
              str.push_back(v);
              ok = true;
            }
          }
          if (!ok) fail(std::string("unknown escape \\") + e + " in a string literal", here);
          continue;
        }
        str.push_back(s[cur++]);
      }
      ++cur;
      tokens.push_back({Tok::kString, std::move(str), here});
      continue;
    }
    if (is_digit(cur)) {
      std::string num = consume_digits();
      if ((tokens.empty() || tokens.back().type != Tok::kDot) && cur < n && s[cur] == '.' &&
          is_digit(cur + 1)) {
        ++cur;
        num += "." + consume_digits();
      }
      tokens.push_back({Tok::kNumber, std::move(num), here});
      continue;
    }
    if (is_ascii_word(ch)) {
      const std::size_t b = cur;
      while (cur < n && is_ascii_word(s[cur])) ++cur;
      tokens.push_back({Tok::kIdent, std::string(s.substr(b, cur - b)), here});
      continue;
    }
    std::size_t j = cur;
    fail("unexpected character '" + unicode::to_utf8(unicode::next(s, j)) + "'", here);
  }
  return tokens;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Syntax tree.

enum class NodeKind {
  kText,
  kIf,
  kFor,
  kSet,
  kMacro,
  kCallBlock,
  kFilterBlock,
  kBreak,
  kContinue,
  kComment,
  kInt,
  kFloat,
  kString,
  kIdent,
  kArray,
  kTuple,
  kObject,
  kMember,
  kSlice,
  kCall,
  kUnary,
  kBinary,
  kFilter,
  kTest,
  kSelect,
  kTernary,
  kKwarg,
  kSpread,
  kKwSpread,
};

using NodePtr = std::unique_ptr<Node>;

// a, b, c and the two lists hold the children; docs/tokenize.md's grammar names them.
struct Node {
  NodeKind kind;
  std::uint32_t pos = 0;
  std::string text;  // literal, identifier, operator, filter / test / macro name
  double number = 0;
  bool flag = false;  // computed member access; negated test
  NodePtr a, b, c;
  std::vector<NodePtr> list, list2;
  std::unordered_set<std::string> specials;  // macros: "kwargs" / "varargs" read in the body
};

struct Template::State {
  std::string origin;
  std::string source;
  Limits limits;
  std::vector<NodePtr> body;
};

namespace {

NodePtr make(NodeKind k, std::uint32_t pos) {
  auto n = std::make_unique<Node>();
  n->kind = k;
  n->pos = pos;
  return n;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::size_t max_nesting, std::uint32_t end_pos)
      : t_(std::move(tokens)), max_nesting_(max_nesting), end_pos_(end_pos) {}

  std::vector<NodePtr> program() {
    std::vector<NodePtr> body;
    while (i_ < t_.size()) body.push_back(any());
    return body;
  }

 private:
  struct Depth {
    Parser& p;
    explicit Depth(Parser& parser) : p(parser) {
      if (++p.depth_ > p.max_nesting_)
        fail("the template nests deeper than " + std::to_string(p.max_nesting_) + " levels",
             p.here());
    }
    ~Depth() { --p.depth_; }
  };

  std::uint32_t here() const { return i_ < t_.size() ? t_[i_].pos : end_pos_; }
  bool is(Tok type, std::size_t ahead = 0) const {
    return i_ + ahead < t_.size() && t_[i_ + ahead].type == type;
  }
  bool is_ident(std::string_view name, std::size_t ahead = 0) const {
    return is(Tok::kIdent, ahead) && t_[i_ + ahead].value == name;
  }
  bool is_statement(std::initializer_list<std::string_view> names) const {
    if (!is(Tok::kOpenStatement) || !is(Tok::kIdent, 1)) return false;
    for (const auto name : names) {
      if (t_[i_ + 1].value == name) return true;
    }
    return false;
  }
  [[noreturn]] void unexpected(std::string_view wanted) const {
    if (i_ >= t_.size()) fail("expected " + std::string(wanted) + ", the template ended", here());
    fail("expected " + std::string(wanted) + ", found " + tok_name(t_[i_].type) +
             (t_[i_].value.empty() ? "" : " '" + t_[i_].value + "'"),
         here());
  }
  const Token& expect(Tok type, std::string_view wanted) {
    if (!is(type)) unexpected(wanted);
    return t_[i_++];
  }
  void expect_ident(std::string_view name) {
    if (!is_ident(name)) unexpected("'" + std::string(name) + "'");
    ++i_;
  }
  // The body of a block up to one of the given statements (not consumed).
  std::vector<NodePtr> block_until(std::initializer_list<std::string_view> names,
                                   std::string_view opener, std::uint32_t start) {
    std::vector<NodePtr> body;
    while (!is_statement(names)) {
      if (i_ >= t_.size()) {
        std::string want;
        for (const auto n : names) want += (want.empty() ? "" : " or ") + std::string(n);
        fail("{% " + std::string(opener) + " %} is not closed (expected {% " + want + " %})",
             start);
      }
      body.push_back(any());
    }
    return body;
  }
  void end_tag(std::string_view name) {
    expect(Tok::kOpenStatement, "'{%'");
    expect_ident(name);
    expect(Tok::kCloseStatement, "'%}'");
  }

  NodePtr any() {
    Depth d(*this);
    const Token& t = t_[i_];
    switch (t.type) {
      case Tok::kComment: {
        auto n = make(NodeKind::kComment, t.pos);
        ++i_;
        return n;
      }
      case Tok::kText: {
        auto n = make(NodeKind::kText, t.pos);
        n->text = t.value;
        ++i_;
        return n;
      }
      case Tok::kOpenStatement:
        return statement();
      case Tok::kOpenExpression: {
        ++i_;
        auto e = expression();
        expect(Tok::kCloseExpression, "'}}'");
        return e;
      }
      default:
        fail(std::string("unexpected ") + tok_name(t.type) + " outside {{ }} and {% %}", t.pos);
    }
  }

  NodePtr statement() {
    const std::uint32_t start = here();
    ++i_;  // {%
    if (!is(Tok::kIdent)) unexpected("a statement name");
    const std::string name = t_[i_].value;
    ++i_;
    if (name == "set") return set_statement(start);
    if (name == "if") {
      auto n = if_statement(start);
      end_tag("endif");
      return n;
    }
    if (name == "for") {
      auto n = for_statement(start);
      end_tag("endfor");
      return n;
    }
    if (name == "macro") {
      auto n = make(NodeKind::kMacro, start);
      if (!is(Tok::kIdent)) unexpected("a macro name");
      n->text = t_[i_++].value;
      n->list = args(true);
      expect(Tok::kCloseStatement, "'%}'");
      n->list2 = block_until({"endmacro"}, "macro", start);
      end_tag("endmacro");
      collect_specials(*n);
      return n;
    }
    if (name == "call") {
      auto n = make(NodeKind::kCallBlock, start);
      if (is(Tok::kOpenParen)) n->list = args(true);
      if (!is(Tok::kIdent)) unexpected("the name of the macro to call");
      auto callee = make(NodeKind::kIdent, here());
      callee->text = t_[i_++].value;
      auto call = make(NodeKind::kCall, callee->pos);
      call->list = args(false);
      call->a = std::move(callee);
      n->a = std::move(call);
      expect(Tok::kCloseStatement, "'%}'");
      n->list2 = block_until({"endcall"}, "call", start);
      end_tag("endcall");
      collect_specials(*n);
      return n;
    }
    if (name == "break" || name == "continue") {
      expect(Tok::kCloseStatement, "'%}'");
      return make(name == "break" ? NodeKind::kBreak : NodeKind::kContinue, start);
    }
    if (name == "filter") {
      auto n = make(NodeKind::kFilterBlock, start);
      n->a = filter_spec();
      expect(Tok::kCloseStatement, "'%}'");
      n->list = block_until({"endfilter"}, "filter", start);
      end_tag("endfilter");
      return n;
    }
    unsupported("unsupported statement {% " + name + " %}", start);
  }

  NodePtr set_statement(std::uint32_t start) {
    auto n = make(NodeKind::kSet, start);
    n->a = sequence(false);
    if (is(Tok::kEquals)) {
      ++i_;
      n->b = sequence(false);
    } else {
      expect(Tok::kCloseStatement, "'=' or '%}'");
      n->list = block_until({"endset"}, "set", start);
      expect(Tok::kOpenStatement, "'{%'");
      expect_ident("endset");
    }
    expect(Tok::kCloseStatement, "'%}'");
    return n;
  }

  NodePtr if_statement(std::uint32_t start) {
    auto n = make(NodeKind::kIf, start);
    n->a = expression();
    expect(Tok::kCloseStatement, "'%}'");
    n->list = block_until({"elif", "else", "endif"}, "if", start);
    if (is_statement({"elif"})) {
      const std::uint32_t elif_pos = here();
      i_ += 2;
      n->list2.push_back(if_statement(elif_pos));
    } else if (is_statement({"else"})) {
      i_ += 2;
      expect(Tok::kCloseStatement, "'%}'");
      n->list2 = block_until({"endif"}, "if", start);
    }
    return n;
  }

  NodePtr for_statement(std::uint32_t start) {
    auto n = make(NodeKind::kFor, start);
    n->a = sequence(true);
    if (n->a->kind != NodeKind::kIdent && n->a->kind != NodeKind::kTuple)
      fail("the loop variable of {% for %} must be a name or a tuple of names", n->a->pos);
    expect_ident("in");
    n->b = expression();
    expect(Tok::kCloseStatement, "'%}'");
    n->list = block_until({"endfor", "else"}, "for", start);
    if (is_statement({"else"})) {
      i_ += 2;
      expect(Tok::kCloseStatement, "'%}'");
      n->list2 = block_until({"endfor"}, "for", start);
    }
    return n;
  }

  // Names "kwargs" / "varargs" the body reads (they then collect the extra arguments).
  static void collect_specials(Node& macro) {
    std::unordered_set<std::string> declared;
    for (const auto& p : macro.list) declared.insert(p->text);
    std::function<void(const Node*)> visit = [&](const Node* n) {
      if (!n) return;
      if (n->kind == NodeKind::kIdent && (n->text == "kwargs" || n->text == "varargs") &&
          !declared.contains(n->text)) {
        macro.specials.insert(n->text);
      }
      if (n->kind == NodeKind::kMacro || n->kind == NodeKind::kCallBlock) {
        if (n->kind == NodeKind::kCallBlock) visit(n->a.get());
        return;  // their own scope
      }
      visit(n->a.get());
      visit(n->b.get());
      visit(n->c.get());
      for (const auto& k : n->list) visit(k.get());
      for (const auto& k : n->list2) visit(k.get());
    };
    for (const auto& k : macro.list2) visit(k.get());
  }

  NodePtr sequence(bool primary) {
    Depth d(*this);
    const std::uint32_t start = here();
    NodePtr first = primary ? primary_expr() : expression();
    if (!is(Tok::kComma)) return first;
    auto tuple = make(NodeKind::kTuple, start);
    tuple->list.push_back(std::move(first));
    while (is(Tok::kComma)) {
      ++i_;
      tuple->list.push_back(primary ? primary_expr() : expression());
    }
    return tuple;
  }

  NodePtr expression() {
    Depth d(*this);
    NodePtr a = or_expr();
    if (is_ident("if")) {
      const std::uint32_t pos = here();
      ++i_;
      NodePtr test = or_expr();
      if (is_ident("else")) {
        ++i_;
        auto n = make(NodeKind::kTernary, pos);
        n->a = std::move(test);
        n->b = std::move(a);
        n->c = expression();
        return n;
      }
      auto n = make(NodeKind::kSelect, pos);
      n->a = std::move(a);
      n->b = std::move(test);
      return n;
    }
    return a;
  }

  NodePtr binary(std::string op, std::uint32_t pos, NodePtr a, NodePtr b) {
    auto n = make(NodeKind::kBinary, pos);
    n->text = std::move(op);
    n->a = std::move(a);
    n->b = std::move(b);
    return n;
  }

  // A left-associative keyword operator ("or", "and") over the next level's operands.
  NodePtr keyword_level(const char* word, NodePtr (Parser::*operand)()) {
    NodePtr left = (this->*operand)();
    while (is_ident(word)) {
      const std::uint32_t pos = here();
      ++i_;
      left = binary(word, pos, std::move(left), (this->*operand)());
    }
    return left;
  }

  NodePtr or_expr() { return keyword_level("or", &Parser::and_expr); }
  NodePtr and_expr() { return keyword_level("and", &Parser::not_expr); }

  NodePtr not_expr() {
    Depth d(*this);
    if (is_ident("not")) {
      auto n = make(NodeKind::kUnary, here());
      ++i_;
      n->text = "not";
      n->a = not_expr();
      return n;
    }
    return comparison();
  }

  NodePtr comparison() {
    NodePtr left = additive();
    while (true) {
      const std::uint32_t pos = here();
      std::string op;
      if (is_ident("not") && is_ident("in", 1)) {
        op = "not in";
        i_ += 2;
      } else if (is_ident("in")) {
        op = "in";
        ++i_;
      } else if (is(Tok::kComparison)) {
        op = t_[i_++].value;
      } else {
        break;
      }
      left = binary(op, pos, std::move(left), additive());
    }
    return left;
  }

  // One level of left-associative operators of one token kind over the next level's operands.
  NodePtr left_associative(Tok kind, NodePtr (Parser::*operand)()) {
    NodePtr left = (this->*operand)();
    while (is(kind)) {
      const Token& t = t_[i_++];
      left = binary(t.value, t.pos, std::move(left), (this->*operand)());
    }
    return left;
  }

  NodePtr additive() { return left_associative(Tok::kAdditive, &Parser::multiplicative); }
  NodePtr multiplicative() { return left_associative(Tok::kMultiplicative, &Parser::power); }
  NodePtr power() { return left_associative(Tok::kPower, &Parser::test_expr); }

  NodePtr test_expr() {
    NodePtr operand = filter_expr();
    while (is_ident("is")) {
      auto n = make(NodeKind::kTest, here());
      ++i_;
      if (is_ident("not")) {
        n->flag = true;
        ++i_;
      }
      if (!is(Tok::kIdent)) unexpected("the name of a test after 'is'");
      n->text = t_[i_++].value;
      if (is(Tok::kOpenParen))
        unsupported("tests with arguments ('is " + n->text + "(...)') are not supported", here());
      n->a = std::move(operand);
      operand = std::move(n);
    }
    return operand;
  }

  NodePtr filter_spec() {
    if (!is(Tok::kIdent)) unexpected("a filter name");
    auto name = make(NodeKind::kIdent, here());
    name->text = t_[i_++].value;
    if (!is(Tok::kOpenParen)) return name;
    return call(std::move(name));
  }

  NodePtr filter_expr() {
    NodePtr operand = unary_sign();
    while (is(Tok::kPipe)) {
      auto n = make(NodeKind::kFilter, here());
      ++i_;
      n->b = filter_spec();
      n->a = std::move(operand);
      operand = std::move(n);
    }
    return operand;
  }

  NodePtr unary_sign() {
    Depth d(*this);
    if ((is(Tok::kUnary) || is(Tok::kAdditive)) && (t_[i_].value == "-" || t_[i_].value == "+")) {
      auto n = make(NodeKind::kUnary, here());
      n->text = t_[i_++].value;
      n->a = unary_sign();
      return n;
    }
    NodePtr member_expr = member(primary_expr());
    if (is(Tok::kOpenParen)) return call(std::move(member_expr));
    return member_expr;
  }

  NodePtr call(NodePtr callee) {
    Depth d(*this);
    auto n = make(NodeKind::kCall, callee->pos);
    n->list = args(false);
    n->a = std::move(callee);
    NodePtr out = member(std::move(n));
    if (is(Tok::kOpenParen)) out = call(std::move(out));
    return out;
  }

  std::vector<NodePtr> args(bool parameters) {
    expect(Tok::kOpenParen, "'('");
    std::vector<NodePtr> out;
    std::unordered_set<std::string> names;
    bool saw_keyword = false, saw_spread = false;
    while (!is(Tok::kCloseParen)) {
      if (i_ >= t_.size()) unexpected("')'");
      const std::uint32_t pos = here();
      const bool kw_spread = is(Tok::kPower);
      const bool spread = is(Tok::kMultiplicative) && t_[i_].value == "*";
      if (parameters && (kw_spread || spread))
        fail("argument unpacking is not allowed in parameter lists", pos);
      if (kw_spread) {
        ++i_;
        auto n = make(NodeKind::kKwSpread, pos);
        n->a = expression();
        out.push_back(std::move(n));
        if (is(Tok::kComma)) ++i_;
        if (!is(Tok::kCloseParen)) fail("'**' must be the last argument", here());
        break;
      }
      NodePtr arg;
      if (spread) {
        if (saw_spread) fail("only one '*' unpacking is allowed", pos);
        saw_spread = true;
        ++i_;
        arg = make(NodeKind::kSpread, pos);
        arg->a = expression();
      } else {
        arg = expression();
        if (is(Tok::kEquals)) {
          ++i_;
          if (arg->kind != NodeKind::kIdent)
            fail(parameters ? "a parameter name must be an identifier"
                            : "a keyword argument name must be an identifier",
                 pos);
          auto kw = make(NodeKind::kKwarg, pos);
          kw->text = arg->text;
          kw->a = expression();
          arg = std::move(kw);
        }
        if (parameters) {
          if (arg->kind != NodeKind::kIdent && arg->kind != NodeKind::kKwarg)
            fail("a parameter must be a name or name=default", pos);
          if (!names.insert(arg->text).second) fail("duplicate parameter '" + arg->text + "'", pos);
        }
        if (arg->kind == NodeKind::kKwarg) {
          saw_keyword = true;
        } else if (saw_keyword) {
          fail(parameters ? "a parameter without default follows one with a default"
                          : "a positional argument follows a keyword argument",
               pos);
        } else if (saw_spread) {
          fail("a positional argument follows '*' unpacking", pos);
        }
      }
      out.push_back(std::move(arg));
      if (is(Tok::kComma)) ++i_;
    }
    ++i_;
    return out;
  }

  NodePtr member(NodePtr object) {
    while (is(Tok::kDot) || is(Tok::kOpenBracket)) {
      Depth d(*this);
      const std::uint32_t pos = here();
      const bool computed = t_[i_].type == Tok::kOpenBracket;
      ++i_;
      auto n = make(NodeKind::kMember, pos);
      n->flag = computed;
      if (computed) {
        n->b = subscript();
        expect(Tok::kCloseBracket, "']'");
      } else {
        n->b = primary_expr();
        if (n->b->kind != NodeKind::kIdent && n->b->kind != NodeKind::kInt)
          fail("expected a name or an integer after '.'", pos);
      }
      n->a = std::move(object);
      object = std::move(n);
    }
    return object;
  }

  NodePtr subscript() {
    const std::uint32_t pos = here();
    std::vector<NodePtr> parts;
    bool slice = false;
    while (!is(Tok::kCloseBracket)) {
      if (i_ >= t_.size()) unexpected("']'");
      if (is(Tok::kColon)) {
        parts.push_back(nullptr);
        ++i_;
        slice = true;
      } else {
        parts.push_back(expression());
        if (is(Tok::kColon)) {
          ++i_;
          slice = true;
        }
      }
    }
    if (parts.empty()) fail("expected an index or a slice inside []", pos);
    if (!slice) {
      if (parts.size() != 1) fail("expected one index inside []", pos);
      return std::move(parts[0]);
    }
    if (parts.size() > 3) fail("a slice has at most three parts", pos);
    auto n = make(NodeKind::kSlice, pos);
    parts.resize(3);
    n->a = std::move(parts[0]);
    n->b = std::move(parts[1]);
    n->c = std::move(parts[2]);
    return n;
  }

  NodePtr primary_expr() {
    Depth d(*this);
    if (i_ >= t_.size()) unexpected("an expression");
    const Token& t = t_[i_++];
    switch (t.type) {
      case Tok::kNumber: {
        const bool is_float = t.value.find('.') != std::string::npos;
        auto n = make(is_float ? NodeKind::kFloat : NodeKind::kInt, t.pos);
        n->number = std::strtod(t.value.c_str(), nullptr);
        return n;
      }
      case Tok::kString: {
        auto n = make(NodeKind::kString, t.pos);
        n->text = t.value;
        while (is(Tok::kString)) n->text += t_[i_++].value;
        return n;
      }
      case Tok::kIdent: {
        auto n = make(NodeKind::kIdent, t.pos);
        n->text = t.value;
        return n;
      }
      case Tok::kOpenParen: {
        NodePtr e = sequence(false);
        expect(Tok::kCloseParen, "')'");
        return e;
      }
      case Tok::kOpenBracket: {
        auto n = make(NodeKind::kArray, t.pos);
        while (!is(Tok::kCloseBracket)) {
          if (i_ >= t_.size()) unexpected("']'");
          n->list.push_back(expression());
          if (is(Tok::kComma)) ++i_;
        }
        ++i_;
        return n;
      }
      case Tok::kOpenCurly: {
        auto n = make(NodeKind::kObject, t.pos);
        while (!is(Tok::kCloseCurly)) {
          if (i_ >= t_.size()) unexpected("'}'");
          n->list.push_back(expression());
          expect(Tok::kColon, "':' between a key and its value");
          n->list2.push_back(expression());
          if (is(Tok::kComma)) ++i_;
        }
        ++i_;
        return n;
      }
      default:
        --i_;
        unexpected("an expression");
    }
  }

  std::vector<Token> t_;
  std::size_t i_ = 0;
  std::size_t depth_ = 0;
  std::size_t max_nesting_;
  std::uint32_t end_pos_;
};

// ---------------------------------------------------------------------------------------------
// Values.

enum class Kind {
  kUndefined,
  kNull,
  kBool,
  kInt,
  kFloat,
  kString,
  kArray,
  kTuple,
  kObject,
  kKwargs,
  kNamespace,
  kFunction,
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNull:
      return "none";
    case Kind::kBool:
      return "boolean";
    case Kind::kInt:
      return "integer";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "string";
    case Kind::kArray:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kObject:
      return "mapping";
    case Kind::kKwargs:
      return "keyword arguments";
    case Kind::kNamespace:
      return "namespace";
    case Kind::kFunction:
      return "function";
  }
  return "value";
}

struct Value;
struct Env;
using EnvPtr = std::shared_ptr<Env>;
using Args = std::vector<Value>;

struct Object {
  std::vector<std::pair<TString, Value>> items;
  const Value* find(std::string_view key) const;
  void set(TString key, Value v);
};

struct Function {
  std::string name;
  std::function<Value(Args&, const EnvPtr&)> call;
};

struct Value {
  Kind kind = Kind::kUndefined;
  double num = 0;  // kBool: 0 / 1
  std::shared_ptr<const TString> str;
  std::shared_ptr<const std::vector<Value>> arr;
  std::shared_ptr<Object> obj;
  std::shared_ptr<const Function> fn;

  static Value boolean(bool b) {
    Value v;
    v.kind = Kind::kBool;
    v.num = b ? 1 : 0;
    return v;
  }
  static Value number(Kind k, double d) {
    Value v;
    v.kind = k;
    v.num = d;
    return v;
  }
  static Value null() {
    Value v;
    v.kind = Kind::kNull;
    return v;
  }
  static Value string(TString s) {
    Value v;
    v.kind = Kind::kString;
    v.str = std::make_shared<const TString>(std::move(s));
    return v;
  }
  static Value array(std::vector<Value> items, Kind k = Kind::kArray) {
    Value v;
    v.kind = k;
    v.arr = std::make_shared<const std::vector<Value>>(std::move(items));
    return v;
  }
  static Value object(Object o, Kind k = Kind::kObject) {
    Value v;
    v.kind = k;
    v.obj = std::make_shared<Object>(std::move(o));
    return v;
  }
  static Value function(std::string name, std::function<Value(Args&, const EnvPtr&)> f) {
    Value v;
    v.kind = Kind::kFunction;
    v.fn = std::make_shared<const Function>(Function{std::move(name), std::move(f)});
    return v;
  }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_array() const { return kind == Kind::kArray || kind == Kind::kTuple; }
  bool is_object() const { return kind == Kind::kObject || kind == Kind::kKwargs; }
  bool is_container() const { return is_object() || kind == Kind::kNamespace; }
  bool is_nullish() const { return kind == Kind::kUndefined || kind == Kind::kNull; }
  const std::string& s() const { return str->s; }
};

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k.s == key) return &v;
  }
  return nullptr;
}

void Object::set(TString key, Value v) {
  for (auto& [k, old] : items) {
    if (k.s == key.s) {
      old = std::move(v);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(v));
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNull:
      return false;
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
      return v.num != 0 && !std::isnan(v.num);
    case Kind::kString:
      return !v.s().empty();
    case Kind::kArray:
    case Kind::kTuple:
      return !v.arr->empty();
    case Kind::kObject:
    case Kind::kKwargs:
      return !v.obj->items.empty();
    case Kind::kNamespace:
    case Kind::kFunction:
      return true;
  }
  return false;
}

// JavaScript ===, on the wrapped values (containers by identity).
bool strict_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.num == b.num;
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kUndefined:
    case Kind::kNull:
      return true;
    case Kind::kBool:
      return a.num == b.num;
    case Kind::kString:
      return a.s() == b.s();
    case Kind::kArray:
    case Kind::kTuple:
      return a.arr == b.arr;
    case Kind::kObject:
    case Kind::kKwargs:
    case Kind::kNamespace:
      return a.obj == b.obj;
    case Kind::kFunction:
      return a.fn == b.fn;
    default:
      return false;
  }
}

// JavaScript == between the wrapped values.
bool loose_equal(const Value& a, const Value& b) {
  if (a.is_nullish() || b.is_nullish()) return a.is_nullish() && b.is_nullish();
  const bool a_prim = a.kind == Kind::kBool || a.is_number() || a.kind == Kind::kString;
  const bool b_prim = b.kind == Kind::kBool || b.is_number() || b.kind == Kind::kString;
  if (!a_prim || !b_prim) return strict_equal(a, b);
  if (a.kind == Kind::kString && b.kind == Kind::kString) return a.s() == b.s();
  const double x = a.kind == Kind::kString ? js_to_number(a.s()) : a.num;
  const double y = b.kind == Kind::kString ? js_to_number(b.s()) : b.num;
  return x == y;
}

// ---------------------------------------------------------------------------------------------
// The evaluator.

struct Env {
  std::unordered_map<std::string, Value> vars;
  EnvPtr parent;
  const Value* lookup(const std::string& name) const {
    for (const Env* e = this; e; e = e->parent.get()) {
      const auto it = e->vars.find(name);
      if (it != e->vars.end()) return &it->second;
    }
    return nullptr;
  }
};

EnvPtr child(const EnvPtr& parent) {
  auto e = std::make_shared<Env>();
  e->parent = parent;
  return e;
}

struct BreakSignal {};
struct ContinueSignal {};

struct JsonOptions {
  std::optional<double> indent;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::optional<std::pair<std::string, std::string>> separators;
};

class Interp {
 public:
  explicit Interp(const Template::State& st) : st_(st), lim_(st.limits) {}
  ~Interp() {
    // Namespaces are the only mutable values, so the only way to a reference cycle.
    for (const auto& ns : namespaces_) ns->items.clear();
  }

  TString run(const EnvPtr& globals) { return block(st_.body, globals); }

  Value from_json(const nlohmann::json& j, bool trusted) {
    switch (j.type()) {
      case nlohmann::json::value_t::null:
        return Value::null();
      case nlohmann::json::value_t::boolean:
        return Value::boolean(j.get<bool>());
      case nlohmann::json::value_t::number_integer:
      case nlohmann::json::value_t::number_unsigned:
      case nlohmann::json::value_t::number_float: {
        const double d = j.get<double>();
        return Value::number(std::floor(d) == d && std::isfinite(d) ? Kind::kInt : Kind::kFloat, d);
      }
      case nlohmann::json::value_t::string:
        return make_string(TString(j.get<std::string>(), trusted));
      case nlohmann::json::value_t::array: {
        std::vector<Value> items;
        for (const auto& e : j) items.push_back(from_json(e, trusted));
        return Value::array(std::move(items));
      }
      case nlohmann::json::value_t::object: {
        Object o;
        for (const auto& [k, v] : j.items()) o.set(TString(k, trusted), from_json(v, trusted));
        return Value::object(std::move(o));
      }
      default:
        fail("a variable holds a value of a type templates cannot see (binary)");
    }
  }

  void install_globals(Env& env) {
    env.vars["true"] = env.vars["True"] = Value::boolean(true);
    env.vars["false"] = env.vars["False"] = Value::boolean(false);
    env.vars["none"] = env.vars["None"] = Value::null();
    env.vars["namespace"] = Value::function("namespace", [this](Args& args, const EnvPtr&) {
      Object entries;
      Value kwargs;
      if (!args.empty() && args.back().kind == Kind::kKwargs) {
        kwargs = args.back();
        args.pop_back();
      }
      if (args.size() > 1)
        fail("namespace() takes at most 1 positional argument, got " + std::to_string(args.size()));
      if (args.size() == 1) {
        const Value& src = args[0];
        if (src.is_object()) {
          for (const auto& [k, v] : src.obj->items) entries.set(k, v);
        } else if (src.is_array()) {
          for (const auto& pair : *src.arr) {
            if (!pair.is_array() || pair.arr->size() != 2 || (*pair.arr)[0].kind != Kind::kString)
              fail("namespace() expects a mapping or a list of [key, value] pairs");
            entries.set(*(*pair.arr)[0].str, (*pair.arr)[1]);
          }
        } else {
          fail(std::string("namespace() cannot read a ") + kind_name(src.kind));
        }
      }
      if (kwargs.obj) {
        for (const auto& [k, v] : kwargs.obj->items) entries.set(k, v);
      }
      Value ns = Value::object(std::move(entries), Kind::kNamespace);
      namespaces_.push_back(ns.obj);
      return ns;
    });
    env.vars["raise_exception"] =
        Value::function("raise_exception", [](Args& args, const EnvPtr&) -> Value {
          std::string msg = args.empty() ? "undefined" : js_string(args[0]).s;
          fail("the template raised an exception: " + msg);
        });
    env.vars["range"] = Value::function("range", [this](Args& args, const EnvPtr&) {
      if (!args.empty() && args.back().kind == Kind::kKwargs) args.pop_back();
      if (args.empty() || args.size() > 3) fail("range() takes 1 to 3 arguments");
      for (const auto& a : args) {
        if (!a.is_number() || !std::isfinite(a.num))
          fail(std::string("range() needs numbers, got ") + kind_name(a.kind));
      }
      double start = 0, stop = args[0].num, step = 1;
      if (args.size() >= 2) {
        start = args[0].num;
        stop = args[1].num;
      }
      if (args.size() == 3) step = args[2].num;
      if (step == 0) fail("range() step must not be zero");
      const double count =
          step > 0 ? std::ceil((stop - start) / step) : std::ceil((start - stop) / -step);
      if (count > static_cast<double>(lim_.max_items))
        fail("range() of " + js_number(count) + " items exceeds the limit of " +
             std::to_string(lim_.max_items));
      std::vector<Value> out;
      for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
        out.push_back(Value::number(Kind::kInt, i));
      }
      charge(out.size() * sizeof(Value));
      return Value::array(std::move(out));
    });
    env.vars["strftime_now"] = Value::function("strftime_now", [this](Args& args, const EnvPtr&) {
      if (args.empty() || args[0].kind != Kind::kString)
        fail("strftime_now() needs a format string");
      return make_string(TString(strftime_now(args[0].s()), true));
    });
    env.vars["dict"] = Value::function("dict", [](Args& args, const EnvPtr&) {
      Object o;
      for (const auto& a : args) {
        if (a.kind != Kind::kKwargs) fail("dict() takes keyword arguments only");
        o = *a.obj;
      }
      return Value::object(std::move(o));
    });
  }

  static std::string strftime_now(const std::string& format) {
    static const char* kMonths[] = {"January",   "February", "March",    "April",
                                    "May",       "June",     "July",     "August",
                                    "September", "October",  "November", "December"};
    static const char* kShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    auto pad2 = [](int n) { return (n < 10 ? "0" : "") + std::to_string(n); };
    std::string out;
    for (std::size_t i = 0; i < format.size(); ++i) {
      if (format[i] != '%' || i + 1 >= format.size()) {
        out.push_back(format[i]);
        continue;
      }
      const char c = format[i + 1];
      std::string piece;
      switch (c) {
        case 'Y':
          piece = std::to_string(tm.tm_year + 1900);
          break;
        case 'm':
          piece = pad2(tm.tm_mon + 1);
          break;
        case 'd':
          piece = pad2(tm.tm_mday);
          break;
        case 'b':
          piece = kShort[tm.tm_mon];
          break;
        case 'B':
          piece = kMonths[tm.tm_mon];
          break;
        case 'H':
          piece = pad2(tm.tm_hour);
          break;
        case 'M':
          piece = pad2(tm.tm_min);
          break;
        case '%':
          piece = "%";
          break;
        default:
          out.push_back('%');
          continue;
      }
      out += piece;
      ++i;
    }
    return out;
  }

 private:
  // ----- budget
  void charge(std::uint64_t units) {
    work_ += units;
    if (work_ > lim_.max_work)
      fail("rendering exceeds the work limit of " + std::to_string(lim_.max_work) +
           " (a template that does not end?)");
  }
  Value make_string(TString t) {
    if (t.s.size() > lim_.max_string_bytes)
      fail("a string of " + std::to_string(t.s.size()) + " bytes exceeds the limit of " +
           std::to_string(lim_.max_string_bytes));
    charge(t.s.size());
    return Value::string(std::move(t));
  }
  Value make_array(std::vector<Value> items, Kind k = Kind::kArray) {
    if (items.size() > lim_.max_items)
      fail("a list of " + std::to_string(items.size()) + " items exceeds the limit of " +
           std::to_string(lim_.max_items));
    charge(items.size() * 8);
    return Value::array(std::move(items), k);
  }

  // ----- conversions to text

  // JSON text of v (@huggingface/jinja's toJSON); trusted only when every string in it is.
  void to_json(const Value& v, const JsonOptions& o, int depth, bool undefined_as_null,
               std::string& out, bool& trusted) {
    if (depth > static_cast<int>(lim_.max_nesting))
      fail("a value nests deeper than " + std::to_string(lim_.max_nesting) + " levels");
    if (out.size() > lim_.max_string_bytes)
      fail("JSON text exceeds the limit of " + std::to_string(lim_.max_string_bytes) + " bytes");
    std::string item_sep = ", ", key_sep = ": ";
    const bool indent = o.indent && *o.indent != 0;
    if (o.separators) {
      item_sep = o.separators->first;
      key_sep = o.separators->second;
    } else if (indent) {
      item_sep = ",";
    }
    switch (v.kind) {
      case Kind::kNull:
        out += "null";
        return;
      case Kind::kUndefined:
        out += undefined_as_null ? "null" : "undefined";
        return;
      case Kind::kInt:
      case Kind::kFloat:
        out += std::isfinite(v.num) ? js_number(v.num) : "null";
        return;
      case Kind::kBool:
        out += v.num != 0 ? "true" : "false";
        return;
      case Kind::kString: {
        std::string q;
        json_quote(v.s(), q);
        out += o.ensure_ascii ? ascii_safe(q) : q;
        trusted = trusted && v.str->all_trusted();
        return;
      }
      case Kind::kArray:
      case Kind::kObject:
      case Kind::kNamespace: {
        std::string unit;
        if (indent) {
          const double width = *o.indent;
          if (width < 0 || width > 64) fail("tojson indent must be between 0 and 64");
          unit.assign(static_cast<std::size_t>(width), ' ');
        }
        std::string base = "\n";
        for (int i = 0; i < depth; ++i) base += unit;
        const std::string children = base + unit;
        if (v.kind == Kind::kArray) {
          if (v.arr->empty()) {
            out += "[]";
            return;
          }
          out += "[";
          for (std::size_t i = 0; i < v.arr->size(); ++i) {
            if (i) out += item_sep;
            if (indent) out += children;
            to_json((*v.arr)[i], o, depth + 1, undefined_as_null, out, trusted);
          }
          if (indent) out += base;
          out += "]";
          return;
        }
        std::vector<const std::pair<TString, Value>*> entries;
        for (const auto& e : v.obj->items) entries.push_back(&e);
        if (o.sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto* a, const auto* b) { return a->first.s < b->first.s; });
        }
        if (entries.empty()) {
          out += "{}";
          return;
        }
        out += "{";
        for (std::size_t i = 0; i < entries.size(); ++i) {
          if (i) out += item_sep;
          if (indent) out += children;
          std::string q;
          json_quote(entries[i]->first.s, q);
          out += o.ensure_ascii ? ascii_safe(q) : q;
          trusted = trusted && entries[i]->first.all_trusted();
          out += key_sep;
          to_json(entries[i]->second, o, depth + 1, undefined_as_null, out, trusted);
        }
        if (indent) out += base;
        out += "}";
        return;
      }
      default:
        fail(std::string("cannot convert a ") + kind_name(v.kind) + " to JSON");
    }
  }

  TString json_text(const Value& v, const JsonOptions& o, bool undefined_as_null) {
    std::string out;
    bool trusted = true;
    to_json(v, o, 0, undefined_as_null, out, trusted);
    return TString(std::move(out), trusted);
  }

  // RuntimeValue.toString(): what {{ v }} prints.
  TString to_text(const Value& v) {
    switch (v.kind) {
      case Kind::kString:
        return *v.str;
      case Kind::kInt:
        return TString(js_number(v.num), true);
      case Kind::kFloat:
        return TString(js_float(v.num), true);
      case Kind::kBool:
        return TString(v.num != 0 ? "true" : "false", true);
      case Kind::kNull:
        return TString("null", true);
      case Kind::kUndefined:
        return TString("undefined", true);
      case Kind::kFunction:
        unsupported("a function (" + v.fn->name + ") cannot be printed");
      default:
        return json_text(v, {}, false);
    }
  }

  // String(v.value): what + and ~ concatenate.
  static TString js_string(const Value& v) {
    switch (v.kind) {
      case Kind::kString:
        return *v.str;
      case Kind::kInt:
      case Kind::kFloat:
        return TString(js_number(v.num), true);
      case Kind::kBool:
        return TString(v.num != 0 ? "true" : "false", true);
      case Kind::kNull:
        return TString("null", true);
      case Kind::kUndefined:
        return TString("undefined", true);
      case Kind::kObject:
      case Kind::kKwargs:
      case Kind::kNamespace:
        return TString("[object Map]", true);
      case Kind::kFunction:
        unsupported("a function (" + v.fn->name + ") cannot be turned into a string");
      default:
        break;
    }
    // Array.prototype.toString: the elements' RuntimeValue.toString joined by ","
    fail("a list cannot be concatenated to a string");
  }

  TString concat_text(const Value& v) {
    if (v.is_array()) {
      TString out;
      for (std::size_t i = 0; i < v.arr->size(); ++i) {
        if (i) out.append(",", true);
        out.append(to_text((*v.arr)[i]));
        if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
      }
      return out;
    }
    return js_string(v);
  }

  // ----- statements

  TString block(const std::vector<NodePtr>& body, const EnvPtr& env) {
    TString out;
    for (const auto& node : body) {
      const Value v = eval(*node, env);
      if (v.is_nullish()) continue;
      out.append(v.kind == Kind::kString ? *v.str : to_text(v));
      if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
    }
    return out;
  }

  Value eval(const Node& n, const EnvPtr& env) {
    if (++depth_ > lim_.max_nesting * 4)
      fail("evaluation nests deeper than " + std::to_string(lim_.max_nesting * 4) + " levels",
           n.pos);
    charge(16);
    try {
      Value v = eval_node(n, env);
      --depth_;
      return v;
    } catch (JinjaError& e) {
      --depth_;
      if (e.pos == kNoPos) e.pos = n.pos;
      throw;
    } catch (...) {
      --depth_;
      throw;
    }
  }

  Value eval_node(const Node& n, const EnvPtr& env) {
    switch (n.kind) {
      case NodeKind::kText:
        return make_string(TString(n.text, true));
      case NodeKind::kComment:
      case NodeKind::kMacro:
        if (n.kind == NodeKind::kMacro) define_macro(n, env);
        return Value::null();
      case NodeKind::kIf:
        return make_string(block(truthy(eval(*n.a, env)) ? n.list : n.list2, env));
      case NodeKind::kFor:
        return eval_for(n, env);
      case NodeKind::kSet:
        eval_set(n, env);
        return Value::null();
      case NodeKind::kCallBlock:
        return eval_call_block(n, env);
      case NodeKind::kFilterBlock:
        return apply_filter(make_string(block(n.list, env)), *n.a, env);
      case NodeKind::kBreak:
        throw BreakSignal{};
      case NodeKind::kContinue:
        throw ContinueSignal{};
      case NodeKind::kInt:
        return Value::number(Kind::kInt, n.number);
      case NodeKind::kFloat:
        return Value::number(Kind::kFloat, n.number);
      case NodeKind::kString:
        return make_string(TString(n.text, true));
      case NodeKind::kIdent: {
        const Value* v = env->lookup(n.text);
        return v ? *v : Value{};
      }
      case NodeKind::kArray:
      case NodeKind::kTuple: {
        std::vector<Value> items;
        for (const auto& e : n.list) items.push_back(eval(*e, env));
        return make_array(std::move(items),
                          n.kind == NodeKind::kArray ? Kind::kArray : Kind::kTuple);
      }
      case NodeKind::kObject: {
        Object o;
        for (std::size_t i = 0; i < n.list.size(); ++i) {
          const Value key = eval(*n.list[i], env);
          if (key.kind != Kind::kString)
            fail(std::string("a mapping key must be a string, got ") + kind_name(key.kind),
                 n.list[i]->pos);
          o.set(*key.str, eval(*n.list2[i], env));
        }
        return Value::object(std::move(o));
      }
      case NodeKind::kMember:
        return eval_member(n, env);
      case NodeKind::kCall: {
        auto [args, kwargs] = eval_args(n.list, env);
        if (!kwargs.items.empty()) args.push_back(Value::object(std::move(kwargs), Kind::kKwargs));
        const Value f = eval(*n.a, env);
        if (f.kind != Kind::kFunction)
          fail(std::string("cannot call a ") + kind_name(f.kind) +
                   (n.a->kind == NodeKind::kIdent ? " ('" + n.a->text + "')" : ""),
               n.pos);
        return f.fn->call(args, env);
      }
      case NodeKind::kUnary:
        return eval_unary(n, env);
      case NodeKind::kBinary:
        return eval_binary(n, env);
      case NodeKind::kFilter:
        return apply_filter(eval(*n.a, env), *n.b, env);
      case NodeKind::kTest:
        return Value::boolean(run_test(n.text, eval(*n.a, env), nullptr, n.pos) != n.flag);
      case NodeKind::kSelect:
        if (!truthy(eval(*n.b, env))) return Value{};
        return eval(*n.a, env);
      case NodeKind::kTernary:
        return truthy(eval(*n.a, env)) ? eval(*n.b, env) : eval(*n.c, env);
      case NodeKind::kSlice:
      case NodeKind::kKwarg:
      case NodeKind::kSpread:
      case NodeKind::kKwSpread:
        break;
    }
    fail("this expression cannot stand here", n.pos);
  }

  void assign(const Node& target, const Value& v, Env& env, const char* what) {
    if (target.kind == NodeKind::kIdent) {
      env.vars[target.text] = v;
      return;
    }
    if (target.kind == NodeKind::kTuple) {
      if (!v.is_array())
        fail(std::string("cannot unpack a ") + kind_name(v.kind) + " in " + what, target.pos);
      if (v.arr->size() != target.list.size())
        fail(std::string("too ") + (target.list.size() > v.arr->size() ? "few" : "many") +
                 " items to unpack in " + what,
             target.pos);
      for (std::size_t i = 0; i < target.list.size(); ++i) {
        if (target.list[i]->kind != NodeKind::kIdent)
          fail(std::string("can only unpack into names in ") + what, target.list[i]->pos);
        env.vars[target.list[i]->text] = (*v.arr)[i];
      }
      return;
    }
    fail(std::string("invalid target in ") + what, target.pos);
  }

  void eval_set(const Node& n, const EnvPtr& env) {
    const Value rhs = n.b ? eval(*n.b, env) : make_string(block(n.list, env));
    if (n.a->kind == NodeKind::kMember) {
      const Value object = eval(*n.a->a, env);
      if (object.kind != Kind::kNamespace)
        fail(std::string("cannot assign an attribute of a ") + kind_name(object.kind) +
                 " (only of a namespace)",
             n.a->pos);
      if (n.a->b->kind != NodeKind::kIdent || n.a->flag)
        fail("a namespace attribute must be assigned as ns.name", n.a->pos);
      object.obj->set(TString(n.a->b->text, true), rhs);
      return;
    }
    assign(*n.a, rhs, *env, "set");
  }

  Value eval_for(const Node& n, const EnvPtr& env) {
    EnvPtr scope = child(env);
    const Node* test = nullptr;
    Value iterable;
    if (n.b->kind == NodeKind::kSelect) {
      iterable = eval(*n.b->a, scope);
      test = n.b->b.get();
    } else {
      iterable = eval(*n.b, scope);
    }
    std::vector<Value> all;
    if (iterable.is_object()) {
      for (const auto& [k, v] : iterable.obj->items) all.push_back(make_string(k));
    } else if (iterable.is_array()) {
      all = *iterable.arr;
    } else {
      fail(std::string("cannot loop over a ") + kind_name(iterable.kind), n.b->pos);
    }
    std::vector<Value> items;
    for (const auto& item : all) {
      if (test) {
        count_iteration(n.pos);
        EnvPtr probe = child(scope);
        assign(*n.a, item, *probe, "for");
        if (!truthy(eval(*test, probe))) continue;
      } else if (n.a->kind == NodeKind::kTuple) {
        Env dummy;
        assign(*n.a, item, dummy, "for");
      }
      items.push_back(item);
    }
    TString out;
    bool none = true;
    const double len = static_cast<double>(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      count_iteration(n.pos);
      Object loop;
      const double d = static_cast<double>(i);
      loop.set(TString("index", true), Value::number(Kind::kInt, d + 1));
      loop.set(TString("index0", true), Value::number(Kind::kInt, d));
      loop.set(TString("revindex", true), Value::number(Kind::kInt, len - d));
      loop.set(TString("revindex0", true), Value::number(Kind::kInt, len - d - 1));
      loop.set(TString("first", true), Value::boolean(i == 0));
      loop.set(TString("last", true), Value::boolean(i + 1 == items.size()));
      loop.set(TString("length", true), Value::number(Kind::kInt, len));
      loop.set(TString("previtem", true), i > 0 ? items[i - 1] : Value{});
      loop.set(TString("nextitem", true), i + 1 < items.size() ? items[i + 1] : Value{});
      scope->vars["loop"] = Value::object(std::move(loop));
      assign(*n.a, items[i], *scope, "for");
      try {
        out.append(block(n.list, scope));
        if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
      } catch (const ContinueSignal&) {
        continue;
      } catch (const BreakSignal&) {
        break;
      }
      none = false;
    }
    if (none) out.append(block(n.list2, scope));
    return make_string(std::move(out));
  }

  void count_iteration(std::uint32_t pos) {
    if (++iterations_ > lim_.max_iterations)
      fail("loops ran more than " + std::to_string(lim_.max_iterations) + " iterations", pos);
  }

  // Binds a macro's (or call block's) parameters in scope: positional, then keyword, then the
  // defaults, evaluated in the macro's scope.
  void bind(const std::string& display, const Node& params_owner,
            const std::vector<NodePtr>& params, Args args, Env& scope, const EnvPtr& scope_ptr) {
    Object kwargs;
    if (!args.empty() && args.back().kind == Kind::kKwargs) {
      kwargs = *args.back().obj;
      args.pop_back();
    }
    std::vector<std::pair<std::string, const Node*>> pending;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Node& p = *params[i];
      std::optional<Value> value;
      if (i < args.size()) value = args[i];
      if (!value) {
        for (auto it = kwargs.items.begin(); it != kwargs.items.end(); ++it) {
          if (it->first.s == p.text) {
            value = it->second;
            kwargs.items.erase(it);
            break;
          }
        }
      }
      if (!value && p.kind == NodeKind::kKwarg) pending.push_back({p.text, p.a.get()});
      scope.vars[p.text] = value.value_or(Value{});
    }
    if (params_owner.specials.contains("kwargs")) {
      scope.vars["kwargs"] = Value::object(std::move(kwargs));
    } else if (!kwargs.items.empty()) {
      fail("macro " + display + " takes no keyword argument '" + kwargs.items[0].first.s + "'");
    }
    if (params_owner.specials.contains("varargs")) {
      std::vector<Value> rest;
      for (std::size_t i = params.size(); i < args.size(); ++i) rest.push_back(args[i]);
      scope.vars["varargs"] = make_array(std::move(rest));
    } else if (args.size() > params.size()) {
      fail("macro " + display + " takes not more than " + std::to_string(params.size()) +
           " argument(s)");
    }
    for (const auto& [name, def] : pending) scope.vars[name] = eval(*def, scope_ptr);
  }

  struct CallDepth {
    Interp& in;
    explicit CallDepth(Interp& i) : in(i) {
      if (++in.calls_ > in.lim_.max_call_depth)
        fail("macro calls nest deeper than " + std::to_string(in.lim_.max_call_depth) +
             " (unbounded recursion?)");
    }
    ~CallDepth() { --in.calls_; }
  };

  void define_macro(const Node& n, const EnvPtr& env) {
    const Node* node = &n;
    env->vars[n.text] = Value::function(n.text, [this, node](Args& args, const EnvPtr& caller) {
      CallDepth depth(*this);
      EnvPtr scope = child(caller);
      bind("'" + node->text + "'", *node, node->list, args, *scope, scope);
      return make_string(block(node->list2, scope));
    });
  }

  Value eval_call_block(const Node& n, const EnvPtr& env) {
    const Node* node = &n;
    std::weak_ptr<Env> weak = env;
    Value caller = Value::function("caller", [this, node, weak](Args& args, const EnvPtr&) {
      const EnvPtr outer = weak.lock();
      if (!outer) fail("caller() was called after its {% call %} block ended");
      CallDepth depth(*this);
      EnvPtr scope = child(outer);
      bind("None", *node, node->list, args, *scope, scope);
      return make_string(block(node->list2, scope));
    });
    const Node& call = *n.a;
    auto [args, kwargs] = eval_args(call.list, env);
    args.push_back(Value::object(std::move(kwargs), Kind::kKwargs));
    const Value f = eval(*call.a, env);
    if (f.kind != Kind::kFunction)
      fail("cannot call a " + std::string(kind_name(f.kind)) + " ('" + call.a->text + "')",
           call.pos);
    EnvPtr inner = child(env);
    inner->vars["caller"] = caller;
    return f.fn->call(args, inner);
  }

  std::pair<Args, Object> eval_args(const std::vector<NodePtr>& nodes, const EnvPtr& env) {
    Args args;
    Object kwargs;
    for (const auto& a : nodes) {
      if (a->kind == NodeKind::kSpread) {
        const Value v = eval(*a->a, env);
        if (!v.is_array()) fail(std::string("cannot unpack a ") + kind_name(v.kind), a->pos);
        for (const auto& e : *v.arr) args.push_back(e);
      } else if (a->kind != NodeKind::kKwarg && a->kind != NodeKind::kKwSpread) {
        args.push_back(eval(*a, env));
      }
    }
    auto add = [&](const TString& key, Value v, std::uint32_t pos) {
      if (kwargs.find(key.s)) fail("keyword argument '" + key.s + "' given twice", pos);
      kwargs.items.emplace_back(key, std::move(v));
    };
    for (const auto& a : nodes) {
      if (a->kind == NodeKind::kKwarg) {
        add(TString(a->text, true), eval(*a->a, env), a->pos);
      } else if (a->kind == NodeKind::kKwSpread) {
        const Value v = eval(*a->a, env);
        if (!v.is_object())
          fail(std::string("'**' needs a mapping, got ") + kind_name(v.kind), a->pos);
        for (const auto& [k, val] : v.obj->items) add(k, val, a->pos);
      }
    }
    return {std::move(args), std::move(kwargs)};
  }

  // ----- expressions

  Value eval_unary(const Node& n, const EnvPtr& env) {
    const Value v = eval(*n.a, env);
    if (n.text == "not") return Value::boolean(!truthy(v));
    if (v.is_number() || v.kind == Kind::kBool) {
      const double sign = n.text == "-" ? -1 : 1;
      return Value::number(v.kind == Kind::kFloat ? Kind::kFloat : Kind::kInt, sign * v.num);
    }
    fail("unary " + n.text + " needs a number, got " + kind_name(v.kind), n.pos);
  }

  Value eval_binary(const Node& n, const EnvPtr& env) {
    const std::string& op = n.text;
    const Value left = eval(*n.a, env);
    if (op == "and") return truthy(left) ? eval(*n.b, env) : left;
    if (op == "or") return truthy(left) ? left : eval(*n.b, env);
    const Value right = eval(*n.b, env);
    if (op == "==") return Value::boolean(loose_equal(left, right));
    if (op == "!=") return Value::boolean(!loose_equal(left, right));
    const bool membership = op == "in" || op == "not in";
    if (left.kind == Kind::kUndefined || right.kind == Kind::kUndefined) {
      if (right.kind == Kind::kUndefined && membership) return Value::boolean(op == "not in");
      fail("cannot apply '" + op + "' to an undefined value", n.pos);
    }
    if (left.kind == Kind::kNull || right.kind == Kind::kNull)
      fail("cannot apply '" + op + "' to none", n.pos);
    if (op == "~") {
      TString s = concat_text(left);
      s.append(concat_text(right));
      return make_string(std::move(s));
    }
    const bool numeric_like_l = left.is_number() || left.kind == Kind::kBool;
    const bool numeric_like_r = right.is_number() || right.kind == Kind::kBool;
    if (op == "**" && numeric_like_l && numeric_like_r) {
      if (left.num == 0 && right.num < 0) fail("0.0 cannot be raised to a negative power", n.pos);
      const double r = std::pow(left.num, right.num);
      if (!std::isfinite(r)) fail("the power is not a finite real number", n.pos);
      const bool is_float =
          left.kind == Kind::kFloat || right.kind == Kind::kFloat || right.num < 0;
      return Value::number(is_float ? Kind::kFloat : Kind::kInt, r);
    }
    if (left.is_number() && right.is_number()) {
      const double a = left.num, b = right.num;
      const Kind k =
          left.kind == Kind::kFloat || right.kind == Kind::kFloat ? Kind::kFloat : Kind::kInt;
      if (op == "+") return Value::number(k, a + b);
      if (op == "-") return Value::number(k, a - b);
      if (op == "*") return Value::number(k, a * b);
      if (op == "/") return Value::number(Kind::kFloat, a / b);
      if (op == "//") return Value::number(k, std::floor(a / b));
      if (op == "%") return Value::number(k, std::fmod(a, b));
      if (op == "<") return Value::boolean(a < b);
      if (op == ">") return Value::boolean(a > b);
      if (op == "<=") return Value::boolean(a <= b);
      if (op == ">=") return Value::boolean(a >= b);
    } else if (left.is_array() && right.is_array()) {
      if (op == "+") {
        if (left.arr->size() + right.arr->size() > lim_.max_items)
          fail("a list would exceed the limit of " + std::to_string(lim_.max_items) + " items",
               n.pos);
        std::vector<Value> items = *left.arr;
        items.insert(items.end(), right.arr->begin(), right.arr->end());
        return make_array(std::move(items));
      }
    } else if (right.is_array()) {
      bool member = false;
      for (const auto& e : *right.arr) member = member || strict_equal(e, left);
      if (op == "in") return Value::boolean(member);
      if (op == "not in") return Value::boolean(!member);
    }
    if ((left.kind == Kind::kString || right.kind == Kind::kString) && op == "+") {
      TString s = concat_text(left);
      s.append(concat_text(right));
      return make_string(std::move(s));
    }
    if (left.kind == Kind::kString && right.kind == Kind::kString && membership) {
      const bool has = right.s().find(left.s()) != std::string::npos;
      return Value::boolean(has == (op == "in"));
    }
    if (left.kind == Kind::kString && right.is_object() && membership) {
      const bool has = right.obj->find(left.s()) != nullptr;
      return Value::boolean(has == (op == "in"));
    }
    fail("operator '" + op + "' does not apply to a " + kind_name(left.kind) + " and a " +
             kind_name(right.kind),
         n.pos);
  }

  static std::vector<double> slice_indices(double len, std::optional<double> start,
                                           std::optional<double> stop, double step) {
    std::vector<double> out;
    if (step >= 0) {
      double b = start.value_or(0), e = stop.value_or(len);
      b = b < 0 ? std::max(len + b, 0.0) : std::min(b, len);
      e = e < 0 ? std::max(len + e, 0.0) : std::min(e, len);
      if (step == 0) {
        if (b < e) fail("slice step cannot be zero");
        return out;
      }
      for (double i = b; i < e; i += step) out.push_back(i);
    } else {
      double b = start.value_or(len - 1), e = stop.value_or(-1);
      b = b < 0 ? std::max(len + b, -1.0) : std::min(b, len - 1);
      e = e < -1 ? std::max(len + e, -1.0) : std::min(e, len - 1);
      for (double i = b; i > e; i += step) out.push_back(i);
    }
    return out;
  }

  Value eval_slice(const Value& object, const Node& s, const EnvPtr& env) {
    if (!object.is_array() && object.kind != Kind::kString)
      fail(std::string("cannot slice a ") + kind_name(object.kind), s.pos);
    auto part = [&](const NodePtr& p, const char* what) -> std::optional<double> {
      if (!p) return std::nullopt;
      const Value v = eval(*p, env);
      if (v.kind == Kind::kUndefined) return std::nullopt;
      if (v.kind != Kind::kInt) fail(std::string("slice ") + what + " must be an integer", p->pos);
      return v.num;
    };
    const auto start = part(s.a, "start"), stop = part(s.b, "stop"), step = part(s.c, "step");
    if (object.is_array()) {
      std::vector<Value> items;
      for (const double i :
           slice_indices(static_cast<double>(object.arr->size()), start, stop, step.value_or(1))) {
        items.push_back((*object.arr)[static_cast<std::size_t>(i)]);
      }
      return make_array(std::move(items));
    }
    const TString& str = *object.str;
    const auto at = code_point_offsets(str.s);
    TString out;
    for (const double i :
         slice_indices(static_cast<double>(at.size() - 1), start, stop, step.value_or(1))) {
      const auto k = static_cast<std::size_t>(i);
      out.append(str.substr(at[k], at[k + 1]));
    }
    return make_string(std::move(out));
  }

  Value eval_member(const Node& n, const EnvPtr& env) {
    const Value object = eval(*n.a, env);
    Value property;
    if (n.flag) {
      if (n.b->kind == NodeKind::kSlice) return eval_slice(object, *n.b, env);
      property = eval(*n.b, env);
    } else if (n.b->kind == NodeKind::kInt) {
      property = Value::number(Kind::kInt, n.b->number);
    } else {
      property = make_string(TString(n.b->text, true));
    }
    if (object.is_container()) {
      if (property.kind != Kind::kString)
        fail(std::string("a ") + kind_name(object.kind) + " is indexed by strings, not by a " +
                 kind_name(property.kind),
             n.pos);
      if (const Value* v = object.obj->find(property.s())) return *v;
      if (object.is_object()) return builtin(object, property.s());
      return Value{};
    }
    if (object.is_array() || object.kind == Kind::kString) {
      if (property.kind == Kind::kInt) {
        if (object.is_array()) {
          double i = property.num;
          const double len = static_cast<double>(object.arr->size());
          if (i < 0) i += len;
          if (i < 0 || i >= len) return Value{};
          return (*object.arr)[static_cast<std::size_t>(i)];
        }
        return string_at(*object.str, property.num);
      }
      if (property.kind == Kind::kString) return builtin(object, property.s());
      fail(std::string("cannot index a ") + kind_name(object.kind) + " by a " +
               kind_name(property.kind),
           n.pos);
    }
    if (property.kind != Kind::kString)
      fail(std::string("cannot index a ") + kind_name(object.kind) + " by a " +
               kind_name(property.kind),
           n.pos);
    return Value{};
  }

  // String.prototype.at(): by UTF-16 unit; half of a surrogate pair reads as U+FFFD.
  Value string_at(const TString& s, double index) {
    const double len = static_cast<double>(utf16_length(s.s));
    if (index < 0) index += len;
    if (index < 0 || index >= len) return Value{};
    std::size_t unit = 0, i = 0;
    while (i < s.s.size()) {
      const std::size_t b = i;
      const char32_t c = unicode::next(s.s, i);
      const std::size_t width = c >= 0x10000 ? 2 : 1;
      if (index < static_cast<double>(unit + width)) {
        if (width == 2) {
          const bool trusted = s.substr(b, i).all_trusted();
          return make_string(TString("\xEF\xBF\xBD", trusted));
        }
        return make_string(s.substr(b, i));
      }
      unit += width;
    }
    return Value{};
  }

  // ----- builtin methods (obj.get, s.split, ...)

  Value builtin(const Value& self, const std::string& name) {
    if (self.is_array()) {
      if (name == "length") return Value::number(Kind::kInt, static_cast<double>(self.arr->size()));
      return Value{};
    }
    if (self.kind == Kind::kString) return string_builtin(self, name);
    if (self.is_object()) return object_builtin(self, name);
    return Value{};
  }

  Value string_builtin(const Value& self, const std::string& name) {
    const auto str = self.str;
    auto method = [&](auto f) {
      return Value::function(name,
                             [this, str, f](Args& args, const EnvPtr&) { return f(*str, args); });
    };
    if (name == "length")
      return Value::number(Kind::kInt, static_cast<double>(utf16_length(str->s)));
    if (name == "upper")
      return method([this](const TString& s, Args&) { return make_string(s.map_runs(js_upper)); });
    if (name == "lower")
      return method(
          [this](const TString& s, Args&) { return make_string(s.map_runs(unicode::lowercase)); });
    if (name == "strip")
      return method(
          [this](const TString& s, Args&) { return make_string(js_trim(s, true, true)); });
    if (name == "lstrip")
      return method(
          [this](const TString& s, Args&) { return make_string(js_trim(s, true, false)); });
    if (name == "rstrip")
      return method(
          [this](const TString& s, Args&) { return make_string(js_trim(s, false, true)); });
    if (name == "title")
      return method([this](const TString& s, Args&) { return make_string(title(s)); });
    if (name == "capitalize")
      return method([this](const TString& s, Args&) { return make_string(capitalize(s)); });
    if (name == "startswith" || name == "endswith") {
      const bool start = name == "startswith";
      return method([start, name](const TString& s, Args& args) {
        if (args.empty()) fail(name + "() needs an argument");
        auto test = [&](const Value& p) {
          if (p.kind != Kind::kString) fail(name + "() needs a string or a tuple of strings");
          return start ? s.s.starts_with(p.s()) : s.s.ends_with(p.s());
        };
        if (args[0].is_array()) {
          for (const auto& p : *args[0].arr) {
            if (test(p)) return Value::boolean(true);
          }
          return Value::boolean(false);
        }
        return Value::boolean(test(args[0]));
      });
    }
    if (name == "split")
      return method([this](const TString& s, Args& args) { return split(s, args); });
    if (name == "replace")
      return method([this](const TString& s, Args& args) { return replace(s, args); });
    return Value{};
  }

  TString title(const TString& s) {
    // \b\w over the whole string: a run boundary must not restart a word.
    const std::string up = js_title(s.s);
    TString out;
    std::size_t start = 0;
    for (const auto& [end, trusted] : s.runs) {
      out.append(std::string_view(up).substr(start, end - start), trusted);
      start = end;
    }
    return out;
  }

  TString capitalize(const TString& s) {
    if (s.s.empty()) return s;
    std::size_t i = 0;
    const char32_t c = unicode::next(s.s, i);
    TString out;
    out.append(c >= 0x10000 ? std::string(s.s.substr(0, i)) : js_upper(s.s.substr(0, i)),
               s.substr(0, i).all_trusted());
    out.append(s.substr(i, s.s.size()));
    return out;
  }

  Value split(const TString& s, Args& args) {
    const Value sep = args.size() > 0 ? args[0] : Value::null();
    if (sep.kind != Kind::kString && sep.kind != Kind::kNull)
      fail("split() separator must be a string or none");
    const Value maxsplit = args.size() > 1 ? args[1] : Value::number(Kind::kInt, -1);
    if (maxsplit.kind != Kind::kInt) fail("split() maxsplit must be an integer");
    std::vector<Value> parts;
    if (sep.kind == Kind::kNull) {
      const std::size_t begin = js_trim_range(s.s, true, false).first;
      std::size_t i = begin;
      while (i < s.s.size()) {
        i = skip_js_space(s.s, i);
        if (i >= s.s.size()) break;
        if (maxsplit.num != -1 && static_cast<double>(parts.size()) >= maxsplit.num) {
          parts.push_back(make_string(s.substr(i, s.s.size())));
          break;
        }
        std::size_t j = i;
        while (j < s.s.size()) {
          std::size_t k = j;
          if (is_js_space(unicode::next(s.s, k))) break;
          j = k;
        }
        parts.push_back(make_string(s.substr(i, j)));
        i = j;
      }
    } else {
      const std::string& d = sep.s();
      if (d.empty()) fail("split() separator is empty");
      std::vector<std::pair<std::size_t, std::size_t>> pieces;
      std::size_t b = 0;
      for (std::size_t p = s.s.find(d); p != std::string::npos; p = s.s.find(d, b)) {
        pieces.push_back({b, p});
        b = p + d.size();
      }
      pieces.push_back({b, s.s.size()});
      if (maxsplit.num >= 0 && static_cast<double>(pieces.size()) > maxsplit.num) {
        const auto keep = static_cast<std::size_t>(maxsplit.num);
        const std::size_t tail = pieces[keep].first;
        pieces.resize(keep);
        pieces.push_back({tail, s.s.size()});
      }
      for (const auto& [x, y] : pieces) parts.push_back(make_string(s.substr(x, y)));
    }
    return make_array(std::move(parts));
  }

  Value replace(const TString& s, Args& args) {
    if (args.size() < 2) fail("replace() needs two arguments");
    if (args[0].kind != Kind::kString || args[1].kind != Kind::kString)
      fail("replace() arguments must be strings");
    Value count = Value::null();
    if (args.size() > 2) {
      if (args[2].kind == Kind::kKwargs) {
        const Value* c = args[2].obj->find("count");
        count = c ? *c : Value::null();
      } else {
        count = args[2];
      }
    }
    if (count.kind != Kind::kInt && count.kind != Kind::kNull)
      fail("replace() count must be an integer or none");
    const std::string& old = args[0].s();
    const TString& with = *args[1].str;
    double remaining = count.kind == Kind::kNull || count.num < 0 ? INFINITY : count.num;
    if (remaining == 0) return make_string(s);
    TString out;
    if (old.empty()) {
      // (?=) with the u flag matches between code points and at both ends.
      const auto at = code_point_offsets(s.s);
      for (std::size_t k = 0; k < at.size(); ++k) {
        if (remaining > 0) {
          out.append(with);
          --remaining;
        }
        if (k + 1 < at.size()) out.append(s.substr(at[k], at[k + 1]));
        if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
      }
      return make_string(std::move(out));
    }
    std::size_t b = 0;
    for (std::size_t p = s.s.find(old); p != std::string::npos && remaining > 0;
         p = s.s.find(old, b)) {
      out.append(s.substr(b, p));
      out.append(with);
      if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
      b = p + old.size();
      --remaining;
    }
    out.append(s.substr(b, s.s.size()));
    return make_string(std::move(out));
  }

  Value object_builtin(const Value& self, const std::string& name) {
    const auto obj = self.obj;
    if (name == "get") {
      return Value::function("get", [obj](Args& args, const EnvPtr&) {
        if (args.empty() || args[0].kind != Kind::kString) fail("get() needs a string key");
        if (const Value* v = obj->find(args[0].s())) return *v;
        return args.size() > 1 ? args[1] : Value::null();
      });
    }
    if (name == "items" || name == "keys" || name == "values") {
      return Value::function(
          name, [this, obj, name](Args&, const EnvPtr&) { return items_of(*obj, name); });
    }
    if (name == "dictsort") {
      return Value::function(
          "dictsort", [this, obj](Args& args, const EnvPtr&) { return dictsort(*obj, args); });
    }
    return Value{};
  }

  Value items_of(const Object& obj, const std::string& which) {
    std::vector<Value> out;
    for (const auto& [k, v] : obj.items) {
      if (which == "keys") {
        out.push_back(make_string(k));
      } else if (which == "values") {
        out.push_back(v);
      } else {
        out.push_back(make_array({make_string(k), v}));
      }
    }
    return make_array(std::move(out));
  }

  // compareRuntimeValues: numbers (and booleans) with numbers, strings with strings (UTF-16
  // order, lower-cased unless case-sensitive), none with none, undefined with undefined.
  static int compare(const Value& a, const Value& b, bool case_sensitive) {
    if (a.kind == Kind::kNull && b.kind == Kind::kNull) return 0;
    if (a.kind == Kind::kNull || b.kind == Kind::kNull)
      fail(std::string("cannot compare ") + kind_name(a.kind) + " with " + kind_name(b.kind));
    if (a.kind == Kind::kUndefined && b.kind == Kind::kUndefined) return 0;
    if (a.kind == Kind::kUndefined || b.kind == Kind::kUndefined)
      fail(std::string("cannot compare ") + kind_name(a.kind) + " with " + kind_name(b.kind));
    const bool an = a.is_number() || a.kind == Kind::kBool;
    const bool bn = b.is_number() || b.kind == Kind::kBool;
    if (an && bn) return a.num < b.num ? -1 : a.num > b.num ? 1 : 0;
    if (a.kind != b.kind)
      fail(std::string("cannot compare ") + kind_name(a.kind) + " with " + kind_name(b.kind));
    if (a.kind != Kind::kString) fail(std::string("cannot compare ") + kind_name(a.kind) + "s");
    const std::u16string x = to_utf16(case_sensitive ? a.s() : unicode::lowercase(a.s()));
    const std::u16string y = to_utf16(case_sensitive ? b.s() : unicode::lowercase(b.s()));
    return x < y ? -1 : x > y ? 1 : 0;
  }

  static const Value* flag_arg(const Args& args, std::size_t i, const Object* kw,
                               const char* name) {
    if (i < args.size()) return &args[i];
    return kw ? kw->find(name) : nullptr;
  }

  Value dictsort(const Object& obj, Args args) {
    const Object* kw = nullptr;
    Object kwstore;
    if (!args.empty() && args.back().kind == Kind::kKwargs) {
      kwstore = *args.back().obj;
      kw = &kwstore;
      args.pop_back();
    }
    const Value* cs = flag_arg(args, 0, kw, "case_sensitive");
    const Value* by = flag_arg(args, 1, kw, "by");
    const Value* rev = flag_arg(args, 2, kw, "reverse");
    if (cs && cs->kind != Kind::kBool) fail("dictsort case_sensitive must be a boolean");
    if (by && (by->kind != Kind::kString || (by->s() != "key" && by->s() != "value")))
      fail("dictsort by must be 'key' or 'value'");
    if (rev && rev->kind != Kind::kBool) fail("dictsort reverse must be a boolean");
    const bool case_sensitive = cs && cs->num != 0;
    const std::size_t index = by && by->s() == "value" ? 1 : 0;
    const bool reverse = rev && rev->num != 0;
    std::vector<Value> pairs;
    for (const auto& [k, v] : obj.items) pairs.push_back(make_array({make_string(k), v}));
    std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& a, const Value& b) {
      const int r = compare((*a.arr)[index], (*b.arr)[index], case_sensitive);
      return reverse ? r > 0 : r < 0;
    });
    return make_array(std::move(pairs));
  }

  // ----- tests

  bool run_test(const std::string& name, const Value& v, const Value* arg, std::uint32_t pos) {
    if (name == "boolean") return v.kind == Kind::kBool;
    if (name == "callable") return v.kind == Kind::kFunction;
    if (name == "odd" || name == "even") {
      if (v.kind != Kind::kInt) fail("test '" + name + "' needs an integer", pos);
      const bool odd = std::fmod(v.num, 2) != 0;
      return name == "odd" ? odd : !odd;
    }
    if (name == "false") return v.kind == Kind::kBool && v.num == 0;
    if (name == "true") return v.kind == Kind::kBool && v.num != 0;
    if (name == "none") return v.kind == Kind::kNull;
    if (name == "string") return v.kind == Kind::kString;
    if (name == "number") return v.is_number();
    if (name == "integer") return v.kind == Kind::kInt;
    if (name == "float") return v.kind == Kind::kFloat;
    if (name == "iterable") return v.kind == Kind::kArray || v.kind == Kind::kString;
    if (name == "mapping") return v.is_object();
    if (name == "sequence") return v.is_array() || v.is_object() || v.kind == Kind::kString;
    if (name == "lower") return v.kind == Kind::kString && v.s() == unicode::lowercase(v.s());
    if (name == "upper") return v.kind == Kind::kString && v.s() == js_upper(v.s());
    if (name == "defined") return v.kind != Kind::kUndefined;
    if (name == "undefined") return v.kind == Kind::kUndefined;
    if (name == "equalto" || name == "eq" || name == "==") {
      const Value none;
      return strict_equal(v, arg ? *arg : none);
    }
    unsupported("unknown test '" + name + "'", pos);
  }

  // ----- filters

  Value apply_filter(const Value& operand, const Node& filter, const EnvPtr& env) {
    if (filter.kind == NodeKind::kIdent) return plain_filter(operand, filter.text, filter.pos);
    return call_filter(operand, filter, env);
  }

  Value plain_filter(const Value& v, const std::string& name, std::uint32_t pos) {
    if (name == "safe") return v;
    if (name == "tojson") return make_string(json_text(v, {}, true));
    if (v.is_array()) {
      const auto& a = *v.arr;
      if (name == "list") return v;
      if (name == "first") return a.empty() ? Value{} : a.front();
      if (name == "last") return a.empty() ? Value{} : a.back();
      if (name == "length" || name == "count")
        return Value::number(Kind::kInt, static_cast<double>(a.size()));
      if (name == "reverse") return make_array(std::vector<Value>(a.rbegin(), a.rend()));
      if (name == "sort") {
        std::vector<Value> items = a;
        std::stable_sort(items.begin(), items.end(),
                         [](const Value& x, const Value& y) { return compare(x, y, false) < 0; });
        return make_array(std::move(items));
      }
      if (name == "join") return make_string(join(a, TString()));
      if (name == "string") return make_string(json_text(v, {}, false));
      if (name == "unique") {
        std::vector<Value> out;
        for (const auto& item : a) {
          bool seen = false;
          for (const auto& o : out) seen = seen || same_value(o, item);
          if (!seen) out.push_back(item);
        }
        return make_array(std::move(out));
      }
      unsupported("unknown filter '" + name + "' for a list", pos);
    }
    if (v.kind == Kind::kString) {
      const TString& s = *v.str;
      if (name == "length" || name == "count")
        return Value::number(Kind::kInt, static_cast<double>(utf16_length(s.s)));
      if (name == "upper") return make_string(s.map_runs(js_upper));
      if (name == "lower") return make_string(s.map_runs(unicode::lowercase));
      if (name == "title") return make_string(title(s));
      if (name == "capitalize") return make_string(capitalize(s));
      if (name == "trim") return make_string(js_trim(s, true, true));
      if (name == "indent") return make_string(indent(s, TString("    ", true), false, false));
      if (name == "join" || name == "string") return v;
      if (name == "int") {
        const double d = js_parse_int(s.s);
        return Value::number(Kind::kInt, std::isnan(d) ? 0 : d);
      }
      if (name == "float") {
        const double d = js_parse_float(s.s);
        return Value::number(Kind::kFloat, std::isnan(d) ? 0 : d);
      }
      if (name == "wordcount") {
        double words = 0;
        bool in_word = false;
        std::size_t i = 0;
        while (i < s.s.size()) {
          const char32_t c = unicode::next(s.s, i);
          const bool w = unicode::is_letter(c) || unicode::is_number(c) || c == '_';
          if (w && !in_word) ++words;
          in_word = w;
        }
        return Value::number(Kind::kInt, words);
      }
      unsupported("unknown filter '" + name + "' for a string", pos);
    }
    if (v.is_number()) {
      if (name == "abs") return Value::number(v.kind, std::fabs(v.num));
      if (name == "int") return Value::number(Kind::kInt, std::floor(v.num));
      if (name == "float") return Value::number(Kind::kFloat, v.num);
      if (name == "round") return Value::number(Kind::kFloat, round_half_away(v.num, 0));
      if (name == "string") return make_string(to_text(v));
      unsupported("unknown filter '" + name + "' for a number", pos);
    }
    if (v.is_object()) {
      if (name == "items") return items_of(*v.obj, "items");
      if (name == "length" || name == "count")
        return Value::number(Kind::kInt, static_cast<double>(v.obj->items.size()));
      const Value b = builtin(v, name);
      if (b.kind == Kind::kFunction) {
        Args none;
        return b.fn->call(none, nullptr);
      }
      unsupported("unknown filter '" + name + "' for a mapping", pos);
    }
    if (v.kind == Kind::kBool) {
      if (name == "bool") return v;
      if (name == "int") return Value::number(Kind::kInt, v.num);
      if (name == "float") return Value::number(Kind::kFloat, v.num);
      if (name == "string") return make_string(TString(v.num != 0 ? "true" : "false", true));
      unsupported("unknown filter '" + name + "' for a boolean", pos);
    }
    fail("cannot apply filter '" + name + "' to a " + kind_name(v.kind), pos);
  }

  static double round_half_away(double x, int digits) {
    const double scale = std::pow(10.0, digits);
    return std::round(x * scale) / scale;
  }

  // SameValueZero, for unique.
  static bool same_value(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
      return a.num == b.num || (std::isnan(a.num) && std::isnan(b.num));
    }
    return strict_equal(a, b);
  }

  TString join(const std::vector<Value>& items, const TString& sep) {
    TString out;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i) out.append(sep);
      const Value& x = items[i];
      if (x.is_nullish()) continue;
      out.append(concat_text(x));
      if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
    }
    return out;
  }

  TString indent(const TString& s, const TString& unit, bool first, bool blank) {
    TString out;
    std::size_t b = 0, line = 0;
    while (true) {
      const std::size_t e = std::min(s.s.find('\n', b), s.s.size());
      if (line) out.append("\n", s.substr(b - 1, b).all_trusted());
      const bool empty = e == b;
      if (!((!first && line == 0) || (!blank && empty))) out.append(unit);
      out.append(s.substr(b, e));
      if (out.s.size() > lim_.max_string_bytes) make_string(std::move(out));
      if (e >= s.s.size()) break;
      b = e + 1;
      ++line;
    }
    return out;
  }

  Value call_filter(const Value& v, const Node& call, const EnvPtr& env) {
    const std::string& name = call.a->text;
    if (call.a->kind != NodeKind::kIdent) unsupported("a filter must be named", call.pos);
    if (name == "tojson") {
      auto [args, kw] = eval_args(call.list, env);
      JsonOptions o;
      if (const Value* ind = kw.find("indent")) {
        if (ind->kind != Kind::kInt && ind->kind != Kind::kNull)
          fail("tojson indent must be an integer", call.pos);
        if (ind->kind == Kind::kInt) o.indent = ind->num;
      }
      if (const Value* a = kw.find("ensure_ascii")) {
        if (a->kind != Kind::kBool) fail("tojson ensure_ascii must be a boolean", call.pos);
        o.ensure_ascii = a->num != 0;
      }
      if (const Value* sk = kw.find("sort_keys")) {
        if (sk->kind != Kind::kBool) fail("tojson sort_keys must be a boolean", call.pos);
        o.sort_keys = sk->num != 0;
      }
      if (const Value* sep = kw.find("separators")) {
        if (sep->is_array()) {
          if (sep->arr->size() != 2 || (*sep->arr)[0].kind != Kind::kString ||
              (*sep->arr)[1].kind != Kind::kString)
            fail("tojson separators must be two strings", call.pos);
          o.separators = {{(*sep->arr)[0].s(), (*sep->arr)[1].s()}};
        } else if (sep->kind != Kind::kNull) {
          fail("tojson separators must be two strings", call.pos);
        }
      }
      return make_string(json_text(v, o, true));
    }
    if (name == "join") {
      std::vector<Value> items;
      if (v.kind == Kind::kString) {
        const auto at = code_point_offsets(v.s());
        for (std::size_t k = 0; k + 1 < at.size(); ++k)
          items.push_back(make_string(v.str->substr(at[k], at[k + 1])));
      } else if (v.is_array()) {
        items = *v.arr;
      } else {
        fail(std::string("cannot apply filter 'join' to a ") + kind_name(v.kind), call.pos);
      }
      auto [args, kw] = eval_args(call.list, env);
      const Value* sep = flag_arg(args, 0, &kw, "separator");
      if (sep && sep->kind != Kind::kString) fail("join separator must be a string", call.pos);
      return make_string(join(items, sep ? *sep->str : TString()));
    }
    if (name == "int" || name == "float") {
      auto [args, kw] = eval_args(call.list, env);
      const Value* def = flag_arg(args, 0, &kw, "default");
      const bool is_int = name == "int";
      const Value fallback = def ? *def : Value::number(is_int ? Kind::kInt : Kind::kFloat, 0);
      if (v.kind == Kind::kString) {
        const double d = is_int ? js_parse_int(v.s()) : js_parse_float(v.s());
        if (std::isnan(d)) return fallback;
        return Value::number(is_int ? Kind::kInt : Kind::kFloat, d);
      }
      if (v.is_number()) return v;
      if (v.kind == Kind::kBool) return Value::number(is_int ? Kind::kInt : Kind::kFloat, v.num);
      fail("cannot apply filter '" + name + "' to a " + kind_name(v.kind), call.pos);
    }
    if (name == "default" || name == "d") {
      auto [args, kw] = eval_args(call.list, env);
      const Value def = args.empty() ? make_string(TString()) : args[0];
      const Value* flag = flag_arg(args, 1, &kw, "boolean");
      if (flag && flag->kind != Kind::kBool) fail("default's boolean must be a boolean", call.pos);
      if (v.kind == Kind::kUndefined || (flag && flag->num != 0 && !truthy(v))) return def;
      return v;
    }
    if (name == "round") {
      if (!v.is_number()) fail("cannot round a " + std::string(kind_name(v.kind)), call.pos);
      auto [args, kw] = eval_args(call.list, env);
      const Value* prec = flag_arg(args, 0, &kw, "precision");
      const Value* method = flag_arg(args, 1, &kw, "method");
      const int digits = prec && prec->is_number() ? static_cast<int>(prec->num) : 0;
      const std::string m = method && method->kind == Kind::kString ? method->s() : "common";
      const double scale = std::pow(10.0, digits);
      double r;
      if (m == "common") {
        r = round_half_away(v.num, digits);
      } else if (m == "floor") {
        r = std::floor(v.num * scale) / scale;
      } else if (m == "ceil") {
        r = std::ceil(v.num * scale) / scale;
      } else {
        fail("round method must be 'common', 'floor' or 'ceil'", call.pos);
      }
      return Value::number(Kind::kFloat, r);
    }
    if (v.is_array()) {
      if (name == "sort") {
        auto [args, kw] = eval_args(call.list, env);
        const Value* rev = flag_arg(args, 0, &kw, "reverse");
        const Value* cs = flag_arg(args, 1, &kw, "case_sensitive");
        const Value* attr = flag_arg(args, 2, &kw, "attribute");
        if (rev && rev->kind != Kind::kBool) fail("sort reverse must be a boolean", call.pos);
        if (cs && cs->kind != Kind::kBool) fail("sort case_sensitive must be a boolean", call.pos);
        if (attr && attr->kind != Kind::kString && attr->kind != Kind::kInt &&
            attr->kind != Kind::kNull)
          fail("sort attribute must be a string or an integer", call.pos);
        const bool reverse = rev && rev->num != 0, sensitive = cs && cs->num != 0;
        std::string path;
        const bool by_attr = attr && attr->kind != Kind::kNull;
        if (by_attr) path = attr->kind == Kind::kInt ? js_number(attr->num) : attr->s();
        std::vector<Value> items = *v.arr;
        std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
          const Value a = by_attr ? attribute(x, path) : x;
          const Value b = by_attr ? attribute(y, path) : y;
          const int r = compare(a, b, sensitive);
          return reverse ? r > 0 : r < 0;
        });
        return make_array(std::move(items));
      }
      if (name == "selectattr" || name == "rejectattr") {
        const bool select = name == "selectattr";
        for (const auto& item : *v.arr) {
          if (!item.is_container()) fail("'" + name + "' needs a list of mappings", call.pos);
        }
        for (const auto& a : call.list) {
          if (a->kind != NodeKind::kString)
            fail("the arguments of '" + name + "' must be string literals", a->pos);
        }
        if (call.list.empty()) fail("'" + name + "' needs an attribute name", call.pos);
        const std::string& attr = call.list[0]->text;
        const std::string* test = call.list.size() > 1 ? &call.list[1]->text : nullptr;
        std::optional<Value> arg;
        if (call.list.size() > 2) arg = make_string(TString(call.list[2]->text, true));
        std::vector<Value> out;
        for (const auto& item : *v.arr) {
          const Value* a = item.obj->find(attr);
          bool r = false;
          if (a) r = test ? run_test(*test, *a, arg ? &*arg : nullptr, call.pos) : truthy(*a);
          if (r == select) out.push_back(item);
        }
        return make_array(std::move(out));
      }
      if (name == "map") {
        auto [args, kw] = eval_args(call.list, env);
        const Value* attr = kw.find("attribute");
        if (!attr) unsupported("'map' is supported with attribute= only", call.pos);
        if (attr->kind != Kind::kString) fail("map attribute must be a string", call.pos);
        const Value* def = kw.find("default");
        std::vector<Value> out;
        for (const auto& item : *v.arr) {
          if (!item.is_container()) fail("'map' needs a list of mappings", call.pos);
          const Value r = attribute(item, attr->s());
          out.push_back(r.kind == Kind::kUndefined && def ? *def : r);
        }
        return make_array(std::move(out));
      }
      unsupported("unknown filter '" + name + "' for a list", call.pos);
    }
    if (v.kind == Kind::kString) {
      if (name == "indent") {
        auto [args, kw] = eval_args(call.list, env);
        const Value* width = flag_arg(args, 0, &kw, "width");
        if (width && width->kind != Kind::kInt) fail("indent width must be an integer", call.pos);
        const Value* first = flag_arg(args, 1, &kw, "first");
        const Value* blank = flag_arg(args, 2, &kw, "blank");
        const double w = width ? width->num : 4;
        if (w < 0 || w > 1024) fail("indent width must be between 0 and 1024", call.pos);
        return make_string(indent(*v.str,
                                  TString(std::string(static_cast<std::size_t>(w), ' '), true),
                                  first && truthy(*first), blank && truthy(*blank)));
      }
      if (name == "replace") {
        auto [args, kw] = eval_args(call.list, env);
        args.push_back(Value::object(std::move(kw), Kind::kKwargs));
        return replace(*v.str, args);
      }
      unsupported("unknown filter '" + name + "' for a string", call.pos);
    }
    if (v.is_object()) {
      const Value b = builtin(v, name);
      if (b.kind == Kind::kFunction) {
        auto [args, kw] = eval_args(call.list, env);
        if (!kw.items.empty()) args.push_back(Value::object(std::move(kw), Kind::kKwargs));
        return b.fn->call(args, env);
      }
      unsupported("unknown filter '" + name + "' for a mapping", call.pos);
    }
    fail("cannot apply filter '" + name + "' to a " + kind_name(v.kind), call.pos);
  }

  // "a.b.0": mapping keys and list indices.
  static Value attribute(const Value& item, const std::string& path) {
    Value v = item;
    std::size_t b = 0;
    while (true) {
      const std::size_t e = std::min(path.find('.', b), path.size());
      const std::string part = path.substr(b, e - b);
      if (v.is_container()) {
        const Value* f = v.obj->find(part);
        v = f ? *f : Value{};
      } else if (v.is_array()) {
        const double i = js_parse_int(part);
        if (std::isnan(i) || i < 0 || i >= static_cast<double>(v.arr->size())) return Value{};
        v = (*v.arr)[static_cast<std::size_t>(i)];
      } else {
        return Value{};
      }
      if (e >= path.size()) break;
      b = e + 1;
    }
    return v;
  }

  const Template::State& st_;
  const Limits& lim_;
  std::uint64_t work_ = 0;
  std::size_t iterations_ = 0;
  std::size_t calls_ = 0;
  std::size_t depth_ = 0;
  std::vector<std::shared_ptr<Object>> namespaces_;
};

std::string where(const std::string& source, std::uint32_t pos) {
  pos = std::min<std::uint32_t>(pos, static_cast<std::uint32_t>(source.size()));
  std::size_t line = 1, col = 1;
  std::size_t i = 0;
  while (i < pos) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
      ++i;
      continue;
    }
    unicode::next(source, i);
    ++col;
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

Error to_error(const JinjaError& e, const std::string& origin, const std::string& source) {
  const std::string at = e.pos == kNoPos ? std::string() : where(source, e.pos) + ": ";
  return Error(e.code, "chat template: " + at + e.message, {.file = origin});
}

}  // namespace

Template Template::parse(std::string_view source, std::string origin, Limits limits) {
  auto st = std::make_shared<State>();
  st->origin = std::move(origin);
  st->limits = limits;
  if (source.size() > limits.max_source_bytes) {
    throw Error(ErrorCode::kInvalidArgument,
                "chat template of " + std::to_string(source.size()) +
                    " bytes exceeds the limit of " + std::to_string(limits.max_source_bytes),
                {.file = st->origin});
  }
  st->source = unicode::sanitize(source);
  try {
    const PText text = preprocess(st->source);
    Parser parser(lex(text), limits.max_nesting, static_cast<std::uint32_t>(st->source.size()));
    st->body = parser.program();
  } catch (const JinjaError& e) {
    throw to_error(e, st->origin, st->source);
  }
  return Template(std::move(st));
}

const std::string& Template::origin() const {
  return state_->origin;
}

std::vector<TextSegment> Template::render(const nlohmann::json& trusted_vars,
                                          const nlohmann::json& untrusted_vars) const {
  if (!trusted_vars.is_object() || !untrusted_vars.is_object())
    throw Error(ErrorCode::kInvalidArgument, "template variables must be JSON objects");
  TString out;
  try {
    Interp interp(*state_);
    auto globals = std::make_shared<Env>();
    interp.install_globals(*globals);
    for (const auto& [k, v] : trusted_vars.items()) globals->vars[k] = interp.from_json(v, true);
    for (const auto& [k, v] : untrusted_vars.items()) globals->vars[k] = interp.from_json(v, false);
    out = interp.run(globals);
    globals->vars.clear();
  } catch (const JinjaError& e) {
    throw to_error(e, state_->origin, state_->source);
  } catch (const BreakSignal&) {
    throw Error(ErrorCode::kInvalidArgument, "chat template: {% break %} outside a loop",
                {.file = state_->origin});
  } catch (const ContinueSignal&) {
    throw Error(ErrorCode::kInvalidArgument, "chat template: {% continue %} outside a loop",
                {.file = state_->origin});
  }
  std::vector<TextSegment> segments;
  std::size_t start = 0;
  for (const auto& [end, trusted] : out.runs) {
    segments.push_back({out.s.substr(start, end - start), trusted});
    start = end;
  }
  return segments;
}

}  // namespace hearth::tokenize::jinja
