// SentencePiece's precompiled character map (the `Precompiled` normalizer of tokenizer.json and
// GGUF `tokenizer.ggml.precompiled_charsmap`) and SentencePiece's whitespace handling.
//
// The blob: a little-endian uint32 trie size in bytes, then that many bytes of a double-array
// trie (darts-clone units, one uint32 each), then the replacement strings, each ending in NUL.
// A unit holds: bit 8 "has a leaf", bit 9 "offset is shifted by 8", bits 10-31 the offset, the
// low byte (with bit 31 for non-character units) the label; a leaf unit's low 31 bits are the
// value, here a byte offset into the strings. Normalization takes, at each position, the longest
// key that prefixes the remaining input and replaces it by its string; where no key matches, one
// UTF-8 character is copied unchanged (libsentencepiece's Normalizer::NormalizePrefix).
//
// Every reachable unit and value is checked once at load time, so a malformed blob is an error
// there and normalization never reads out of bounds.
#include <cstring>

#include "hearth/core/error.hpp"
#include "hearth/tokenize/pipeline.hpp"
#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize::detail {
namespace {

[[noreturn]] void bad_charsmap(const std::string& what) {
  throw Error(ErrorCode::kFormat, "precompiled_charsmap: " + what, {.key = "precompiled_charsmap"});
}

constexpr bool has_leaf(std::uint32_t unit) {
  return ((unit >> 8) & 1u) != 0;
}
constexpr std::uint32_t value_of(std::uint32_t unit) {
  return unit & 0x7FFFFFFFu;
}
constexpr std::uint32_t label_of(std::uint32_t unit) {
  return unit & 0x800000FFu;
}
constexpr std::uint32_t offset_of(std::uint32_t unit) {
  return (unit >> 10) << ((unit & 0x200u) >> 6);
}

// SentencePiece keeps at most this many prefix matches and takes the longest of them.
constexpr std::size_t kMaxMatches = 32;

}  // namespace

CharsMap::CharsMap(std::string_view blob) {
  if (blob.empty()) return;  // no map: every character stays as it is
  if (blob.size() < 4) {
    bad_charsmap("truncated: " + std::to_string(blob.size()) +
                 " bytes, fewer than the 4-byte trie size");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(blob.data());
  const std::uint32_t trie_bytes =
      static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
      (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  if (trie_bytes > blob.size() - 4) {
    bad_charsmap("trie size " + std::to_string(trie_bytes) + " runs past the end of the " +
                 std::to_string(blob.size()) + "-byte blob");
  }
  if (trie_bytes == 0 || trie_bytes % 4 != 0) {
    bad_charsmap("trie size " + std::to_string(trie_bytes) +
                 " is not a positive multiple of 4 bytes");
  }
  units_.resize(trie_bytes / 4);
  for (std::size_t k = 0; k < units_.size(); ++k) {
    const unsigned char* u = p + 4 + 4 * k;
    units_[k] = static_cast<std::uint32_t>(u[0]) | (static_cast<std::uint32_t>(u[1]) << 8) |
                (static_cast<std::uint32_t>(u[2]) << 16) | (static_cast<std::uint32_t>(u[3]) << 24);
  }
  strings_.assign(blob.substr(4 + trie_bytes));
  validate();
}

void CharsMap::validate() {
  // Depth-first over every node a lookup can reach, each once: every child and leaf index is
  // inside the units and every value starts a NUL-terminated string inside the strings. (A
  // cycle in a corrupt trie is harmless: each lookup step consumes an input byte.)
  const std::size_t n = units_.size();
  std::vector<bool> seen(n, false);
  std::vector<std::uint32_t> stack{0};
  seen[0] = true;
  while (!stack.empty()) {
    const std::uint32_t node = stack.back();
    stack.pop_back();
    const std::uint32_t base = node ^ offset_of(units_[node]);
    if (node != 0 && has_leaf(units_[node])) {
      if (base >= n) bad_charsmap("a leaf index is past the end of the trie");
      const std::uint32_t v = value_of(units_[base]);
      if (v >= strings_.size()) {
        bad_charsmap("value offset " + std::to_string(v) + " is past the " +
                     std::to_string(strings_.size()) + " bytes of normalized strings");
      }
      if (strings_.find('\0', v) == std::string::npos) {
        bad_charsmap("the normalized string at offset " + std::to_string(v) +
                     " has no terminating NUL");
      }
    }
    for (std::uint32_t c = 1; c < 256; ++c) {
      const std::uint32_t child = base ^ c;
      if (child >= n || label_of(units_[child]) != c) continue;
      if (node == 0) first_byte_[c] = true;
      if (seen[child]) continue;  // darts-clone shares suffixes: a node may have many parents
      seen[child] = true;
      stack.push_back(child);
    }
  }
}

std::pair<std::size_t, std::string_view> CharsMap::match(std::string_view s) const {
  if (units_.empty() || s.empty() || !first_byte_[static_cast<unsigned char>(s[0])]) {
    return {0, {}};
  }
  const std::size_t n = units_.size();
  std::uint32_t node = offset_of(units_[0]);
  std::size_t best_len = 0, matches = 0;
  std::uint32_t best_value = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    node ^= c;
    if (node >= n) break;
    const std::uint32_t unit = units_[node];
    if (label_of(unit) != c) break;
    node ^= offset_of(unit);
    if (has_leaf(unit)) {
      if (node >= n) break;  // unreachable after validate()
      best_len = i + 1;
      best_value = value_of(units_[node]);
      if (++matches >= kMaxMatches) break;
    }
  }
  if (best_len == 0) return {0, {}};
  return {best_len, std::string_view(strings_.c_str() + best_value)};
}

void CharsMap::apply(std::string_view s, std::string& out) const {
  out.reserve(out.size() + s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (!first_byte_[b]) {  // no key starts here: copy the run of such ASCII bytes or one char
      if (b < 0x80) {
        std::size_t j = i + 1;
        while (j < s.size() && static_cast<unsigned char>(s[j]) < 0x80 &&
               !first_byte_[static_cast<unsigned char>(s[j])]) {
          ++j;
        }
        out.append(s.substr(i, j - i));
        i = j;
      } else {
        const std::size_t len = unicode::char_length(s, i);
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    const auto [len, replacement] = match(s.substr(i));
    if (len > 0) {
      out.append(replacement);
      i += len;
    } else {
      const std::size_t clen = unicode::char_length(s, i);
      out.append(s.substr(i, clen));
      i += clen;
    }
  }
}

std::pair<std::string_view, std::size_t> CharsMap::prefix(std::string_view s) const {
  const auto [len, replacement] = match(s);
  if (len > 0) return {replacement, len};
  const std::size_t clen = unicode::char_length(s, 0);
  return {s.substr(0, clen), clen};
}

std::optional<std::string> base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t pad = 0;
  for (const char c : text) {
    if (c == '=') {
      ++pad;
      continue;
    }
    if (c == '\n' || c == '\r') continue;
    const int v = value(c);
    if (v < 0 || pad > 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (pad > 2 || bits >= 6) return std::nullopt;
  return out;
}

namespace {

class PrecompiledNormalizer final : public Normalizer {
 public:
  explicit PrecompiledNormalizer(CharsMap map) : map_(std::move(map)) {}
  void normalize(std::string& s) const override {
    if (map_.empty()) return;
    std::string out;
    map_.apply(s, out);
    s = std::move(out);
  }

 private:
  CharsMap map_;
};

// libsentencepiece's Normalizer::Normalize: the character map, leading / trailing spaces
// removed and runs of spaces collapsed (remove_extra_whitespaces), a space prepended
// (add_dummy_prefix), spaces written as U+2581 (escape_whitespaces). Only U+0020 after the map
// counts as a space, as in SentencePiece.
class SentencePieceNormalizer final : public Normalizer {
 public:
  SentencePieceNormalizer(CharsMap map, bool dummy_prefix, bool remove_extra, bool escape)
      : map_(std::move(map)),
        dummy_prefix_(dummy_prefix),
        remove_extra_(remove_extra),
        escape_(escape) {}

  void normalize(std::string& s) const override {
    const std::string_view space = escape_ ? std::string_view("\u2581") : std::string_view(" ");
    std::string_view in = s;
    if (remove_extra_) {
      while (!in.empty()) {
        const auto [piece, consumed] = map_.prefix(in);
        if (piece != " ") break;
        in.remove_prefix(consumed);
      }
    }
    if (in.empty()) {
      s.clear();
      return;
    }
    std::string out;
    out.reserve(in.size() + 8);
    if (dummy_prefix_) out.append(space);
    bool prev_space = remove_extra_;
    while (!in.empty()) {
      auto [piece, consumed] = map_.prefix(in);
      if (prev_space) {
        while (!piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
      }
      if (!piece.empty()) {
        for (const char c : piece) {
          if (c == ' ') {
            out.append(space);
          } else {
            out.push_back(c);
          }
        }
        prev_space = piece.back() == ' ';
      }
      in.remove_prefix(consumed);
      if (!remove_extra_) prev_space = false;
    }
    if (remove_extra_) {
      while (out.size() >= space.size() &&
             std::string_view(out).substr(out.size() - space.size()) == space) {
        out.resize(out.size() - space.size());
      }
    }
    s = std::move(out);
  }

 private:
  CharsMap map_;
  bool dummy_prefix_, remove_extra_, escape_;
};

}  // namespace

NormalizerPtr make_precompiled_normalizer(CharsMap map) {
  return std::make_unique<PrecompiledNormalizer>(std::move(map));
}

NormalizerPtr make_sentencepiece_normalizer(CharsMap map, bool add_dummy_prefix,
                                            bool remove_extra_whitespaces,
                                            bool escape_whitespaces) {
  return std::make_unique<SentencePieceNormalizer>(std::move(map), add_dummy_prefix,
                                                   remove_extra_whitespaces, escape_whitespaces);
}

}  // namespace hearth::tokenize::detail
