// Document loaders for knowledge banks: .txt, .md, .html and .pdf become one UTF-8 text with its
// structure (headings, paragraphs, page starts) as byte ranges into that text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::rag {

// A heading or a paragraph: the byte range [begin, end) of LoadedDocument::text.
struct Block {
  int heading_level = 0;  // 1..6 for a heading, 0 for body text
  std::size_t begin = 0;
  std::size_t end = 0;
};

struct LoadedDocument {
  std::string kind;  // "txt", "md", "html", "pdf"
  std::string text;  // extracted text, valid UTF-8; blocks are separated by blank lines
  std::vector<Block> blocks;
  // PDF only: page i + 1 starts at byte page_starts[i] of text. Empty for other kinds.
  std::vector<std::size_t> page_starts;
  std::size_t repaired_bytes = 0;  // invalid UTF-8 bytes replaced by U+FFFD
  std::string title;               // first heading (or <title>) when there is one
  // The title leads every chunk's heading path (an HTML <title> that is not the first heading),
  // so it is indexed and embedded with each chunk.
  bool title_in_headings = false;

  // 1-based page holding byte offset, or 0 when the document has no pages.
  int page_at(std::size_t offset) const;
};

struct LoadOptions {
  std::uint64_t max_file_bytes = std::uint64_t{64} << 20;  // larger files are refused
};

// The kind a path's extension selects ("txt" for .txt .text .rst .csv, "md", "html", "pdf"), or
// "" when unsupported.
std::string kind_for_path(const std::filesystem::path& path);
// kind_for_path, and "txt" for a file without an extension whose first bytes are text (UTF-8, or
// UTF-16 with a byte order mark).
std::string kind_for_file(const std::filesystem::path& path);
bool looks_like_text(std::string_view head);
inline constexpr const char* kSupportedTypes =
    ".txt .text .md .markdown .html .htm .xhtml .pdf .rst .csv, and text files without an "
    "extension";

// Loads one file. Text with a UTF-8 byte order mark loses it, UTF-16 with one is decoded. Throws
// Error naming the file: kNotFound/kIo (cannot read), kFormat (binary data in a text or HTML file,
// naming the format when it is a known one such as PDF, PNG or zip; corrupt PDF), kUnsupported
// (encrypted PDF, unknown extension, over-size file).
LoadedDocument load_document(const std::filesystem::path& path, const LoadOptions& options = {});

// Parsers over bytes already in memory (the loaders above call these).
LoadedDocument parse_text(std::string_view bytes);
LoadedDocument parse_markdown(std::string_view bytes);
LoadedDocument parse_html(std::string_view bytes);
LoadedDocument parse_pdf(std::string_view bytes);

// Replaces each invalid UTF-8 byte with U+FFFD; n_repaired counts them.
std::string repair_utf8(std::string_view s, std::size_t* n_repaired);

// Shell-style glob on '/'-separated paths: '*' and '?' stay within one path component, '**'
// crosses components, [abc] / [!abc] are classes. A pattern without '/' matches the file name.
bool glob_match(std::string_view pattern, std::string_view path);

struct CollectOptions {
  std::vector<std::string> include;  // empty: every supported extension
  std::vector<std::string> exclude;
  // Symlinks to files outside the folder being walked are skipped unless this is set (a link
  // given as a root itself is always read; symlinked folders are never followed).
  bool follow_symlinks = false;
};

// What collect_files found under one root: Bank::ingest decides from it whether pruning the
// documents stored under the root is safe.
struct RootReport {
  std::filesystem::path root;
  enum class State { kMissing, kFile, kFolder };
  State state = State::kMissing;
  bool complete = true;   // every folder under it could be listed
  std::size_t files = 0;  // files collected under it
};

struct CollectReport {
  std::vector<RootReport> roots;  // one per root, in order
  std::size_t unsupported = 0;    // files skipped for their type
  std::size_t symlinks = 0;       // symlinks skipped (outside the tree, or broken)
};

// Files under roots (recursively for folders; hidden entries skipped), filtered by type and
// globs, sorted. Problems (missing roots, unreadable folders, skipped symlinks, the count of
// unsupported files with a few of their names) are appended to warnings.
std::vector<std::filesystem::path> collect_files(const std::vector<std::filesystem::path>& roots,
                                                 const CollectOptions& options,
                                                 std::vector<std::string>* warnings,
                                                 CollectReport* report = nullptr);

}  // namespace hearth::rag
