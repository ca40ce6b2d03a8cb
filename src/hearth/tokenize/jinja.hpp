// A Jinja interpreter for the subset that model chat templates use, rendering exactly as
// @huggingface/jinja (the renderer of transformers.js) does, quirks included (see
// docs/tokenize.md, "Chat templates"). Every string carries, run by run, whether its text came
// from the template itself (trusted) or from the caller's untrusted data (message contents), so
// that the tokenizer can parse special tokens only where the template wrote them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/tokenize/text_segment.hpp"

namespace hearth::tokenize {

namespace jinja {

// Bounds that keep a hostile template finite; exceeding one is an Error(kInvalidArgument)
// naming the limit and the template position.
struct Limits {
  std::size_t max_source_bytes = 1u << 20;  // template text
  std::size_t max_string_bytes = 8u << 20;  // any one string value, the output included
  std::size_t max_items = 1u << 20;         // elements of one list (range(), +)
  std::size_t max_iterations = 1u << 20;    // loop iterations in one render, all loops
  std::size_t max_call_depth = 64;          // nested macro calls
  std::size_t max_nesting = 256;            // nesting of statements and expressions
  std::uint64_t max_work = 1ull << 28;      // bytes built plus nodes evaluated, per render
};

struct Node;

// A parsed template. Immutable; render() may run from many threads at once.
class Template {
 public:
  // origin names the template in errors ("model/tokenizer_config.json").
  static Template parse(std::string_view source, std::string origin, Limits limits = {});

  // Renders with the global variables of trusted_vars (strings trusted: bos_token, ...) and of
  // untrusted_vars (strings untrusted: messages, tools, ...); both must be JSON objects. A name
  // in both is taken from untrusted_vars. Adjacent segments have different trust.
  std::vector<TextSegment> render(const nlohmann::json& trusted_vars,
                                  const nlohmann::json& untrusted_vars) const;

  const std::string& origin() const;

  struct State;

 private:
  explicit Template(std::shared_ptr<const State> state) : state_(std::move(state)) {}
  std::shared_ptr<const State> state_;
};

}  // namespace jinja
}  // namespace hearth::tokenize
