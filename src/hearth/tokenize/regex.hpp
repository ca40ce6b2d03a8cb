// A small backtracking regular-expression matcher over code points, for the Split
// pre-tokenizers of tokenizer.json (GPT-2, Llama-3, Qwen patterns and the like).
//
// Supported: literals and escapes (\r \n \t \f \v \xHH \x{H..} \uHHHH and escaped punctuation),
// '.', classes [...] with ranges and negation, \s \S \d \D \w \W, \p{X} / \P{X} for the Unicode
// general categories (one letter L, N, P, S, M, Z, C or two letters Lu, Nd, ...), groups (...),
// (?:...), (?i:...), alternation, quantifiers ? * + {n} {n,} {n,m} (greedy or lazy), lookahead
// (?=...) (?!...), anchors ^ $. Anything else is an Error(kUnsupported) naming the construct.
// Quantifiers on single characters never recurse per character, so long runs cannot overflow
// the stack.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace hearth::tokenize {

class Regex {
 public:
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // The leftmost match starting at or after `from`: [begin, end) in code points.
  std::optional<std::pair<std::size_t, std::size_t>> find(std::u32string_view text,
                                                          std::size_t from) const;
  const std::string& pattern() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hearth::tokenize
