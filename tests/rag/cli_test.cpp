// End-to-end checks of rag-cli and bench-cli rag as a user runs them.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;

using testing::cat;
using testing::quote;

// data/sample-corpus of this checkout, found upward from the build's bin folder.
fs::path sample_corpus() {
  for (fs::path dir = testing::tools_dir(); !dir.empty() && dir != dir.parent_path();
       dir = dir.parent_path()) {
    if (fs::is_directory(dir / "data" / "sample-corpus")) return dir / "data" / "sample-corpus";
  }
  return {};
}

// rag-cli with no model, embedder or config file of the person running the tests.
std::string rag_cli() {
  return cat(
      {"env -u HEARTH_MODEL -u HEARTH_EMBEDDING_MODEL -u HEARTH_RERANKER "
       "XDG_CONFIG_HOME=/nonexistent/hearth-tests ",
       quote(testing::tools_dir() / "rag-cli")});
}

// Runs rag-cli with a bank and arguments; returns the exit status.
int rag(const fs::path& bank, const std::string& args, std::string* out) {
  return testing::run_command(cat({rag_cli(), " --bank ", quote(bank), " ", args}), out);
}

TEST(RagCli, DemoAnswersWithCitationsWithoutModelFiles) {
  testing::TempDir dir;
  ASSERT_FALSE(sample_corpus().empty());
  std::string out;
  const int rc = testing::run_command(
      cat({"cd ", quote(dir.path()), " && XDG_CACHE_HOME=", quote(dir / "cache"), " ", rag_cli(),
           " demo --corpus ", quote(sample_corpus())}),
      &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Extractive answer"), std::string::npos) << out;
  // It says how to have a model write the answer.
  EXPECT_NE(out.find("To have a local model write the answer"), std::string::npos) << out;
  EXPECT_NE(out.find("/nonexistent/hearth-tests/hearth/config.toml"), std::string::npos) << out;
  EXPECT_NE(out.find("[1]"), std::string::npos) << out;
  EXPECT_NE(out.find("knowledge-banks.md"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir / "cache" / "hearth" / "demo-bank" / "manifest.json"));
}

TEST(RagCli, IngestSearchAskListStatsRm) {
  testing::TempDir dir;
  const fs::path bank = dir / "bank";
  const std::string corpus = quote(sample_corpus());
  std::string out;
  ASSERT_EQ(rag(bank, cat({"ingest ", corpus}), &out), 0) << out;
  EXPECT_NE(out.find("4 added"), std::string::npos) << out;
  ASSERT_EQ(rag(bank, cat({"ingest ", corpus}), &out), 0) << out;
  EXPECT_NE(out.find("4 unchanged"), std::string::npos) << out;

  ASSERT_EQ(rag(bank, "search --json 'NEAR(\"ctrl c\" -stop*'", &out), 0) << out;
  const auto j = nlohmann::json::parse(out);
  ASSERT_FALSE(j["hits"].empty());
  EXPECT_EQ(j["hits"][0]["rank"], 1);

  ASSERT_EQ(rag(bank, "ask --json 'How are answers cited?'", &out), 0) << out;
  const auto a = nlohmann::json::parse(out);
  EXPECT_EQ(a["kind"], "extractive");
  ASSERT_FALSE(a["sentences"].empty());
  EXPECT_FALSE(a["citations"].empty());

  ASSERT_EQ(rag(bank, "list", &out), 0);
  EXPECT_NE(out.find("questions-and-answers.html"), std::string::npos);
  ASSERT_EQ(rag(bank, "stats --json", &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)[0]["documents"], 4);
  ASSERT_EQ(rag(bank, "rm '*.html'", &out), 0) << out;
  ASSERT_EQ(rag(bank, "stats --json", &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)[0]["documents"], 3);
  // Features that need models say so instead of being ignored.
  EXPECT_EQ(rag(bank, "--reranker /x search owls", &out), 1);
  EXPECT_NE(out.find("/x: cannot open"), std::string::npos) << out;
  EXPECT_EQ(rag(bank, "search --mode dense owls", &out), 2);
  EXPECT_EQ(rag(bank, "--model-id /no/phi-3 ask 'what is a bank?'", &out), 1);
  EXPECT_NE(out.find("/no/phi-3: no such file or folder"), std::string::npos) << out;
  // A missing bank is a one-line error.
  EXPECT_EQ(rag(dir / "nope", "stats", &out), 1);
  EXPECT_NE(out.find("no knowledge bank"), std::string::npos) << out;
}

TEST(RagCli, IngestOfAMissingPathFailsAndCreatesNothing) {
  testing::TempDir dir;
  std::string out;
  EXPECT_EQ(rag(dir / "bank", cat({"ingest ", quote(dir / "no-such-folder")}), &out), 1) << out;
  EXPECT_NE(out.find("not found; nothing was ingested or pruned"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "bank"));
}

TEST(RagCli, PruneOfAVanishedRootKeepsTheBankAndFails) {
  testing::TempDir dir;
  const fs::path bank = dir / "bank";
  fs::copy(sample_corpus(), dir / "corpus", fs::copy_options::recursive);
  std::string out;
  ASSERT_EQ(rag(bank, cat({"ingest ", quote(dir / "corpus")}), &out), 0) << out;
  fs::rename(dir / "corpus", dir / "moved");
  EXPECT_EQ(rag(bank, cat({"ingest --prune ", quote(dir / "corpus")}), &out), 1) << out;
  EXPECT_NE(out.find("nothing was ingested or pruned"), std::string::npos) << out;
  // An empty folder in its place (a drive not mounted) is refused as well.
  fs::create_directories(dir / "corpus");
  EXPECT_EQ(rag(bank, cat({"ingest --prune ", quote(dir / "corpus")}), &out), 1) << out;
  EXPECT_NE(out.find("nothing was pruned"), std::string::npos) << out;
  ASSERT_EQ(rag(bank, "stats --json", &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)[0]["documents"], 4);
}

TEST(RagCli, IngestNamesSkippedFilesAndDoesNotFollowSymlinksOutOfTheTree) {
  testing::TempDir dir;
  const fs::path bank = dir / "bank";
  fs::create_directories(dir / "notes");
  fs::create_directories(dir / "private");
  {
    std::ofstream(dir / "notes" / "todo.txt") << "water the plants\n";
    std::ofstream(dir / "notes" / "data.json") << "{}\n";
    std::ofstream(dir / "private" / "secret.txt") << "the vault code is zanzibar\n";
  }
  fs::create_symlink(dir / "private" / "secret.txt", dir / "notes" / "passwd.txt");
  std::string out;
  ASSERT_EQ(rag(bank, cat({"ingest ", quote(dir / "notes")}), &out), 0) << out;
  EXPECT_NE(out.find("1 file(s) of unsupported types skipped: data.json"), std::string::npos)
      << out;
  EXPECT_NE(out.find("passwd.txt: symlink to"), std::string::npos) << out;
  EXPECT_NE(out.find("1 added, 0 updated, 0 unchanged, 0 failed, 2 skipped"), std::string::npos)
      << out;
  ASSERT_EQ(rag(bank, "search zanzibar", &out), 0) << out;
  EXPECT_EQ(out.find("passwd.txt"), std::string::npos) << out;
  ASSERT_EQ(rag(bank, cat({"ingest --follow-symlinks ", quote(dir / "notes")}), &out), 0) << out;
  ASSERT_EQ(rag(bank, "search zanzibar", &out), 0) << out;
  EXPECT_NE(out.find("passwd.txt"), std::string::npos) << out;
}

TEST(RagCli, InteractiveLoopAnswersAndExitsOnEndOfInput) {
  testing::TempDir dir;
  const fs::path bank = dir / "bank";
  std::string out;
  ASSERT_EQ(rag(bank, cat({"ingest ", quote(sample_corpus())}), &out), 0) << out;
  ASSERT_EQ(testing::run_command(cat({"printf 'Can I stop a long ingest?\\n\\n' | ", rag_cli(),
                                      " --bank ", quote(bank)}),
                                 &out),
            0)
      << out;
  EXPECT_NE(out.find("\xE2\x9D\x93> "), std::string::npos);
  EXPECT_NE(out.find("Ctrl+C"), std::string::npos);
  EXPECT_NE(out.find("[1]"), std::string::npos) << out;
}

TEST(RagCli, OptionsAreValidatedAndExplained) {
  testing::TempDir dir;
  const fs::path bank = dir / "bank";
  std::string out;
  ASSERT_EQ(rag(bank, cat({"ingest ", quote(sample_corpus())}), &out), 0) << out;
  // One value per --bank, wherever it is given; the '--' rule is said.
  ASSERT_EQ(rag(bank, cat({"search --bank ", quote(bank), " 'ctrl c' --json"}), &out), 0) << out;
  EXPECT_FALSE(nlohmann::json::parse(out)["hits"].empty()) << out;
  EXPECT_EQ(rag(bank, "serch q", &out), 2);
  EXPECT_NE(out.find("not expected"), std::string::npos) << out;
  EXPECT_EQ(rag(bank, "search -stop", &out), 2);
  EXPECT_NE(out.find("put '--' before a query that starts with '-'"), std::string::npos) << out;
  EXPECT_EQ(rag(bank, "--json search -- -stop", &out), 0) << out;
  // The same bank through another spelling is one bank: no hit twice.
  ASSERT_EQ(rag(bank, cat({"--bank ", quote(dir.path()), "/./bank search --json 'ctrl c'"}), &out),
            0)
      << out;
  const auto hits = nlohmann::json::parse(out)["hits"];
  std::set<std::int64_t> ids;
  for (const auto& h : hits) ids.insert(h["chunk_id"].get<std::int64_t>());
  EXPECT_EQ(ids.size(), hits.size()) << out;
  // Ranges.
  for (const char* bad : {"--top-k 0", "--top-k -1", "--candidates -1", "--candidates 0"}) {
    EXPECT_EQ(rag(bank, cat({bad, " search owls"}), &out), 2) << bad;
    EXPECT_NE(out.find("not in range"), std::string::npos) << bad << ": " << out;
  }
  // What an existing bank fixed at creation is refused, with the way to a new bank.
  EXPECT_EQ(rag(bank, cat({"ingest --chunk-size 50 ", quote(sample_corpus())}), &out), 2);
  EXPECT_NE(out.find("make a new bank"), std::string::npos) << out;
  EXPECT_EQ(rag(dir / "new", cat({"ingest --chunk-size 0 ", quote(sample_corpus())}), &out), 2);
  EXPECT_FALSE(fs::exists(dir / "new"));
  // Messages.
  EXPECT_EQ(rag(bank, "show ''", &out), 2);
  EXPECT_NE(out.find("show needs a document path"), std::string::npos) << out;
  EXPECT_EQ(out.find("filesystem"), std::string::npos) << out;
  EXPECT_EQ(rag(bank, "rm ''", &out), 2);
  EXPECT_EQ(rag(bank, cat({"ingest ", quote(sample_corpus())}), &out), 0);
  EXPECT_NE(out.find("4 unchanged"), std::string::npos) << out;
  EXPECT_EQ(out.find("MB/s,"), std::string::npos) << "no rate for skipped files: " << out;
  // rm of a folder removes its documents.
  ASSERT_EQ(rag(bank, cat({"rm ", quote(sample_corpus())}), &out), 0) << out;
  EXPECT_NE(out.find("removed 4 document(s)"), std::string::npos) << out;
}

TEST(RagCli, HelpSaysWhatAppliesWhere) {
  std::string out;
  const std::string cli = quote(testing::tools_dir() / "rag-cli");
  ASSERT_EQ(testing::run_command(cli + " --help", &out), 0);
  EXPECT_NE(out.find("With no subcommand, rag-cli starts the interactive loop"), std::string::npos)
      << out;
  ASSERT_EQ(testing::run_command(cli + " search --help", &out), 0);
  for (const char* o : {"--bank", "--top-k", "--json", "--mode", "'--'"}) {
    EXPECT_NE(out.find(o), std::string::npos) << o << " in " << out;
  }
  ASSERT_EQ(testing::run_command(cli + " stats --help", &out), 0);
  EXPECT_NE(out.find("--bank"), std::string::npos) << out;
  ASSERT_EQ(testing::run_command(cli + " import --help", &out), 0);
  for (const char* a : {"embeddings", "chunk_lengths", "source_data", "metadata_lengths"}) {
    EXPECT_NE(out.find(a), std::string::npos) << a << " in " << out;
  }
}

TEST(BenchCli, RagOnASciFactSubset) {
  HEARTH_REQUIRE_FIXTURE(scifact, "datasets/beir-scifact");
  testing::TempDir tmp;
  std::string out;
  ASSERT_EQ(testing::run_command(
                cat({quote(testing::tools_dir() / "bench-cli"), " rag --beir ", quote(scifact),
                     " --max-docs 500 --probe-mib 16 --out ", quote(tmp / "report")}),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("| nDCG@10 |"), std::string::npos) << out;
  const std::size_t begin = out.find("```json") + 7;
  const auto j = nlohmann::json::parse(out.substr(begin, out.rfind("```") - begin))["beir"];
  EXPECT_EQ(j["queries"], 300);
  EXPECT_EQ(j["documents"], 500);
  EXPECT_GT(j["recall@100"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(tmp / "report" / "report.md"));
  for (const char* chart : {"rag-quality.svg", "rag-latency-1.svg", "rag-latency-2.svg"}) {
    EXPECT_TRUE(std::filesystem::exists(tmp / "report" / chart)) << chart;  // mode, BM25 top-10
  }
}

}  // namespace
}  // namespace hearth::rag
