// rag-cli answers written by a language model, run as a user runs them: a tiny random Phi-3 with
// the real Phi-3 vocabulary and chat template (its text is noise; the prompt, sources, JSON,
// follow-ups, Ctrl+C and the config file are what is checked), and a real instruct model when
// HEARTH_LLM_DIR names one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;

fs::path sample_corpus() {
  for (fs::path dir = testing::tools_dir(); !dir.empty() && dir != dir.parent_path();
       dir = dir.parent_path()) {
    if (fs::is_directory(dir / "data" / "sample-corpus")) return dir / "data" / "sample-corpus";
  }
  return {};
}

// A bank of the sample corpus and a tiny Phi-3, made once for the tests of this file.
class AnswerCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const fs::path vocab = testing::fixture("tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
    if (vocab.empty() || sample_corpus().empty()) return;
    std::string out;
    if (testing::run_command(cat({(testing::tools_dir() / "hearth-make-model").string(),
                                  " --arch phi3 --format gguf --gguf-vocab ", quote(vocab),
                                  " --out ", quote(*dir_ / "phi3.gguf")}),
                             &out) != 0 ||
        run(cat({"ingest ", quote(sample_corpus())}), &out) != 0) {
      ADD_FAILURE() << out;
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (testing::fixture("tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf").empty()) {
      GTEST_SKIP() << "fixture tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf is absent (looked "
                      "in "
                   << testing::fixtures_dir().string() << ")";
    }
    ASSERT_TRUE(fs::exists(*dir_ / "phi3.gguf"));
  }

  static fs::path bank() { return *dir_ / "bank"; }
  static std::string model() { return quote(*dir_ / "phi3.gguf"); }
  // rag-cli on the bank, with the test's config folder and no model from the environment.
  static std::string cli(const std::string& env = "") {
    return cat({"env -u HEARTH_MODEL -u HEARTH_EMBEDDING_MODEL -u HEARTH_RERANKER XDG_CONFIG_HOME=",
                quote(*dir_ / "config"), " ", env, " ", quote(testing::tools_dir() / "rag-cli"),
                " --bank ", quote(bank())});
  }
  static int run(const std::string& args, std::string* out, const std::string& env = "") {
    return testing::run_command(cat({cli(env), " ", args}), out);
  }
  static nlohmann::json ask_json(const std::string& args, int expect_rc = 0) {
    std::string out;
    EXPECT_EQ(testing::run_command(cat({"((", cli(), " ", args, " --json) 2>/dev/null)"}), &out),
              expect_rc)
        << out;
    try {
      return nlohmann::json::parse(out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not JSON: " << e.what() << "\n" << out;
      return {};
    }
  }
  static testing::TempDir* dir_;
};

testing::TempDir* AnswerCli::dir_ = nullptr;

TEST_F(AnswerCli, AskStreamsAGeneratedAnswerAndListsItsSources) {
  std::string out;
  ASSERT_EQ(run(cat({"--model-id ", model(),
                     " --ctx 1024 --max-tokens 6 ask 'How do I keep a bank up to date?'"}),
                &out),
            0)
      << out;
  EXPECT_EQ(out.find("Extractive"), std::string::npos) << out;
  EXPECT_NE(out.find("Sources (rag-cli show '#ID' opens one):\n  [1] "), std::string::npos) << out;
  EXPECT_NE(out.find("knowledge-banks.md - Knowledge banks > Keeping a bank up to date  #"),
            std::string::npos)
      << out;
}

TEST_F(AnswerCli, AskJsonIsOneValidObjectOnEveryPath) {
  const std::string m = cat({"--model-id ", model()});
  // An answer: the sources that went into the prompt, with what the issue asks of a citation.
  nlohmann::json j = ask_json(cat({m, " --max-tokens 4 ask 'How do I keep a bank up to date?'"}));
  EXPECT_EQ(j["kind"], "generated");
  EXPECT_EQ(j["generated_tokens"], 4);
  EXPECT_EQ(j["finish_reason"], "length");
  ASSERT_FALSE(j["citations"].empty()) << j;
  const auto& c = j["citations"][0];
  EXPECT_EQ(c["number"], 1);
  for (const char* k : {"path", "page_first", "heading", "chunk_id", "score", "cited"}) {
    EXPECT_TRUE(c.contains(k)) << k;
  }
  // The tiny model's context (256) cannot take all five; what was left out is said, the best
  // hit (161 tokens) among them.
  EXPECT_EQ(j["citations"].size() + j["left_out"].size(), 5U) << j;
  ASSERT_FALSE(j["left_out"].empty());
  EXPECT_TRUE(j["left_out"][0]["path"].get<std::string>().ends_with("knowledge-banks.md"));
  EXPECT_LE(j["prompt"]["tokens"].get<int>() + 4, j["prompt"]["context"].get<int>());
  for (const char* k :
       {"retrieval_seconds", "model_load_seconds", "bank_load_seconds", "prefill_seconds",
        "decode_seconds", "first_token_seconds", "decode_tokens_per_second"}) {
    EXPECT_TRUE(j["timings"].contains(k)) << k;
  }
  EXPECT_GT(j["timings"]["prefill_tokens"].get<int>(), 100);
  // Nothing found: said without the model.
  j = ask_json(cat({m, " ask 'zzyzx qwxqv'"}));
  EXPECT_EQ(j["kind"], "nothing_found");
  EXPECT_EQ(j["generated_tokens"], 0);
  EXPECT_TRUE(j["citations"].empty());
  // The model missing.
  j = ask_json("--model-id /no/such/model ask 'How do I keep a bank up to date?'", 1);
  EXPECT_EQ(j["kind"], "error");
  EXPECT_NE(j["error"].get<std::string>().find("/no/such/model"), std::string::npos) << j;
  // The context too small for even one source: the error names the limits to change.
  j = ask_json(cat({m, " --ctx 128 --max-tokens 32 ask 'How do I keep a bank up to date?'"}), 2);
  EXPECT_EQ(j["kind"], "error");
  EXPECT_NE(j["error"].get<std::string>().find("raise --ctx"), std::string::npos) << j;
  // Extractive (no model) stays JSON too.
  j = ask_json("ask 'How are answers cited?'");
  EXPECT_EQ(j["kind"], "extractive");
}

TEST_F(AnswerCli, FollowUpsInTheLoopKeepTheConversationAndReuseThePrefix) {
  std::string out;
  ASSERT_EQ(
      testing::run_command(
          cat({"printf 'Can I stop a long ingest?\\nand what if I press it twice?\\n/reset\\n' | ",
               cli(), " --model-id ", model(), " --ctx 2048 --max-tokens 4 --verbose 2>&1"}),
          &out),
      0)
      << out;
  std::vector<std::pair<long, long>> prompts;  // (tokens, reused)
  for (std::size_t at = 0; (at = out.find("; prompt ", at)) != std::string::npos; ++at) {
    long n = 0;
    long reused = 0;
    ASSERT_EQ(std::sscanf(out.c_str() + at, "; prompt %ld tokens (%ld reused)", &n, &reused), 2)
        << out.substr(at, 60);
    prompts.emplace_back(n, reused);
  }
  ASSERT_EQ(prompts.size(), 2U) << out;
  EXPECT_EQ(prompts[0].second, 0);
  // The second turn holds the first one and runs only what is new.
  EXPECT_GT(prompts[1].first, prompts[0].first);
  EXPECT_GE(prompts[1].second, prompts[0].first);
  EXPECT_NE(out.find("(conversation forgotten)"), std::string::npos) << out;
}

TEST_F(AnswerCli, CtrlCDuringAnAnswerReturnsToThePromptAndLeavesTheBankAsItWas) {
  const auto before = testing::read_bytes(bank() / "bank.sqlite");
  const testing::TempDir tmp;
  std::string out;
  // An answer without end (a context of 100000 tokens, 99000 of them for the answer), interrupted
  // with one SIGINT as a terminal's Ctrl+C sends; then the loop reads /reset and the end.
  const int rc = testing::run_command(
      cat({"(sleep 0.3; printf 'How do I keep a bank up to date?\\n'; sleep 5; printf "
           "'/reset\\n') | ",
           cli(), " --model-id ", model(), " --ctx 100000 --max-tokens 99000 > ",
           quote(tmp / "out"), " 2>&1 & pid=$!; sleep 3; kill -INT $pid; wait $pid"}),
      &out);
  std::ifstream in(tmp / "out");
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << log;
  EXPECT_TRUE(log.find(" (stopped)\n") != std::string::npos ||
              log.find("(cancelled)") != std::string::npos)
      << log;
  EXPECT_NE(log.find("(conversation forgotten)"), std::string::npos) << log;
  EXPECT_EQ(testing::read_bytes(bank() / "bank.sqlite"), before);
  ASSERT_EQ(run("stats --json", &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)[0]["documents"], 4);
}

TEST_F(AnswerCli, DemoWithAModelGeneratesACitedAnswer) {
  const testing::TempDir tmp;
  std::string out;
  ASSERT_EQ(testing::run_command(
                cat({"XDG_CACHE_HOME=", quote(tmp / "cache"), " ", cli(), " --model-id ", model(),
                     " --max-tokens 4 demo --corpus ", quote(sample_corpus()), " 2>&1"}),
                &out),
            0)
      << out;
  EXPECT_EQ(out.find("Extractive"), std::string::npos) << out;
  EXPECT_EQ(out.find("To have a local model"), std::string::npos) << out;
  EXPECT_NE(out.find("Sources (rag-cli show '#ID' opens one):\n  [1] "), std::string::npos) << out;
}

TEST_F(AnswerCli, TheConfigFileSetsDefaultsThatTheEnvironmentAndFlagsOverride) {
  const fs::path file = *dir_ / "config" / "hearth" / "config.toml";
  fs::create_directories(file.parent_path());
  struct Remove {
    fs::path f;
    ~Remove() { fs::remove(f); }
  } remove{file};
  std::ofstream(file) << "# defaults\nmodel = " << model() << "\ntop_k = 2\ntemperature = 0.5\n"
                      << "max_tokens = 3\n";
  std::string out;
  ASSERT_EQ(run("config --json", &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["config_file_found"], true);
  EXPECT_EQ(j["settings"]["model"]["source"], cat({"config file ", file.string(), ":2"}));
  EXPECT_EQ(j["settings"]["top_k"]["value"], "2");
  EXPECT_EQ(j["settings"]["max_tokens"]["source"], cat({"config file ", file.string(), ":5"}));
  EXPECT_EQ(j["settings"]["reranker"]["source"], "default");
  ASSERT_EQ(run("--top-k 4 config --json", &out, "HEARTH_MODEL=/elsewhere"), 0) << out;
  j = nlohmann::json::parse(out);
  EXPECT_EQ(j["settings"]["model"]["value"], "/elsewhere");
  EXPECT_EQ(j["settings"]["model"]["source"], "env HEARTH_MODEL");
  EXPECT_EQ(j["settings"]["top_k"]["source"], "flag --top-k");
  ASSERT_EQ(run("--model-id /flag config --json", &out, "HEARTH_MODEL=/elsewhere"), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["settings"]["model"]["source"], "flag --model-id");
  // The file's values are used: the model answers with two sources and three tokens.
  j = ask_json("ask 'How do I keep a bank up to date?'");
  EXPECT_EQ(j["kind"], "generated");
  EXPECT_EQ(j["generated_tokens"], 3);
  EXPECT_EQ(j["citations"].size() + j["left_out"].size(), 2U);
  // Mistakes name the file and line.
  std::ofstream(file) << "top_k = 3\nmodle = \"x\"\n";
  EXPECT_EQ(run("config 2>&1", &out), 2);
  EXPECT_NE(out.find(cat({file.string(), ":2: 'modle': unknown setting"})), std::string::npos)
      << out;
  std::ofstream(file) << "top_k = 0\n";
  EXPECT_EQ(run("search x 2>&1", &out), 2);
  EXPECT_NE(out.find(":1: 'top_k': must be from 1 to 10000"), std::string::npos) << out;
  std::ofstream(file) << "model = ~/x\n";
  EXPECT_EQ(run("list 2>&1", &out), 1);
  EXPECT_NE(out.find(cat({file.string(), ":1:"})), std::string::npos) << out;
}

// A real instruct model (e.g. Phi-3-mini-4k-instruct in f16 or bf16): three questions over the
// sample corpus, each answered with its key phrase and citing the file it comes from.
TEST_F(AnswerCli, ARealInstructModelAnswersAndCitesTheRightFile) {
  const char* dir = std::getenv("HEARTH_LLM_DIR");
  if (dir == nullptr || *dir == '\0') {
    GTEST_SKIP() << "set HEARTH_LLM_DIR to an instruct model (a folder, .gguf or repo id in the "
                    "local Hugging Face cache, e.g. Phi-3-mini-4k-instruct) to run this test";
  }
  struct Case {
    const char* question;
    const char* phrase;
    const char* file;
  } cases[] = {
      {"Which command removes documents from a bank explicitly?", "rm", "knowledge-banks.md"},
      {"What happens when I press Ctrl+C twice during an ingest?", "at once",
       "questions-and-answers.html"},
      {"Which build tools is hearth built with?", "CMake", "getting-started.md"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.question);
    const nlohmann::json j =
        ask_json(cat({"--model-id ", quote(dir), " --max-tokens 160 ask ", quote(c.question)}));
    std::string text = j.value("text", "");
    std::string lower_text = text;
    std::string phrase = c.phrase;
    for (char& ch : lower_text)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (char& ch : phrase) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    EXPECT_NE(lower_text.find(phrase), std::string::npos) << text;
    bool cited = false;
    for (const auto& s : j["citations"]) {
      cited = cited || (s["cited"] == true && s["path"].get<std::string>().ends_with(c.file));
    }
    EXPECT_TRUE(cited) << j.dump(2);
  }
}

}  // namespace
}  // namespace hearth::rag
