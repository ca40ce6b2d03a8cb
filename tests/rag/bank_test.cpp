#include "hearth/rag/bank.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/time.h>
#include <unistd.h>
#include <utime.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "fake_models.hpp"
#include "hearth/core/error.hpp"
#include "hearth/rag/dense.hpp"
#include "hearth/rag/search.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;
using testing_fakes::FakeEmbedding;
using testing_fakes::FakeReranker;

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

// A folder of small notes about animals.
void write_notes(const fs::path& dir) {
  fs::create_directories(dir / "birds");
  write_file(dir / "birds" / "pelican.md",
             "# Pelicans\n\nPelicans scoop fish with their large throat pouch.\n\n## Habitat\n\n"
             "They live near lakes and coasts.\n");
  write_file(dir / "birds" / "owl.txt", "Owls hunt at night. Their hearing is excellent.\n");
  write_file(dir / "cats.html",
             "<html><body><h1>Cats</h1><p>Cats sleep most of the day and hunt mice.</p>"
             "</body></html>");
}

IngestReport ingest(Bank& bank, const fs::path& dir, bool prune = false) {
  IngestOptions o;
  o.prune = prune;
  return bank.ingest({dir}, o);
}

TEST(Bank, IncrementalIngestPruneAndRemove) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model;
  auto bank = Bank::open(dir / "bank", &model, true);
  IngestReport r = ingest(*bank, dir / "notes");
  EXPECT_EQ(r.added, 3u);
  EXPECT_EQ(r.failed, 0u);
  const std::size_t embedded = model.embedded;
  EXPECT_EQ(embedded, r.chunks);

  r = ingest(*bank, dir / "notes");
  EXPECT_EQ(r.unchanged, 3u);
  EXPECT_EQ(r.added + r.updated, 0u);
  EXPECT_EQ(model.embedded, embedded) << "unchanged files must not be embedded again";

  // Same content, new mtime: the hash says unchanged.
  const fs::path owl = dir / "notes" / "birds" / "owl.txt";
  fs::last_write_time(owl, fs::last_write_time(owl) + std::chrono::hours(1));
  r = ingest(*bank, dir / "notes");
  EXPECT_EQ(r.unchanged, 3u);
  EXPECT_EQ(model.embedded, embedded);

  write_file(owl, "Owls hunt at night. Barn owls also hunt voles.\n");
  r = ingest(*bank, dir / "notes");
  EXPECT_EQ(r.updated, 1u);
  EXPECT_EQ(r.unchanged, 2u);
  EXPECT_EQ(bank->search_bm25("voles", 5).size(), 1u);

  fs::remove(dir / "notes" / "cats.html");
  r = ingest(*bank, dir / "notes", /*prune=*/false);
  EXPECT_EQ(bank->documents().size(), 3u) << "without --prune vanished files stay";
  r = ingest(*bank, dir / "notes", /*prune=*/true);
  EXPECT_EQ(r.pruned, 1u);
  EXPECT_EQ(bank->documents().size(), 2u);
  EXPECT_TRUE(bank->search_bm25("mice", 5).empty());

  EXPECT_EQ(bank->remove({"*.md"}), 1u);
  const auto docs = bank->documents();
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_NE(docs[0].path.find("owl.txt"), std::string::npos);
  const BankStats s = bank->stats();
  EXPECT_EQ(s.documents, 1);
  EXPECT_EQ(s.vectors, s.chunks);
  EXPECT_EQ(s.vector_rows, s.vectors) << "over half the rows were dead: compacted on removal";
  EXPECT_EQ(bank->integrity_check(), "ok");
  // Dead rows never come back from dense search.
  std::vector<float> q = model.embed({"pelicans scoop fish"});
  normalize_rows(q.data(), 1, q.size());
  for (const ChunkScore& h : bank->search_dense(q, 10)) {
    EXPECT_TRUE(bank->chunk(h.chunk_id).has_value());
  }
}

// --prune must never take a vanished or unreadable root for deleted documents.
TEST(Bank, PruneRefusesRootsItCannotTrust) {
  testing::TempDir dir;
  const fs::path notes = dir / "notes";
  write_notes(notes);
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ASSERT_EQ(ingest(*bank, notes).added, 3u);
  std::vector<std::string> messages;
  auto prune = [&](const fs::path& root) {
    IngestOptions o;
    o.prune = true;
    messages.clear();
    o.on_message = [&](const std::string& m) { messages.push_back(m); };
    return bank->ingest({root}, o);
  };
  auto said = [&](const std::string& what) {
    for (const std::string& m : messages) {
      if (m.find(what) != std::string::npos) return true;
    }
    return false;
  };
  // Renamed (or a drive not mounted): nothing is pruned, and the run says so.
  fs::rename(notes, dir / "renamed");
  IngestReport r = prune(notes);
  EXPECT_TRUE(r.prune_refused);
  EXPECT_EQ(r.pruned, 0u);
  EXPECT_TRUE(said("not found")) << ::testing::PrintToString(messages);
  EXPECT_TRUE(said("nothing was pruned")) << ::testing::PrintToString(messages);
  EXPECT_EQ(bank->documents().size(), 3u);
  // An empty mount point.
  fs::create_directories(notes);
  r = prune(notes);
  EXPECT_TRUE(r.prune_refused);
  EXPECT_TRUE(said("empty mount point")) << ::testing::PrintToString(messages);
  EXPECT_EQ(bank->documents().size(), 3u);
  // A file where the folder was.
  fs::remove(notes);
  write_file(notes, "now a file\n");
  r = prune(notes);
  EXPECT_TRUE(r.prune_refused);
  EXPECT_TRUE(said("is a file now")) << ::testing::PrintToString(messages);
  EXPECT_EQ(bank->documents().size(), 4u) << "the file itself is ingested, nothing pruned";
  // rm of that path takes the file and, by the folder rule, the documents stored under it.
  ASSERT_EQ(bank->remove({notes.string()}), 4u);
  fs::remove(notes);
  fs::rename(dir / "renamed", notes);
  ASSERT_EQ(ingest(*bank, notes).added, 3u);
  // A sub-folder that is now empty (a mount point inside the tree).
  fs::remove_all(notes / "birds");
  fs::create_directories(notes / "birds");
  r = prune(notes);
  EXPECT_TRUE(r.prune_refused);
  EXPECT_TRUE(said("birds is an empty folder")) << ::testing::PrintToString(messages);
  EXPECT_EQ(bank->documents().size(), 3u);
  // Files that are really gone are pruned, and only those: a name with glob characters does
  // not take its neighbours along.
  fs::remove(notes / "birds");
  write_file(notes / "a*.txt", "star\n");
  write_file(notes / "ab.txt", "neighbour\n");
  ASSERT_EQ(ingest(*bank, notes).added, 2u);
  fs::remove(notes / "a*.txt");
  r = prune(notes);
  EXPECT_FALSE(r.prune_refused) << ::testing::PrintToString(messages);
  EXPECT_EQ(r.pruned, 3u) << ::testing::PrintToString(messages);
  std::vector<std::string> left;
  for (const DocumentInfo& d : bank->documents()) left.push_back(fs::path(d.path).filename());
  EXPECT_EQ(left, (std::vector<std::string>{"ab.txt", "cats.html"}));
}

TEST(Bank, PruneRefusesWhenAFolderCannotBeRead) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every folder; run as a user to test this";
  testing::TempDir dir;
  const fs::path notes = dir / "notes";
  write_notes(notes);
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ASSERT_EQ(ingest(*bank, notes).added, 3u);
  fs::permissions(notes / "birds", fs::perms::none);
  // Files that cannot be looked at are not gone.
  IngestReport r = ingest(*bank, notes, /*prune=*/true);
  EXPECT_EQ(r.pruned, 0u);
  EXPECT_EQ(bank->documents().size(), 3u);
  // A file really gone beside a folder that cannot be listed: the walk is incomplete, so
  // nothing is pruned.
  fs::remove(notes / "cats.html");
  r = ingest(*bank, notes, /*prune=*/true);
  fs::permissions(notes / "birds", fs::perms::owner_all);
  EXPECT_TRUE(r.prune_refused);
  EXPECT_EQ(bank->documents().size(), 3u);
  r = ingest(*bank, notes, /*prune=*/true);
  EXPECT_FALSE(r.prune_refused);
  EXPECT_EQ(r.pruned, 1u);
}

TEST(Bank, HtmlTitleIsSearchable) {
  testing::TempDir dir;
  fs::create_directories(dir / "site");
  write_file(dir / "site" / "page.html",
             "<html><head><title>Quokka husbandry</title></head><body><h1>Feeding</h1>"
             "<p>Leaves and grasses twice a day.</p></body></html>");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ASSERT_EQ(ingest(*bank, dir / "site").added, 1u);
  const auto hits = bank->search_bm25("quokka", 5);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(bank->chunk(hits[0].chunk_id)->heading, "Quokka husbandry > Feeding");
}

TEST(Bank, QueriesFullOfFtsSyntaxAreSafe) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ingest(*bank, dir / "notes");
  for (const char* q :
       {"\"", "*", "NEAR(pelicans fish)", "-owls", "body:owls", "((owls", "owls AND OR NOT",
        "\"unbalanced owls", "^owls", "{body} : owls", "owls*", ")", "", "   ", "\xFF\xFE",
        "NEAR(\"a\" \"b\", 3)", "'; DROP TABLE chunks; --"}) {
    SCOPED_TRACE(q);
    EXPECT_NO_THROW(bank->search_bm25(q, 5));
  }
  EXPECT_EQ(bank->search_bm25("((owls", 5).size(), 1u);
  EXPECT_EQ(bank->search_bm25("body:owls", 5).size(), 1u);
  EXPECT_EQ(fts_query("NEAR(x* -b:c \"d\")"), "\"near\" OR \"x\" OR \"b\" OR \"c\" OR \"d\"");
  EXPECT_EQ(fts_query("the"), "\"the\"");
  EXPECT_EQ(fts_query("what is the owl"), "\"owl\"");
  EXPECT_EQ(bank->documents().size(), 3u);
  EXPECT_EQ(bank->integrity_check(), "ok");
}

TEST(Bank, StemmingFindsWordForms) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ingest(*bank, dir / "notes");
  EXPECT_EQ(bank->search_bm25("hunting", 5).size(), 2u);  // owls hunt, cats hunt
  EXPECT_EQ(bank->search_bm25("sleeping", 5).size(), 1u);
}

TEST(Bank, EmptyBank) {
  testing::TempDir dir;
  auto bank = Bank::open(dir / "bank", nullptr, true);
  EXPECT_TRUE(bank->search_bm25("anything", 5).empty());
  EXPECT_TRUE(bank->documents().empty());
  const BankStats s = bank->stats();
  EXPECT_EQ(s.documents, 0);
  EXPECT_EQ(s.chunks, 0);
  EXPECT_EQ(bank->integrity_check(), "ok");
  const auto hits = search({bank.get()}, "anything", {});
  EXPECT_TRUE(hits.empty());
  EXPECT_TRUE(extractive_answer("anything?", hits).sentences.empty());
}

TEST(Bank, OpeningWithAnotherModelIsAnError) {
  testing::TempDir dir;
  FakeEmbedding m1(32, "model-one");
  FakeEmbedding m2(32, "model-two");
  FakeEmbedding m1_small(16, "model-one");
  { auto bank = Bank::open(dir / "dense", &m1, true); }
  try {
    Bank::open(dir / "dense", &m2, false);
    FAIL() << "other model accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("model-one"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model-two"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Bank::open(dir / "dense", &m1_small, false), Error);
  { auto lexical = Bank::open(dir / "lexical", nullptr, true); }
  EXPECT_THROW(Bank::open(dir / "lexical", &m1, false), Error);
  EXPECT_THROW(Bank::open(dir / "missing", nullptr, false), Error);
  // Without its model a dense bank can still be searched lexically but not extended.
  write_notes(dir / "notes");
  {
    auto bank = Bank::open(dir / "dense", &m1, false);
    ingest(*bank, dir / "notes");
  }
  auto bank = Bank::open(dir / "dense", nullptr, false);
  EXPECT_EQ(bank->search_bm25("owls", 5).size(), 1u);
  write_file(dir / "notes" / "new.txt", "A new note about herons.");
  EXPECT_THROW(ingest(*bank, dir / "notes"), Error);
  EXPECT_TRUE(bank->search_bm25("herons", 5).empty());
}

TEST(Bank, ManifestRecordsModelAndChunking) {
  testing::TempDir dir;
  FakeEmbedding m(24, "fake-24");
  { auto bank = Bank::open(dir / "b", &m, true, ChunkingOptions::original()); }
  auto bank = Bank::open(dir / "b", nullptr, false);
  EXPECT_EQ(bank->manifest().embedding_id, "fake-24");
  EXPECT_EQ(bank->manifest().embedding_fingerprint, "fp-fake-24-24");
  EXPECT_EQ(bank->manifest().dim, 24u);
  EXPECT_EQ(bank->manifest().chunking.describe(), "characters/256/50");
  EXPECT_EQ(bank->manifest().format_version, kBankFormatVersion);
  write_file(dir / "b" / "manifest.json", "{not json");
  EXPECT_THROW(Bank::open(dir / "b", nullptr, false), Error);
}

TEST(Dense, KernelsMatchAReferenceOnEveryTailLength) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (std::size_t dim = 1; dim <= 70; ++dim) {
    const std::size_t n = 5;
    std::vector<float> rows(n * dim);
    std::vector<float> q(dim);
    for (float& x : rows) x = nd(rng);
    for (float& x : q) x = nd(rng);
    std::vector<float> out(n);
    dot_rows(rows.data(), n, dim, q.data(), out.data());
    for (std::size_t i = 0; i < n; ++i) {
      double ref = 0;
      for (std::size_t j = 0; j < dim; ++j) ref += double(rows[i * dim + j]) * q[j];
      EXPECT_NEAR(out[i], ref, 1e-4 * (1 + std::abs(ref))) << "dim " << dim;
    }
  }
}

TEST(Dense, TopKMultithreadedEqualsSingleThreaded) {
  const std::size_t n = 100000;
  const std::size_t dim = 48;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<float> rows(n * dim);
  for (float& x : rows) x = nd(rng);
  std::vector<float> q(rows.begin() + 777 * dim, rows.begin() + 778 * dim);
  std::vector<std::uint8_t> keep(n, 1);
  keep[777] = 0;
  const auto one = top_k_dense(rows.data(), n, dim, q.data(), 10, keep.data(), 1);
  const auto many = top_k_dense(rows.data(), n, dim, q.data(), 10, keep.data(), 4);
  ASSERT_EQ(one.size(), 10u);
  EXPECT_EQ(one, many);
  for (const auto& [s, row] : one) EXPECT_NE(row, 777u);
  // Against a full sort.
  std::vector<std::pair<float, std::size_t>> all;
  std::vector<float> scores(n);
  dot_rows(rows.data(), n, dim, q.data(), scores.data());
  for (std::size_t i = 0; i < n; ++i) {
    if (keep[i] != 0) all.emplace_back(scores[i], i);
  }
  std::partial_sort(all.begin(), all.begin() + 10, all.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  all.resize(10);
  EXPECT_EQ(one, all);
}

TEST(Dense, ReciprocalRankFusion) {
  const auto fused = reciprocal_rank_fusion({{1, 2, 3}, {3, 1, 4}}, 60);
  ASSERT_EQ(fused.size(), 4u);
  EXPECT_EQ(fused[0].first, 1);  // 1/61 + 1/62
  EXPECT_EQ(fused[1].first, 3);  // 1/63 + 1/61
  EXPECT_EQ(fused[2].first, 2);  // 1/62
  EXPECT_EQ(fused[3].first, 4);  // 1/63
  EXPECT_NEAR(fused[0].second, 1.0 / 61 + 1.0 / 62, 1e-12);
}

std::vector<ChunkScore> dense(const Bank& bank, FakeEmbedding& model, const std::string& text) {
  std::vector<float> q = model.embed({text});
  normalize_rows(q.data(), 1, q.size());
  return bank.search_dense(q, 100);
}

std::vector<std::string> vector_files(const fs::path& folder) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(folder)) {
    if (e.path().filename().string().starts_with("vectors")) {
      out.push_back(e.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Bank, CompactionKeepsEveryLiveVectorAndOtherHandlesFollow) {
  for (const VectorType t : {VectorType::kF32, VectorType::kInt8}) {
    SCOPED_TRACE(to_string(t));
    testing::TempDir dir;
    write_notes(dir / "notes");
    FakeEmbedding model(40);
    const fs::path folder = dir / "bank";
    const ChunkingOptions chunking{ChunkingOptions::Mode::kStructural, 40, 0};
    auto writer = Bank::open(folder, &model, true, chunking, t);
    ingest(*writer, dir / "notes");
    // Another handle, as another process would hold, has mapped the vectors before compaction.
    auto reader = Bank::open(folder, &model, false);
    const auto before = dense(*reader, model, "cats hunt mice at night");
    const std::int64_t rows = writer->stats().vector_rows;
    ASSERT_GE(rows, 4);
    const std::string ext = std::string(".") + to_string(t);
    // Leftovers of an interrupted compaction, and a file that only looks like one.
    write_file(folder / ("vectors-9" + ext), "stale");
    write_file(folder / ("vectors-x" + ext), "not ours");

    ASSERT_EQ(writer->remove({"*cats.html"}), 1u);
    BankStats s = writer->stats();
    EXPECT_EQ(s.vector_rows, rows) << "one dead row of several: no compaction yet";
    const std::int64_t dead = s.vector_rows - s.vectors;
    ASSERT_GT(dead, 0);
    EXPECT_EQ(writer->compact(), static_cast<std::size_t>(dead));
    s = writer->stats();
    EXPECT_EQ(s.vector_rows, s.vectors);
    EXPECT_EQ(vector_files(folder),
              (std::vector<std::string>{"vectors-1" + ext, "vectors-x" + ext}))
        << "the old file and the leftover are deleted";
    EXPECT_EQ(writer->compact(), 0u) << "nothing left to reclaim";

    // The other handle reloads from the new file: same chunks, same scores, cats gone.
    const auto after = dense(*reader, model, "cats hunt mice at night");
    std::vector<ChunkScore> expected;
    for (const ChunkScore& h : before) {
      if (reader->chunk(h.chunk_id)) expected.push_back(h);
    }
    ASSERT_EQ(after.size(), expected.size());
    ASSERT_EQ(static_cast<std::int64_t>(after.size()), s.vectors);
    for (std::size_t i = 0; i < after.size(); ++i) {
      EXPECT_EQ(after[i].chunk_id, expected[i].chunk_id);
      EXPECT_FLOAT_EQ(after[i].score, expected[i].score);
    }
    // ... and writes into the new file: the cats come back through the other handle.
    write_file(dir / "notes" / "cats.html", "<p>Cats hunt mice.</p>");
    EXPECT_EQ(ingest(*reader, dir / "notes").added, 1u);
    const auto again = dense(*writer, model, "Cats hunt mice.");
    ASSERT_FALSE(again.empty());
    EXPECT_NE(writer->chunk(again[0].chunk_id)->path.find("cats.html"), std::string::npos);
    EXPECT_NEAR(again[0].score, 1.0, t == VectorType::kF32 ? 1e-5 : 3e-2);
    EXPECT_EQ(vector_files(folder),
              (std::vector<std::string>{"vectors-1" + ext, "vectors-x" + ext}));
    EXPECT_EQ(writer->integrity_check(), "ok");
    s = writer->stats();
    EXPECT_EQ(s.vectors, s.chunks);
    EXPECT_EQ(s.vector_rows, s.vectors);
  }
}

TEST(Bank, MissingOrShortVectorsAreReportedNotRecreated) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model;
  const fs::path folder = dir / "bank";
  {
    auto bank = Bank::open(folder, &model, true);
    ingest(*bank, dir / "notes");
  }
  write_file(dir / "notes" / "new.txt", "Herons wade in shallow water.");
  const auto expect_refused = [&](const std::string& what) {
    auto bank = Bank::open(folder, &model, false);
    try {
      ingest(*bank, dir / "notes");
      ADD_FAILURE() << "ingest went on over a " << what << " vectors file";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
      EXPECT_NE(std::string(e.what()).find("vectors.f32"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(bank->search_bm25("herons", 5).empty()) << "nothing was stored";
    EXPECT_FALSE(bank->search_bm25("pelicans", 5).empty()) << "the documents are still there";
  };
  const std::uintmax_t size = fs::file_size(folder / "vectors.f32");
  fs::resize_file(folder / "vectors.f32", size / 2);
  expect_refused("short");
  fs::remove(folder / "vectors.f32");
  expect_refused("missing");
  EXPECT_FALSE(fs::exists(folder / "vectors.f32")) << "not recreated empty";
}

TEST(Bank, CompactionWithVacuumReturnsDiskSpace) {
  testing::TempDir dir;
  fs::create_directories(dir / "notes");
  for (char c = '0'; c < '8'; ++c) {
    std::string text;  // words of their own in each file, so the index shrinks with the files
    for (int i = 0; i < 2000; ++i)
      text.append("Word").append(1, c).append(std::to_string(i)).append(" fills the page. ");
    write_file(dir / "notes" / (std::string("n") + c + ".txt"), text);
  }
  FakeEmbedding model(64);
  auto bank = Bank::open(dir / "bank", &model, true);
  ingest(*bank, dir / "notes");
  const std::uint64_t full = bank->stats().disk_bytes;
  ASSERT_EQ(bank->remove({"*n[1-7].txt"}), 7u);
  const BankStats removed = bank->stats();
  EXPECT_EQ(removed.vector_rows, removed.vectors) << "7 of 8 rows dead: compacted on removal";
  bank->compact(true);
  const BankStats s = bank->stats();
  EXPECT_LT(s.disk_bytes * 3, full) << full << " -> " << s.disk_bytes;
  EXPECT_EQ(s.documents, 1);
  EXPECT_EQ(bank->integrity_check(), "ok");
  EXPECT_EQ(bank->search_bm25("Word01999", 5).size(), 1u);
  EXPECT_TRUE(bank->search_bm25("Word11999", 5).empty());
}

TEST(Dense, BankDenseSearchMatchesBruteForce) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model(40);
  auto bank = Bank::open(dir / "bank", &model, true, {ChunkingOptions::Mode::kStructural, 40, 0});
  ingest(*bank, dir / "notes");
  std::vector<float> q = model.embed({"owls hunt at night"});
  normalize_rows(q.data(), 1, q.size());
  const auto hits = bank->search_dense(q, 100);
  const BankStats s = bank->stats();
  ASSERT_EQ(static_cast<std::int64_t>(hits.size()), s.chunks);
  // Recompute every chunk's cosine from its text.
  for (const ChunkScore& h : hits) {
    const auto c = bank->chunk(h.chunk_id);
    ASSERT_TRUE(c.has_value());
    std::vector<float> v =
        model.embed({c->heading.empty() ? c->text : c->heading + "\n" + c->text});
    normalize_rows(v.data(), 1, v.size());
    double dot = 0;
    for (std::size_t j = 0; j < v.size(); ++j) dot += double(v[j]) * q[j];
    EXPECT_NEAR(h.score, dot, 1e-5);
  }
  for (std::size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].score, hits[i].score);
  EXPECT_NE(bank->chunk(hits[0].chunk_id)->text.find("Owls hunt at night"), std::string::npos);
  // A path filter restricts dense and BM25 alike.
  for (const ChunkScore& h : bank->search_dense(q, 100, "*.md")) {
    EXPECT_NE(bank->chunk(h.chunk_id)->path.find("pelican.md"), std::string::npos);
  }
  for (const ChunkScore& h : bank->search_bm25("hunt", 100, "**/birds/*")) {
    EXPECT_NE(bank->chunk(h.chunk_id)->path.find("owl.txt"), std::string::npos);
  }
  EXPECT_EQ(bank->search_bm25("hunt", 100, "**/birds/*").size(), 1u);
}

TEST(Search, HybridIsTheFusionOfBothLists) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model(40);
  auto bank = Bank::open(dir / "bank", &model, true);
  ingest(*bank, dir / "notes");
  const std::string query = "hunt at night";
  SearchOptions o;
  o.top_k = 10;
  const auto hybrid = search({bank.get()}, query, o);  // auto: hybrid with a model
  std::vector<std::int64_t> bm25_ids;
  std::vector<std::int64_t> dense_ids;
  for (const auto& h : bank->search_bm25(query, 20)) bm25_ids.push_back(h.chunk_id);
  std::vector<float> q = model.embed({query});
  normalize_rows(q.data(), 1, q.size());
  for (const auto& h : bank->search_dense(q, 20)) dense_ids.push_back(h.chunk_id);
  const auto fused = reciprocal_rank_fusion({bm25_ids, dense_ids});
  ASSERT_EQ(hybrid.size(), std::min<std::size_t>(10, fused.size()));
  for (std::size_t i = 0; i < hybrid.size(); ++i) {
    EXPECT_EQ(hybrid[i].chunk.id, fused[i].first);
    EXPECT_NEAR(hybrid[i].score, fused[i].second, 1e-12);
  }
  o.mode = SearchMode::kBm25;
  EXPECT_EQ(search({bank.get()}, query, o).size(), bm25_ids.size());
  // Dense search over a lexical bank says what is missing.
  auto lexical = Bank::open(dir / "lexical", nullptr, true);
  o.mode = SearchMode::kDense;
  EXPECT_THROW(search({lexical.get()}, query, o), Error);
}

TEST(Search, SeveralBanksAndReranking) {
  testing::TempDir dir;
  write_notes(dir / "a");
  fs::create_directories(dir / "b");
  write_file(dir / "b" / "dogs.txt", "Dogs hunt by smell. Dogs hunt in packs and hunt well.");
  auto bank_a = Bank::open(dir / "bank-a", nullptr, true);
  auto bank_b = Bank::open(dir / "bank-b", nullptr, true);
  ingest(*bank_a, dir / "a");
  ingest(*bank_b, dir / "b");
  SearchOptions o;
  o.top_k = 10;
  const auto hits = search({bank_a.get(), bank_b.get()}, "hunt", o);
  ASSERT_EQ(hits.size(), 3u);
  std::set<std::size_t> banks_seen;
  for (const Hit& h : hits) {
    banks_seen.insert(h.bank);
    EXPECT_EQ(h.chunk.path.find((dir / (h.bank == 0 ? "a" : "b")).string()), 0u);
  }
  EXPECT_EQ(banks_seen.size(), 2u);
  FakeReranker reranker("hunt");
  o.reranker = &reranker;
  o.top_k = 2;
  const auto reranked = search({bank_a.get(), bank_b.get()}, "hunt", o);
  ASSERT_EQ(reranked.size(), 2u);
  EXPECT_NE(reranked[0].chunk.path.find("dogs.txt"), std::string::npos);
  EXPECT_EQ(reranked[0].score, 3.0);
}

TEST(Answer, ExtractiveSentencesCiteTheirSources) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ingest(*bank, dir / "notes");
  const std::string q = "Where do pelicans live?";
  const auto hits = search({bank.get()}, q, {});
  const ExtractiveAnswer a = extractive_answer(q, hits);
  ASSERT_FALSE(a.sentences.empty());
  EXPECT_EQ(a.sentences[0].text, "They live near lakes and coasts.");
  ASSERT_GE(a.citations.size(), 1u);
  const Citation& c = a.citations[static_cast<std::size_t>(a.sentences[0].citation - 1)];
  EXPECT_NE(c.path.find("pelican.md"), std::string::npos);
  EXPECT_EQ(c.heading, "Pelicans > Habitat");
  EXPECT_EQ(format_citation({1, "x.pdf", 3, 3, ""}), "x.pdf, p. 3");
  EXPECT_EQ(format_citation({1, "x.pdf", 3, 4, ""}), "x.pdf, pp. 3-4");
  EXPECT_EQ(format_citation({1, "x.md", 0, 0, ""}), "x.md");
}

TEST(Bank, OddPathsAreStoredAndFound) {
  testing::TempDir dir;
  fs::create_directories(dir / "n");
  const std::vector<std::string> names = {"with space.txt", "new\nline.txt", "bad\xFFname.txt"};
  for (const std::string& n : names) write_file(dir / "n" / n, "zebra note " + n);
  auto bank = Bank::open(dir / "bank", nullptr, true);
  const IngestReport r = ingest(*bank, dir / "n");
  EXPECT_EQ(r.added, 3u);
  EXPECT_EQ(bank->search_bm25("zebra", 10).size(), 3u);
  for (const std::string& n : names) {
    const auto d = bank->document((dir / "n" / n).string());
    ASSERT_TRUE(d.has_value()) << n;
    EXPECT_EQ(d->chunks, 1);
  }
  EXPECT_EQ(bank->remove({(dir / "n" / "new\nline.txt").string()}), 1u);
  EXPECT_EQ(bank->documents().size(), 2u);
}

}  // namespace
}  // namespace hearth::rag

namespace hearth::rag {
namespace {

TEST(Bank, AFileTurnedHostileKeepsItsStoredVersion) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ingest(*bank, dir / "notes");
  // The markdown file becomes binary junk, a new empty file and a nested HTML bomb appear.
  std::string junk(5000, '\0');
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131) % 256);
  write_file(dir / "notes" / "birds" / "pelican.md", junk);
  write_file(dir / "notes" / "empty.txt", "");
  std::string html;
  for (int i = 0; i < 20000; ++i) html += "<div>";
  write_file(dir / "notes" / "nested.html", html + "deep</div>");
  std::vector<std::string> messages;
  IngestOptions o;
  o.on_message = [&](const std::string& m) { messages.push_back(m); };
  const IngestReport r = bank->ingest({dir / "notes"}, o);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.added, 2u);
  bool named = false;
  for (const std::string& m : messages) {
    named = named ||
            (m.find("pelican.md") != std::string::npos && m.find("binary") != std::string::npos);
  }
  EXPECT_TRUE(named);
  EXPECT_EQ(bank->search_bm25("pouch", 5).size(), 1u) << "the stored version is kept";
  EXPECT_EQ(bank->documents().size(), 5u);
  EXPECT_EQ(bank->integrity_check(), "ok");
}

}  // namespace
}  // namespace hearth::rag

namespace hearth::rag {
namespace {

// hearth_bm25 (lengths from memory, hits per phrase) must give FTS5's own bm25() scores.
TEST(Bank, Bm25MatchesFts5BuiltIn) {
  HEARTH_REQUIRE_FIXTURE(scifact, "datasets/beir-scifact/corpus.jsonl");
  testing::TempDir dir;
  std::vector<std::string> lines;
  {
    std::ifstream in(scifact);
    std::string line;
    while (lines.size() < 300 && std::getline(in, line)) lines.push_back(line);
  }
  fs::create_directories(dir / "docs");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    write_file(dir / "docs" / (std::to_string(i) + ".txt"), lines[i]);
  }
  auto bank = Bank::open(dir / "bank", nullptr, true);
  ingest(*bank, dir / "docs");
  ASSERT_EQ(bank->remove({"**/7.txt", "**/11.txt"}),
            2u);  // deleted rows must not disturb the lengths
  sqlite3* db = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2((dir / "bank" / "bank.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
      SQLITE_OK);
  for (const char* q : {"cell biology of cancer", "vitamin D deficiency risk", "the protein",
                        "brain white matter diffusion tensor imaging"}) {
    SCOPED_TRACE(q);
    const auto ours = bank->search_bm25(q, 20);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT rowid, bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts"
                                 " MATCH ?1 ORDER BY bm25(chunks_fts) LIMIT 20",
                                 -1, &st, nullptr),
              SQLITE_OK);
    const std::string match = fts_query(q);
    sqlite3_bind_text(st, 1, match.c_str(), -1, SQLITE_TRANSIENT);
    std::size_t i = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
      ASSERT_LT(i, ours.size());
      EXPECT_NEAR(ours[i].score, -sqlite3_column_double(st, 1),
                  1e-9 * (1 + std::abs(ours[i].score)));
      ++i;
    }
    sqlite3_finalize(st);
    EXPECT_EQ(i, ours.size());
    EXPECT_GT(i, 0u);
  }
  sqlite3_close(db);
}

}  // namespace
}  // namespace hearth::rag

namespace hearth::rag {
namespace {

TEST(Dense, F16AndInt8RowsRoundTripWithinTheirPrecision) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const std::size_t n = 7;
  const std::size_t dim = 45;
  std::vector<float> rows(n * dim);
  for (float& x : rows) x = nd(rng);
  normalize_rows(rows.data(), n, dim);
  for (const VectorType t : {VectorType::kF32, VectorType::kF16, VectorType::kInt8}) {
    SCOPED_TRACE(to_string(t));
    EXPECT_EQ(parse_vector_type(to_string(t)), t);
    std::vector<std::byte> enc(n * row_bytes(t, dim));
    encode_rows(t, rows.data(), n, dim, enc.data());
    std::vector<float> dec(n * dim);
    decode_rows(t, enc.data(), n, dim, dec.data());
    const double tol = t == VectorType::kF32 ? 0 : t == VectorType::kF16 ? 1e-3 : 0.5 / 127;
    for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_NEAR(dec[i], rows[i], tol);
  }
  EXPECT_THROW(parse_vector_type("f64"), Error);
}

TEST(Dense, BanksStoringF16OrInt8RankLikeF32) {
  testing::TempDir dir;
  write_notes(dir / "notes");
  FakeEmbedding model(40);
  std::vector<std::vector<ChunkScore>> results;
  for (const VectorType t : {VectorType::kF32, VectorType::kF16, VectorType::kInt8}) {
    const fs::path folder = dir / to_string(t);
    {
      auto bank = Bank::open(folder, &model, true, {ChunkingOptions::Mode::kStructural, 40, 0}, t);
      ingest(*bank, dir / "notes");
    }
    auto bank = Bank::open(folder, &model, false);
    EXPECT_EQ(bank->manifest().vector_type, t);
    EXPECT_TRUE(fs::exists(folder / (std::string("vectors.") + to_string(t))));
    std::vector<float> q = model.embed({"owls hunt at night"});
    normalize_rows(q.data(), 1, q.size());
    results.push_back(bank->search_dense(q, 100));
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  ASSERT_EQ(results[0].size(), results[2].size());
  EXPECT_EQ(results[1][0].chunk_id, results[0][0].chunk_id);
  EXPECT_EQ(results[2][0].chunk_id, results[0][0].chunk_id);
  for (std::size_t i = 0; i < results[0].size(); ++i) {
    EXPECT_NEAR(results[1][i].score, results[0][i].score, 2e-3);
    EXPECT_NEAR(results[2][i].score, results[0][i].score, 3e-2);
  }
}

}  // namespace
}  // namespace hearth::rag
