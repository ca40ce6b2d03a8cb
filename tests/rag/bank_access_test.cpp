// Banks read without write access, damaged banks, CJK words, the path rule of --filter and rm,
// and compaction after an interrupted remove.
#include <gtest/gtest.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>

#include "fake_models.hpp"
#include "hearth/core/error.hpp"
#include "hearth/rag/bank.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;
using testing_fakes::FakeEmbedding;

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

void write_notes(const fs::path& dir) {
  fs::create_directories(dir / "birds");
  write_file(dir / "birds" / "pelican.md", "# Pelicans\n\nPelicans scoop fish with their pouch.\n");
  write_file(dir / "birds" / "owl.txt", "Owls hunt at night. Their hearing is excellent.\n");
  write_file(dir / "cats.html", "<html><body><h1>Cats</h1><p>Cats hunt mice.</p></body></html>");
}

IngestReport ingest(Bank& bank, const fs::path& root) {
  return bank.ingest({root}, IngestOptions{});
}

// A lexical bank of the notes, closed again.
fs::path make_bank(const testing::TempDir& dir) {
  write_notes(dir / "notes");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  EXPECT_EQ(ingest(*bank, dir / "notes").added, 3u);
  return dir / "bank";
}

// What a reader does: open read-only, count, search. Returns "" or the problem.
std::string read_bank(const fs::path& folder) {
  try {
    auto bank = Bank::open_read_only(folder);
    if (bank->stats().documents != 3) return "wrong document count";
    const auto hits = bank->search_bm25("owls hunt", 5);
    if (hits.empty() || bank->chunk(hits[0].chunk_id)->path.find("owl.txt") == std::string::npos)
      return "search missed owl.txt";
    if (bank->documents("birds/*").size() != 2) return "relative glob failed";
    try {
      bank->remove({"*"});
      return "a read-only bank accepted a write";
    } catch (const Error&) {
    }
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

// Runs body in a child process and returns its exit status (body's return value).
int in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

constexpr int kSkip = 77;

// Runs body as a user without write access to folder: as root, a child that drops to nobody
// (permission bits do not stop root); otherwise this user with the write bits taken away.
int without_write_access(const testing::TempDir& dir, const fs::path& folder,
                         const std::function<int()>& body) {
  fs::permissions(dir.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                  fs::perms::others_read | fs::perms::others_exec);
  const auto read_only = fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                         fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(folder, read_only);
  for (const auto& e : fs::directory_iterator(folder)) {
    fs::permissions(e.path(),
                    fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  }
  const int rc = in_child([&] {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) return kSkip;
    return body();
  });
  fs::permissions(folder, fs::perms::owner_all);
  for (const auto& e : fs::directory_iterator(folder)) {
    fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write);
  }
  return rc;
}

TEST(ReadOnlyBank, AnotherUserCanListCountAndSearch) {
  testing::TempDir dir;
  const fs::path folder = make_bank(dir);
  std::string problem;
  const int rc = without_write_access(dir, folder, [&] {
    const std::string p = read_bank(folder);
    if (!p.empty()) std::fprintf(stderr, "child: %s\n", p.c_str());
    return p.empty() ? 0 : 1;
  });
  if (rc == kSkip) GTEST_SKIP() << "cannot drop to user nobody (setuid refused)";
  EXPECT_EQ(rc, 0) << "see the child's message above";
}

TEST(ReadOnlyBank, MissingWalFilesAreExplainedWhenTheyCannotBeCreated) {
  testing::TempDir dir;
  const fs::path folder = make_bank(dir);
  fs::remove(folder / "bank.sqlite-wal");
  fs::remove(folder / "bank.sqlite-shm");
  const int rc = without_write_access(dir, folder, [&] {
    const std::string p = read_bank(folder);
    const bool explained = p.find("write-ahead log files") != std::string::npos &&
                           p.find("bank.sqlite-shm") != std::string::npos;
    if (!explained) std::fprintf(stderr, "child: '%s'\n", p.c_str());
    return explained ? 0 : 1;
  });
  if (rc == kSkip) GTEST_SKIP() << "cannot drop to user nobody (setuid refused)";
  EXPECT_EQ(rc, 0) << "see the child's message above";
}

TEST(ReadOnlyBank, ReadOnlyMountWithoutWalFilesIsReadAsImmutable) {
  testing::TempDir dir;
  const fs::path folder = make_bank(dir);
  fs::remove(folder / "bank.sqlite-wal");
  fs::remove(folder / "bank.sqlite-shm");
  const fs::path mnt = dir / "mnt";
  fs::create_directories(mnt);
  // A private mount namespace: the read-only bind mount dies with the child.
  const int rc = in_child([&] {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(folder.c_str(), mnt.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(nullptr, mnt.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      return kSkip;
    }
    const std::string p = read_bank(mnt);
    if (!p.empty()) std::fprintf(stderr, "child: %s\n", p.c_str());
    return p.empty() ? 0 : 1;
  });
  if (rc == kSkip) {
    GTEST_SKIP() << "cannot make a read-only bind mount here (needs CAP_SYS_ADMIN and "
                    "unshare(CLONE_NEWNS))";
  }
  EXPECT_EQ(rc, 0) << "see the child's message above";
  EXPECT_FALSE(fs::exists(folder / "bank.sqlite-wal")) << "the reader wrote nothing";
}

TEST(Bank, AMissingDatabaseBesideManifestAndVectorsIsDamageNotANewBank) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model;
  {
    auto bank = Bank::open(dir / "bank", &model, true);
    ingest(*bank, dir / "notes");
  }
  for (const char* f : {"bank.sqlite", "bank.sqlite-wal", "bank.sqlite-shm"}) {
    fs::remove(dir / "bank" / f);
  }
  for (const bool create : {true, false}) {
    try {
      Bank::open(dir / "bank", &model, create);
      ADD_FAILURE() << "a bank without its database opened (create " << create << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat);
      EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(Bank::open_read_only(dir / "bank"), Error);
  EXPECT_FALSE(fs::exists(dir / "bank" / "bank.sqlite")) << "nothing was recreated";
  EXPECT_GT(fs::file_size(dir / "bank" / "vectors.f32"), 0u) << "the vectors are untouched";
  // A creation interrupted before the database was made (manifest only) is finished.
  fs::remove(dir / "bank" / "vectors.f32");
  EXPECT_NO_THROW(Bank::open(dir / "bank", &model, true));
}

TEST(Bank, SqliteMessagesAreSaidOnce) {
  testing::TempDir dir;
  { auto bank = Bank::open(dir / "bank", nullptr, true); }
  for (const char* f : {"bank.sqlite-wal", "bank.sqlite-shm"}) fs::remove(dir / "bank" / f);
  write_file(dir / "bank" / "bank.sqlite", std::string(8192, 'x'));
  try {
    Bank::open(dir / "bank", nullptr, false);
    FAIL() << "a database of garbage opened";
  } catch (const Error& e) {
    const std::string what = e.what();
    const std::size_t first = what.find("not a database");
    ASSERT_NE(first, std::string::npos) << what;
    EXPECT_EQ(what.find("not a database", first + 1), std::string::npos) << what;
  }
}

TEST(Bank, WordsInsideUnspacedChineseAndJapaneseAreFound) {
  testing::TempDir dir;
  fs::create_directories(dir / "docs");
  write_file(dir / "docs" / "zh.txt", "我们每天都需要维生素来保持身体健康。\n");
  write_file(dir / "docs" / "ja.txt", "これは日本語で書かれた短い文章です。\n");
  write_file(dir / "docs" / "en.txt", "Vitamins keep the body healthy.\n");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ASSERT_EQ(ingest(*bank, dir / "docs").added, 3u);
  auto top = [&](const Bank& b, const std::string& q) -> std::string {
    const auto hits = b.search_bm25(q, 5);
    if (hits.empty()) return "no match";
    return fs::path(b.chunk(hits[0].chunk_id)->path).filename().string();
  };
  EXPECT_EQ(top(*bank, "维生素"), "zh.txt");
  EXPECT_EQ(top(*bank, "健康"), "zh.txt");
  EXPECT_EQ(top(*bank, "日本語"), "ja.txt");
  EXPECT_EQ(top(*bank, "文章"), "ja.txt");
  EXPECT_EQ(top(*bank, "维"), "zh.txt") << "a single character is found too";
  EXPECT_EQ(top(*bank, "what is 日本語?"), "ja.txt");
  EXPECT_EQ(top(*bank, "healthy vitamins"), "en.txt");
  EXPECT_EQ(bank->search_bm25("维他命", 5).size(), 0u) << "other words do not match";

  // A bank indexed before CJK bigrams: readers still find whole runs, the next writer
  // re-indexes it.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "bank" / "bank.sqlite").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "DELETE FROM chunks_fts; INSERT INTO chunks_fts(rowid, body) SELECT id,"
                           " text FROM chunks; DELETE FROM meta WHERE key = 'fts_cjk';"
                           " UPDATE meta SET value = value + 1 WHERE key = 'generation'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  bank.reset();
  EXPECT_EQ(top(*Bank::open_read_only(dir / "bank"), "我们每天都需要维生素来保持身体健康"),
            "zh.txt");
  EXPECT_EQ(top(*Bank::open(dir / "bank", nullptr, false), "维生素"), "zh.txt");
  EXPECT_EQ(top(*Bank::open_read_only(dir / "bank"), "日本語"), "ja.txt");
}

TEST(Bank, FilterAndRemoveGlobsAreRelativeToTheIngestRootOrAbsolute) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ASSERT_EQ(ingest(*bank, dir / "notes").added, 3u);
  const std::string abs = (dir / "notes").string();
  EXPECT_EQ(bank->roots(), std::vector<std::string>{abs});
  EXPECT_EQ(bank->documents("birds/*").size(), 2u);
  EXPECT_EQ(bank->documents("**/*.md").size(), 1u);
  EXPECT_EQ(bank->documents("*.html").size(), 1u) << "no '/': the file name";
  EXPECT_EQ(bank->documents(abs + "/birds/*").size(), 2u);
  EXPECT_EQ(bank->documents("birds").size(), 2u) << "a folder holds its documents";
  EXPECT_EQ(bank->documents("bird").size(), 0u) << "not a prefix of names";
  EXPECT_EQ(bank->documents("/birds/*").size(), 0u) << "an absolute glob is absolute";
  EXPECT_EQ(bank->search_bm25("hunt", 5, "birds/*").size(), 1u);
  EXPECT_EQ(bank->search_bm25("hunt", 5, "*.html").size(), 1u);
  EXPECT_EQ(bank->remove({abs + "/birds/"}), 2u) << "rm DIR removes the folder's documents";
  EXPECT_EQ(bank->remove({"cats.html"}), 1u);
  EXPECT_EQ(bank->stats().documents, 0);
}

TEST(Bank, TheNextWriterCompactsAfterAnInterruptedRemove) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model;
  const ChunkingOptions chunking{ChunkingOptions::Mode::kStructural, 40, 0};
  {
    auto bank = Bank::open(dir / "bank", &model, true, chunking);
    ingest(*bank, dir / "notes");
  }
  // What a remove killed between its commit and its compaction leaves: most rows dead.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "bank" / "bank.sqlite").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "DELETE FROM chunks WHERE doc_id IN (SELECT id FROM documents WHERE"
                           " path NOT LIKE '%owl.txt'); DELETE FROM documents WHERE path NOT LIKE"
                           " '%owl.txt'; UPDATE meta SET value = value + 1 WHERE key ="
                           " 'generation'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  fs::remove_all(dir / "notes" / "birds" / "pelican.md");
  fs::remove_all(dir / "notes" / "cats.html");
  auto bank = Bank::open(dir / "bank", &model, false);
  BankStats s = bank->stats();
  ASSERT_GE(2 * (s.vector_rows - s.vectors), s.vector_rows);
  const IngestReport r = ingest(*bank, dir / "notes");
  EXPECT_EQ(r.unchanged, 1u);
  s = bank->stats();
  EXPECT_EQ(s.vector_rows, s.vectors) << "an ingest that changed nothing still compacted";
  EXPECT_EQ(bank->integrity_check(), "ok");
}

}  // namespace
}  // namespace hearth::rag
