// A piece of text with its trust: the unit chat templates render to and the tokenizer's
// encode_segments reads.
#pragma once

#include <string>

namespace hearth::tokenize {

// Trusted text (a template's own markup, bos_token / eos_token) may hold special-token
// markup; untrusted text (message contents, documents) never produces special tokens.
struct TextSegment {
  std::string text;
  bool trusted = false;
  bool operator==(const TextSegment&) const = default;
};

}  // namespace hearth::tokenize
