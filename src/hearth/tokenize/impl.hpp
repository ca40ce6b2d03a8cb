// Tokenizer::Impl: the assembled pipeline (internal to the tokenize module).
#pragma once

#include <string>
#include <vector>

#include "hearth/tokenize/pipeline.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::tokenize {

struct AddedToken {
  std::int32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// Leftmost-longest matching of a set of added tokens (a byte trie).
class AddedMatcher {
 public:
  void add(const std::string& content, std::size_t index);
  bool empty() const { return nodes_.size() <= 1; }
  // Whether some token starts with byte b.
  bool may_start(unsigned char b) const { return first_byte_[b]; }
  // The first position >= pos where some token may start, or s.size().
  std::size_t next_start(std::string_view s, std::size_t pos) const;
  // Longest token starting at s[pos]: (length, index), or length 0.
  std::pair<std::size_t, std::size_t> longest(std::string_view s, std::size_t pos) const;

 private:
  struct Node {
    std::size_t token = static_cast<std::size_t>(-1);
  };
  std::vector<Node> nodes_{Node{}};
  std::unordered_map<std::uint64_t, std::uint32_t> edges_;  // (node << 8 | byte) -> node
  bool first_byte_[256] = {};
  std::string first_bytes_;  // the distinct first bytes
};

struct Tokenizer::Impl {
  detail::NormalizerPtr normalizer;
  detail::PreTokenizerPtr pre_tokenizer;
  detail::ModelPtr model;
  std::optional<detail::PostProcessor> post;
  detail::DecoderPtr decoder;
  std::string model_type;

  std::vector<AddedToken> added;
  detail::TokenMap added_by_content;
  std::unordered_map<std::int32_t, std::size_t> added_by_id;
  // [normalized?][only non-special?]
  AddedMatcher matchers[2][2];

  // Call once the added tokens are in place.
  void finish();
  // at_start: text begins the input (Metaspace's prepend_scheme "first").
  void encode_sequence(std::string_view text, bool parse_special, std::vector<std::int32_t>& out,
                       bool at_start = true) const;
  void encode_segments(std::span<const TextSegment> segments, std::vector<std::int32_t>& out) const;
  Encoding encode(std::string_view a, const std::string_view* b,
                  const EncodeOptions& options) const;
  // Truncation and the post-processor's template over encoded sequences.
  Encoding finish(std::vector<std::int32_t> ids_a, std::vector<std::int32_t>* ids_b,
                  const EncodeOptions& options) const;
  std::string decode(std::span<const std::int32_t> ids, bool skip_special) const;
  const std::string* token_text(std::int32_t id) const;
  bool is_special(std::int32_t id) const;
  std::size_t vocab_size() const;
};

}  // namespace hearth::tokenize
