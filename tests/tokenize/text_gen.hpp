// Generated test strings shared by the differential tests: emoji, CJK, combining marks, control
// characters, whitespace runs, code, other scripts, numbers, punctuation and English words.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize {

// Deterministic across standard libraries: only raw mt19937 output is used.
class Gen {
 public:
  explicit Gen(std::uint32_t seed) : rng_(seed) {}
  std::size_t below(std::size_t n) { return rng_() % n; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
  char32_t in(char32_t lo, char32_t hi) { return lo + static_cast<char32_t>(below(hi - lo + 1)); }

  std::string fragment() {
    std::string s;
    switch (below(10)) {
      case 0: {  // emoji, with skin tones, ZWJ sequences, flags, variation selectors
        static const std::vector<std::string> kEmoji = {"😀",
                                                        "🦙",
                                                        "🚀",
                                                        "👍🏽",
                                                        "👨‍👩‍👧‍👦",
                                                        "🏳️‍🌈",
                                                        "🇩🇪",
                                                        "❤️",
                                                        "✅",
                                                        "😶‍🌫️",
                                                        "🤖",
                                                        "🧑🏿‍💻"};
        for (std::size_t k = 1 + below(3); k > 0; --k) s += pick(kEmoji);
        break;
      }
      case 1:  // CJK ideographs, kana, hangul
        for (std::size_t k = 1 + below(8); k > 0; --k) {
          const std::size_t which = below(4);
          unicode::append_utf8(s, which == 0   ? in(0x4E00, 0x9FFF)
                                  : which == 1 ? in(0x3041, 0x3096)
                                  : which == 2 ? in(0x30A1, 0x30FA)
                                               : in(0xAC00, 0xD7A3));
        }
        break;
      case 2: {  // letters with combining marks, precomposed accents
        static const std::vector<std::string> kAccented = {"é", "ñ", "ü", "Å", "ç",
                                                           "ő", "ǅ", "ẞ", "İ"};
        for (std::size_t k = 1 + below(5); k > 0; --k) {
          if (below(2)) {
            s += pick(kAccented);
          } else {
            unicode::append_utf8(s, in('a', 'z'));
            unicode::append_utf8(s, in(0x300, 0x36F));
          }
        }
        break;
      }
      case 3: {  // control and invisible characters
        static const std::vector<char32_t> kControl = {0x01,   0x07, 0x08, 0x0B,   0x0C,
                                                       0x1B,   0x7F, 0x9F, 0x200B, 0x200D,
                                                       0x2028, 0xAD, '\t', '\r'};
        for (std::size_t k = 1 + below(3); k > 0; --k) unicode::append_utf8(s, pick(kControl));
        break;
      }
      case 4: {  // whitespace runs
        static const std::vector<std::string> kSpace = {" ",    "  ",     "\t",     "\n",
                                                        "\r\n", "\u00A0", "\u3000", "\u2003"};
        for (std::size_t k = 1 + below(12); k > 0; --k) s += pick(kSpace);
        break;
      }
      case 5: {  // code
        static const std::vector<std::string> kCode = {"int main() { return 0; }",
                                                       "for (i = 0; i < n; ++i) x[i] += y[i];",
                                                       "def f(x):\n    return x**2",
                                                       "if (a != b && c >= d) {",
                                                       "std::vector<int> v{1, 2, 3};",
                                                       "<div class=\"x\">&amp;</div>",
                                                       "SELECT * FROM t WHERE id = 42;",
                                                       "$ ls -la | grep '.cpp'",
                                                       "0x1F600",
                                                       "// comment",
                                                       "    indented\n\tline"};
        s = pick(kCode);
        break;
      }
      case 6: {  // other scripts
        static const std::vector<std::string> kScripts = {
            "Привет мир", "Γειά σου Κόσμε",    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
            "สวัสดีชาวโลก", "Xin chào thế giới", "Cửa Việt",      "ქართული",   "Ελληνικά",
            "Ⅻ ½ ² ³"};
        s = pick(kScripts);
        break;
      }
      case 7: {  // numbers
        for (std::size_t k = 1 + below(12); k > 0; --k)
          s.push_back(static_cast<char>('0' + below(10)));
        if (below(2)) s += below(2) ? ".5" : ",000";
        break;
      }
      case 8: {  // punctuation and contractions
        static const std::vector<std::string> kPunct = {
            "!", "?", "...",   "—", "«»", "\"", "'s", "'LL", "n't", "(", ")",
            "[", "]", "@#%&*", "~", "。", "、", "¿",  "…",   "'",   "`", "^_^"};
        for (std::size_t k = 1 + below(4); k > 0; --k) s += pick(kPunct);
        break;
      }
      default: {  // English words
        static const std::vector<std::string> kWords = {"the",
                                                        "The",
                                                        "quick",
                                                        "brown",
                                                        "FOX",
                                                        "jumps",
                                                        "over",
                                                        "lazy",
                                                        "dog",
                                                        "tokenization",
                                                        "internationalization",
                                                        "Hello",
                                                        "world",
                                                        "don't",
                                                        "it's",
                                                        "we'll",
                                                        "retrieval",
                                                        "augmented",
                                                        "generation",
                                                        "a",
                                                        "I",
                                                        "embeddings",
                                                        "unbelievable",
                                                        "McDonald"};
        for (std::size_t k = 1 + below(5); k > 0; --k) {
          if (!s.empty()) s += ' ';
          s += pick(kWords);
        }
        break;
      }
    }
    return s;
  }

  std::string text() {
    std::string s;
    for (std::size_t k = 1 + below(8); k > 0; --k) {
      if (!s.empty() && below(3) != 0) s += ' ';
      s += fragment();
    }
    return s;
  }

 private:
  std::mt19937 rng_;
};

}  // namespace hearth::tokenize
