#include "hearth/tokenize/tokenizer.hpp"

#include <algorithm>
#include <cstring>

#include "hearth/core/error.hpp"
#include "hearth/tokenize/impl.hpp"
#include "hearth/tokenize/unicode.hpp"

namespace hearth::tokenize {
namespace {

bool is_word_char(char32_t c) {
  return unicode::is_letter(c) || unicode::is_number(c);
}

char32_t last_char(std::string_view s) {
  std::size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return unicode::next(s, start);
}

struct Segment {
  std::string text;  // for an added token: empty
  std::int32_t id = -1;
  bool at_start = false;
};

}  // namespace

void AddedMatcher::add(const std::string& content, std::size_t index) {
  if (content.empty()) return;
  std::uint32_t node = 0;
  if (!first_byte_[static_cast<unsigned char>(content[0])]) first_bytes_.push_back(content[0]);
  first_byte_[static_cast<unsigned char>(content[0])] = true;
  for (char ch : content) {
    const std::uint64_t key =
        (static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(ch);
    const auto it = edges_.find(key);
    if (it != edges_.end()) {
      node = it->second;
    } else {
      nodes_.push_back(Node{});
      const auto created = static_cast<std::uint32_t>(nodes_.size() - 1);
      edges_.emplace(key, created);
      node = created;
    }
  }
  if (nodes_[node].token == static_cast<std::size_t>(-1)) nodes_[node].token = index;
}

std::size_t AddedMatcher::next_start(std::string_view s, std::size_t pos) const {
  if (first_bytes_.size() == 1) {  // e.g. "[" for BERT's specials, "<" for most others
    const void* at =
        pos < s.size() ? std::memchr(s.data() + pos, first_bytes_[0], s.size() - pos) : nullptr;
    return at ? static_cast<std::size_t>(static_cast<const char*>(at) - s.data()) : s.size();
  }
  while (pos < s.size() && !first_byte_[static_cast<unsigned char>(s[pos])]) ++pos;
  return pos;
}

std::pair<std::size_t, std::size_t> AddedMatcher::longest(std::string_view s,
                                                          std::size_t pos) const {
  std::pair<std::size_t, std::size_t> best{0, 0};
  if (!first_byte_[static_cast<unsigned char>(s[pos])]) return best;
  std::uint32_t node = 0;
  for (std::size_t i = pos; i < s.size(); ++i) {
    const std::uint64_t key =
        (static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(s[i]);
    const auto it = edges_.find(key);
    if (it == edges_.end()) break;
    node = it->second;
    if (nodes_[node].token != static_cast<std::size_t>(-1))
      best = {i + 1 - pos, nodes_[node].token};
  }
  return best;
}

void Tokenizer::Impl::finish() {
  added_by_content.clear();
  added_by_id.clear();
  for (std::size_t i = 0; i < added.size(); ++i) {
    const AddedToken& t = added[i];
    added_by_content.emplace(t.content, t.id);
    added_by_id.emplace(t.id, i);
    const int norm = t.normalized ? 1 : 0;
    matchers[norm][0].add(t.content, i);
    if (!t.special) matchers[norm][1].add(t.content, i);
  }
}

namespace {

// Splits s on the added tokens of matcher, applying their lstrip / rstrip / single_word flags
// the way Hugging Face's AddedVocabulary does. Appends text pieces and token ids to out.
// With trusted set, a special token counts only where it lies inside one of those sorted,
// disjoint [begin, end) ranges of s.
void split_added(const AddedMatcher& m, const std::vector<AddedToken>& added, std::string_view s,
                 bool at_start, std::vector<Segment>& out,
                 const std::vector<std::pair<std::size_t, std::size_t>>* trusted = nullptr) {
  if (m.empty()) {
    out.push_back({std::string(s), -1, at_start});
    return;
  }
  std::size_t pos = 0, emitted = 0;
  while (true) {
    pos = m.next_start(s, pos);
    if (pos >= s.size()) break;
    const auto [len, index] = m.longest(s, pos);
    if (len == 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = added[index];
    std::size_t start = pos, stop = pos + len;
    if (trusted && t.special) {
      const auto it = std::upper_bound(
          trusted->begin(), trusted->end(), start,
          [](std::size_t p, const std::pair<std::size_t, std::size_t>& r) { return p < r.first; });
      if (it == trusted->begin() || std::prev(it)->second < stop) {
        ++pos;
        continue;
      }
    }
    if (t.single_word) {
      const bool start_ok = start == 0 || !is_word_char(last_char(s.substr(0, start)));
      std::size_t j = stop;
      const bool stop_ok = stop == s.size() || !is_word_char(unicode::next(s, j));
      if (!start_ok || !stop_ok) {
        pos = stop;
        continue;
      }
    }
    if (t.lstrip) {
      while (start > emitted) {
        std::size_t b = start - 1;
        while (b > emitted && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
        std::size_t j = b;
        if (!unicode::is_whitespace(unicode::next(s, j))) break;
        start = b;
      }
    }
    if (t.rstrip) {
      while (stop < s.size()) {
        std::size_t j = stop;
        if (!unicode::is_whitespace(unicode::next(s, j))) break;
        stop = j;
      }
    }
    if (start > emitted)
      out.push_back(
          {std::string(s.substr(emitted, start - emitted)), -1, at_start && emitted == 0});
    out.push_back({"", t.id, false});
    emitted = stop;
    pos = stop;
  }
  if (emitted < s.size())
    out.push_back({std::string(s.substr(emitted)), -1, at_start && emitted == 0});
}

}  // namespace

void Tokenizer::Impl::encode_sequence(std::string_view raw, bool parse_special,
                                      std::vector<std::int32_t>& out, bool at_start) const {
  std::string repaired;
  std::string_view text = raw;
  if (!unicode::is_valid(raw)) {
    repaired = unicode::sanitize(raw);
    text = repaired;
  }
  const int only_plain = parse_special ? 0 : 1;
  std::vector<Segment> first;
  split_added(matchers[0][only_plain], added, text, at_start, first);
  std::vector<std::string> pieces;
  std::vector<std::string_view> views;
  std::string mapped;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  for (auto& seg : first) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    if (normalizer) normalizer->normalize(seg.text);
    std::vector<Segment> second;
    split_added(matchers[1][only_plain], added, seg.text, seg.at_start, second);
    for (auto& part : second) {
      if (part.id >= 0) {
        out.push_back(part.id);
        continue;
      }
      views.clear();
      if (pre_tokenizer && pre_tokenizer->split_views(part.text, views)) {
        for (const auto v : views) model->tokenize(v, out);
        continue;
      }
      mapped.clear();
      spans.clear();
      if (pre_tokenizer && pre_tokenizer->split_mapped(part.text, mapped, spans)) {
        const std::string_view all = mapped;
        for (const auto& [b, e] : spans) model->tokenize(all.substr(b, e - b), out);
        continue;
      }
      pieces.clear();
      pieces.push_back(std::move(part.text));
      if (pre_tokenizer) pre_tokenizer->split(pieces, part.at_start);
      for (const auto& p : pieces) model->tokenize(p, out);
    }
  }
}

namespace {

void truncate_pair(std::vector<std::int32_t>& a, std::vector<std::int32_t>* b,
                   std::size_t max_length, TruncationStrategy strategy) {
  const std::size_t total = a.size() + (b ? b->size() : 0);
  if (total <= max_length) return;
  const std::size_t to_remove = total - max_length;
  switch (strategy) {
    case TruncationStrategy::kLongestFirst: {
      if (!b) {
        a.resize(max_length);
        return;
      }
      std::size_t n1 = a.size(), n2 = b->size();
      const bool swap = n1 > n2;
      if (swap) std::swap(n1, n2);
      if (n1 > max_length) {
        n2 = n1;
      } else {
        n2 = std::max(n1, max_length - n1);
      }
      if (n1 + n2 > max_length) {
        n1 = max_length / 2;
        n2 = n1 + max_length % 2;
      }
      if (swap) std::swap(n1, n2);
      a.resize(std::min(a.size(), n1));
      b->resize(std::min(b->size(), n2));
      return;
    }
    case TruncationStrategy::kOnlyFirst:
    case TruncationStrategy::kOnlySecond: {
      std::vector<std::int32_t>* target = &a;
      if (strategy == TruncationStrategy::kOnlySecond) {
        if (!b) {
          throw Error(ErrorCode::kInvalidArgument,
                      "truncation only_second needs a second sequence");
        }
        target = b;
      }
      if (target->size() <= to_remove) {
        throw Error(ErrorCode::kInvalidArgument,
                    "truncation: the sequence to truncate is too short to fit max_length " +
                        std::to_string(max_length));
      }
      target->resize(target->size() - to_remove);
      return;
    }
  }
}

}  // namespace

void Tokenizer::Impl::encode_segments(std::span<const TextSegment> segments,
                                      std::vector<std::int32_t>& out) const {
  std::string text;
  std::vector<std::pair<std::size_t, std::size_t>> trusted;
  for (const auto& seg : segments) {
    const std::size_t begin = text.size();
    if (unicode::is_valid(seg.text)) {
      text += seg.text;
    } else {
      text += unicode::sanitize(seg.text);
    }
    if (!seg.trusted || text.size() == begin) continue;
    if (!trusted.empty() && trusted.back().second == begin) {
      trusted.back().second = text.size();
    } else {
      trusted.push_back({begin, text.size()});
    }
  }
  std::vector<Segment> pieces;
  split_added(matchers[0][0], added, text, true, pieces, &trusted);
  for (const auto& piece : pieces) {
    if (piece.id >= 0) {
      out.push_back(piece.id);
    } else {
      encode_sequence(piece.text, false, out, piece.at_start);
    }
  }
}

Encoding Tokenizer::Impl::encode(std::string_view a, const std::string_view* b,
                                 const EncodeOptions& options) const {
  std::vector<std::int32_t> ids_a, ids_b;
  encode_sequence(a, options.parse_special, ids_a);
  if (b) encode_sequence(*b, options.parse_special, ids_b);
  return finish(std::move(ids_a), b ? &ids_b : nullptr, options);
}

Encoding Tokenizer::Impl::finish(std::vector<std::int32_t> ids_a, std::vector<std::int32_t>* ids_b,
                                 const EncodeOptions& options) const {
  const bool template_on = options.add_special_tokens && post.has_value();
  if (options.truncation.max_length > 0) {
    const std::size_t added_count = template_on ? post->added(ids_b != nullptr) : 0;
    if (options.truncation.max_length < added_count) {
      throw Error(ErrorCode::kInvalidArgument,
                  "truncation max_length " + std::to_string(options.truncation.max_length) +
                      " is smaller than the " + std::to_string(added_count) +
                      " special tokens the template adds");
    }
    truncate_pair(ids_a, ids_b, options.truncation.max_length - added_count,
                  options.truncation.strategy);
  }
  Encoding e;
  if (!template_on) {
    e.ids = ids_a;
    e.type_ids.assign(ids_a.size(), 0);
    if (ids_b) {
      e.ids.insert(e.ids.end(), ids_b->begin(), ids_b->end());
      e.type_ids.resize(e.ids.size(), 1);
    }
    return e;
  }
  for (const auto& piece : ids_b ? post->pair : post->single) {
    const std::vector<std::int32_t>& src =
        piece.is_sequence ? (piece.sequence == 0 ? ids_a : *ids_b) : piece.ids;
    e.ids.insert(e.ids.end(), src.begin(), src.end());
    e.type_ids.resize(e.ids.size(), piece.type_id);
  }
  return e;
}

const std::string* Tokenizer::Impl::token_text(std::int32_t id) const {
  const auto it = added_by_id.find(id);
  if (it != added_by_id.end()) return &added[it->second].content;
  return model->id_to_token(id);
}

bool Tokenizer::Impl::is_special(std::int32_t id) const {
  const auto it = added_by_id.find(id);
  return it != added_by_id.end() && added[it->second].special;
}

std::size_t Tokenizer::Impl::vocab_size() const {
  std::size_t n = model->vocab_size();
  for (const auto& t : added) n = std::max(n, static_cast<std::size_t>(t.id) + 1);
  return n;
}

std::string Tokenizer::Impl::decode(std::span<const std::int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const std::int32_t id : ids) {
    if (skip_special && is_special(id)) continue;
    const std::string* t = token_text(id);
    if (t) tokens.push_back(*t);
  }
  if (!decoder) {
    std::string out;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
    return out;
  }
  decoder->decode(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

Encoding Tokenizer::encode(std::string_view text, bool add_special_tokens,
                           const Truncation& truncation) const {
  return impl_->encode(text, nullptr, {add_special_tokens, true, truncation});
}

Encoding Tokenizer::encode_pair(std::string_view a, std::string_view b, bool add_special_tokens,
                                const Truncation& truncation) const {
  return impl_->encode(a, &b, {add_special_tokens, true, truncation});
}

Encoding Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  return impl_->encode(text, nullptr, options);
}

Encoding Tokenizer::encode_pair(std::string_view a, std::string_view b,
                                const EncodeOptions& options) const {
  return impl_->encode(a, &b, options);
}

Encoding Tokenizer::encode_segments(std::span<const TextSegment> segments, bool add_special_tokens,
                                    const Truncation& truncation) const {
  std::vector<std::int32_t> ids;
  impl_->encode_segments(segments, ids);
  return impl_->finish(std::move(ids), nullptr, {add_special_tokens, true, truncation});
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

std::size_t Tokenizer::vocab_size() const {
  return impl_->vocab_size();
}

std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto id = detail::lookup(impl_->added_by_content, token)) return id;
  return impl_->model->token_to_id(token);
}

std::string Tokenizer::id_to_token(std::int32_t id) const {
  const std::string* t = impl_->token_text(id);
  return t ? *t : std::string();
}

bool Tokenizer::is_special(std::int32_t id) const {
  return impl_->is_special(id);
}

std::string Tokenizer::model_type() const {
  return impl_->model_type;
}

StreamDecoder::StreamDecoder(Tokenizer tokenizer, bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(std::int32_t id) {
  ids_.push_back(id);
  const std::span<const std::int32_t> all(ids_);
  const std::string before =
      tokenizer_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tokenizer_.decode(all.subspan(prefix_), skip_special_);
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  if (now.size() <= before.size() || now.compare(0, before.size(), before) != 0 ||
      (now.size() >= 3 && std::string_view(now).substr(now.size() - 3) == kReplacement)) {
    return "";
  }
  std::string out = now.substr(before.size());
  prefix_ = read_;
  read_ = ids_.size();
  if (prefix_ > 0) {  // keep one token of context, drop the rest
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_));
    read_ -= prefix_;
    prefix_ = 0;
  }
  return out;
}

std::string StreamDecoder::flush() {
  const std::span<const std::int32_t> all(ids_);
  const std::string before =
      tokenizer_.decode(all.subspan(prefix_, read_ - prefix_), skip_special_);
  const std::string now = tokenizer_.decode(all.subspan(prefix_), skip_special_);
  std::string out;
  if (now.size() > before.size() && now.compare(0, before.size(), before) == 0) {
    out = now.substr(before.size());
  }
  ids_.clear();
  prefix_ = read_ = 0;
  return out;
}

}  // namespace hearth::tokenize
