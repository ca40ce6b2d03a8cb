#include "hearth/rag/bank.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/hash.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/rag/dense.hpp"

namespace hearth::rag {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kDatabase = "bank.sqlite";

void glob_function(sqlite3_context* ctx, int, sqlite3_value** argv) {
  const auto* bank = static_cast<const Bank*>(sqlite3_user_data(ctx));
  const auto* pattern = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  const auto* path = reinterpret_cast<const char*>(sqlite3_value_text(argv[1]));
  if (pattern == nullptr || path == nullptr) {
    sqlite3_result_int(ctx, 0);
    return;
  }
  sqlite3_result_int(ctx, bank->path_matches(pattern, path) ? 1 : 0);
}

// The code points whose runs are indexed as bigrams: Han ideographs (with extensions and
// compatibility forms), Hiragana, Katakana (with phonetic extensions and half-width forms).
bool is_cjk(char32_t c) {
  return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) ||
         (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFF66 && c <= 0xFF9F) ||
         (c >= 0x20000 && c <= 0x3FFFF);
}

// Decodes the code point at s[i] (valid UTF-8 assumed; a stray byte is taken as itself) and
// returns its length in bytes.
std::size_t decode_at(std::string_view s, std::size_t i, char32_t* out) {
  const auto b = static_cast<unsigned char>(s[i]);
  const std::size_t len = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
  if (len == 1 || i + len > s.size()) {
    *out = b;
    return 1;
  }
  char32_t c = b & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k)
    c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *out = c;
  return len;
}

// Okapi BM25 (k1 = 1.2, b = 0.75, FTS5's IDF) as an FTS5 auxiliary function, returning the
// negated score like FTS5's bm25(). It counts each phrase's hits in the row with
// xPhraseFirst/xPhraseNext instead of merging every phrase's instances, which is what makes the
// built-in function slow on long OR queries.
struct Bm25Query {
  std::vector<double> idf;
  double avgdl = 1;
};

int count_hit(const Fts5ExtensionApi*, Fts5Context*, void* user) {
  ++*static_cast<std::int64_t*>(user);
  return SQLITE_OK;
}

void bm25_function(const Fts5ExtensionApi* api, Fts5Context* fts, sqlite3_context* ctx, int,
                   sqlite3_value**) {
  constexpr double k1 = 1.2;
  constexpr double b = 0.75;
  auto* q = static_cast<Bm25Query*>(api->xGetAuxdata(fts, 0));
  const int n_phrases = api->xPhraseCount(fts);
  if (q == nullptr) {
    auto owned = std::make_unique<Bm25Query>();
    sqlite3_int64 rows = 0;
    sqlite3_int64 tokens = 0;
    int rc = api->xRowCount(fts, &rows);
    if (rc == SQLITE_OK) rc = api->xColumnTotalSize(fts, -1, &tokens);
    owned->avgdl = rows > 0 ? std::max(1.0, double(tokens) / double(rows)) : 1.0;
    for (int i = 0; i < n_phrases && rc == SQLITE_OK; ++i) {
      std::int64_t hits = 0;
      rc = api->xQueryPhrase(fts, i, &hits, count_hit);
      const double idf = std::log((double(rows) - double(hits) + 0.5) / (double(hits) + 0.5));
      owned->idf.push_back(idf <= 0 ? 1e-6 : idf);
    }
    if (rc != SQLITE_OK) {
      sqlite3_result_error_code(ctx, rc);
      return;
    }
    q = owned.get();
    rc = api->xSetAuxdata(fts, owned.release(), [](void* p) { delete static_cast<Bm25Query*>(p); });
    if (rc != SQLITE_OK) {
      sqlite3_result_error_code(ctx, rc);
      return;
    }
  }
  // Token counts come from the in-memory copy of the docsize table when it is loaded: a
  // per-row xColumnSize is a b-tree lookup and costs more than the rest of the scoring.
  int len = 0;
  const auto* lengths = static_cast<const std::vector<std::uint32_t>*>(api->xUserData(fts));
  const sqlite3_int64 rowid = api->xRowid(fts);
  if (lengths != nullptr && rowid >= 0 && static_cast<std::uint64_t>(rowid) < lengths->size() &&
      (*lengths)[static_cast<std::size_t>(rowid)] > 0) {
    len = static_cast<int>((*lengths)[static_cast<std::size_t>(rowid)]);
  } else if (api->xColumnSize(fts, -1, &len) != SQLITE_OK) {
    len = 0;
  }
  const double norm = k1 * (1 - b + b * double(len) / q->avgdl);
  double score = 0;
  for (int i = 0; i < n_phrases; ++i) {
    Fts5PhraseIter it;
    int col = 0;
    int off = 0;
    int tf = 0;
    if (api->xPhraseFirst(fts, i, &it, &col, &off) != SQLITE_OK) continue;
    for (; col >= 0; api->xPhraseNext(fts, &it, &col, &off)) ++tf;
    if (tf > 0) score += q->idf[static_cast<std::size_t>(i)] * tf * (k1 + 1) / (tf + norm);
  }
  sqlite3_result_double(ctx, -score);
}

void register_bm25(sqlite3* db, std::vector<std::uint32_t>* lengths) {
  fts5_api* api = nullptr;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, nullptr) == SQLITE_OK) {
    sqlite3_bind_pointer(st, 1, static_cast<void*>(&api), "fts5_api_ptr", nullptr);
    sqlite3_step(st);
  }
  sqlite3_finalize(st);
  if (api == nullptr || api->iVersion < 2) {
    throw Error(ErrorCode::kUnsupported, "this SQLite has no FTS5 (needed for knowledge banks)");
  }
  api->xCreateFunction(api, "hearth_bm25", lengths, bm25_function, nullptr);
}

std::string text_column(sqlite3_stmt* st, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
  return p == nullptr ? std::string()
                      : std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(st, i)));
}

}  // namespace

// The SQLite connection and its prepared statements.
struct Bank::Db {
  sqlite3* db = nullptr;
  std::string file;
  bool read_only = false;
  bool cjk_bigrams = true;         // the FTS index holds CJK runs as bigrams
  std::vector<std::string> roots;  // ingest roots, for relative globs
  // Tokens per FTS row (index: chunk id; 0 = unknown), for hearth_bm25, and the bank
  // generation they were read at.
  std::vector<std::uint32_t> doc_tokens;
  std::int64_t doc_tokens_generation = -1;

  ~Db() { sqlite3_close_v2(db); }

  [[noreturn]] void fail(const std::string& what) const {
    const int code = sqlite3_errcode(db);
    // sqlite3_exec's message is SQLite's own: said once.
    const std::string own = sqlite3_errmsg(db);
    const std::string msg = what.find(own) != std::string::npos ? what : what + ": " + own;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
      throw Error(ErrorCode::kIo, msg + " (another process is writing this bank)", {.file = file});
    }
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) {
      throw Error(ErrorCode::kFormat, msg, {.file = file});
    }
    if (code == SQLITE_READONLY) {
      throw Error(ErrorCode::kIo, msg + " (no write access to this bank)", {.file = file});
    }
    throw Error(ErrorCode::kIo, msg, {.file = file});
  }

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      const std::string msg = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      fail(std::string("SQLite: ") + msg);
    }
  }
};

namespace {

class Stmt {
 public:
  Stmt(const Bank::Db& db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db.db, sql, -1, &st_, nullptr) != SQLITE_OK) {
      db.fail(std::string("preparing ") + sql);
    }
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(st_, i);
    return *this;
  }
  // True while rows come; false when done.
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.fail("SQLite step");
  }
  void run() {
    while (step()) {
    }
    reset();
  }
  void reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  std::int64_t i64(int c) const { return sqlite3_column_int64(st_, c); }
  std::string str(int c) const { return text_column(st_, c); }
  double dbl(int c) const { return sqlite3_column_double(st_, c); }
  bool is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }

 private:
  const Bank::Db& db_;
  sqlite3_stmt* st_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back when an exception leaves the scope.
class WriteTxn {
 public:
  explicit WriteTxn(Bank::Db& db) : db_(db) {
    if (db_.read_only) {
      throw Error(ErrorCode::kInvalidArgument, "this bank was opened read-only",
                  {.file = db_.file});
    }
    db_.exec("BEGIN IMMEDIATE");
  }
  ~WriteTxn() {
    if (!done_) sqlite3_exec(db_.db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    db_.exec("COMMIT");
    done_ = true;
  }

 private:
  Bank::Db& db_;
  bool done_ = false;
};

nlohmann::json manifest_json(const BankManifest& m) {
  nlohmann::json j;
  j["format"] = "hearth-bank";
  j["format_version"] = m.format_version;
  if (m.dim > 0) {
    j["embedding"] = {{"id", m.embedding_id},
                      {"fingerprint", m.embedding_fingerprint},
                      {"dim", m.dim},
                      {"vector_dtype", to_string(m.vector_type)}};
  } else {
    j["embedding"] = nullptr;
  }
  j["chunking"] = {
      {"mode", m.chunking.mode == ChunkingOptions::Mode::kCharacters ? "characters" : "structural"},
      {"budget", m.chunking.budget},
      {"overlap", m.chunking.overlap},
      {"unit", m.chunking.unit == ChunkingOptions::Unit::kTokens ? "tokens" : "characters"}};
  return j;
}

BankManifest read_manifest(const fs::path& file) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(formats::read_text_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("bank manifest is not valid JSON: ") + e.what(),
                {.file = file.string()});
  }
  BankManifest m;
  try {
    if (j.value("format", "") != "hearth-bank") {
      throw Error(ErrorCode::kFormat, "not a hearth bank manifest", {.file = file.string()});
    }
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version > kBankFormatVersion) {
      throw Error(ErrorCode::kUnsupported,
                  "bank format version " + std::to_string(m.format_version) +
                      " is newer than this hearth understands (" +
                      std::to_string(kBankFormatVersion) + ")",
                  {.file = file.string()});
    }
    if (!j.at("embedding").is_null()) {
      const auto& e = j.at("embedding");
      m.embedding_id = e.at("id").get<std::string>();
      m.embedding_fingerprint = e.at("fingerprint").get<std::string>();
      m.dim = e.at("dim").get<std::size_t>();
      m.vector_type = parse_vector_type(e.value("vector_dtype", std::string("f32")));
    }
    const auto& c = j.at("chunking");
    m.chunking.mode = c.at("mode").get<std::string>() == "characters"
                          ? ChunkingOptions::Mode::kCharacters
                          : ChunkingOptions::Mode::kStructural;
    m.chunking.budget = c.at("budget").get<std::size_t>();
    m.chunking.overlap = c.at("overlap").get<std::size_t>();
    m.chunking.unit = c.value("unit", std::string("characters")) == "tokens"
                          ? ChunkingOptions::Unit::kTokens
                          : ChunkingOptions::Unit::kCharacters;
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("bank manifest is incomplete: ") + e.what(),
                {.file = file.string()});
  }
  return m;
}

void write_manifest(const fs::path& file, const BankManifest& m) {
  formats::AtomicFileWriter w(file);
  const std::string text = manifest_json(m).dump(2) + "\n";
  w.write(text.data(), text.size());
  w.commit();
}

}  // namespace

bool is_stop_word(const std::string& word) {
  static const std::unordered_set<std::string> words = {
      "a",    "an",   "and",  "are",   "as",    "at",    "be",    "but",  "by",   "for",
      "if",   "in",   "into", "is",    "it",    "no",    "not",   "of",   "on",   "or",
      "such", "that", "the",  "their", "then",  "there", "these", "they", "this", "to",
      "was",  "will", "with", "what",  "which", "who",   "how",   "does", "do",   "can",
      "from", "i",    "me",   "my",    "we",    "you",   "your",  "its",  "has",  "have",
      "had",  "were", "been", "when",  "where", "why",   "about", "than", "so",   "did"};
  return words.count(word) > 0;
}

std::vector<std::string> lowercase_words(std::string_view text) {
  std::vector<std::string> words;
  std::string cur;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c >= 0x80) {
      cur += static_cast<char>(std::tolower(c));
    } else if (!cur.empty()) {
      words.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

std::string cjk_bigrams(std::string_view text) {
  if (std::none_of(text.begin(), text.end(),
                   [](char c) { return static_cast<unsigned char>(c) >= 0xE3; })) {
    return std::string(text);
  }
  std::string out;
  out.reserve(text.size() * 2);
  std::vector<std::pair<std::size_t, std::size_t>> run;  // (offset, bytes) per character
  auto flush = [&] {
    if (run.size() == 1) {
      out.append(" ").append(text.substr(run[0].first, run[0].second)).append(" ");
    } else {
      for (std::size_t k = 0; k + 1 < run.size(); ++k) {
        out.append(" ").append(text.substr(run[k].first, run[k].second + run[k + 1].second));
      }
      if (!run.empty()) out += ' ';
    }
    run.clear();
  };
  for (std::size_t i = 0; i < text.size();) {
    char32_t c = 0;
    const std::size_t len = decode_at(text, i, &c);
    if (is_cjk(c) && c != 0x30FB) {  // U+30FB KATAKANA MIDDLE DOT separates words
      run.emplace_back(i, len);
    } else {
      flush();
      out.append(text.substr(i, len));
    }
    i += len;
  }
  flush();
  return out;
}

std::string fts_query(const std::string& text, bool cjk) {
  const std::vector<std::string> words = lowercase_words(text);
  std::vector<std::string> kept;
  std::set<std::string> seen;
  for (const std::string& w : words) {
    if (!is_stop_word(w) && seen.insert(w).second) kept.push_back(w);
  }
  if (kept.empty()) {
    for (const std::string& w : words) {
      if (seen.insert(w).second) kept.push_back(w);
    }
  }
  std::string q;
  for (const std::string& w : kept) {
    if (!is_valid_utf8(w)) continue;  // FTS5 cannot match invalid bytes anyway
    if (!q.empty()) q += " OR ";
    // Words hold no '"': only letters, digits and non-ASCII bytes.
    const std::string indexed = cjk ? cjk_bigrams(w) : w;
    char32_t c = 0;
    const bool one_cjk = indexed != w && decode_at(w, 0, &c) == w.size();
    q += '"' + indexed + '"';
    if (one_cjk) q += '*';  // a lone character is the start of the bigrams that hold it
  }
  return q;
}

void normalize_rows(float* rows, std::size_t n, std::size_t dim) {
  for (std::size_t i = 0; i < n; ++i) {
    float* r = rows + i * dim;
    double ss = 0;
    for (std::size_t j = 0; j < dim; ++j) ss += double(r[j]) * r[j];
    if (ss <= 0 || !std::isfinite(ss)) continue;
    const float inv = static_cast<float>(1.0 / std::sqrt(ss));
    for (std::size_t j = 0; j < dim; ++j) r[j] *= inv;
  }
}

bool Bank::exists(const fs::path& folder) {
  std::error_code ec;
  return fs::exists(folder / kManifest, ec);
}

std::unique_ptr<Bank> Bank::open(const fs::path& folder, EmbeddingModel* model, bool create,
                                 const ChunkingOptions& chunking, VectorType vector_type) {
  const fs::path manifest_file = folder / kManifest;
  std::error_code ec;
  if (fs::exists(manifest_file, ec) && !fs::exists(folder / kDatabase, ec)) {
    // A bank whose creation was interrupted has a manifest only; one with vectors had a database
    // that is gone now, and making an empty one would hide that and overwrite the vectors.
    bool vectors = false;
    for (const auto& e : fs::directory_iterator(folder, ec)) {
      vectors = vectors || e.path().filename().string().starts_with("vectors");
    }
    if (vectors || !create) {
      throw Error(ErrorCode::kFormat,
                  std::string("the bank is damaged: ") + kDatabase +
                      " is missing beside manifest.json" + (vectors ? " and its vectors" : "") +
                      "; restore it from a backup, or make a new bank in another folder",
                  {.file = folder.string()});
    }
  }
  if (!fs::exists(manifest_file, ec)) {
    if (fs::exists(folder / kDatabase, ec)) {
      throw Error(ErrorCode::kFormat, "bank folder has a database but no manifest.json",
                  {.file = folder.string()});
    }
    if (!create) {
      throw Error(ErrorCode::kNotFound, "no knowledge bank here (rag-cli ingest creates one)",
                  {.file = folder.string()});
    }
    if (chunking.budget == 0 || (chunking.mode == ChunkingOptions::Mode::kCharacters &&
                                 chunking.overlap >= chunking.budget)) {
      throw Error(ErrorCode::kInvalidArgument, "chunk overlap must be below the chunk size");
    }
    fs::create_directories(folder, ec);
    if (ec) {
      throw Error(ErrorCode::kIo, "cannot create bank folder: " + ec.message(),
                  {.file = folder.string()});
    }
    BankManifest m;
    m.chunking = chunking;
    m.vector_type = vector_type;
    if (model != nullptr) {
      m.embedding_id = model->id();
      m.embedding_fingerprint = model->fingerprint();
      m.dim = model->dim();
    }
    write_manifest(manifest_file, m);
  }
  std::unique_ptr<Bank> bank(new Bank());
  bank->folder_ = folder;
  bank->manifest_ = read_manifest(manifest_file);
  bank->attach_model(model);
  bank->init_schema();
  return bank;
}

std::unique_ptr<Bank> Bank::open_read_only(const fs::path& folder) {
  const fs::path manifest_file = folder / kManifest;
  std::error_code ec;
  if (!fs::exists(manifest_file, ec)) {
    if (fs::exists(folder / kDatabase, ec)) {
      throw Error(ErrorCode::kFormat, "bank folder has a database but no manifest.json",
                  {.file = folder.string()});
    }
    throw Error(ErrorCode::kNotFound, "no knowledge bank here (rag-cli ingest creates one)",
                {.file = folder.string()});
  }
  if (!fs::exists(folder / kDatabase, ec)) {
    throw Error(ErrorCode::kFormat,
                std::string("the bank is damaged: ") + kDatabase +
                    " is missing beside manifest.json; restore it from a backup, or make a new "
                    "bank in another folder",
                {.file = folder.string()});
  }
  std::unique_ptr<Bank> bank(new Bank());
  bank->folder_ = folder;
  bank->manifest_ = read_manifest(manifest_file);
  bank->open_database_read_only();
  return bank;
}

std::unique_ptr<Bank> Bank::create_for_import(const fs::path& folder, const std::string& model_id,
                                              const std::string& fingerprint, std::size_t dim,
                                              const ChunkingOptions& chunking) {
  if (exists(folder)) {
    throw Error(ErrorCode::kInvalidArgument, "a bank already exists here; import needs a new one",
                {.file = folder.string()});
  }
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) {
    throw Error(ErrorCode::kIo, "cannot create bank folder: " + ec.message(),
                {.file = folder.string()});
  }
  BankManifest m;
  m.embedding_id = model_id;
  m.embedding_fingerprint = fingerprint;
  m.dim = dim;
  m.chunking = chunking;
  write_manifest(folder / kManifest, m);
  return open(folder, nullptr, true);  // the manifest is written: this makes the database
}

std::filesystem::path Bank::vectors_path(std::int64_t file) const {
  const std::string stem = file == 0 ? "vectors" : "vectors-" + std::to_string(file);
  return folder_ / (stem + "." + to_string(manifest_.vector_type));
}

Bank::~Bank() {
  if (vec_fd_ >= 0) ::close(vec_fd_);
}

void Bank::attach_model(EmbeddingModel* model) {
  check_model(model);
  model_ = model;
}

TokenCounter Bank::token_counter() const {
  if (manifest_.chunking.unit != ChunkingOptions::Unit::kTokens) return {};
  if (model_ == nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                "this bank chunks by the tokens of " + manifest_.embedding_id +
                    "; adding documents needs that model",
                {.file = folder_.string()});
  }
  return [model = model_](std::string_view text) { return model->count_tokens(text); };
}

void Bank::check_model(EmbeddingModel* model) const {
  if (model == nullptr) return;
  const std::string where = folder_.string();
  if (manifest_.dim == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "this bank was built without embeddings (lexical only); it cannot be used with "
                "embedding model " +
                    model->id() + ": create a new bank for dense search",
                {.file = where});
  }
  // The weights decide: the same model from another folder or format is the same model.
  const bool same = model->dim() == manifest_.dim &&
                    (manifest_.embedding_fingerprint.empty()
                         ? model->id() == manifest_.embedding_id
                         : model->fingerprint() == manifest_.embedding_fingerprint);
  if (!same) {
    throw Error(ErrorCode::kInvalidArgument,
                "this bank was built with embedding model " + manifest_.embedding_id + " (dim " +
                    std::to_string(manifest_.dim) + ", fingerprint " +
                    manifest_.embedding_fingerprint + "), not " + model->id() + " (dim " +
                    std::to_string(model->dim()) + ", fingerprint " + model->fingerprint() +
                    "): use that model or rebuild the bank",
                {.file = where});
  }
}

bool Bank::read_only() const {
  return db_->read_only;
}

namespace {

// A file name as an SQLite URI ("file:" + the path with %, ? and # escaped).
std::string sqlite_uri(const std::string& file, const char* query) {
  std::string uri = "file:";
  for (const char c : file) {
    if (c == '%' || c == '?' || c == '#') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      uri += buf;
    } else {
      uri += c;
    }
  }
  return uri + "?" + query;
}

void register_functions(sqlite3* db, std::vector<std::uint32_t>* lengths, const Bank* bank) {
  sqlite3_busy_timeout(db, 10000);
  register_bm25(db, lengths);
  sqlite3_create_function(db, "hearth_glob", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                          const_cast<Bank*>(bank), glob_function, nullptr, nullptr);
}

}  // namespace

void Bank::open_database_read_only() {
  db_ = std::make_unique<Db>();
  db_->file = (folder_ / kDatabase).string();
  db_->read_only = true;
  // A read-only connection never checkpoints or writes; in WAL mode it still needs the -wal and
  // -shm files (or the right to create them), which writers keep (SQLITE_FCNTL_PERSIST_WAL).
  auto try_open = [&](const std::string& name, int flags) {
    sqlite3_close_v2(db_->db);
    db_->db = nullptr;
    if (sqlite3_open_v2(name.c_str(), &db_->db, flags | SQLITE_OPEN_NOMUTEX, nullptr) !=
        SQLITE_OK) {
      return false;
    }
    register_functions(db_->db, &db_->doc_tokens, this);
    return sqlite3_exec(db_->db, "SELECT COUNT(*) FROM meta", nullptr, nullptr, nullptr) ==
           SQLITE_OK;
  };
  if (try_open(db_->file, SQLITE_OPEN_READONLY)) {
    load_roots();
    return;
  }
  const int code = sqlite3_errcode(db_->db);
  if (code != SQLITE_CANTOPEN && (code & 0xFF) != SQLITE_READONLY) {
    db_->fail("cannot open the bank database");
  }
  std::error_code ec;
  const bool wal = fs::exists(db_->file + "-wal", ec);
  struct statvfs vfs {};
  const bool read_only_fs = ::statvfs(folder_.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY) != 0;
  // With no -wal file every change is in the database itself, and on a read-only file system
  // nobody can write it meanwhile: it can be read as immutable.
  if (!wal && read_only_fs &&
      try_open(sqlite_uri(db_->file, "immutable=1"), SQLITE_OPEN_READONLY | SQLITE_OPEN_URI)) {
    load_roots();
    return;
  }
  throw Error(ErrorCode::kIo,
              std::string("cannot read this bank without write access: ") +
                  (wal ? "its write-ahead log (bank.sqlite-wal) is here but its shared-memory "
                         "index (bank.sqlite-shm) is missing and cannot be created"
                       : "its write-ahead log files (bank.sqlite-wal, bank.sqlite-shm) are "
                         "missing and cannot be created") +
                  " in this folder (" + sqlite3_errmsg(db_->db) +
                  "); open the bank once with write access (rag-cli stats as its owner) so they "
                  "exist, or read a copy",
              {.file = db_->file});
}

void Bank::load_roots() {
  db_->roots.clear();
  db_->cjk_bigrams = false;
  {
    Stmt has(*db_, "SELECT 1 FROM sqlite_master WHERE name = 'roots'");
    if (!has.step()) return;
  }
  Stmt st(*db_, "SELECT path FROM roots ORDER BY path");
  while (st.step()) db_->roots.push_back(st.str(0));
  db_->cjk_bigrams = meta_int("fts_cjk") == 1;
}

std::vector<std::string> Bank::roots() const {
  return db_->roots;
}

void Bank::add_roots(const std::vector<fs::path>& roots) {
  bool added = false;
  Stmt add(*db_, "INSERT OR IGNORE INTO roots(path) VALUES(?1)");
  for (const fs::path& r : roots) {
    std::error_code ec;
    fs::path root = fs::absolute(r).lexically_normal();
    if (!fs::is_directory(root, ec)) root = root.parent_path();
    std::string path = root.string();
    while (path.size() > 1 && path.ends_with("/")) path.pop_back();
    if (std::find(db_->roots.begin(), db_->roots.end(), path) != db_->roots.end()) continue;
    add.bind(1, path).run();
    db_->roots.push_back(path);
    added = true;
  }
  if (added) std::sort(db_->roots.begin(), db_->roots.end());
}

bool Bank::path_matches(std::string_view pattern, std::string_view path) const {
  if (pattern.empty()) return false;
  std::string p(pattern);
  while (p.size() > 1 && p.ends_with("/")) p.pop_back();
  const bool literal = p.find_first_of("*?[") == std::string::npos;
  auto under = [](std::string_view folder, std::string_view file) {
    return file.size() > folder.size() && file.starts_with(folder) &&
           (folder.ends_with("/") || file[folder.size()] == '/');
  };
  if (p == path || glob_match(p, path) || (literal && under(p, path))) return true;
  if (p.starts_with("/")) return false;
  for (const std::string& root : db_->roots) {
    if (!under(root, path)) continue;
    const std::string_view rel = path.substr(root.size() + (root.ends_with("/") ? 0 : 1));
    if (glob_match(p, rel) || (literal && under(p, rel))) return true;
  }
  return false;
}

void Bank::migrate_cjk_index() {
  if (meta_int("fts_cjk") == 1) return;
  Stmt rows(*db_, "SELECT id, heading, text FROM chunks");
  Stmt del(*db_, "DELETE FROM chunks_fts WHERE rowid = ?1");
  Stmt add(*db_, "INSERT INTO chunks_fts(rowid, body) VALUES(?1, ?2)");
  while (rows.step()) {
    const std::string heading = rows.str(1);
    const std::string text = rows.str(2);
    const std::string body = heading.empty() ? text : heading + "\n" + text;
    const std::string indexed = cjk_bigrams(body);
    if (indexed == body) continue;
    del.bind(1, rows.i64(0)).run();
    add.bind(1, rows.i64(0)).bind(2, indexed).run();
  }
  db_->exec(
      "INSERT OR REPLACE INTO meta VALUES('fts_cjk', 1);"
      "UPDATE meta SET value = value + 1 WHERE key = 'generation'");
}

void Bank::init_schema() {
  db_ = std::make_unique<Db>();
  db_->file = (folder_ / kDatabase).string();
  if (sqlite3_open_v2(db_->file.c_str(), &db_->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    db_->fail("cannot open the bank database");
  }
  register_functions(db_->db, &db_->doc_tokens, this);
  // The -wal and -shm files stay when the last connection closes, so that readers without write
  // access to the folder (another user, a read-only mount) can open the bank.
  int persist = 1;
  sqlite3_file_control(db_->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
  db_->exec("PRAGMA journal_mode=WAL");
  db_->exec("PRAGMA synchronous=NORMAL");
  db_->exec("PRAGMA cache_size=-65536");  // 64 MiB of page cache
  db_->exec("PRAGMA mmap_size=1073741824");
  db_->exec(
      "BEGIN IMMEDIATE;"
      "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
      "INSERT OR IGNORE INTO meta VALUES('vec_rows', 0), ('generation', 0), ('vec_file', 0);"
      "CREATE TABLE IF NOT EXISTS documents(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,"
      " kind TEXT NOT NULL, hash TEXT NOT NULL, mtime INTEGER NOT NULL, size INTEGER NOT NULL,"
      " pages INTEGER NOT NULL, title TEXT NOT NULL, repaired INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS chunks(id INTEGER PRIMARY KEY, doc_id INTEGER NOT NULL,"
      " seq INTEGER NOT NULL, page_first INTEGER NOT NULL, page_last INTEGER NOT NULL,"
      " byte_begin INTEGER NOT NULL, byte_end INTEGER NOT NULL, heading TEXT NOT NULL,"
      " text TEXT NOT NULL, vec_row INTEGER);"
      "CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);"
      "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(body,"
      " tokenize='porter unicode61 remove_diacritics 2');"
      "CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN"
      " DELETE FROM chunks_fts WHERE rowid = old.id; END;"
      "CREATE TABLE IF NOT EXISTS roots(path TEXT PRIMARY KEY);");
  migrate_cjk_index();
  db_->exec("COMMIT");
  load_roots();
}

void Bank::open_vectors_for_write() {
  const std::int64_t current = meta_int("vec_file");
  if (vec_fd_ >= 0 && current == vec_file_) return;
  const std::string path = vectors_path(current).string();
  // The file is created with the bank's first vectors; once rows are committed, a missing file
  // is damage to report, not to paper over with an empty one.
  const int create = meta_int("vec_rows") == 0 ? O_CREAT : 0;
  const int fd = ::open(path.c_str(), O_RDWR | create | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error(errno == ENOENT ? ErrorCode::kFormat : ErrorCode::kIo,
                std::string("cannot open the bank's vectors: ") + std::strerror(errno),
                {.file = path});
  }
  if (vec_fd_ >= 0) ::close(vec_fd_);
  vec_fd_ = fd;
  vec_file_ = current;
  remove_stale_vectors();
}

void Bank::remove_stale_vectors() const {
  // Under the write lock no compaction is under way: vectors files other than the current one
  // are leftovers of one that was interrupted (before or after its commit).
  const std::string ext = std::string(".") + to_string(manifest_.vector_type);
  const fs::path current = vectors_path(vec_file_);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder_, ec)) {
    const std::string name = e.path().filename().string();
    const bool numbered = name.starts_with("vectors-") && name.ends_with(ext) &&
                          name.size() > 8 + ext.size() &&
                          name.find_first_not_of("0123456789", 8) == name.size() - ext.size();
    if ((numbered || name == "vectors" + ext) && e.path() != current) fs::remove(e.path(), ec);
  }
}

std::int64_t Bank::meta_int(const char* key) const {
  Stmt st(*db_, "SELECT value FROM meta WHERE key = ?1");
  st.bind(1, std::string(key));
  return st.step() ? st.i64(0) : 0;
}

namespace {

void write_at(int fd, const std::byte* data, std::size_t size, off_t at, const fs::path& file) {
  while (size > 0) {
    const ssize_t w = ::pwrite(fd, data, size, at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      throw Error(ErrorCode::kIo, std::string("writing vectors: ") + std::strerror(errno),
                  {.file = file.string()});
    }
    data += w;
    at += w;
    size -= static_cast<std::size_t>(w);
  }
}

void read_at(int fd, std::byte* data, std::size_t size, off_t at, const fs::path& file) {
  while (size > 0) {
    const ssize_t r = ::pread(fd, data, size, at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      throw Error(ErrorCode::kIo,
                  r == 0 ? std::string("vectors file is shorter than the bank says")
                         : std::string("reading vectors: ") + std::strerror(errno),
                  {.file = file.string()});
    }
    data += r;
    at += r;
    size -= static_cast<std::size_t>(r);
  }
}

void sync_folder(const fs::path& folder) {
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;  // nothing to flush through (some file systems refuse to open folders)
  const int rc = ::fsync(dir);
  ::close(dir);
  if (rc != 0) {
    throw Error(ErrorCode::kIo, std::string("flushing bank folder: ") + std::strerror(errno),
                {.file = folder.string()});
  }
}

}  // namespace

void Bank::append_vectors(const float* rows, std::size_t n) {
  // Called inside a write transaction: rows go right after the committed ones.
  const std::int64_t committed = meta_int("vec_rows");
  const std::size_t stride = row_bytes(manifest_.vector_type, manifest_.dim);
  std::vector<std::byte> encoded(n * stride);
  encode_rows(manifest_.vector_type, rows, n, manifest_.dim, encoded.data());
  write_at(vec_fd_, encoded.data(), encoded.size(),
           static_cast<off_t>(static_cast<std::size_t>(committed) * stride),
           vectors_path(vec_file_));
  Stmt up(*db_, "UPDATE meta SET value = value + ?1 WHERE key = 'vec_rows'");
  up.bind(1, static_cast<std::int64_t>(n)).run();
}

Bank::StoreCounts Bank::store_batch(std::vector<PendingDocument>& docs) {
  StoreCounts counts;
  if (has_vectors() && model_ == nullptr) {
    for (const PendingDocument& d : docs) {
      if (d.vectors.empty()) {
        throw Error(ErrorCode::kInvalidArgument,
                    "this bank holds embeddings from " + manifest_.embedding_id +
                        "; adding documents needs that model",
                    {.file = folder_.string()});
      }
    }
  }
  WriteTxn txn(*db_);
  if (has_vectors()) {
    open_vectors_for_write();
    // Rows past the committed count are left over from an interrupted write: cut them.
    const auto committed = static_cast<off_t>(static_cast<std::size_t>(meta_int("vec_rows")) *
                                              row_bytes(manifest_.vector_type, manifest_.dim));
    struct stat st {};
    if (::fstat(vec_fd_, &st) == 0 && st.st_size < committed) {
      throw Error(ErrorCode::kFormat, "vectors file is shorter than the bank says",
                  {.file = vectors_path(vec_file_).string()});
    }
    if (::ftruncate(vec_fd_, committed) != 0) {
      throw Error(ErrorCode::kIo, std::string("truncating vectors: ") + std::strerror(errno),
                  {.file = vectors_path(vec_file_).string()});
    }
  }
  Stmt find(*db_, "SELECT id, hash FROM documents WHERE path = ?1");
  Stmt touch(*db_, "UPDATE documents SET mtime = ?2, size = ?3 WHERE id = ?1");
  Stmt del_chunks(*db_, "DELETE FROM chunks WHERE doc_id = ?1");
  Stmt del_doc(*db_, "DELETE FROM documents WHERE id = ?1");
  Stmt add_doc(*db_,
               "INSERT INTO documents(path, kind, hash, mtime, size, pages, title, repaired)"
               " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  Stmt add_chunk(*db_,
                 "INSERT INTO chunks(doc_id, seq, page_first, page_last, byte_begin, byte_end,"
                 " heading, text, vec_row) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  Stmt add_fts(*db_, "INSERT INTO chunks_fts(rowid, body) VALUES(?1, ?2)");
  bool wrote_vectors = false;
  for (PendingDocument& d : docs) {
    throw_if_cancelled();
    find.bind(1, d.key);
    bool replacing = false;
    if (find.step()) {
      const std::int64_t id = find.i64(0);
      const bool same = find.str(1) == d.hash;
      find.reset();
      if (same) {
        touch.bind(1, id).bind(2, d.mtime).bind(3, static_cast<std::int64_t>(d.size)).run();
        ++counts.unchanged;
        continue;
      }
      del_chunks.bind(1, id).run();
      del_doc.bind(1, id).run();
      replacing = true;
    } else {
      find.reset();
    }
    std::vector<Chunk> chunks = d.chunks.empty()
                                    ? chunk_document(d.doc, manifest_.chunking, token_counter())
                                    : std::move(d.chunks);
    std::vector<float> vectors;
    std::int64_t first_row = 0;
    if (has_vectors() && !chunks.empty()) {
      if (!d.vectors.empty()) {
        if (d.vectors.size() != chunks.size() * manifest_.dim) {
          throw Error(ErrorCode::kInvalidArgument, "vector count does not match chunk count",
                      {.file = d.key});
        }
        vectors = std::move(d.vectors);
      } else {
        std::vector<std::string> texts;
        texts.reserve(chunks.size());
        for (const Chunk& c : chunks) {
          texts.push_back(c.heading_path.empty() ? c.text : c.heading_path + "\n" + c.text);
        }
        vectors = model_->embed(texts);
        if (vectors.size() != chunks.size() * manifest_.dim) {
          throw Error(ErrorCode::kInternal, "embedding model returned the wrong number of floats");
        }
      }
      normalize_rows(vectors.data(), chunks.size(), manifest_.dim);
      first_row = meta_int("vec_rows");
      append_vectors(vectors.data(), chunks.size());
      wrote_vectors = true;
    }
    add_doc.bind(1, d.key)
        .bind(2, d.doc.kind)
        .bind(3, d.hash)
        .bind(4, d.mtime)
        .bind(5, static_cast<std::int64_t>(d.size))
        .bind(6, static_cast<std::int64_t>(d.doc.page_starts.size()))
        .bind(7, d.doc.title)
        .bind(8, static_cast<std::int64_t>(d.doc.repaired_bytes))
        .run();
    const std::int64_t doc_id = sqlite3_last_insert_rowid(db_->db);
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      const Chunk& c = chunks[i];
      add_chunk.bind(1, doc_id)
          .bind(2, static_cast<std::int64_t>(i))
          .bind(3, c.page_first)
          .bind(4, c.page_last)
          .bind(5, static_cast<std::int64_t>(c.begin))
          .bind(6, static_cast<std::int64_t>(c.end))
          .bind(7, c.heading_path)
          .bind(8, c.text);
      if (has_vectors()) {
        add_chunk.bind(9, first_row + static_cast<std::int64_t>(i));
      } else {
        add_chunk.bind_null(9);
      }
      add_chunk.run();
      const std::int64_t chunk_id = sqlite3_last_insert_rowid(db_->db);
      add_fts.bind(1, chunk_id)
          .bind(2, cjk_bigrams(c.heading_path.empty() ? c.text : c.heading_path + "\n" + c.text))
          .run();
    }
    counts.chunks += chunks.size();
    ++(replacing ? counts.updated : counts.added);
  }
  if (wrote_vectors && ::fdatasync(vec_fd_) != 0) {
    throw Error(ErrorCode::kIo, std::string("flushing vectors: ") + std::strerror(errno),
                {.file = vectors_path(vec_file_).string()});
  }
  db_->exec("UPDATE meta SET value = value + 1 WHERE key = 'generation'");
  txn.commit();
  return counts;
}

bool Bank::store(const std::string& key, const LoadedDocument& doc, const std::string& hash,
                 std::int64_t mtime, std::uint64_t size) {
  std::vector<PendingDocument> one(1);
  one[0].key = key;
  one[0].doc = doc;
  one[0].hash = hash;
  one[0].mtime = mtime;
  one[0].size = size;
  return store_batch(one).unchanged == 0;
}

IngestReport Bank::ingest(const std::vector<fs::path>& roots, const IngestOptions& options) {
  const Timer timer;
  IngestReport report;
  auto message = [&](const std::string& m) {
    if (options.on_message) options.on_message(m);
  };
  std::vector<std::string> warnings;
  CollectReport found;
  const std::vector<fs::path> files = collect_files(roots, options.collect, &warnings, &found);
  for (const std::string& w : warnings) message(w);
  report.skipped = found.unsupported + found.symlinks;
  {
    std::vector<fs::path> existing;
    for (const fs::path& r : roots) {
      std::error_code ec;
      if (fs::exists(r, ec)) existing.push_back(r);
    }
    if (!existing.empty()) {
      WriteTxn txn(*db_);
      add_roots(existing);
      txn.commit();
    }
  }
  IngestProgress progress;
  progress.files_total = files.size();
  std::vector<std::uint64_t> sizes(files.size(), 0);
  for (std::size_t i = 0; i < files.size(); ++i) {
    std::error_code ec;
    const auto s = fs::file_size(files[i], ec);
    sizes[i] = ec ? 0 : s;
    progress.bytes_total += sizes[i];
  }
  std::vector<PendingDocument> pending;
  std::uint64_t pending_bytes = 0;
  Timer since_commit;
  auto commit = [&] {
    if (pending.empty()) return;
    const StoreCounts c = store_batch(pending);
    report.added += c.added;
    report.updated += c.updated;
    report.unchanged += c.unchanged;
    report.chunks += c.chunks;
    progress.chunks = report.chunks;
    pending.clear();
    pending_bytes = 0;
    since_commit.reset();
  };
  for (std::size_t i = 0; i < files.size(); ++i) {
    throw_if_cancelled();
    const fs::path& file = files[i];
    const std::string key = fs::absolute(file).lexically_normal().string();
    progress.current = key;
    if (options.on_progress) options.on_progress(progress);
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
      ++report.failed;
      message(printable(key, 300) + ": cannot stat: " + std::strerror(errno));
      continue;
    }
    const std::int64_t mtime =
        static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    const auto existing = document(key);
    const bool skipped = existing && existing->mtime == mtime &&
                         existing->size == static_cast<std::uint64_t>(st.st_size);
    if (skipped) {
      ++report.unchanged;
      progress.bytes_total -= sizes[i];  // not read: no part of the progress rate
    } else {
      try {
        PendingDocument d;
        d.key = key;
        d.doc = load_document(file, options.load);
        if (st.st_size > 0) {
          const MappedFile raw = MappedFile::open(file);
          d.hash = content_hash(
              std::string_view(reinterpret_cast<const char*>(raw.bytes().data()), raw.size()));
        } else {
          d.hash = content_hash("");
        }
        d.mtime = mtime;
        d.size = static_cast<std::uint64_t>(st.st_size);
        if (d.doc.repaired_bytes > 0) {
          ++report.repaired_files;
          message(printable(key, 300) + ": " + std::to_string(d.doc.repaired_bytes) +
                  " invalid UTF-8 byte(s) replaced with U+FFFD");
        }
        if (d.doc.blocks.empty()) message(printable(key, 300) + ": no text found (stored empty)");
        report.bytes += d.size;
        pending_bytes += d.size;
        pending.push_back(std::move(d));
      } catch (const Error& e) {
        if (e.code() == ErrorCode::kCancelled) throw;
        ++report.failed;
        message(printable(key, 300) + ": " + e.message());
      }
    }
    progress.files_done = i + 1;
    if (!skipped) progress.bytes_done += sizes[i];
    if (pending.size() >= 64 || pending_bytes >= (32u << 20) || since_commit.seconds() > 1.0) {
      commit();
    }
  }
  commit();
  if (options.on_progress) options.on_progress(progress);
  if (options.prune) {
    const std::vector<std::string> gone = prunable(found, files, message, &report.prune_refused);
    for (const std::string& g : gone) message(printable(g, 300) + ": gone, removed from the bank");
    if (!gone.empty()) {
      const std::set<std::string> doomed(gone.begin(), gone.end());
      report.pruned = erase_documents([&](const std::string& p) { return doomed.count(p) > 0; });
    }
  }
  // Also after an earlier writer that was killed before it compacted.
  compact_if_sparse();
  report.seconds = timer.seconds();
  return report;
}

std::vector<std::string> Bank::prunable(const CollectReport& found,
                                        const std::vector<fs::path>& files,
                                        const std::function<void(const std::string&)>& message,
                                        bool* refused) const {
  std::set<std::string> present;
  for (const fs::path& f : files) present.insert(fs::absolute(f).lexically_normal().string());
  const std::vector<DocumentInfo> stored = documents();
  std::vector<std::string> gone;
  std::vector<std::string> reasons;
  for (const RootReport& rr : found.roots) {
    std::string prefix = fs::absolute(rr.root).lexically_normal().string();
    while (prefix.size() > 1 && prefix.ends_with("/")) prefix.pop_back();
    // Stored documents under the root whose files are gone: stat says "no such file" (any other
    // error, such as a permission denied, leaves the document alone).
    std::vector<std::string> here;
    for (const DocumentInfo& d : stored) {
      const bool under =
          d.path == prefix || (d.path.size() > prefix.size() && d.path.starts_with(prefix) &&
                               (prefix == "/" || d.path[prefix.size()] == '/'));
      if (!under || present.count(d.path) > 0) continue;
      struct stat st {};
      if (::stat(d.path.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
        here.push_back(d.path);
      }
    }
    if (here.empty()) continue;
    const std::string shown = printable(rr.root.string(), 200);
    std::string why;
    if (rr.state == RootReport::State::kMissing) {
      why = shown +
            (rr.complete ? ": not found (renamed, or a drive not mounted?)" : ": cannot be read");
    } else if (rr.state == RootReport::State::kFile) {
      why = shown + " is a file now, not the folder the bank holds documents under";
    } else if (!rr.complete) {
      why = shown + ": some folders under it could not be read";
    } else if (rr.files == 0) {
      why = shown + " holds no files to ingest (an empty mount point?)";
    } else {
      // A folder that is now empty while the bank holds documents in it is a mount point too.
      for (const std::string& g : here) {
        fs::path up = fs::path(g).parent_path();
        std::error_code ec;
        while (up.string().size() > prefix.size() && !fs::exists(up, ec)) up = up.parent_path();
        if (up.string().size() > prefix.size() && fs::is_empty(up, ec) && !ec) {
          why = printable(up.string(), 200) + " is an empty folder (a drive not mounted?)";
          break;
        }
      }
    }
    if (!why.empty()) {
      reasons.push_back(why + "; " + std::to_string(here.size()) +
                        " document(s) stored under it would have been pruned");
    } else {
      gone.insert(gone.end(), here.begin(), here.end());
    }
  }
  *refused = !reasons.empty();
  if (*refused) {
    for (const std::string& r : reasons) message(r);
    message("nothing was pruned (rag-cli rm removes documents on purpose)");
    return {};
  }
  std::sort(gone.begin(), gone.end());
  gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
  return gone;
}

std::size_t Bank::remove(const std::vector<std::string>& patterns) {
  return erase_documents([&](const std::string& path) {
    for (const std::string& p : patterns) {
      if (path_matches(p, path)) return true;
    }
    return false;
  });
}

std::size_t Bank::erase_documents(const std::function<bool(const std::string&)>& match) {
  WriteTxn txn(*db_);
  std::vector<std::int64_t> ids;
  {
    Stmt all(*db_, "SELECT id, path FROM documents");
    while (all.step()) {
      if (match(all.str(1))) ids.push_back(all.i64(0));
    }
  }
  Stmt del_chunks(*db_, "DELETE FROM chunks WHERE doc_id = ?1");
  Stmt del_doc(*db_, "DELETE FROM documents WHERE id = ?1");
  for (const std::int64_t id : ids) {
    del_chunks.bind(1, id).run();
    del_doc.bind(1, id).run();
  }
  db_->exec("UPDATE meta SET value = value + 1 WHERE key = 'generation'");
  txn.commit();
  compact_if_sparse();
  return ids.size();
}

void Bank::compact_if_sparse() {
  if (!has_vectors()) return;
  const std::int64_t rows = meta_int("vec_rows");
  Stmt live(*db_, "SELECT COUNT(*) FROM chunks WHERE vec_row IS NOT NULL");
  const std::int64_t alive = live.step() ? live.i64(0) : 0;
  if (rows > 0 && 2 * (rows - alive) >= rows) compact();
}

std::size_t Bank::compact(bool vacuum) {
  const std::size_t reclaimed = has_vectors() ? compact_vectors() : 0;
  if (vacuum) {
    db_->exec("VACUUM");
    db_->exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  return reclaimed;
}

std::size_t Bank::compact_vectors() {
  WriteTxn txn(*db_);
  open_vectors_for_write();
  remove_stale_vectors();
  const auto rows = static_cast<std::size_t>(meta_int("vec_rows"));
  std::vector<std::pair<std::int64_t, std::int64_t>> live;  // (old row, chunk id)
  {
    Stmt st(*db_, "SELECT vec_row, id FROM chunks WHERE vec_row IS NOT NULL ORDER BY vec_row");
    while (st.step()) live.emplace_back(st.i64(0), st.i64(1));
  }
  if (live.size() == rows) return 0;
  const std::int64_t next = vec_file_ + 1;
  const fs::path path = vectors_path(next);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error(ErrorCode::kIo, std::string("cannot create vectors: ") + std::strerror(errno),
                {.file = path.string()});
  }
  // Until the switch commits, the new file is ours to drop.
  struct Pending {
    int fd;
    fs::path path;
    bool committed = false;
    ~Pending() {
      if (committed) return;
      ::close(fd);
      std::error_code ec;
      fs::remove(path, ec);
    }
  } pending{fd, path};
  const std::size_t stride = row_bytes(manifest_.vector_type, manifest_.dim);
  const fs::path old_path = vectors_path(vec_file_);
  std::vector<std::byte> buffer;
  Stmt move(*db_, "UPDATE chunks SET vec_row = ?2 WHERE id = ?1");
  // Copy runs of consecutive live rows at once.
  for (std::size_t i = 0; i < live.size();) {
    throw_if_cancelled();
    std::size_t j = i + 1;
    while (j < live.size() && live[j].first == live[j - 1].first + 1 && j - i < 4096) ++j;
    const auto first = static_cast<std::size_t>(live[i].first);
    if (first + (j - i) > rows) {
      throw Error(ErrorCode::kFormat, "chunk refers to a vector row past the committed ones",
                  {.file = db_->file});
    }
    buffer.resize((j - i) * stride);
    read_at(vec_fd_, buffer.data(), buffer.size(), static_cast<off_t>(first * stride), old_path);
    write_at(fd, buffer.data(), buffer.size(), static_cast<off_t>(i * stride), path);
    for (std::size_t k = i; k < j; ++k) {
      move.bind(1, live[k].second).bind(2, static_cast<std::int64_t>(k)).run();
    }
    i = j;
  }
  if (::fdatasync(fd) != 0) {
    throw Error(ErrorCode::kIo, std::string("flushing vectors: ") + std::strerror(errno),
                {.file = path.string()});
  }
  sync_folder(folder_);  // the new file's name must be durable before the database names it
  Stmt set(*db_, "UPDATE meta SET value = ?2 WHERE key = ?1");
  set.bind(1, std::string("vec_rows")).bind(2, static_cast<std::int64_t>(live.size())).run();
  set.bind(1, std::string("vec_file")).bind(2, next).run();
  db_->exec("UPDATE meta SET value = value + 1 WHERE key = 'generation'");
  txn.commit();
  pending.committed = true;
  ::close(vec_fd_);
  vec_fd_ = fd;
  vec_file_ = next;
  std::error_code ec;
  fs::remove(old_path, ec);
  return rows - live.size();
}

namespace {

constexpr const char* kDocColumns =
    "SELECT d.id, d.path, d.kind, d.hash, d.title, d.mtime, d.size, d.pages,"
    " (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d";

DocumentInfo read_doc(const Stmt& st) {
  DocumentInfo d;
  d.id = st.i64(0);
  d.path = st.str(1);
  d.kind = st.str(2);
  d.hash = st.str(3);
  d.title = st.str(4);
  d.mtime = st.i64(5);
  d.size = static_cast<std::uint64_t>(st.i64(6));
  d.pages = static_cast<int>(st.i64(7));
  d.chunks = st.i64(8);
  return d;
}

constexpr const char* kChunkColumns =
    "SELECT c.id, c.doc_id, d.path, c.seq, c.page_first, c.page_last, c.byte_begin, c.byte_end,"
    " c.heading, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id";

ChunkInfo read_chunk(const Stmt& st) {
  ChunkInfo c;
  c.id = st.i64(0);
  c.doc_id = st.i64(1);
  c.path = st.str(2);
  c.seq = static_cast<int>(st.i64(3));
  c.page_first = static_cast<int>(st.i64(4));
  c.page_last = static_cast<int>(st.i64(5));
  c.byte_begin = static_cast<std::uint64_t>(st.i64(6));
  c.byte_end = static_cast<std::uint64_t>(st.i64(7));
  c.heading = st.str(8);
  c.text = st.str(9);
  return c;
}

}  // namespace

std::vector<DocumentInfo> Bank::documents(const std::string& path_glob) const {
  std::vector<DocumentInfo> out;
  Stmt st(*db_, (std::string(kDocColumns) + " ORDER BY d.path").c_str());
  while (st.step()) {
    DocumentInfo d = read_doc(st);
    if (path_glob.empty() || path_matches(path_glob, d.path)) out.push_back(std::move(d));
  }
  return out;
}

std::optional<DocumentInfo> Bank::document(const std::string& path) const {
  Stmt st(*db_, (std::string(kDocColumns) + " WHERE d.path = ?1").c_str());
  st.bind(1, path);
  if (!st.step()) return std::nullopt;
  return read_doc(st);
}

std::vector<ChunkInfo> Bank::chunks_of(std::int64_t doc_id) const {
  std::vector<ChunkInfo> out;
  Stmt st(*db_, (std::string(kChunkColumns) + " WHERE c.doc_id = ?1 ORDER BY c.seq").c_str());
  st.bind(1, doc_id);
  while (st.step()) out.push_back(read_chunk(st));
  return out;
}

std::optional<ChunkInfo> Bank::chunk(std::int64_t chunk_id) const {
  Stmt st(*db_, (std::string(kChunkColumns) + " WHERE c.id = ?1").c_str());
  st.bind(1, chunk_id);
  if (!st.step()) return std::nullopt;
  return read_chunk(st);
}

BankStats Bank::stats() const {
  BankStats s;
  db_->exec("BEGIN");
  try {
    Stmt st(*db_,
            "SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks),"
            " (SELECT COUNT(*) FROM chunks WHERE vec_row IS NOT NULL),"
            " (SELECT value FROM meta WHERE key = 'vec_rows'),"
            " (SELECT COALESCE(SUM(LENGTH(CAST(text AS BLOB))), 0) FROM chunks)");
    if (st.step()) {
      s.documents = st.i64(0);
      s.chunks = st.i64(1);
      s.vectors = st.i64(2);
      s.vector_rows = st.i64(3);
      s.text_bytes = static_cast<std::uint64_t>(st.i64(4));
    }
  } catch (...) {
    db_->exec("COMMIT");
    throw;
  }
  db_->exec("COMMIT");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder_, ec)) {
    if (e.is_regular_file(ec)) s.disk_bytes += e.file_size(ec);
  }
  return s;
}

std::string Bank::integrity_check() const {
  Stmt st(*db_, "PRAGMA integrity_check");
  std::string out;
  while (st.step()) {
    if (!out.empty()) out += "\n";
    out += st.str(0);
  }
  return out;
}

std::vector<ChunkScore> Bank::search_bm25(const std::string& query, std::size_t k,
                                          const std::string& path_glob) const {
  std::vector<ChunkScore> out;
  const std::string match = fts_query(query, db_->cjk_bigrams);
  if (match.empty() || k == 0) return out;
  const char* sql =
      path_glob.empty()
          ? "SELECT rowid, hearth_bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?1"
            " ORDER BY hearth_bm25(chunks_fts) LIMIT ?2"
          : "SELECT f.rowid, hearth_bm25(chunks_fts) FROM chunks_fts f JOIN chunks c ON c.id = "
            "f.rowid"
            " JOIN documents d ON d.id = c.doc_id WHERE chunks_fts MATCH ?1"
            " AND hearth_glob(?3, d.path) ORDER BY hearth_bm25(chunks_fts) LIMIT ?2";
  const std::int64_t generation = meta_int("generation");
  if (generation != db_->doc_tokens_generation) {
    db_->doc_tokens.clear();
    Stmt max(*db_, "SELECT COALESCE(MAX(id), 0) FROM chunks_fts_docsize");
    const std::int64_t max_id = max.step() ? max.i64(0) : 0;
    if (max_id < (std::int64_t{1} << 27)) {
      db_->doc_tokens.assign(static_cast<std::size_t>(max_id) + 1, 0);
      Stmt sizes(*db_, "SELECT id, sz FROM chunks_fts_docsize");
      while (sizes.step()) {
        const std::int64_t id = sizes.i64(0);
        const std::string sz = sizes.str(1);
        // The first column's count: an SQLite varint.
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < sz.size() && i < 9; ++i) {
          const auto byte = static_cast<unsigned char>(sz[i]);
          if (i == 8) {
            v = (v << 8) | byte;
            break;
          }
          v = (v << 7) | (byte & 0x7F);
          if ((byte & 0x80) == 0) break;
        }
        if (id >= 0 && id <= max_id) {
          db_->doc_tokens[static_cast<std::size_t>(id)] =
              static_cast<std::uint32_t>(std::min<std::uint64_t>(v, UINT32_MAX));
        }
      }
    }
    db_->doc_tokens_generation = generation;
  }
  Stmt st(*db_, sql);
  st.bind(1, match).bind(2, static_cast<std::int64_t>(k));
  if (!path_glob.empty()) st.bind(3, path_glob);
  while (st.step()) out.push_back({st.i64(0), -st.dbl(1)});
  return out;
}

void Bank::refresh_vectors() const {
  if (meta_int("generation") == loaded_generation_) return;
  // A compaction in another process may commit and delete the file of the snapshot read here
  // before it is mapped; the snapshot is then taken again.
  for (int attempt = 0;; ++attempt) {
    std::int64_t generation = 0;
    db_->exec("BEGIN");
    try {
      generation = meta_int("generation");
      vec_rows_ = static_cast<std::size_t>(meta_int("vec_rows"));
      const fs::path path = vectors_path(meta_int("vec_file"));
      row_chunk_.assign(vec_rows_, 0);
      row_doc_.assign(vec_rows_, 0);
      Stmt st(*db_, "SELECT vec_row, id, doc_id FROM chunks WHERE vec_row IS NOT NULL");
      while (st.step()) {
        const std::int64_t row = st.i64(0);
        if (row < 0 || static_cast<std::size_t>(row) >= vec_rows_) {
          throw Error(ErrorCode::kFormat, "chunk refers to a vector row past the committed ones",
                      {.file = db_->file});
        }
        row_chunk_[static_cast<std::size_t>(row)] = st.i64(1);
        row_doc_[static_cast<std::size_t>(row)] = st.i64(2);
      }
      vec_map_ = MappedFile();
      if (vec_rows_ > 0) {
        vec_map_ = MappedFile::open(path);
        if (vec_map_.size() < vec_rows_ * row_bytes(manifest_.vector_type, manifest_.dim)) {
          throw Error(ErrorCode::kFormat, "vectors file is shorter than the bank says",
                      {.file = path.string()});
        }
      }
      db_->exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_->db, "ROLLBACK", nullptr, nullptr, nullptr);
      vec_map_ = MappedFile();
      vec_rows_ = 0;
      row_chunk_.clear();
      row_doc_.clear();
      loaded_generation_ = -1;
      if (attempt < 5 && meta_int("generation") != generation) continue;
      throw;
    }
    loaded_generation_ = generation;
    return;
  }
}

std::vector<ChunkScore> Bank::search_dense(const std::vector<float>& query, std::size_t k,
                                           const std::string& path_glob) const {
  std::vector<ChunkScore> out;
  if (!has_vectors() || k == 0) return out;
  if (query.size() != manifest_.dim) {
    throw Error(ErrorCode::kInvalidArgument, "query vector has " + std::to_string(query.size()) +
                                                 " dimensions, the bank " +
                                                 std::to_string(manifest_.dim));
  }
  refresh_vectors();
  if (vec_rows_ == 0) return out;
  std::vector<std::uint8_t> keep(vec_rows_, 0);
  std::unordered_set<std::int64_t> allowed;
  if (!path_glob.empty()) {
    for (const DocumentInfo& d : documents(path_glob)) allowed.insert(d.id);
  }
  for (std::size_t r = 0; r < vec_rows_; ++r) {
    keep[r] = row_chunk_[r] != 0 && (path_glob.empty() || allowed.count(row_doc_[r]) > 0);
  }
  for (const auto& [score, row] :
       top_k_dense(manifest_.vector_type, vec_map_.bytes().data(), vec_rows_, manifest_.dim,
                   query.data(), k, keep.data())) {
    out.push_back({row_chunk_[row], score});
  }
  return out;
}

}  // namespace hearth::rag
