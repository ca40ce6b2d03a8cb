#include "hearth/rag/loaders.hpp"

#include <gtest/gtest.h>

#include <fstream>

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
  // libxml2 may cut the tree at its depth limit; what it keeps is read without recursion.
  EXPECT_TRUE(is_valid_utf8(d.text));
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
  EXPECT_TRUE(warnings.empty());
  const auto no_drafts = collect_files({dir.path()}, {{}, {"**/drafts/**"}}, &warnings);
  EXPECT_EQ(no_drafts.size(), 4u);
  const auto only_md = collect_files({dir.path()}, {{"*.md"}, {}}, &warnings);
  EXPECT_EQ(only_md.size(), 2u);
  const auto missing = collect_files({dir / "nope"}, {}, &warnings);
  EXPECT_TRUE(missing.empty());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("not found"), std::string::npos);
}

}  // namespace
}  // namespace hearth::rag
