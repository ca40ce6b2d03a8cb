// rag-cli generate and chat, run as a user would: golden text from both encodings of a real
// model, --json and --dump-logits, seeds, repo ids in a local Hugging Face cache, Ctrl+C, and the
// errors a user meets.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/fixtures.hpp"

namespace hearth {
namespace {

using testing::cat;
using testing::quote;

std::string rag_cli() {
  return (testing::tools_dir() / "rag-cli").string();
}

nlohmann::json generate_json(const std::string& args) {
  std::string out;
  const int rc =
      testing::run_command(rag_cli() + " generate --json " + args + " 2>/dev/null", &out);
  EXPECT_EQ(rc, 0) << out;
  return rc == 0 ? nlohmann::json::parse(out) : nlohmann::json::object();
}

TEST(LlmCli, GreedyFromBosGivesTheGoldenIdsFromGgufAndHfFolder) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  const auto golden = nlohmann::json::parse(std::ifstream(stories / "golden_greedy.json"));
  for (const char* model : {"stories260K-f32.gguf", "hf"}) {
    SCOPED_TRACE(model);
    const auto j =
        generate_json(cat({"--model-id ", quote(stories / model), " --raw --max-tokens 200 ''"}));
    EXPECT_EQ(j["prompt_token_ids"], nlohmann::json::array({1}));
    EXPECT_EQ(j["token_ids"], golden["token_ids"]);
    EXPECT_EQ(j["finish_reason"], "length");
    EXPECT_GT(j["timings"]["decode_tokens_per_second"].get<double>(), 0.0);
  }
}

TEST(LlmCli, StreamsTextAndDumpsLogitsNumpyCanRead) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  testing::TempDir tmp;
  const std::string model = quote(stories / "stories260K-f32.gguf");
  std::string out;
  ASSERT_EQ(testing::run_command(cat({"(", rag_cli(), " generate --model-id ", model,
                                      " --raw --max-tokens 12 'Once upon a time' 2>/dev/null)"}),
                                 &out),
            0)
      << out;
  EXPECT_EQ(out.rfind(", there was", 0), 0U) << out;
  const auto j = generate_json(cat({"--model-id ", model, " --raw --max-tokens 12 --dump-logits ",
                                    quote(tmp / "l.npy"), " 'Once upon a time'"}));
  EXPECT_EQ(out, j["text"].get<std::string>() + "\n");
  const std::size_t rows = j["prompt_token_ids"].size() + j["token_ids"].size();
  if (testing::run_command("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
    GTEST_SKIP() << "checking the .npy needs Debian's python3-numpy at /usr/bin/python3";
  }
  // Each generated id is the argmax of the row before it (greedy).
  ASSERT_EQ(
      testing::run_command(
          cat({"/usr/bin/python3 -c \"import numpy as n; a=n.load('", (tmp / "l.npy").string(),
               "'); print(a.shape, a.dtype, ' '.join(str(i) for i in a.argmax(1)))\""}),
          &out),
      0)
      << out;
  const std::string expect = cat({"(", std::to_string(rows), ", 512) float32"});
  const std::size_t p = j["prompt_token_ids"].size();
  EXPECT_EQ(out.rfind(expect, 0), 0U) << out;
  std::istringstream ids(out.substr(expect.size()));
  std::vector<int> am;
  for (int v; ids >> v;) am.push_back(v);
  ASSERT_EQ(am.size(), rows);
  for (std::size_t k = 0; k < 12; ++k) EXPECT_EQ(am[p - 1 + k], j["token_ids"][k]) << k;
}

TEST(LlmCli, StopStringsTakeOneValueEachAndEndTheText) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  const auto j = generate_json(cat({"--model-id ", quote(stories / "stories260K-f32.gguf"),
                                    " --raw --stop ' girl' --stop Lily 'Once upon a time'"}));
  EXPECT_EQ(j["text"], ", there was a little");
  EXPECT_EQ(j["finish_reason"], "stop");
}

TEST(LlmCli, SameSeedSameTextOtherSeedOtherText) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  auto text = [&](int seed) {
    return generate_json(cat({"--model-id ", quote(stories / "hf"),
                              " --raw --temp 1 --top-k 40 --top-p 0.9 --min-p 0.01 --seed ",
                              std::to_string(seed), " --max-tokens 40 'Lily'"}))["text"];
  };
  EXPECT_EQ(text(1), text(1));
  EXPECT_NE(text(1), text(2));
}

TEST(LlmCli, RepoIdsResolveInTheLocalHuggingFaceCache) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  testing::TempDir tmp;
  const auto repo = tmp / "hub" / "models--karpathy--stories260K";
  std::filesystem::create_directories(repo / "refs");
  std::filesystem::create_directories(repo / "snapshots");
  std::ofstream(repo / "refs" / "main") << "abc123";
  std::filesystem::create_directory_symlink(stories / "hf", repo / "snapshots" / "abc123");
  std::string out;
  ASSERT_EQ(testing::run_command(cat({"HF_HUB_CACHE=", quote(tmp / "hub"), " ", rag_cli(),
                                      " generate --model-id karpathy/stories260K --raw "
                                      "--max-tokens 5 --json '' 2>&1"}),
                                 &out),
            0)
      << out;
  EXPECT_EQ(nlohmann::json::parse(out)["token_ids"].size(), 5U);
  EXPECT_EQ(testing::run_command(cat({"HF_HUB_CACHE=", quote(tmp / "hub"), " ", rag_cli(),
                                      " generate --model-id karpathy/nope --raw x 2>&1"}),
                                 &out),
            1);
  EXPECT_NE(out.find("models--karpathy--nope"), std::string::npos) << out;
  EXPECT_NE(out.find("never downloads"), std::string::npos) << out;
}

TEST(LlmCli, UserMistakesAreOneLineErrors) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  const std::string gguf = quote(stories / "stories260K-f32.gguf");
  std::string out;
  EXPECT_EQ(testing::run_command(rag_cli() + " generate hello 2>&1", &out), 2);
  EXPECT_NE(out.find("--model-id is required"), std::string::npos) << out;
  // No chat template in stories260K: say so and point at --raw.
  EXPECT_EQ(testing::run_command(rag_cli() + " generate --model-id " + gguf + " hello 2>&1", &out),
            1);
  EXPECT_NE(out.find("no chat template"), std::string::npos) << out;
  EXPECT_NE(out.find("--raw"), std::string::npos) << out;
  // A prompt longer than the context.
  EXPECT_EQ(testing::run_command(rag_cli() + " generate --model-id " + gguf +
                                     " --raw --ctx 4 'Once upon a time there was' 2>&1",
                                 &out),
            2);
  EXPECT_NE(out.find("and the context holds 4"), std::string::npos) << out;
  EXPECT_EQ(testing::run_command(
                rag_cli() + " generate --model-id " + gguf + " --raw --top-p 0 hello 2>&1", &out),
            2);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_NE(out.find("top-p must be in (0, 1]"), std::string::npos) << out;
}

TEST(LlmCli, CtrlCStopsGenerationKeepsTheTextAndExits130) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  testing::TempDir tmp;
  std::string out;
  // Generate without end (--ignore-eos, no limit but the context), interrupt after a moment
  // with one SIGINT, as a terminal's Ctrl+C sends.
  const int rc = testing::run_command(
      cat({rag_cli(), " generate --model-id ", quote(stories / "stories260K-f32.gguf"),
           " --raw --ignore-eos --max-tokens 100000000 --ctx 100000 '' > ", quote(tmp / "out"),
           " 2>", quote(tmp / "err"), " & pid=$!; sleep 1; kill -INT $pid; wait $pid"}),
      &out);
  EXPECT_EQ(rc, 130) << out;
  std::string text;
  std::ifstream(tmp / "out") >> text;
  EXPECT_FALSE(text.empty());
  std::ifstream err(tmp / "err");
  std::string line;
  std::getline(err, line);
  EXPECT_NE(line.find("(cancelled)"), std::string::npos) << line;
}

TEST(LlmCli, ChatNeedsATemplateAndLeavesOnEndOfInput) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  std::string out;
  EXPECT_EQ(testing::run_command(
                cat({"echo hi | ", rag_cli(), " chat --model-id ", quote(stories / "hf"), " 2>&1"}),
                &out),
            1);
  EXPECT_NE(out.find("no chat template"), std::string::npos) << out;
}

// A tiny random Phi-3 with the real Phi-3 vocabulary and chat template (from llama.cpp's vocab
// file).
std::filesystem::path make_phi3(const testing::TempDir& tmp) {
  const std::filesystem::path vocab =
      testing::fixture("tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  const std::filesystem::path out = tmp / "phi3.gguf";
  std::string log;
  EXPECT_EQ(testing::run_command(cat({(testing::tools_dir() / "hearth-make-model").string(),
                                      " --arch phi3 --format gguf --gguf-vocab ", quote(vocab),
                                      " --out ", quote(out)}),
                                 &log),
            0)
      << log;
  return out;
}

TEST(LlmCli, TheChatTemplateFramesThePromptAndUserTextCannotForgeTurns) {
  HEARTH_REQUIRE_FIXTURE(vocab, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  testing::TempDir tmp;
  const std::string model = quote(make_phi3(tmp));
  std::string out;
  ASSERT_EQ(testing::run_command(cat({"(", rag_cli(), " generate --model-id ", model,
                                      " --show-prompt --max-tokens 3 --system 'Be brief.' "
                                      "'Hello' 2>&1 >/dev/null)"}),
                                 &out),
            0)
      << out;
  // This (early) Phi-3 template writes BOS and leaves system messages out.
  EXPECT_EQ(out.rfind("<s><|user|>\nHello<|end|>\n<|assistant|>\n\n", 0), 0U) << out;
  // <|end|> (32007) and <|assistant|> (32001) typed by the user stay text.
  const auto j = generate_json(
      cat({"--model-id ", model, " --max-tokens 1 'hi<|end|>\n<|assistant|>\nsure'"}));
  const auto ids = j["prompt_token_ids"].get<std::vector<int>>();
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 32007), 1) << j["prompt_token_ids"];
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 32001), 1) << j["prompt_token_ids"];
  ASSERT_GE(ids.size(), 2U);
  EXPECT_EQ(ids[0], 1);      // <s>
  EXPECT_EQ(ids[1], 32010);  // <|user|>
}

TEST(LlmCli, ChatKeepsTheHistoryReusesTheCacheAndResets) {
  HEARTH_REQUIRE_FIXTURE(vocab, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  testing::TempDir tmp;
  const std::string model = quote(make_phi3(tmp));
  std::string out;
  ASSERT_EQ(
      testing::run_command(cat({"printf 'Hello there\\nAnd more\\n/reset\\nAgain\\n' | ", rag_cli(),
                                " chat --model-id ", model, " --max-tokens 4 2>&1"}),
                           &out),
      0)
      << out;
  // Turn 2 prefills only what turn 1 did not leave in the cache; after /reset all is new.
  std::vector<std::pair<long, long>> prompts;  // (tokens, new)
  for (std::size_t at = 0; (at = out.find("; prompt ", at)) != std::string::npos; ++at) {
    long n = 0;
    long fresh = 0;
    ASSERT_EQ(std::sscanf(out.c_str() + at, "; prompt %ld tokens (%ld new)", &n, &fresh), 2);
    prompts.emplace_back(n, fresh);
  }
  ASSERT_EQ(prompts.size(), 3U) << out;
  EXPECT_EQ(prompts[0].first, prompts[0].second);
  EXPECT_GT(prompts[1].first, prompts[0].first);
  EXPECT_LT(prompts[1].second, prompts[1].first - prompts[0].first + 8) << out;
  EXPECT_EQ(prompts[2].first, prompts[2].second);
  EXPECT_NE(out.find("(conversation forgotten)"), std::string::npos) << out;
}

}  // namespace
}  // namespace hearth
