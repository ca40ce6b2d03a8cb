// The tokenization models: WordPiece, BPE (merge ranks), SentencePiece BPE (scores), Unigram.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <queue>

#include "hearth/core/error.hpp"
#include "hearth/tokenize/pipeline.hpp"
#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize::detail {
namespace {}  // namespace

void ByteTrie::build(const std::vector<std::pair<std::string, std::int32_t>>& entries) {
  // A pointer trie first, then flattened breadth-first so each node's edges are contiguous.
  std::vector<std::map<std::uint8_t, std::uint32_t>> kids(1);
  std::vector<std::int32_t> values(1, -1);
  for (const auto& [key, value] : entries) {
    std::uint32_t node = 0;
    for (const char ch : key) {
      const auto b = static_cast<std::uint8_t>(ch);
      const auto it = kids[node].find(b);
      if (it != kids[node].end()) {
        node = it->second;
        continue;
      }
      const auto created = static_cast<std::uint32_t>(kids.size());
      kids[node].emplace(b, created);
      kids.emplace_back();
      values.push_back(-1);
      node = created;
    }
    if (values[node] < 0) values[node] = value;
  }
  std::vector<std::uint32_t> order{0}, renumber(kids.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    renumber[order[k]] = static_cast<std::uint32_t>(k);
    for (const auto& [b, c] : kids[order[k]]) order.push_back(c);
  }
  edge_begin_.assign(1, 0);
  edge_byte_.clear();
  edge_child_.clear();
  value_.clear();
  for (const std::uint32_t old : order) {
    for (const auto& [b, c] : kids[old]) {
      edge_byte_.push_back(b);
      edge_child_.push_back(renumber[c]);
    }
    edge_begin_.push_back(static_cast<std::uint32_t>(edge_byte_.size()));
    value_.push_back(values[old]);
  }
  constexpr std::uint32_t kDenseFrom = 16;
  dense_.assign(value_.size(), kNone);
  tables_.clear();
  for (std::size_t node = 0; node < value_.size(); ++node) {
    const std::uint32_t b = edge_begin_[node], e = edge_begin_[node + 1];
    if (e - b < kDenseFrom && node != 0) continue;
    dense_[node] = static_cast<std::uint32_t>(tables_.size());
    tables_.resize(tables_.size() + 256, kNone);
    for (std::uint32_t k = b; k < e; ++k) tables_[dense_[node] + edge_byte_[k]] = edge_child_[k];
  }
}

std::pair<std::size_t, std::int32_t> ByteTrie::longest_prefix(std::string_view s) const {
  std::pair<std::size_t, std::int32_t> best{0, -1};
  each_prefix(s, [&](std::size_t len, std::int32_t v) { best = {len, v}; });
  return best;
}

namespace {

class VocabBase : public Model {
 public:
  explicit VocabBase(std::vector<std::string> vocab) : vocab_(std::move(vocab)) {
    map_.reserve(vocab_.size());
    for (std::size_t i = 0; i < vocab_.size(); ++i) {
      if (!vocab_[i].empty() || i == 0) map_.emplace(vocab_[i], static_cast<std::int32_t>(i));
    }
  }
  std::size_t vocab_size() const override { return vocab_.size(); }
  std::optional<std::int32_t> token_to_id(std::string_view token) const override {
    return lookup(map_, token);
  }
  const std::string* id_to_token(std::int32_t id) const override {
    if (id < 0 || static_cast<std::size_t>(id) >= vocab_.size()) return nullptr;
    return &vocab_[static_cast<std::size_t>(id)];
  }

 protected:
  std::vector<std::string> vocab_;
  TokenMap map_;
};

std::string byte_token_name(std::uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

constexpr std::string_view kMetaspace = "\u2581";

// Word -> ids, one table per thread (no locking), keyed by a serial number that no other model
// instance ever gets. A thread keeps the tables of its last kMaxTables models, each of at most
// kMaxEntries words (then it starts over).
class WordCache {
 public:
  template <class Compute>
  void get(std::string_view word, std::vector<std::int32_t>& out, Compute&& compute) const {
    Table& t = table();
    if (const auto* span = t.map.find(word)) {
      out.insert(out.end(), t.ids.begin() + span->first,
                 t.ids.begin() + span->first + span->second);
      return;
    }
    const std::size_t mark = out.size();
    compute(out);
    if (t.map.size() >= kMaxEntries) {
      t.map.clear();
      t.ids.clear();
    }
    if (t.map.emplace(word, {static_cast<std::uint32_t>(t.ids.size()),
                             static_cast<std::uint32_t>(out.size() - mark)})) {
      t.ids.insert(t.ids.end(), out.begin() + static_cast<std::ptrdiff_t>(mark), out.end());
    }
  }

 private:
  static constexpr std::size_t kMaxEntries = 1 << 16;
  static constexpr std::size_t kMaxTables = 8;
  struct Table {
    FlatStringMap<std::pair<std::uint32_t, std::uint32_t>> map;  // -> span of ids
    std::vector<std::int32_t> ids;
  };
  Table& table() const {
    thread_local std::vector<std::pair<std::uint64_t, std::unique_ptr<Table>>> tables;
    for (auto& [serial, t] : tables) {
      if (serial == serial_) return *t;
    }
    if (tables.size() >= kMaxTables) tables.erase(tables.begin());
    tables.emplace_back(serial_, std::make_unique<Table>());
    return *tables.back().second;
  }
  inline static std::atomic<std::uint64_t> next_serial_{1};
  const std::uint64_t serial_ = next_serial_++;
};

// Shared by the merge-based models: a word -> ids cache, and splitting long inputs (SentencePiece
// models see whole texts) before each "\u2581" that follows another character, when no token
// could span such a point (no token has "\u2581" after another character), so that the
// result is the same as merging the whole text at once.
class MergingModel : public VocabBase {
 public:
  explicit MergingModel(std::vector<std::string> vocab) : VocabBase(std::move(vocab)) {}

  void tokenize(std::string_view word, std::vector<std::int32_t>& out) const override {
    if (word.empty()) return;
    if (!splittable_ || word.size() <= kMaxCachedWord) {
      cached(word, out);
      return;
    }
    std::size_t start = 0;
    for (std::size_t at = word.find(kMetaspace, 1); at != std::string_view::npos;
         at = word.find(kMetaspace, at + 1)) {
      if (at >= start + kMetaspace.size() &&
          word.substr(at - kMetaspace.size(), kMetaspace.size()) == kMetaspace) {
        continue;  // inside a run of metaspaces
      }
      if (at > start) cached(word.substr(start, at - start), out);
      start = at;
    }
    cached(word.substr(start), out);
  }

 protected:
  virtual void tokenize_word(std::string_view word, std::vector<std::int32_t>& out) const = 0;

  void init_splitting(bool allowed) {
    splittable_ = allowed;
    for (const auto& t : vocab_) {
      for (std::size_t at = t.find(kMetaspace, 1); splittable_ && at != std::string::npos;
           at = t.find(kMetaspace, at + 1)) {
        if (at < kMetaspace.size() ||
            t.compare(at - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0) {
          splittable_ = false;
        }
      }
      if (!splittable_) break;
    }
  }

 private:
  static constexpr std::size_t kMaxCachedWord = 64;

  void cached(std::string_view word, std::vector<std::int32_t>& out) const {
    if (word.size() > kMaxCachedWord) {
      whole_or_merged(word, out);
      return;
    }
    cache_.get(word, out, [&](std::vector<std::int32_t>& o) { whole_or_merged(word, o); });
  }
  void whole_or_merged(std::string_view word, std::vector<std::int32_t>& out) const {
    if (whole_words_) {  // BPE ignore_merges: a word that is a token stays whole
      if (const auto* id = map_.find(word)) {
        out.push_back(*id);
        return;
      }
    }
    tokenize_word(word, out);
  }

  WordCache cache_;
  bool splittable_ = false;

 protected:
  bool whole_words_ = false;

 private:
};

class WordPiece final : public VocabBase {
 public:
  explicit WordPiece(WordPieceConfig c)
      : VocabBase(std::move(c.vocab)),
        prefix_(std::move(c.prefix)),
        max_chars_(c.max_input_chars_per_word) {
    const auto unk = lookup(map_, c.unk_token);
    if (!unk) {
      throw Error(ErrorCode::kFormat,
                  "WordPiece unk_token '" + c.unk_token + "' is not in the vocabulary");
    }
    unk_ = *unk;
    std::vector<std::pair<std::string, std::int32_t>> all, cont;
    for (std::size_t i = 0; i < vocab_.size(); ++i) {
      const auto id = static_cast<std::int32_t>(i);
      all.emplace_back(vocab_[i], id);
      if (!prefix_.empty() && vocab_[i].size() > prefix_.size() &&
          vocab_[i].compare(0, prefix_.size(), prefix_) == 0) {
        cont.emplace_back(vocab_[i].substr(prefix_.size()), id);
      }
    }
    initial_.build(all);
    continuing_.build(cont);
  }

  void tokenize(std::string_view word, std::vector<std::int32_t>& out) const override {
    if (word.size() > max_chars_) {  // a character is at least one byte
      std::size_t chars = 0;
      for (std::size_t i = 0; i < word.size(); i += unicode::char_length(word, i)) {
        if (++chars > max_chars_) {
          out.push_back(unk_);
          return;
        }
      }
    }
    if (const auto* id = map_.find(word)) {  // most words are whole tokens
      out.push_back(*id);
      return;
    }
    if (word.size() > kMaxCachedWord) {
      split(word, out);
      return;
    }
    cache_.get(word, out, [&](std::vector<std::int32_t>& o) { split(word, o); });
  }

 private:
  static constexpr std::size_t kMaxCachedWord = 64;

  // Greedy longest match, as Hugging Face does, with one trie walk per piece.
  void split(std::string_view word, std::vector<std::int32_t>& out) const {
    const std::size_t mark = out.size();
    std::size_t start = 0;
    while (start < word.size()) {
      const auto [len, id] =
          (start == 0 ? initial_ : continuing_).longest_prefix(word.substr(start));
      if (len == 0) {
        out.resize(mark);
        out.push_back(unk_);
        return;
      }
      out.push_back(id);
      start += len;
    }
  }

  WordCache cache_;
  std::string prefix_;
  std::size_t max_chars_;
  std::int32_t unk_ = 0;
  ByteTrie initial_, continuing_;
};

// (left id, right id) -> (rank, merged id): open addressing over 16-byte entries.
class PairMap {
 public:
  struct Entry {
    std::uint64_t key = kEmpty;
    std::int32_t rank = 0;
    std::int32_t merged = 0;
  };
  static std::uint64_t key(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  void build(std::size_t n) {
    std::size_t size = 16;
    while (size < n * 2) size *= 2;
    entries_.assign(size, Entry{});
    mask_ = size - 1;
  }
  // Keeps the first entry for a key (the lowest rank).
  void emplace(std::uint64_t k, std::int32_t rank, std::int32_t merged) {
    for (std::size_t i = slot(k);; i = (i + 1) & mask_) {
      if (entries_[i].key == k) return;
      if (entries_[i].key == kEmpty) {
        entries_[i] = {k, rank, merged};
        ++count_;
        return;
      }
    }
  }
  const Entry* find(std::uint64_t k) const {
    for (std::size_t i = slot(k);; i = (i + 1) & mask_) {
      const Entry& e = entries_[i];
      if (e.key == k) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  bool empty() const { return count_ == 0; }

 private:
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  std::size_t slot(std::uint64_t k) const { return ((k * 0x9E3779B97F4A7C15ull) >> 20) & mask_; }
  std::vector<Entry> entries_;
  std::size_t mask_ = 0;
  std::size_t count_ = 0;
};

// Merges adjacent symbols by ascending rank (ties: leftmost): a linear scan for short words,
// a heap over a linked list for long ones.
struct Symbol {
  std::int32_t id;
  std::int32_t prev;
  std::int32_t next;
  bool alive;
};

class Bpe final : public MergingModel {
 public:
  explicit Bpe(BpeConfig c)
      : MergingModel(std::move(c.vocab)),
        prefix_(std::move(c.prefix)),
        suffix_(std::move(c.suffix)),
        fuse_unk_(c.fuse_unk),
        byte_fallback_(c.byte_fallback),
        ignore_merges_(c.ignore_merges) {
    if (c.unk_token) {
      unk_ = lookup(map_, *c.unk_token);
      if (!unk_) {
        throw Error(ErrorCode::kFormat,
                    "BPE unk_token '" + *c.unk_token + "' is not in the vocabulary");
      }
    }
    merges_.build(c.merges.size());
    std::string merged;
    for (std::size_t r = 0; r < c.merges.size(); ++r) {
      const auto& [a, b] = c.merges[r];
      const auto ia = lookup(map_, a);
      const auto ib = lookup(map_, b);
      merged.assign(a);
      if (!prefix_.empty() && b.compare(0, prefix_.size(), prefix_) == 0) {
        merged.append(b, prefix_.size());
      } else {
        merged.append(b);
      }
      const auto im = lookup(map_, merged);
      if (!ia || !ib || !im) {
        throw Error(ErrorCode::kFormat, "BPE merge " + std::to_string(r) + " ('" + a + "' '" + b +
                                            "') uses a token that is not in the vocabulary");
      }
      merges_.emplace(PairMap::key(*ia, *ib), static_cast<std::int32_t>(r), *im);
    }
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        byte_ids_[static_cast<std::size_t>(b)] =
            lookup(map_, byte_token_name(static_cast<std::uint8_t>(b))).value_or(-1);
      }
    }
    // Single characters below U+0800 (all of the byte-level alphabet) by table.
    if (prefix_.empty() && suffix_.empty()) {
      char_ids_.assign(0x800, -1);
      for (char32_t cp = 0; cp < 0x800; ++cp) {
        char_ids_[cp] = lookup(map_, unicode::to_utf8(cp)).value_or(-1);
      }
    }
    // Unknown characters fuse into one <unk>: a split before "\u2581" must not separate two.
    init_splitting(!unk_ || !fuse_unk_ || lookup(map_, kMetaspace).has_value());
    whole_words_ = ignore_merges_;
  }

 private:
  // The id of the single character ch (its UTF-8 bytes), or -1.
  std::int32_t char_id(std::string_view ch) const {
    const auto b0 = static_cast<unsigned char>(ch[0]);
    if (ch.size() == 1) return char_ids_[b0];
    const auto b1 = static_cast<unsigned char>(ch[1]);
    return char_ids_[((b0 & 0x1Fu) << 6) | (b1 & 0x3Fu)];
  }

  void tokenize_word(std::string_view word, std::vector<std::int32_t>& out) const override {
    thread_local std::vector<std::int32_t> ids;
    ids.clear();
    bool last_unk = false;
    std::string buf;
    std::size_t i = 0;
    while (i < word.size()) {
      const std::size_t start = i;
      i += unicode::char_length(word, i);
      std::string_view ch = word.substr(start, i - start);
      std::int32_t id = -1;
      if (!char_ids_.empty() && ch.size() <= 2 && static_cast<unsigned char>(ch[0]) < 0xE0) {
        id = char_id(ch);
      } else {
        if (!prefix_.empty() || !suffix_.empty()) {
          buf.clear();
          if (start > 0) buf += prefix_;
          buf += ch;
          if (i == word.size()) buf += suffix_;
          ch = buf;
        }
        if (const auto* found = map_.find(ch)) id = *found;
      }
      if (id >= 0) {
        ids.push_back(id);
        last_unk = false;
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (char b : word.substr(start, i - start)) {
          if (byte_ids_[static_cast<std::uint8_t>(b)] < 0) all = false;
        }
        if (all) {
          for (char b : word.substr(start, i - start)) {
            ids.push_back(byte_ids_[static_cast<std::uint8_t>(b)]);
          }
          last_unk = false;
          continue;
        }
      }
      if (unk_) {
        if (!(fuse_unk_ && last_unk)) ids.push_back(*unk_);
        last_unk = true;
      }
    }
    if (ids.size() >= 2 && !merges_.empty()) {
      if (ids.size() <= kLinearMax) {
        merge_linear(ids);
      } else {
        merge_heap(ids);
      }
    }
    out.insert(out.end(), ids.begin(), ids.end());
  }

  static constexpr std::size_t kLinearMax = 48;
  static constexpr std::int32_t kNoMerge = std::numeric_limits<std::int32_t>::max();

  // Repeatedly merges the leftmost pair of lowest rank: O(n^2), fastest for short words.
  void merge_linear(std::vector<std::int32_t>& ids) const {
    std::size_t n = ids.size();
    std::array<std::int32_t, kLinearMax> rank, merged;
    auto look = [&](std::size_t k) {
      const PairMap::Entry* e = merges_.find(PairMap::key(ids[k], ids[k + 1]));
      rank[k] = e ? e->rank : kNoMerge;
      merged[k] = e ? e->merged : -1;
    };
    for (std::size_t k = 0; k + 1 < n; ++k) look(k);
    while (n >= 2) {
      std::size_t best = 0;
      for (std::size_t k = 1; k + 1 < n; ++k) {
        if (rank[k] < rank[best]) best = k;
      }
      if (rank[best] == kNoMerge) break;
      ids[best] = merged[best];
      for (std::size_t k = best + 1; k + 1 < n; ++k) {
        ids[k] = ids[k + 1];
        rank[k] = rank[k + 1];
        merged[k] = merged[k + 1];
      }
      --n;
      if (best > 0) look(best - 1);
      if (best + 1 < n) look(best);
    }
    ids.resize(n);
  }

  struct Candidate {
    std::int32_t rank;
    std::int32_t pos;
    std::int32_t left, right, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  void add(std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>>& q,
           const std::vector<Symbol>& syms, std::int32_t pos) const {
    if (pos < 0) return;
    const Symbol& s = syms[static_cast<std::size_t>(pos)];
    if (s.next < 0) return;
    const std::int32_t right = syms[static_cast<std::size_t>(s.next)].id;
    const PairMap::Entry* e = merges_.find(PairMap::key(s.id, right));
    if (!e) return;
    q.push({e->rank, pos, s.id, right, e->merged});
  }

  void merge_heap(std::vector<std::int32_t>& ids) const {
    std::vector<Symbol> syms;
    syms.reserve(ids.size());
    for (std::size_t k = 0; k < ids.size(); ++k) {
      const auto n = static_cast<std::int32_t>(k);
      syms.push_back({ids[k], n - 1, k + 1 < ids.size() ? n + 1 : -1, true});
    }
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> q;
    for (std::size_t p = 0; p + 1 < syms.size(); ++p) add(q, syms, static_cast<std::int32_t>(p));
    while (!q.empty()) {
      const Candidate c = q.top();
      q.pop();
      Symbol& s = syms[static_cast<std::size_t>(c.pos)];
      if (!s.alive || s.id != c.left || s.next < 0) continue;
      Symbol& r = syms[static_cast<std::size_t>(s.next)];
      if (r.id != c.right) continue;
      s.id = c.merged;
      r.alive = false;
      s.next = r.next;
      if (r.next >= 0) syms[static_cast<std::size_t>(r.next)].prev = c.pos;
      add(q, syms, s.prev);
      add(q, syms, c.pos);
    }
    ids.clear();
    for (const auto& s : syms) {
      if (s.alive) ids.push_back(s.id);
    }
  }

  std::string prefix_, suffix_;
  bool fuse_unk_, byte_fallback_, ignore_merges_;
  std::optional<std::int32_t> unk_;
  PairMap merges_;
  std::array<std::int32_t, 256> byte_ids_{};
  std::vector<std::int32_t> char_ids_;  // code point < U+0800 -> id of that one character
};

class SpmBpe final : public MergingModel {
 public:
  explicit SpmBpe(SpmConfig c)
      : MergingModel(std::move(c.vocab)), scores_(std::move(c.scores)), unk_(c.unk_id) {
    for (int b = 0; b < 256; ++b) {
      byte_ids_[static_cast<std::size_t>(b)] =
          lookup(map_, byte_token_name(static_cast<std::uint8_t>(b))).value_or(unk_);
    }
    init_splitting(true);
  }

 private:
  void tokenize_word(std::string_view text, std::vector<std::int32_t>& out) const override {
    struct Sym {
      std::size_t begin, len;
      std::int32_t prev, next;
    };
    std::vector<Sym> syms;
    std::size_t i = 0;
    while (i < text.size()) {
      const std::size_t len = unicode::char_length(text, i);
      const auto n = static_cast<std::int32_t>(syms.size());
      syms.push_back({i, len, n - 1, -1});
      if (n > 0) syms[static_cast<std::size_t>(n - 1)].next = n;
      i += len;
    }
    struct Bigram {
      float score;
      std::int32_t left, right;
      std::size_t size;
      bool operator<(const Bigram& o) const {
        return score != o.score ? score < o.score : left > o.left;
      }
    };
    std::priority_queue<Bigram> q;
    auto try_add = [&](std::int32_t l, std::int32_t r) {
      if (l < 0 || r < 0) return;
      const Sym& a = syms[static_cast<std::size_t>(l)];
      const Sym& b = syms[static_cast<std::size_t>(r)];
      const auto id = lookup(map_, text.substr(a.begin, a.len + b.len));
      if (!id) return;
      q.push({scores_[static_cast<std::size_t>(*id)], l, r, a.len + b.len});
    };
    for (std::size_t k = 1; k < syms.size(); ++k) {
      try_add(static_cast<std::int32_t>(k - 1), static_cast<std::int32_t>(k));
    }
    while (!q.empty()) {
      const Bigram g = q.top();
      q.pop();
      Sym& l = syms[static_cast<std::size_t>(g.left)];
      Sym& r = syms[static_cast<std::size_t>(g.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != g.size) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) syms[static_cast<std::size_t>(r.next)].prev = g.left;
      try_add(l.prev, g.left);
      try_add(g.left, l.next);
    }
    for (std::int32_t k = syms.empty() ? -1 : 0; k >= 0;
         k = syms[static_cast<std::size_t>(k)].next) {
      const Sym& s = syms[static_cast<std::size_t>(k)];
      const std::string_view piece = text.substr(s.begin, s.len);
      if (const auto id = lookup(map_, piece)) {
        out.push_back(*id);
      } else {
        // A merged symbol is always a token, so only single characters fall back to bytes.
        for (char b : piece) out.push_back(byte_ids_[static_cast<std::uint8_t>(b)]);
      }
    }
  }

 private:
  std::vector<float> scores_;
  std::int32_t unk_;
  std::array<std::int32_t, 256> byte_ids_{};
};

class Unigram final : public VocabBase {
 public:
  explicit Unigram(UnigramConfig c)
      : VocabBase(std::move(c.vocab)),
        scores_(std::move(c.scores)),
        unk_(c.unk_id),
        byte_fallback_(c.byte_fallback) {
    double min_score = std::numeric_limits<double>::max();
    for (double s : scores_) min_score = std::min(min_score, s);
    unk_score_ = (scores_.empty() ? 0.0 : min_score) - 10.0;
    std::vector<std::pair<std::string, std::int32_t>> entries;
    entries.reserve(vocab_.size());
    for (std::size_t i = 0; i < vocab_.size(); ++i) {
      if (vocab_[i].empty() || (i < c.unmatchable.size() && c.unmatchable[i])) continue;
      entries.emplace_back(vocab_[i], static_cast<std::int32_t>(i));
    }
    trie_.build(entries);
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        byte_ids_[static_cast<std::size_t>(b)] =
            lookup(map_, byte_token_name(static_cast<std::uint8_t>(b))).value_or(-1);
      }
    }
  }

  void tokenize(std::string_view s, std::vector<std::int32_t>& out) const override {
    if (s.empty()) return;
    struct Best {
      double score = 0;
      std::size_t start = 0;
      std::int32_t id = -1;
      bool set = false;
    };
    std::vector<Best> best(s.size() + 1);
    best[0].set = true;
    std::size_t i = 0;
    while (i < s.size()) {
      const std::size_t clen = unicode::char_length(s, i);
      if (!best[i].set) {
        i += clen;
        continue;
      }
      const double base = best[i].score;
      bool single = false;
      // Keys are whole characters, so every prefix found ends on a character boundary.
      trie_.each_prefix(s.substr(i), [&](std::size_t len, std::int32_t id) {
        const double cand = base + scores_[static_cast<std::size_t>(id)];
        Best& b = best[i + len];
        if (!b.set || cand > b.score) b = {cand, i, id, true};
        if (len == clen) single = true;
      });
      if (!single) {
        const double cand = base + unk_score_;
        Best& b = best[i + clen];
        if (!b.set || cand > b.score) b = {cand, i, -1, true};
      }
      i += clen;
    }
    std::vector<std::pair<std::size_t, std::int32_t>> path;  // (start, id or -1 for unknown)
    for (std::size_t e = s.size(); e > 0; e = best[e].start)
      path.emplace_back(best[e].start, best[e].id);
    std::reverse(path.begin(), path.end());
    for (std::size_t k = 0; k < path.size(); ++k) {
      if (path[k].second >= 0) {
        out.push_back(path[k].second);
        continue;
      }
      // Consecutive unknown pieces fuse into one.
      std::size_t j = k;
      while (j + 1 < path.size() && path[j + 1].second < 0) ++j;
      const std::size_t b = path[k].first;
      const std::size_t e = j + 1 < path.size() ? path[j + 1].first : s.size();
      bool done = false;
      if (byte_fallback_) {
        bool all = true;
        for (char ch : s.substr(b, e - b))
          all = all && byte_ids_[static_cast<std::uint8_t>(ch)] >= 0;
        if (all) {
          for (char ch : s.substr(b, e - b))
            out.push_back(byte_ids_[static_cast<std::uint8_t>(ch)]);
          done = true;
        }
      }
      if (!done) {
        if (!unk_) {
          throw Error(ErrorCode::kUnsupported, "Unigram model without unk_id met an unknown piece");
        }
        out.push_back(*unk_);
      }
      k = j;
    }
  }

 private:
  std::vector<double> scores_;
  std::optional<std::int32_t> unk_;
  bool byte_fallback_;
  double unk_score_ = 0;
  ByteTrie trie_;
  std::array<std::int32_t, 256> byte_ids_{};
};

}  // namespace

ModelPtr make_wordpiece(WordPieceConfig config) {
  return std::make_unique<WordPiece>(std::move(config));
}
ModelPtr make_bpe(BpeConfig config) {
  return std::make_unique<Bpe>(std::move(config));
}
ModelPtr make_spm_bpe(SpmConfig config) {
  return std::make_unique<SpmBpe>(std::move(config));
}
ModelPtr make_unigram(UnigramConfig config) {
  return std::make_unique<Unigram>(std::move(config));
}

}  // namespace hearth::tokenize::detail
