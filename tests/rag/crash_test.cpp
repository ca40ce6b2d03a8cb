// Crash consistency: a child process ingesting (a subset of) BEIR SciFact with a fake embedding
// model, or removing, re-adding and compacting it, is SIGKILLed at random moments; every time the
// bank must open, pass integrity_check, hold one vector per chunk, and converge to the
// uninterrupted result when ingest runs again.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <random>
#include <thread>

#include "fake_models.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/rag/beir.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;
using testing_fakes::FakeEmbedding;

// Documents (path -> hash and chunk texts) as the bank holds them.
std::map<std::string, std::string> snapshot(const Bank& bank) {
  std::map<std::string, std::string> out;
  for (const DocumentInfo& d : bank.documents()) {
    std::string content = d.hash;
    for (const ChunkInfo& c : bank.chunks_of(d.id)) content += "\x1F" + c.heading + "\x1E" + c.text;
    out[d.path] = content;
  }
  return out;
}

void check_consistent(const Bank& bank) {
  EXPECT_EQ(bank.integrity_check(), "ok");
  const BankStats s = bank.stats();
  EXPECT_EQ(s.vectors, s.chunks) << "every chunk has its vector row";
  EXPECT_GE(s.vector_rows, s.vectors);
  // Every document holds all of its chunks: in this corpus each document has exactly one.
  EXPECT_EQ(s.chunks, s.documents);
}

// Runs work in a forked child and SIGKILLs it after delay seconds; returns waitpid's status (the
// child exits 0 when work returns first, 3 when it throws).
int run_and_kill(const std::function<void()>& work, double delay) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    try {
      work();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(delay));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// Dense search sees the committed vectors: a document's own text finds itself.
void expect_finds_itself(const Bank& bank, FakeEmbedding& model, const BeirDocument& probe) {
  std::vector<float> q = model.embed({probe.title + "\n" + probe.text});
  normalize_rows(q.data(), 1, q.size());
  const auto hits = bank.search_dense(q, 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_NEAR(hits[0].score, 1.0, 1e-4);
}

TEST(Crash, SigkillDuringIngestLeavesAConsistentBankThatConverges) {
  HEARTH_REQUIRE_FIXTURE(scifact, "datasets/beir-scifact");
  // A subset keeps the suite quick under ASan; HEARTH_CRASH_DOCS=0 uses the whole corpus.
  std::size_t n_docs = 400;
  if (const char* env = std::getenv("HEARTH_CRASH_DOCS")) n_docs = std::strtoul(env, nullptr, 10);
  const BeirDataset data = load_beir(scifact, "", n_docs);
  testing::TempDir dir;
  FakeEmbedding model(32);

  const Timer ref_timer;
  std::map<std::string, std::string> reference;
  {
    auto bank = Bank::open(dir / "reference", &model, true, beir_chunking());
    ingest_beir(*bank, data, 16);
    reference = snapshot(*bank);
    check_consistent(*bank);
  }
  const double ref_seconds = ref_timer.seconds();
  ASSERT_EQ(reference.size(), data.corpus.size());

  std::mt19937 rng(20261125);
  // Kill moments are uniform over a window that adapts to how long the child takes on this
  // machine (shrinking when the child finished first), until 20 kills hit a working child.
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double window = ref_seconds * 1.1 + 0.01;
  int killed_mid_way = 0;
  for (int round = 0; round < 60 && killed_mid_way < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const fs::path folder = dir / ("bank-" + std::to_string(round));
    // Some rounds start from a partly filled bank, as a user re-running after a crash would.
    if (round % 4 == 3) {
      auto bank = Bank::open(folder, &model, true, beir_chunking());
      BeirDataset half = data;
      half.corpus.resize(half.corpus.size() / 2);
      ingest_beir(*bank, half, 16);
    }
    const int status = run_and_kill(
        [&] {
          FakeEmbedding child_model(32);
          auto bank = Bank::open(folder, &child_model, true, beir_chunking());
          ingest_beir(*bank, data, 16);
        },
        unit(rng) * window);
    ASSERT_NE(status, -1) << "fork failed";
    if (WIFSIGNALED(status)) {
      ++killed_mid_way;
    } else {
      window *= 0.7;
      ASSERT_EQ(WEXITSTATUS(status), 0) << "the child failed on its own";
    }
    // Killed before the manifest was renamed into place: the folder is not a bank yet.
    const bool was_bank = Bank::exists(folder);
    auto bank = Bank::open(folder, &model, true, beir_chunking());
    if (was_bank) check_consistent(*bank);
    ingest_beir(*bank, data, 16);
    check_consistent(*bank);
    EXPECT_EQ(snapshot(*bank), reference);
    expect_finds_itself(*bank, model, data.corpus[data.corpus.size() / 3]);
  }
  EXPECT_GE(killed_mid_way, 20) << "every kill must land while the child is still working";
}

// The vectors files in a bank folder.
std::size_t vector_files(const fs::path& folder) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(folder)) {
    n += e.path().filename().string().starts_with("vectors") ? 1 : 0;
  }
  return n;
}

TEST(Crash, SigkillDuringRemoveAndCompactionLeavesAConsistentBank) {
  HEARTH_REQUIRE_FIXTURE(scifact, "datasets/beir-scifact");
  const BeirDataset data = load_beir(scifact, "", 300);
  testing::TempDir dir;
  FakeEmbedding model(32);
  std::map<std::string, std::string> reference;
  {
    auto bank = Bank::open(dir / "reference", &model, true, beir_chunking());
    ingest_beir(*bank, data, 16);
    reference = snapshot(*bank);
  }
  // One cycle of the child: drop a third of the documents, add them back, compact.
  const Timer cycle_timer;
  {
    auto bank = Bank::open(dir / "reference", &model, false);
    std::vector<std::string> third;
    for (std::size_t i = 0; i < data.corpus.size(); i += 3) third.push_back(data.corpus[i].id);
    bank->remove(third);
    ingest_beir(*bank, data, 16);
    EXPECT_GT(bank->compact(), 0u);
    EXPECT_EQ(snapshot(*bank), reference);
  }
  const double window = cycle_timer.seconds() * 3;

  std::mt19937 rng(20261201);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const fs::path folder = dir / ("bank-" + std::to_string(round));
    {
      auto bank = Bank::open(folder, &model, true, beir_chunking());
      ingest_beir(*bank, data, 16);
    }
    const int status = run_and_kill(
        [&] {
          FakeEmbedding child_model(32);
          auto bank = Bank::open(folder, &child_model, false);
          for (std::size_t cycle = 0;; ++cycle) {
            std::vector<std::string> drop;
            for (std::size_t i = cycle % 3; i < data.corpus.size(); i += 3) {
              drop.push_back(data.corpus[i].id);
            }
            bank->remove(drop);
            ingest_beir(*bank, data, 16);
            bank->compact();
          }
        },
        unit(rng) * window);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child stopped on its own: " << WEXITSTATUS(status);
    auto bank = Bank::open(folder, &model, false);
    check_consistent(*bank);
    ingest_beir(*bank, data, 16);
    bank->compact();
    check_consistent(*bank);
    EXPECT_EQ(snapshot(*bank), reference);
    const BankStats s = bank->stats();
    EXPECT_EQ(s.vector_rows, s.vectors);
    EXPECT_EQ(vector_files(folder), 1u) << "files of an interrupted compaction are cleaned up";
    expect_finds_itself(*bank, model, data.corpus[data.corpus.size() / 2]);
  }
}

}  // namespace
}  // namespace hearth::rag
