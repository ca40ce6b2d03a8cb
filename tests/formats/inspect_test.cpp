// bench-cli inspect and the CLIs' shared behaviour, run as a user would.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/fixtures.hpp"

namespace hearth {
namespace {

std::string bin(const std::string& name) {
  return (testing::tools_dir() / name).string();
}

TEST(Inspect, GeneratedGgufAsTableAndJson) {
  testing::TempDir tmp;
  const std::string model = (tmp / "tiny.gguf").string();
  std::string out;
  ASSERT_EQ(testing::run_command(bin("hearth-make-model") + " --out " + model, &out), 0) << out;
  ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect " + model, &out), 0) << out;
  EXPECT_NE(out.find("format:       gguf v3"), std::string::npos) << out;
  EXPECT_NE(out.find("llama.block_count"), std::string::npos);
  EXPECT_NE(out.find("blk.1.ffn_down.weight"), std::string::npos);
  EXPECT_NE(out.find("(320 items)"), std::string::npos);

  ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect --json " + model, &out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["tensors"].size(), 21u);
  EXPECT_EQ(j["tensors"][0]["name"], "token_embd.weight");
  EXPECT_EQ(j["tensors"][0]["shape"], nlohmann::json({320, 64}));
  EXPECT_EQ(j["tensors"][0]["bytes"], 320 * 64 * 4);
}

TEST(Inspect, FixtureFolderAndSafetensors) {
  HEARTH_REQUIRE_FIXTURE(taef2, "models/taef2/taef2_encoder.safetensors");
  std::string out;
  ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect --json " + taef2.string(), &out), 0);
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["format"], "safetensors");
  EXPECT_EQ(j["tensors"].size(), 79u);
  HEARTH_REQUIRE_FIXTURE(hf, "models/stories260K/hf");
  ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect " + hf.string(), &out), 0);
  EXPECT_NE(out.find("LlamaForCausalLM"), std::string::npos);
  EXPECT_NE(out.find("260032 parameters"), std::string::npos);
}

TEST(Inspect, MlxFolderCountsUnpackedParameters) {
  testing::TempDir tmp;
  std::string out;
  for (const char* bits : {"4", "8"}) {
    const std::string dir = (tmp / (std::string("q") + bits)).string();
    ASSERT_EQ(
        testing::run_command(
            bin("hearth-make-model") + " --format hf --mlx-bits " + bits + " --out " + dir, &out),
        0)
        << out;
    ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect --json " + dir, &out), 0) << out;
    // Same logical model as the f32 maker output: 131,904 parameters whatever the packing.
    EXPECT_EQ(nlohmann::json::parse(out)["parameters"], 131904) << bits;
  }
}

TEST(Inspect, ErrorsAreOneLineAndNonZero) {
  testing::TempDir tmp;
  std::string out;
  EXPECT_EQ(testing::run_command(bin("bench-cli") + " inspect " + (tmp / "missing").string(), &out),
            1);
  EXPECT_EQ(out, "bench-cli: error: " + (tmp / "missing").string() + ": no such file or folder\n");
  std::ofstream(tmp / "junk.bin") << "this is not a model at all";
  EXPECT_EQ(
      testing::run_command(bin("bench-cli") + " inspect " + (tmp / "junk.bin").string(), &out), 2);
  EXPECT_NE(out.find("not a model hearth can read"), std::string::npos) << out;
  // A GGUF cut short: the message names the file and the byte.
  std::ofstream(tmp / "cut.gguf") << "GGUF\x03";
  EXPECT_EQ(
      testing::run_command(bin("bench-cli") + " inspect " + (tmp / "cut.gguf").string(), &out), 1);
  EXPECT_NE(out.find("cut.gguf: at byte 4: file ends inside the version"), std::string::npos)
      << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
}

TEST(Inspect, DecodersShowContextLayersAndTemplate) {
  HEARTH_REQUIRE_FIXTURE(stories, "models/stories260K");
  std::string out;
  for (const char* model : {"hf", "stories260K-f32.gguf"}) {
    SCOPED_TRACE(model);
    const std::string path = (stories / model).string();
    ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect --json " + path, &out), 0) << out;
    const auto d = nlohmann::json::parse(out).at("decoder");
    EXPECT_EQ(d["layers"], 5);
    EXPECT_EQ(d["hidden"], 64);
    EXPECT_EQ(d["heads"], 8);
    EXPECT_EQ(d["kv_heads"], 4);
    EXPECT_EQ(d["vocab"], 512);
    EXPECT_EQ(d["context"], 512);
    EXPECT_EQ(d["chat_template"], false);
    ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect " + path, &out), 0) << out;
    EXPECT_NE(out.find("decoder:      5 layers, hidden 64, 8 heads (4 kv), vocab 512"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("context:      512 tokens"), std::string::npos) << out;
    EXPECT_NE(out.find("chat template: none"), std::string::npos) << out;
  }
  HEARTH_REQUIRE_FIXTURE(phi3, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  ASSERT_EQ(testing::run_command(bin("bench-cli") + " inspect " + phi3.string(), &out), 0) << out;
  EXPECT_NE(out.find("chat template: yes"), std::string::npos) << out;
  // An encoder is no decoder.
  testing::TempDir tmp;
  ASSERT_EQ(testing::run_command(
                bin("hearth-make-model") + " --arch bert --out " + (tmp / "bert").string(), &out),
            0)
      << out;
  ASSERT_EQ(
      testing::run_command(bin("bench-cli") + " inspect --json " + (tmp / "bert").string(), &out),
      0);
  EXPECT_FALSE(nlohmann::json::parse(out).contains("decoder"));
}

TEST(Cli, HelpVersionAndSubcommands) {
  std::string out;
  for (const char* app : {"rag-cli", "flux-cli", "bench-cli"}) {
    SCOPED_TRACE(app);
    ASSERT_EQ(testing::run_command(bin(app) + " --help", &out), 0);
    EXPECT_NE(out.find("--threads"), std::string::npos) << out;
    ASSERT_EQ(testing::run_command(bin(app) + " --version", &out), 0);
    EXPECT_NE(out.find("(hearth) "), std::string::npos) << out;
    EXPECT_EQ(testing::run_command(bin(app) + " --no-such-flag", &out), 2);
  }
  ASSERT_EQ(testing::run_command(bin("bench-cli") + " --help", &out), 0);
  for (const char* sub : {"inspect", "tokenize", "embed", "rag", "llm", "flux", "prompt"}) {
    EXPECT_NE(out.find(sub), std::string::npos) << sub;
  }
  ASSERT_EQ(testing::run_command(bin("rag-cli") + " --help", &out), 0);
  for (const char* sub :
       {"ingest", "search", "ask", "list", "show", "rm", "stats", "import", "generate", "chat"}) {
    EXPECT_NE(out.find(sub), std::string::npos) << sub;
  }
  EXPECT_EQ(testing::run_command(bin("bench-cli") + " flux", &out), 2);
  EXPECT_NE(out.find("--model is required"), std::string::npos) << out;
}

}  // namespace
}  // namespace hearth
