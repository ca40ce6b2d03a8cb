// The stages of a tokenizer, after Hugging Face tokenizers: normalizer -> pre-tokenizer -> model
// -> post-processor on the way in, decoder on the way out. Internal to the tokenize module: the
// public face is tokenizer.hpp. Every stage is immutable after construction.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hearth/tokenize/regex.hpp"

namespace hearth::tokenize::detail {

// An open-addressing string -> V map with keys packed in one buffer: vocabulary lookups are the
// hot path of every model, and this is several times faster than std::unordered_map there.
inline std::uint64_t hash_bytes(std::string_view s) {
  const char* p = s.data();
  std::size_t n = s.size();
  std::uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n > 0) {  // the last 1-7 bytes, read without a variable-length copy
    std::uint64_t w;
    if (n >= 4) {
      std::uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + n - 4, 4);
      w = (static_cast<std::uint64_t>(hi) << 32) | lo;
    } else {
      w = static_cast<std::uint64_t>(static_cast<unsigned char>(p[0])) |
          (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n / 2])) << 8) |
          (static_cast<std::uint64_t>(static_cast<unsigned char>(p[n - 1])) << 16);
    }
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

// a[0, n) == b[0, n), inline (the keys compared are short).
inline bool equal_bytes(const char* a, const char* b, std::size_t n) {
  std::uint64_t x, y;
  while (n >= 8) {
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
    a += 8;
    b += 8;
    n -= 8;
  }
  if (n >= 4) {
    std::uint32_t u, v;
    std::memcpy(&u, a, 4);
    std::memcpy(&v, b, 4);
    if (u != v) return false;
    std::memcpy(&u, a + n - 4, 4);
    std::memcpy(&v, b + n - 4, 4);
    return u == v;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

template <class V>
class FlatStringMap {
 public:
  const V* find(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    const std::uint64_t h = hash_bytes(key);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.used()) return nullptr;
      if (s.tag == tag && s.len() == key.size() &&
          equal_bytes(arena_.data() + s.off, key.data(), key.size())) {
        return &s.value;
      }
    }
  }
  // False (and no change) when key is already present.
  bool emplace(std::string_view key, V value) {
    if ((count_ + 1) * 4 > slots_.size() * 3) grow();
    const std::uint64_t h = hash_bytes(key);
    const auto tag = static_cast<std::uint32_t>(h >> 32);
    std::size_t i = h & mask_;
    for (;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.used()) break;
      if (s.tag == tag && std::string_view(arena_.data() + s.off, s.len()) == key) return false;
    }
    slots_[i] = {tag, static_cast<std::uint32_t>(arena_.size()),
                 static_cast<std::uint32_t>(key.size() + 1), std::move(value)};
    arena_.append(key);
    ++count_;
    return true;
  }
  void reserve(std::size_t n) {
    while (slots_.size() * 3 < n * 4) grow();
  }
  std::size_t size() const { return count_; }
  void clear() {
    slots_.clear();
    arena_.clear();
    count_ = 0;
    mask_ = 0;
  }

 private:
  // 16 bytes for int values (cache-friendly probing): the upper hash half as a tag; size is the
  // key length plus one, 0 for an empty slot.
  struct Slot {
    std::uint32_t tag = 0;
    std::uint32_t off = 0;
    std::uint32_t size = 0;
    V value{};
    bool used() const { return size != 0; }
    std::uint32_t len() const { return size - 1; }
  };
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (auto& s : old) {
      if (!s.used()) continue;
      std::size_t i = hash_bytes(std::string_view(arena_.data() + s.off, s.len())) & mask_;
      while (slots_[i].used()) i = (i + 1) & mask_;
      slots_[i] = std::move(s);
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  std::size_t count_ = 0;
  std::size_t mask_ = 0;
};

using TokenMap = FlatStringMap<std::int32_t>;

inline std::optional<std::int32_t> lookup(const TokenMap& map, std::string_view key) {
  const std::int32_t* v = map.find(key);
  if (!v) return std::nullopt;
  return *v;
}

// A static byte trie (edges in one sorted array per node) for longest-prefix and all-prefix
// lookups of vocabulary tokens.
class ByteTrie {
 public:
  void build(const std::vector<std::pair<std::string, std::int32_t>>& entries);
  // The longest key that is a prefix of s: (length, value), or (0, -1).
  std::pair<std::size_t, std::int32_t> longest_prefix(std::string_view s) const;
  // Calls f(length, value) for every key that is a prefix of s, shortest first.
  template <class F>
  void each_prefix(std::string_view s, F&& f) const {
    std::uint32_t node = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      node = child(node, static_cast<std::uint8_t>(s[i]));
      if (node == kNone) return;
      if (value_[node] >= 0) f(i + 1, value_[node]);
    }
  }

 private:
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;
  std::uint32_t child(std::uint32_t node, std::uint8_t byte) const {
    if (dense_[node] != kNone) return tables_[dense_[node] + byte];
    const std::uint32_t b = edge_begin_[node], e = edge_begin_[node + 1];
    for (std::uint32_t k = b; k < e; ++k) {
      if (edge_byte_[k] == byte) return edge_child_[k];
      if (edge_byte_[k] > byte) break;
    }
    return kNone;
  }
  std::vector<std::uint32_t> edge_begin_;  // per node, plus one
  std::vector<std::uint8_t> edge_byte_;
  std::vector<std::uint32_t> edge_child_;
  std::vector<std::int32_t> value_;
  // Nodes with many children get a direct 256-entry table (dense_[node] indexes tables_).
  std::vector<std::uint32_t> dense_;
  std::vector<std::uint32_t> tables_;
};

// ---- normalizers ----------------------------------------------------------------------------
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};
using NormalizerPtr = std::unique_ptr<const Normalizer>;

NormalizerPtr make_bert_normalizer(bool clean_text, bool chinese_chars, bool strip_accents,
                                   bool lowercase);
NormalizerPtr make_unicode_normalizer(std::string_view form);  // "NFC", "NFD", "NFKC", "NFKD"
NormalizerPtr make_lowercase_normalizer();
NormalizerPtr make_strip_accents_normalizer();
NormalizerPtr make_prepend_normalizer(std::string prefix);
NormalizerPtr make_replace_normalizer(std::string pattern, bool is_regex, std::string content);
NormalizerPtr make_strip_normalizer(bool left, bool right);
NormalizerPtr make_sequence_normalizer(std::vector<NormalizerPtr> parts);

// SentencePiece's precompiled character map (precompiled.cpp): longest-prefix replacement over
// the input bytes. The constructor checks the whole blob (Error(kFormat) naming the problem, key
// "precompiled_charsmap"); an empty blob is the identity map.
class CharsMap {
 public:
  CharsMap() = default;
  explicit CharsMap(std::string_view blob);
  bool empty() const { return units_.empty(); }
  // The longest key prefixing s: (length, replacement), or length 0.
  std::pair<std::size_t, std::string_view> match(std::string_view s) const;
  // SentencePiece's NormalizePrefix: (replacement or the first character, bytes consumed).
  std::pair<std::string_view, std::size_t> prefix(std::string_view s) const;
  // Appends the normalization of s to out.
  void apply(std::string_view s, std::string& out) const;

 private:
  void validate();
  std::vector<std::uint32_t> units_;
  std::string strings_;
  bool first_byte_[256] = {};  // some key starts with this byte
};
std::optional<std::string> base64_decode(std::string_view text);

NormalizerPtr make_precompiled_normalizer(CharsMap map);
// libsentencepiece's whole normalization (GGUF t5 vocabularies): the map, then
// remove_extra_whitespaces, add_dummy_prefix and escape_whitespaces (spaces -> U+2581).
NormalizerPtr make_sentencepiece_normalizer(CharsMap map, bool add_dummy_prefix,
                                            bool remove_extra_whitespaces, bool escape_whitespaces);

// ---- pre-tokenizers -------------------------------------------------------------------------
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Refines pieces in place. `first` says whether pieces[0] starts the input (Metaspace "first").
  virtual void split(std::vector<std::string>& pieces, bool first) const = 0;
  // For pre-tokenizers that only cut (never rewrite) text: the pieces of s as views into it.
  // Returns false when this pre-tokenizer cannot (then use split()).
  virtual bool split_views(std::string_view, std::vector<std::string_view>&) const { return false; }
  // For pre-tokenizers that cut and then rewrite bytes (ByteLevel, or a Sequence of cutting
  // pre-tokenizers ending in one): appends each piece of s to buf and its [begin, end) in buf to
  // spans. Returns false, adding nothing, when this pre-tokenizer cannot (then use split()).
  virtual bool split_mapped(std::string_view, std::string&,
                            std::vector<std::pair<std::size_t, std::size_t>>&) const {
    return false;
  }
};
using PreTokenizerPtr = std::unique_ptr<const PreTokenizer>;

PreTokenizerPtr make_bert_pre_tokenizer();
PreTokenizerPtr make_whitespace_pre_tokenizer();        // \w+|[^\w\s]+
PreTokenizerPtr make_whitespace_split_pre_tokenizer();  // on whitespace
PreTokenizerPtr make_byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex);
enum class PrependScheme { kAlways, kFirst, kNever };
PreTokenizerPtr make_metaspace_pre_tokenizer(std::string replacement, PrependScheme scheme,
                                             bool split);
PreTokenizerPtr make_split_pre_tokenizer(std::string pattern, bool is_regex, SplitBehavior behavior,
                                         bool invert);
PreTokenizerPtr make_digits_pre_tokenizer(bool individual);
PreTokenizerPtr make_punctuation_pre_tokenizer(SplitBehavior behavior);
PreTokenizerPtr make_sequence_pre_tokenizer(std::vector<PreTokenizerPtr> parts);

// GPT-2's pre-tokenization pattern (ByteLevel use_regex) and the byte <-> char table.
extern const char* const kGpt2Pattern;
const std::string& byte_to_unicode(std::uint8_t b);  // UTF-8 of the char standing for byte b
std::optional<std::uint8_t> unicode_to_byte(char32_t c);

// ---- models ---------------------------------------------------------------------------------
class Model {
 public:
  virtual ~Model() = default;
  virtual void tokenize(std::string_view piece, std::vector<std::int32_t>& out) const = 0;
  virtual std::size_t vocab_size() const = 0;
  virtual std::optional<std::int32_t> token_to_id(std::string_view token) const = 0;
  virtual const std::string* id_to_token(std::int32_t id) const = 0;
};
using ModelPtr = std::unique_ptr<const Model>;

struct WordPieceConfig {
  std::vector<std::string> vocab;  // id -> token
  std::string unk_token = "[UNK]";
  std::string prefix = "##";
  std::size_t max_input_chars_per_word = 100;
};
ModelPtr make_wordpiece(WordPieceConfig config);

struct BpeConfig {
  std::vector<std::string> vocab;                           // id -> token (holes are empty strings)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::optional<std::string> unk_token;
  std::string prefix;  // continuing_subword_prefix
  std::string suffix;  // end_of_word_suffix
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};
ModelPtr make_bpe(BpeConfig config);

// SentencePiece BPE as llama.cpp runs GGUF `llama` vocabularies: merge the adjacent pair whose
// concatenation is a token with the highest score; unknown characters fall back to <0xXX>.
struct SpmConfig {
  std::vector<std::string> vocab;
  std::vector<float> scores;
  std::int32_t unk_id = 0;
};
ModelPtr make_spm_bpe(SpmConfig config);

struct UnigramConfig {
  std::vector<std::string> vocab;
  std::vector<double> scores;
  std::optional<std::int32_t> unk_id;
  bool byte_fallback = false;
  // Pieces never matched in text (SentencePiece's control, unknown and unused pieces); empty:
  // every piece is matched, as in Hugging Face.
  std::vector<bool> unmatchable;
};
ModelPtr make_unigram(UnigramConfig config);

// ---- decoders -------------------------------------------------------------------------------
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode(std::vector<std::string>& tokens) const = 0;
};
using DecoderPtr = std::unique_ptr<const Decoder>;

DecoderPtr make_wordpiece_decoder(std::string prefix, bool cleanup);
DecoderPtr make_byte_level_decoder();
DecoderPtr make_metaspace_decoder(std::string replacement, PrependScheme scheme);
DecoderPtr make_byte_fallback_decoder();
DecoderPtr make_fuse_decoder();
DecoderPtr make_strip_decoder(std::string content, std::size_t start, std::size_t stop);
DecoderPtr make_replace_decoder(std::string pattern, bool is_regex, std::string content);
DecoderPtr make_sequence_decoder(std::vector<DecoderPtr> parts);

// HF's clean_up_tokenization (" ." -> ".", " n't" -> "n't", ...).
std::string cleanup_tokenization(std::string s);

// ---- post-processing ------------------------------------------------------------------------
struct TemplatePiece {
  bool is_sequence = false;  // else special tokens
  int sequence = 0;          // 0 = A, 1 = B
  std::vector<std::int32_t> ids;
  std::int32_t type_id = 0;
};
struct PostProcessor {
  std::vector<TemplatePiece> single;
  std::vector<TemplatePiece> pair;
  std::size_t added(bool is_pair) const;
};

}  // namespace hearth::tokenize::detail
