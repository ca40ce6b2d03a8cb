// A knowledge bank: one folder holding
//   manifest.json  format version, embedding model (id, fingerprint, dim), chunking parameters
//   bank.sqlite    documents, chunks and their FTS5 (porter) index, in WAL mode
//   vectors.f32    one L2-normalised row per embedded chunk (banks with an embedding model);
//                  vectors.f16 / vectors.int8 when the bank stores f16 or int8 rows; after a
//                  compaction vectors-N.f32 (the database's meta table names the current file)
// Every change is one SQLite transaction; vector rows are appended and flushed before the
// transaction that references them commits, and rows past the committed count are cut on the
// next write. Compaction writes the live rows to a new file, flushes it, and switches to it in
// one transaction. So a SIGKILL at any moment leaves a consistent bank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hearth/core/mapped_file.hpp"
#include "hearth/rag/chunker.hpp"
#include "hearth/rag/dense.hpp"
#include "hearth/rag/embedding.hpp"
#include "hearth/rag/loaders.hpp"

namespace hearth::rag {

inline constexpr int kBankFormatVersion = 1;

struct BankManifest {
  int format_version = kBankFormatVersion;
  std::string embedding_id;           // empty: lexical-only bank
  std::string embedding_fingerprint;  // empty for imported banks: only id and dim are checked
  std::size_t dim = 0;
  VectorType vector_type = VectorType::kF32;
  ChunkingOptions chunking;
};

struct DocumentInfo {
  std::int64_t id = 0;
  std::string path;
  std::string kind;
  std::string hash;
  std::string title;
  std::int64_t mtime = 0;
  std::uint64_t size = 0;
  int pages = 0;
  std::int64_t chunks = 0;
};

struct ChunkInfo {
  std::int64_t id = 0;
  std::int64_t doc_id = 0;
  std::string path;
  int seq = 0;
  int page_first = 0;
  int page_last = 0;
  std::uint64_t byte_begin = 0;
  std::uint64_t byte_end = 0;
  std::string heading;
  std::string text;
};

struct BankStats {
  std::int64_t documents = 0;
  std::int64_t chunks = 0;
  std::int64_t vectors = 0;      // live vector rows (one per chunk in an embedding bank)
  std::int64_t vector_rows = 0;  // rows in vectors.f32, dead ones included
  std::uint64_t text_bytes = 0;
  std::uint64_t disk_bytes = 0;
};

struct IngestProgress {
  std::size_t files_done = 0;
  std::size_t files_total = 0;
  std::size_t chunks = 0;
  std::uint64_t bytes_done = 0;  // of the files read (unchanged ones are left out of both)
  std::uint64_t bytes_total = 0;
  std::string current;
};

struct IngestOptions {
  LoadOptions load;
  CollectOptions collect;
  // Drop documents whose files are gone from under the given roots; refused (nothing pruned,
  // IngestReport::prune_refused) when a root is missing, is a file, cannot be read in full, or
  // holds no file to ingest while documents are stored under it (an unmounted drive).
  bool prune = false;
  std::function<void(const IngestProgress&)> on_progress;
  std::function<void(const std::string&)> on_message;  // per-file problems and notes
};

struct IngestReport {
  std::size_t added = 0;
  std::size_t updated = 0;
  std::size_t unchanged = 0;
  std::size_t failed = 0;
  std::size_t pruned = 0;
  // --prune found a root it cannot trust (missing, a file now, not fully readable, or holding
  // no files), said why, and pruned nothing.
  bool prune_refused = false;
  std::size_t skipped = 0;  // files of unsupported types and symlinks not followed
  std::size_t chunks = 0;
  std::size_t repaired_files = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
};

// A scored chunk.
struct ChunkScore {
  std::int64_t chunk_id = 0;
  double score = 0;
};

class Bank {
 public:
  // Opens the bank in folder; creates it when create is true and it does not exist yet (new
  // banks take chunking, vector_type and, when model is set, its id/fingerprint/dim). model may be
  // null: the bank can then be searched lexically but not given new chunks if it holds vectors.
  // Throws kInvalidArgument when model differs from the one the bank was built with.
  static std::unique_ptr<Bank> open(const std::filesystem::path& folder, EmbeddingModel* model,
                                    bool create, const ChunkingOptions& chunking = {},
                                    VectorType vector_type = VectorType::kF32);
  // Creates a bank for vectors of dim made elsewhere (import), recording the model's id and
  // fingerprint (empty when unknown: then only id and dim are checked).
  static std::unique_ptr<Bank> create_for_import(const std::filesystem::path& folder,
                                                 const std::string& model_id,
                                                 const std::string& fingerprint, std::size_t dim,
                                                 const ChunkingOptions& chunking);
  // Opens an existing bank for reading only (list, stats, show, search): no write access to the
  // folder is needed, nothing is created, migrated or checkpointed. A bank on a read-only file
  // system whose WAL files are gone is read as immutable; elsewhere missing WAL files that cannot
  // be created are reported (kIo) with what to do. Writing methods throw kInvalidArgument.
  static std::unique_ptr<Bank> open_read_only(const std::filesystem::path& folder);
  static bool exists(const std::filesystem::path& folder);

  ~Bank();
  Bank(const Bank&) = delete;
  Bank& operator=(const Bank&) = delete;

  const std::filesystem::path& folder() const { return folder_; }
  const BankManifest& manifest() const { return manifest_; }
  bool has_vectors() const { return manifest_.dim > 0; }
  bool read_only() const;

  // The folders documents were ingested from (absolute), for relative globs.
  std::vector<std::string> roots() const;
  // The one path rule of --filter and rm: pattern matches a document path when it glob-matches
  // the absolute path, or the path relative to an ingest root it lies under (a pattern without
  // '/' matches the file name); a pattern naming a folder (absolute or relative to a root, no
  // glob characters) matches every document under it.
  bool path_matches(std::string_view pattern, std::string_view path) const;

  IngestReport ingest(const std::vector<std::filesystem::path>& roots,
                      const IngestOptions& options);

  // Stores one loaded document under key (its path) in its own transaction, replacing an older
  // version. Returns false (and changes nothing) when a document with that key and hash exists.
  bool store(const std::string& key, const LoadedDocument& doc, const std::string& hash,
             std::int64_t mtime, std::uint64_t size);
  // Stores many at once in one transaction (BEIR corpora, imports).
  struct PendingDocument {
    std::string key;
    LoadedDocument doc;
    std::string hash;
    std::int64_t mtime = 0;
    std::uint64_t size = 0;
    std::vector<Chunk> chunks;   // empty: chunked with the bank's options
    std::vector<float> vectors;  // precomputed rows for chunks (import); empty: embedded here
  };
  struct StoreCounts {
    std::size_t added = 0;
    std::size_t updated = 0;
    std::size_t unchanged = 0;
    std::size_t chunks = 0;
  };
  StoreCounts store_batch(std::vector<PendingDocument>& docs);

  // Removes documents whose path equals or matches one of patterns (path_matches); returns how
  // many. Compacts the vectors when at least half of their rows are dead (also when nothing
  // matched: an earlier remove may have been interrupted before it compacted).
  std::size_t remove(const std::vector<std::string>& patterns);

  // Rewrites the vectors without the rows of removed or replaced chunks (ingest and remove do
  // this on their own once half the rows are dead); with vacuum, also rebuilds the database to
  // return its free pages. Returns the number of vector rows reclaimed.
  std::size_t compact(bool vacuum = false);

  std::vector<DocumentInfo> documents(const std::string& path_glob = "") const;
  std::optional<DocumentInfo> document(const std::string& path) const;
  std::vector<ChunkInfo> chunks_of(std::int64_t doc_id) const;
  std::optional<ChunkInfo> chunk(std::int64_t chunk_id) const;
  BankStats stats() const;
  std::string integrity_check() const;  // "ok" or SQLite's findings

  // BM25 over FTS5; user text is reduced to quoted terms so it can never break FTS syntax.
  std::vector<ChunkScore> search_bm25(const std::string& query, std::size_t k,
                                      const std::string& path_glob = "") const;
  // Exact cosine top-k against an L2-normalised query of dim floats.
  std::vector<ChunkScore> search_dense(const std::vector<float>& query, std::size_t k,
                                       const std::string& path_glob = "") const;
  EmbeddingModel* model() const { return model_; }
  // Gives an open bank its embedding model (as open() does); throws kInvalidArgument when the
  // bank was built without vectors or with another model.
  void attach_model(EmbeddingModel* model);

  struct Db;  // the SQLite connection (defined in bank.cpp)

 private:
  Bank() = default;
  void init_schema();
  void open_database_read_only();
  void load_roots();
  void add_roots(const std::vector<std::filesystem::path>& roots);
  // Re-indexes CJK text as bigrams in banks made before hearth indexed it so (writers only).
  void migrate_cjk_index();
  // The vectors file with this index (0: vectors.<dtype>; N: vectors-N.<dtype>).
  std::filesystem::path vectors_path(std::int64_t file) const;
  // Inside a write transaction: makes vec_fd_ the current vectors file (another process may
  // have compacted since) and deletes the files an interrupted compaction left.
  void open_vectors_for_write();
  void remove_stale_vectors() const;
  void compact_if_sparse();
  // Removes the documents whose paths match, in one transaction; returns how many.
  std::size_t erase_documents(const std::function<bool(const std::string&)>& match);
  // The documents --prune may drop from under the collected roots, or nothing when a root cannot
  // be trusted (the reasons are passed to message).
  std::vector<std::string> prunable(const CollectReport& found,
                                    const std::vector<std::filesystem::path>& files,
                                    const std::function<void(const std::string&)>& message,
                                    bool* refused) const;
  std::size_t compact_vectors();  // compact() for banks with vectors
  void check_model(EmbeddingModel* model) const;
  void append_vectors(const float* rows, std::size_t n);
  std::int64_t meta_int(const char* key) const;
  void refresh_vectors() const;
  // The embedding model's token count for token-budget chunking; empty for character budgets.
  TokenCounter token_counter() const;

  std::filesystem::path folder_;
  BankManifest manifest_;
  EmbeddingModel* model_ = nullptr;
  std::unique_ptr<Db> db_;
  int vec_fd_ = -1;
  std::int64_t vec_file_ = -1;  // the index of the file vec_fd_ holds
  // Read side of the vectors: the mapped file, its committed rows, and per row the chunk and
  // document ids (0 for dead rows), reloaded when the bank's generation changes.
  mutable MappedFile vec_map_;
  mutable std::size_t vec_rows_ = 0;
  mutable std::vector<std::int64_t> row_chunk_;
  mutable std::vector<std::int64_t> row_doc_;
  mutable std::int64_t loaded_generation_ = -1;
};

// Lower-cased runs of ASCII letters and digits and non-ASCII bytes: the words of user text.
std::vector<std::string> lowercase_words(std::string_view text);
// Common English words that neither queries nor answers match on.
bool is_stop_word(const std::string& word);

// The FTS5 MATCH expression for user text: each word quoted, English stop words dropped (kept
// when nothing else is left), joined with OR. Empty when the text has no words. With cjk_bigrams
// (banks that index CJK as bigrams), runs of Han, kana and CJK punctuation-free text in a word
// become the phrase of their bigrams (a single character: a prefix query).
std::string fts_query(const std::string& text, bool cjk_bigrams = true);

// Text as the FTS index sees it: every run of two or more CJK characters (Han ideographs,
// Hiragana, Katakana) replaced by its overlapping bigrams separated by spaces, so that a word
// inside an unspaced sentence is found. Other text is unchanged.
std::string cjk_bigrams(std::string_view text);

// L2-normalises each row of rows (n x dim) in place; zero rows stay zero.
void normalize_rows(float* rows, std::size_t n, std::size_t dim);

}  // namespace hearth::rag
