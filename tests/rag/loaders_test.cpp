#include "hearth/rag/loaders.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/rag/chunker.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;

std::string block_text(const LoadedDocument& d, const Block& b) {
  return d.text.substr(b.begin, b.end - b.begin);
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

TEST(Loaders, TextParagraphsAreBlocks) {
  const LoadedDocument d = parse_text("First line\nstill first.\n\n  \nSecond para.\n");
  ASSERT_EQ(d.blocks.size(), 2u);
  EXPECT_EQ(block_text(d, d.blocks[0]), "First line\nstill first.");
  EXPECT_EQ(block_text(d, d.blocks[1]), "Second para.");
  EXPECT_EQ(d.page_at(0), 0);
}

TEST(Loaders, MarkdownKeepsHeadingsAndIgnoresCodeFences) {
  const LoadedDocument d = parse_markdown(
      "# Guide\n\nIntro text.\n\n## Install ##\n\n```\n# not a heading\n```\n\nBody.\n"
      "#hashtag is text\n");
  ASSERT_EQ(d.blocks.size(), 5u);
  EXPECT_EQ(d.blocks[0].heading_level, 1);
  EXPECT_EQ(block_text(d, d.blocks[0]), "Guide");
  EXPECT_EQ(d.blocks[2].heading_level, 2);
  EXPECT_EQ(block_text(d, d.blocks[2]), "Install");
  EXPECT_EQ(d.blocks[3].heading_level, 0);
  EXPECT_EQ(block_text(d, d.blocks[3]), "```\n# not a heading\n```");
  EXPECT_EQ(block_text(d, d.blocks[4]), "Body.\n#hashtag is text");
  EXPECT_EQ(d.title, "Guide");
  const auto chunks = chunk_document(d, {});
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].heading_path, "Guide");
  EXPECT_EQ(chunks[1].heading_path, "Guide > Install");
  // Byte ranges point into the original file text.
  EXPECT_EQ(d.text.substr(chunks[0].begin, chunks[0].end - chunks[0].begin), "Intro text.");
}

TEST(Loaders, HtmlVisibleTextOnly) {
  const LoadedDocument d = parse_html(
      "<html><head><title>T &amp; co</title><style>p{color:red}</style></head><body>"
      "<script>var secret = 1;</script><h1>Main</h1><p>Hello <b>bold</b>\n world.</p>"
      "<div>Caf\xC3\xA9 <!-- hidden comment --> ok<br>next</div><noscript>nojs</noscript>"
      "<table><tr><td>a</td><td>b</td></tr></table></body></html>");
  EXPECT_EQ(d.title, "T & co");
  EXPECT_EQ(d.text.find("secret"), std::string::npos);
  EXPECT_EQ(d.text.find("color"), std::string::npos);
  EXPECT_EQ(d.text.find("hidden"), std::string::npos);
  EXPECT_EQ(d.text.find("nojs"), std::string::npos);
  ASSERT_GE(d.blocks.size(), 4u);
  EXPECT_EQ(d.blocks[0].heading_level, 1);
  EXPECT_EQ(block_text(d, d.blocks[0]), "Main");
  EXPECT_EQ(block_text(d, d.blocks[1]), "Hello bold world.");
  EXPECT_EQ(block_text(d, d.blocks[2]), "Caf\xC3\xA9 ok");
  EXPECT_EQ(block_text(d, d.blocks[3]), "next");
  EXPECT_NE(d.text.find("a b"), std::string::npos);
}

TEST(Loaders, DeeplyNestedHtmlDoesNotExhaustTheStack) {
  std::string html = "<html><body>";
  for (int i = 0; i < 100000; ++i) html += "<div><span>";
  html += "deep text";
  for (int i = 0; i < 100000; ++i) html += "</span></div>";
  html += "<p>after</p></body></html>";
  const LoadedDocument d = parse_html(html);
  EXPECT_TRUE(is_valid_utf8(d.text));
  EXPECT_NE(d.text.find("deep text"), std::string::npos);
  EXPECT_NE(d.text.find("after"), std::string::npos);
}

// libxml2 stops at 256 open elements unless told otherwise, and drops the rest of the page.
TEST(Loaders, HtmlPastTheParsersDepthLimitKeepsItsText) {
  std::string html = "<html><body><p>start</p>";
  for (int i = 0; i < 400; ++i) html += "<font>w" + std::to_string(i) + " ";
  html += "the very end</body></html>";
  const LoadedDocument d = parse_html(html);
  EXPECT_NE(d.text.find("w300 "), std::string::npos);
  EXPECT_NE(d.text.find("w399 the very end"), std::string::npos) << d.text.substr(0, 200);
}

TEST(Loaders, HtmlTitleLeadsTheHeadingPathOfEveryChunk) {
  const LoadedDocument d = parse_html(
      "<html><head><title>Zebra care</title></head><body><p>Intro.</p><h1>Feeding</h1>"
      "<p>Hay.</p></body></html>");
  EXPECT_TRUE(d.title_in_headings);
  const auto chunks = chunk_document(d, {ChunkingOptions::Mode::kStructural, 6, 0});
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].heading_path, "Zebra care");
  EXPECT_EQ(chunks[1].heading_path, "Zebra care > Feeding");
  // A title that repeats the first heading is not said twice.
  const LoadedDocument same = parse_html(
      "<html><head><title>Feeding</title></head><body><h1>Feeding</h1><p>Hay.</p></body></html>");
  EXPECT_FALSE(same.title_in_headings);
  EXPECT_EQ(chunk_document(same, {})[0].heading_path, "Feeding");
}

std::string utf16(const std::string& ascii, bool big_endian) {
  std::string out = big_endian ? "\xFE\xFF" : "\xFF\xFE";
  for (const char c : ascii) {
    out += big_endian ? std::string{'\0', c} : std::string{c, '\0'};
  }
  return out;
}

TEST(Loaders, Utf16AndByteOrderMarksAreDecoded) {
  testing::TempDir dir;
  write_file(dir / "le.txt", utf16("Little endian.\n\nSecond.", false));
  const LoadedDocument le = load_document(dir / "le.txt");
  EXPECT_EQ(le.text, "Little endian.\n\nSecond.");
  EXPECT_EQ(le.blocks.size(), 2u);
  // "# Café" in UTF-16BE with a surrogate pair (U+1F600) and an unpaired surrogate.
  std::string be = utf16("# Caf", true) + std::string("\0\xE9\xD8\x3D\xDE\x00\xD8\x00", 8) +
                   utf16("\n\nBody", true).substr(2);
  write_file(dir / "be.md", be);
  const LoadedDocument md = load_document(dir / "be.md");
  EXPECT_EQ(md.title, "Caf\xC3\xA9\xF0\x9F\x98\x80\xEF\xBF\xBD");
  EXPECT_EQ(md.repaired_bytes, 1u);
  ASSERT_EQ(md.blocks.size(), 2u);
  EXPECT_EQ(md.blocks[0].heading_level, 1);
  // A UTF-8 byte order mark does not hide the first heading.
  write_file(dir / "bom.md", "\xEF\xBB\xBF# Title\n\nText.\n");
  const LoadedDocument bom = load_document(dir / "bom.md");
  EXPECT_EQ(bom.title, "Title");
  EXPECT_EQ(bom.text.substr(0, 7), "# Title");
  write_file(dir / "page.html", utf16("<html><body><h1>Wide</h1><p>page</p></body></html>", false));
  EXPECT_EQ(load_document(dir / "page.html").title, "Wide");
  // UTF-16 without a byte order mark, as some tools write HTML.
  write_file(dir / "nobom.htm", utf16("<html><body><h1>Plain</h1></body></html>", true).substr(2));
  EXPECT_EQ(load_document(dir / "nobom.htm").title, "Plain");
}

TEST(Loaders, BinaryContentIsRefusedAndKnownFormatsAreNamed) {
  testing::TempDir dir;
  std::string noise(4096, '\0');
  std::mt19937 rng(7);
  for (char& c : noise) c = static_cast<char>(rng());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"noise.html", noise},
      {"paper.html", "%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n"},
      {"photo.txt", std::string("\x89PNG\r\n\x1A\n\0\0\0\rIHDR", 16)},
      {"notes.md", std::string("PK\x03\x04\x14\0\0\0\x08\0", 10) + "word/document.xml"},
  };
  const std::vector<std::string> named = {"binary data", "a PDF document, not HTML",
                                          "a PNG image, not text", "a zip archive"};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    write_file(dir / cases[i].first, cases[i].second);
    try {
      load_document(dir / cases[i].first);
      ADD_FAILURE() << cases[i].first << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kFormat);
      EXPECT_NE(std::string(e.what()).find(named[i]), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(cases[i].first), std::string::npos) << e.what();
    }
  }
}

TEST(Loaders, InvalidUtf8IsRepairedAndCounted) {
  const LoadedDocument d = parse_text("ok \xFF\xFE bad \xC3\x28 end");
  EXPECT_EQ(d.repaired_bytes, 3u);
  EXPECT_TRUE(is_valid_utf8(d.text));
  EXPECT_EQ(d.text, "ok \xEF\xBF\xBD\xEF\xBF\xBD bad \xEF\xBF\xBD( end");
}

TEST(Loaders, BinaryDataNamedTxtIsRefusedWithTheFileName) {
  testing::TempDir dir;
  std::string bytes(4096, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
  write_file(dir / "image.txt", bytes);
  try {
    load_document(dir / "image.txt");
    FAIL() << "binary data accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("image.txt"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("binary"), std::string::npos);
  }
}

TEST(Loaders, EmptyFileGivesAnEmptyDocument) {
  testing::TempDir dir;
  write_file(dir / "empty.md", "");
  const LoadedDocument d = load_document(dir / "empty.md");
  EXPECT_TRUE(d.blocks.empty());
  EXPECT_TRUE(chunk_document(d, {}).empty());
}

TEST(Loaders, OversizeFileIsSkippedWithAMessage) {
  testing::TempDir dir;
  const fs::path big = dir / "big line.txt";
  {
    std::ofstream out(big, std::ios::binary);
    const std::string block(1 << 20, 'x');
    for (int i = 0; i < 100; ++i) out << block;  // 100 MiB on one line
  }
  try {
    load_document(big);
    FAIL() << "100 MiB file accepted under the 64 MiB limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("limit"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("big line.txt"), std::string::npos);
  }
}

TEST(Loaders, LongSingleLineIsChunkedWithinBudget) {
  std::string line;
  for (int i = 0; line.size() < (2u << 20); ++i) line += "word" + std::to_string(i) + " ";
  const LoadedDocument d = parse_text(line);
  const auto chunks = chunk_document(d, {});
  ASSERT_GT(chunks.size(), 2000u);
  std::size_t covered = 0;
  for (const Chunk& c : chunks) {
    EXPECT_LE(count_chars(c.text), 1000u);
    covered += c.text.size();
  }
  EXPECT_GT(covered, line.size() * 99 / 100);
}

TEST(Loaders, UnknownExtensionIsUnsupported) {
  testing::TempDir dir;
  write_file(dir / "x.docx", "zz");
  EXPECT_THROW(load_document(dir / "x.docx"), Error);
  EXPECT_EQ(kind_for_path("a/B.PDF"), "pdf");
  EXPECT_EQ(kind_for_path("a/b.markdown"), "md");
  EXPECT_EQ(kind_for_path("a/b"), "");
}

TEST(Glob, Semantics) {
  EXPECT_TRUE(glob_match("*.pdf", "/docs/a/b.pdf"));
  EXPECT_FALSE(glob_match("*.pdf", "/docs/a/b.pdf.txt"));
  EXPECT_TRUE(glob_match("docs/*.md", "docs/x.md"));
  EXPECT_FALSE(glob_match("docs/*.md", "docs/sub/x.md"));
  EXPECT_TRUE(glob_match("docs/**/*.md", "docs/sub/deeper/x.md"));
  EXPECT_TRUE(glob_match("docs/**/*.md", "docs/x.md"));
  EXPECT_TRUE(glob_match("**/drafts/**", "/home/u/notes/drafts/a.txt"));
  EXPECT_TRUE(glob_match("file?.[tm]d", "file1.md"));
  EXPECT_FALSE(glob_match("file?.[!tm]d", "file1.md"));
  EXPECT_FALSE(glob_match("a?b", "a/b"));
}

TEST(Collect, RecursesFiltersAndHandlesOddNames) {
  testing::TempDir dir;
  fs::create_directories(dir / "sub dir" / "drafts");
  fs::create_directories(dir / ".git");
  write_file(dir / "a.md", "# A\n");
  write_file(dir / "sub dir" / "b with space.txt", "b");
  write_file(dir / "sub dir" / "new\nline.txt", "c");
  write_file(dir / "sub dir" / "bad\xFFname.txt", "d");
  write_file(dir / "sub dir" / "drafts" / "d.md", "d");
  write_file(dir / "sub dir" / "image.png", "png");
  write_file(dir / ".git" / "config.txt", "hidden");
  std::vector<std::string> warnings;
  const auto all = collect_files({dir.path()}, {}, &warnings);
  EXPECT_EQ(all.size(), 5u);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("1 file(s) of unsupported types skipped: sub dir/image.png"),
            std::string::npos)
      << warnings[0];
  warnings.clear();
  const auto no_drafts = collect_files({dir.path()}, {{}, {"**/drafts/**"}}, &warnings);
  EXPECT_EQ(no_drafts.size(), 4u);
  const auto only_md = collect_files({dir.path()}, {{"*.md"}, {}}, &warnings);
  EXPECT_EQ(only_md.size(), 2u);
  warnings.clear();
  const auto missing = collect_files({dir / "nope"}, {}, &warnings);
  EXPECT_TRUE(missing.empty());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("not found"), std::string::npos);
}

TEST(Collect, CountsAndNamesUnsupportedFilesAndReadsRstCsvAndExtensionlessText) {
  testing::TempDir dir;
  write_file(dir / "guide.rst", "Guide\n=====\n\nText.\n");
  write_file(dir / "table.csv", "a,b\n1,2\n");
  write_file(dir / "README", "Plain text without an extension.\n");
  write_file(dir / "program", std::string("\x7F"
                                          "ELF\2\1\1\0\0\0",
                                          10));
  write_file(dir / "data.json", "{}");
  write_file(dir / "run.log", "started\n");
  write_file(dir / "photo.png", "png");
  write_file(dir / "x.bin", "bin");
  std::vector<std::string> warnings;
  CollectReport report;
  const auto files = collect_files({dir.path()}, {}, &warnings, &report);
  std::vector<std::string> names;
  for (const fs::path& f : files) names.push_back(f.filename());
  EXPECT_EQ(names, (std::vector<std::string>{"README", "guide.rst", "table.csv"}));
  EXPECT_EQ(report.unsupported, 5u);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("5 file(s) of unsupported types skipped"), std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("and 2 more"), std::string::npos) << warnings[0];
  EXPECT_EQ(load_document(dir / "README").kind, "txt");
  EXPECT_THROW(load_document(dir / "program"), Error);
}

TEST(Collect, FileSymlinksLeavingTheTreeAreNotFollowed) {
  testing::TempDir dir;
  fs::create_directories(dir / "notes");
  fs::create_directories(dir / "private");
  write_file(dir / "notes" / "mine.txt", "mine");
  write_file(dir / "private" / "secret.txt", "secret");
  fs::create_symlink(dir / "private" / "secret.txt", dir / "notes" / "passwd.txt");
  fs::create_symlink("mine.txt", dir / "notes" / "alias.txt");
  fs::create_symlink(dir / "gone.txt", dir / "notes" / "broken.txt");
  fs::create_directory_symlink(dir / "private", dir / "notes" / "linked-folder");
  std::vector<std::string> warnings;
  CollectReport report;
  auto names = [](const std::vector<fs::path>& files) {
    std::vector<std::string> out;
    for (const fs::path& f : files)
      out.push_back(f.lexically_relative(f.parent_path().parent_path()));
    return out;
  };
  const auto files = collect_files({dir / "notes"}, {}, &warnings, &report);
  EXPECT_EQ(names(files), (std::vector<std::string>{"notes/alias.txt", "notes/mine.txt"}));
  EXPECT_EQ(report.symlinks, 2u);
  ASSERT_EQ(warnings.size(), 2u);
  std::sort(warnings.begin(), warnings.end());
  EXPECT_NE(warnings[0].find("broken.txt: broken symlink"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("passwd.txt: symlink to"), std::string::npos) << warnings[1];
  EXPECT_NE(warnings[1].find("--follow-symlinks"), std::string::npos) << warnings[1];
  CollectOptions follow;
  follow.follow_symlinks = true;
  const auto followed = collect_files({dir / "notes"}, follow, nullptr);
  EXPECT_EQ(names(followed),
            (std::vector<std::string>{"notes/alias.txt", "notes/mine.txt", "notes/passwd.txt"}));
  // A link named on the command line is read: the user chose it.
  EXPECT_EQ(collect_files({dir / "notes" / "passwd.txt"}, {}, nullptr).size(), 1u);
}

}  // namespace
}  // namespace hearth::rag
