#include <gtest/gtest.h>

#include <fstream>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/rag/bank.hpp"
#include "hearth/rag/loaders.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;

// Byte offset in doc.text where phrase starts, matching across any whitespace differences.
std::size_t find_phrase(const LoadedDocument& doc, const std::string& phrase) {
  const std::string flat = collapse_whitespace(phrase);
  // Map collapsed positions back to the original text.
  std::string collapsed;
  std::vector<std::size_t> origin;
  bool space = false;
  for (std::size_t i = 0; i < doc.text.size(); ++i) {
    const char c = doc.text[i];
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !collapsed.empty();
    } else {
      if (space) {
        collapsed += ' ';
        origin.push_back(i);
      }
      space = false;
      collapsed += c;
      origin.push_back(i);
    }
  }
  const std::size_t at = collapsed.find(flat);
  return at == std::string::npos ? std::string::npos : origin[at];
}

struct PagePhrase {
  const char* phrase;
  int page;
};

void expect_pages(const fs::path& pdf, const std::vector<PagePhrase>& phrases) {
  const LoadedDocument doc = load_document(pdf);
  testing::TempDir dir;
  auto bank = Bank::open(dir / "bank", nullptr, true);
  IngestOptions opts;
  const IngestReport r = bank->ingest({pdf}, opts);
  ASSERT_EQ(r.added, 1u);
  const auto docs = bank->documents();
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].pages, static_cast<int>(doc.page_starts.size()));
  const auto chunks = bank->chunks_of(docs[0].id);
  for (const PagePhrase& p : phrases) {
    SCOPED_TRACE(p.phrase);
    const std::size_t at = find_phrase(doc, p.phrase);
    ASSERT_NE(at, std::string::npos);
    EXPECT_EQ(doc.page_at(at), p.page);
    bool found = false;
    for (const ChunkInfo& c : chunks) {
      if (collapse_whitespace(c.text).find(collapse_whitespace(p.phrase)) != std::string::npos) {
        found = true;
        EXPECT_LE(c.page_first, p.page);
        EXPECT_GE(c.page_last, p.page);
        EXPECT_LE(c.byte_begin, at);
        EXPECT_GT(c.byte_end, at);
      }
    }
    EXPECT_TRUE(found) << "no chunk holds the phrase";
    // BM25 search for the phrase ranks its chunk among the first three.
    bool ranked = false;
    for (const ChunkScore& h : bank->search_bm25(p.phrase, 3)) {
      const auto c = bank->chunk(h.chunk_id);
      ASSERT_TRUE(c.has_value());
      ranked = ranked || collapse_whitespace(c->text).find(collapse_whitespace(p.phrase)) !=
                             std::string::npos;
    }
    EXPECT_TRUE(ranked);
  }
}

TEST(Pdf, DprPaperSentencesLandOnTheirPages) {
  HEARTH_REQUIRE_FIXTURE(pdf, "pdfs/dpr-karpukhin2020-arXiv2004.04906v3.pdf");
  // Phrases that occur once in the paper (checked against pdftotext's output).
  expect_pages(pdf, {{"terms of top-20 passage retrieval accuracy", 1},
                     {"and thus introduces unwanted bias", 5},
                     {"Analysis (Deerwester et al., 1990). Using labeled", 9},
                     {"Annual traffic between Great Britain and Ireland", 13}});
}

TEST(Pdf, FederalRegisterSentencesLandOnTheirPages) {
  HEARTH_REQUIRE_FIXTURE(pdf, "pdfs/federal-register-2020-17221.pdf");
  expect_pages(pdf, {{"of updated FCC software with revised", 3},
                     {"replace the existing Stabilizer Trim", 10},
                     {"Attack (AOA) Sensor System Test", 14}});
}

TEST(Pdf, ThreeColumnNoticeReadsInColumnOrder) {
  HEARTH_REQUIRE_FIXTURE(pdf, "pdfs/federal-register-2020-17221.pdf");
  const LoadedDocument doc = load_document(pdf);
  ASSERT_GE(doc.page_starts.size(), 2u);
  const std::string page1 =
      collapse_whitespace(std::string_view(doc.text).substr(0, doc.page_starts[1]));
  // Lines of the first column follow each other (a layout-order reader interleaves columns).
  EXPECT_NE(page1.find("This section of the FEDERAL REGISTER contains notices to the public of "
                       "the proposed issuance of rules and regulations."),
            std::string::npos);
  EXPECT_NE(page1.find("Federal eRulemaking Portal: Go to https://www.regulations.gov. Follow "
                       "the instructions for submitting comments."),
            std::string::npos);
  EXPECT_NE(page1.find("explain the reason for any recommended change, and include supporting "
                       "data. To ensure the docket does not contain duplicate comments,"),
            std::string::npos);
  // Columns follow each other: all of the first, then the second (top to bottom, its section
  // headings included), then the third. poppler's own reading order (and pdftotext's) puts the
  // third column's top before the second column's lower sections on this page.
  const std::vector<const char*> in_order = {
      "This section of the FEDERAL REGISTER",                     // column 1, top
      "This proposed AD would require installing new flight",     // column 1
      "Federal eRulemaking Portal",                               // column 2, top
      "Examining the AD Docket",                                  // column 2, middle
      "Comments Invited",                                         // column 2, bottom
      "The FAA invites you to participate",                       // column 2, bottom
      "proposal, explain the reason for any recommended change",  // column 3, top
      "CBI is commercial or financial",                           // column 3
  };
  std::size_t previous = 0;
  for (const char* phrase : in_order) {
    SCOPED_TRACE(phrase);
    const std::size_t at = page1.find(phrase);
    ASSERT_NE(at, std::string::npos);
    EXPECT_GE(at, previous);
    previous = at;
  }
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

// A small PDF whose standard security handler rejects the empty user password.
std::string encrypted_pdf() {
  const std::string zeros(64, '0');
  return "%PDF-1.4\n"
         "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
         "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
         "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >> endobj\n"
         "4 0 obj << /Filter /Standard /V 1 /R 2 /O <" +
         zeros + "> /U <" + zeros +
         "> /P -4 >> endobj\n"
         "trailer << /Root 1 0 R /Size 5 /Encrypt 4 0 R /ID [<0123456789abcdef0123456789abcdef>"
         " <0123456789abcdef0123456789abcdef>] >>\n%%EOF\n";
}

TEST(Pdf, CorruptAndEncryptedPdfsAreClearPerFileErrors) {
  testing::TempDir dir;
  write_file(dir / "corrupt.pdf", "%PDF-1.7\nthis is not really a pdf \x01\x02\x03");
  write_file(dir / "random.pdf", std::string(3000, '\x9c'));
  write_file(dir / "locked.pdf", encrypted_pdf());
  write_file(dir / "fine.txt", "A readable note about pelicans.");
  try {
    load_document(dir / "locked.pdf");
    FAIL() << "encrypted PDF accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("encrypted"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("locked.pdf"), std::string::npos);
  }
  for (const char* name : {"corrupt.pdf", "random.pdf"}) {
    try {
      load_document(dir / name);
      FAIL() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos);
    }
  }
  // Ingestion reports each bad file and goes on with the rest.
  auto bank = Bank::open(dir / "bank", nullptr, true);
  std::vector<std::string> messages;
  IngestOptions opts;
  opts.on_message = [&](const std::string& m) { messages.push_back(m); };
  const IngestReport r = bank->ingest({dir.path()}, opts);
  EXPECT_EQ(r.failed, 3u);
  EXPECT_EQ(r.added, 1u);
  // One per bad file, and one counting the bank's own files (unsupported types) in the folder.
  ASSERT_EQ(messages.size(), 4u) << ::testing::PrintToString(messages);
  EXPECT_NE(messages[0].find("unsupported types skipped: bank/"), std::string::npos) << messages[0];
  EXPECT_EQ(bank->search_bm25("pelicans", 5).size(), 1u);
}

}  // namespace
}  // namespace hearth::rag
