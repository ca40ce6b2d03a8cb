// Text <-> token ids for every model family hearth runs, loaded from Hugging Face files
// (tokenizer.json, or vocab.txt for BERT) or from a GGUF vocabulary (tokenizer.ggml.*), and
// encoding exactly as the reference implementations do (see docs/tokenize.md).
//
// Invalid UTF-8 in the input never fails: each maximal invalid subpart becomes U+FFFD before
// tokenization (the WHATWG / Rust from_utf8_lossy rule), so encode(bytes) == encode(lossy(bytes)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/formats/gguf.hpp"
#include "hearth/tokenize/text_segment.hpp"

namespace hearth::tokenize {

struct Encoding {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;  // token_type_ids (0 first segment, 1 second)
};

enum class TruncationStrategy { kLongestFirst, kOnlyFirst, kOnlySecond };

struct Truncation {
  std::size_t max_length = 0;  // 0 = none; counts the special tokens the template adds
  TruncationStrategy strategy = TruncationStrategy::kLongestFirst;
};

struct EncodeOptions {
  bool add_special_tokens = true;  // apply the post-processor's template ([CLS] ... [SEP], BOS)
  // Match special added tokens ("<s>", "[SEP]", "<|im_start|>") in the text. False: their text
  // is tokenized as ordinary text, as llama.cpp does with parse_special = false. Non-special
  // added tokens are always matched.
  bool parse_special = true;
  Truncation truncation;
};

// Immutable after load; copies share the same state; const methods are thread-safe.
class Tokenizer {
 public:
  // A Hugging Face folder (tokenizer.json, else vocab.txt), a tokenizer.json file, a vocab.txt
  // file, or a .gguf file. Errors name the file and the problem; an unsupported component is an
  // Error(kUnsupported) naming its type.
  static Tokenizer load(const std::filesystem::path& path);
  static Tokenizer from_gguf(const formats::GGUFFile& file);
  // tokenizer.json text; source names it in errors.
  static Tokenizer from_json(std::string_view json_text,
                             const std::string& source = "tokenizer.json");

  Encoding encode(std::string_view text, bool add_special_tokens = true,
                  const Truncation& truncation = {}) const;
  Encoding encode_pair(std::string_view a, std::string_view b, bool add_special_tokens = true,
                       const Truncation& truncation = {}) const;
  Encoding encode(std::string_view text, const EncodeOptions& options) const;
  Encoding encode_pair(std::string_view a, std::string_view b, const EncodeOptions& options) const;
  // Rendered chat-template output: special tokens are matched only where they lie wholly inside
  // trusted segments; untrusted text is tokenized with special-token parsing off. Text between
  // two special tokens is tokenized as one piece across segment boundaries, so when no
  // untrusted segment holds a special token's text the ids equal those of
  // encode(joined text, parse_special = true). (Special tokens flagged `normalized`, matched
  // after normalization, are not parsed here.) A chat template writes its own BOS, so callers
  // usually pass add_special_tokens = false, as transformers' apply_chat_template does.
  Encoding encode_segments(std::span<const TextSegment> segments, bool add_special_tokens = false,
                           const Truncation& truncation = {}) const;

  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = true) const;

  // Model vocabulary plus added tokens (one past the highest id).
  std::size_t vocab_size() const;
  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  // The token's text as stored (byte-level and metaspace forms unchanged); "" for an unknown id.
  std::string id_to_token(std::int32_t id) const;
  bool is_special(std::int32_t id) const;
  // "WordPiece", "BPE", "SentencePiece-BPE" or "Unigram".
  std::string model_type() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  friend class StreamDecoder;
};

// Incremental detokenization for generated text: feed ids one at a time; push() returns only
// text that ends at a complete UTF-8 character (and that later ids cannot change).
class StreamDecoder {
 public:
  explicit StreamDecoder(Tokenizer tokenizer, bool skip_special_tokens = true);
  std::string push(std::int32_t id);
  // Whatever is still held back (an incomplete character becomes U+FFFD); resets the stream.
  std::string flush();

 private:
  Tokenizer tokenizer_;
  bool skip_special_;
  std::vector<std::int32_t> ids_;
  std::size_t prefix_ = 0;  // ids_[prefix_, read_) were already emitted, as context
  std::size_t read_ = 0;
};

}  // namespace hearth::tokenize
