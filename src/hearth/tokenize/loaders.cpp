// Building a Tokenizer from tokenizer.json, vocab.txt or a GGUF vocabulary.
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/hf_folder.hpp"  // read_json_file
#include "hearth/tokenize/impl.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::tokenize {
namespace {

using nlohmann::json;
using namespace detail;

[[noreturn]] void unsupported(const std::string& what, const std::string& type) {
  throw Error(ErrorCode::kUnsupported, what + " type '" + type + "' is not supported",
              {.key = what});
}

[[noreturn]] void malformed(const std::string& message, const std::string& key = "") {
  throw Error(ErrorCode::kFormat, message, {.key = key});
}

const json& member(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) malformed(where + " lacks '" + key + "'", where);
  return j.at(key);
}

std::string str_or(const json& j, const char* key, std::string fallback) {
  if (j.is_object() && j.contains(key) && j.at(key).is_string())
    return j.at(key).get<std::string>();
  return fallback;
}

bool bool_or(const json& j, const char* key, bool fallback) {
  if (j.is_object() && j.contains(key) && j.at(key).is_boolean()) return j.at(key).get<bool>();
  return fallback;
}

std::string type_of(const json& j, const std::string& where) {
  const json& t = member(j, "type", where);
  if (!t.is_string()) malformed(where + " 'type' is not a string", where);
  return t.get<std::string>();
}

// A {"String": s} or {"Regex": r} pattern.
std::pair<std::string, bool> pattern_of(const json& j, const std::string& where) {
  const json& p = member(j, "pattern", where);
  if (p.is_object() && p.contains("String")) return {p.at("String").get<std::string>(), false};
  if (p.is_object() && p.contains("Regex")) return {p.at("Regex").get<std::string>(), true};
  malformed(where + " pattern is neither String nor Regex", where);
}

SplitBehavior behavior_of(const json& j, SplitBehavior fallback) {
  const std::string b = str_or(j, "behavior", "");
  if (b.empty()) return fallback;
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  unsupported("split behavior", b);
}

PrependScheme scheme_of(const json& j) {
  if (j.contains("prepend_scheme") && j.at("prepend_scheme").is_string()) {
    const std::string s = j.at("prepend_scheme").get<std::string>();
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    unsupported("Metaspace prepend_scheme", s);
  }
  return bool_or(j, "add_prefix_space", true) ? PrependScheme::kAlways : PrependScheme::kNever;
}

NormalizerPtr parse_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "normalizer");
  if (type == "BertNormalizer") {
    const bool lower = bool_or(j, "lowercase", true);
    bool strip = lower;
    if (j.contains("strip_accents") && j.at("strip_accents").is_boolean()) {
      strip = j.at("strip_accents").get<bool>();
    }
    return make_bert_normalizer(bool_or(j, "clean_text", true),
                                bool_or(j, "handle_chinese_chars", true), strip, lower);
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    return make_unicode_normalizer(type);
  }
  if (type == "Precompiled") {
    const json& map = member(j, "precompiled_charsmap", "Precompiled");
    if (map.is_null()) return make_precompiled_normalizer(CharsMap());
    if (!map.is_string()) {
      malformed("Precompiled precompiled_charsmap is not a base64 string",
                "normalizer.precompiled_charsmap");
    }
    const auto blob = base64_decode(map.get_ref<const std::string&>());
    if (!blob) {
      malformed("Precompiled precompiled_charsmap is not valid base64",
                "normalizer.precompiled_charsmap");
    }
    return make_precompiled_normalizer(CharsMap(*blob));
  }
  if (type == "Lowercase") return make_lowercase_normalizer();
  if (type == "StripAccents") return make_strip_accents_normalizer();
  if (type == "Prepend")
    return make_prepend_normalizer(member(j, "prepend", "Prepend").get<std::string>());
  if (type == "Replace") {
    auto [pattern, is_regex] = pattern_of(j, "Replace");
    return make_replace_normalizer(pattern, is_regex,
                                   member(j, "content", "Replace").get<std::string>());
  }
  if (type == "Strip")
    return make_strip_normalizer(bool_or(j, "strip_left", true), bool_or(j, "strip_right", true));
  if (type == "Sequence") {
    std::vector<NormalizerPtr> parts;
    for (const auto& p : member(j, "normalizers", "Sequence")) {
      if (auto n = parse_normalizer(p)) parts.push_back(std::move(n));
    }
    return make_sequence_normalizer(std::move(parts));
  }
  unsupported("normalizer", type);
}

PreTokenizerPtr parse_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "pre_tokenizer");
  if (type == "BertPreTokenizer") return make_bert_pre_tokenizer();
  if (type == "Whitespace") return make_whitespace_pre_tokenizer();
  if (type == "WhitespaceSplit") return make_whitespace_split_pre_tokenizer();
  if (type == "ByteLevel") {
    return make_byte_level_pre_tokenizer(bool_or(j, "add_prefix_space", true),
                                         bool_or(j, "use_regex", true));
  }
  if (type == "Metaspace") {
    return make_metaspace_pre_tokenizer(str_or(j, "replacement", "\u2581"), scheme_of(j),
                                        bool_or(j, "split", true));
  }
  if (type == "Split") {
    auto [pattern, is_regex] = pattern_of(j, "Split");
    return make_split_pre_tokenizer(pattern, is_regex, behavior_of(j, SplitBehavior::kIsolated),
                                    bool_or(j, "invert", false));
  }
  if (type == "Digits") return make_digits_pre_tokenizer(bool_or(j, "individual_digits", false));
  if (type == "Punctuation") {
    return make_punctuation_pre_tokenizer(behavior_of(j, SplitBehavior::kIsolated));
  }
  if (type == "Sequence") {
    std::vector<PreTokenizerPtr> parts;
    for (const auto& p : member(j, "pretokenizers", "Sequence")) {
      if (auto n = parse_pre_tokenizer(p)) parts.push_back(std::move(n));
    }
    return make_sequence_pre_tokenizer(std::move(parts));
  }
  unsupported("pre_tokenizer", type);
}

DecoderPtr parse_decoder(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = type_of(j, "decoder");
  if (type == "WordPiece")
    return make_wordpiece_decoder(str_or(j, "prefix", "##"), bool_or(j, "cleanup", true));
  if (type == "ByteLevel") return make_byte_level_decoder();
  if (type == "Metaspace")
    return make_metaspace_decoder(str_or(j, "replacement", "\u2581"), scheme_of(j));
  if (type == "ByteFallback") return make_byte_fallback_decoder();
  if (type == "Fuse") return make_fuse_decoder();
  if (type == "Strip") {
    const json& start = member(j, "start", "Strip");
    const json& stop = member(j, "stop", "Strip");
    if (!start.is_number_unsigned() || !stop.is_number_unsigned())
      malformed("Strip decoder start/stop are not counts", "decoder");
    return make_strip_decoder(member(j, "content", "Strip").get<std::string>(),
                              start.get<std::size_t>(), stop.get<std::size_t>());
  }
  if (type == "Replace") {
    auto [pattern, is_regex] = pattern_of(j, "Replace");
    return make_replace_decoder(pattern, is_regex,
                                member(j, "content", "Replace").get<std::string>());
  }
  if (type == "Sequence") {
    std::vector<DecoderPtr> parts;
    for (const auto& p : member(j, "decoders", "Sequence")) {
      if (auto d = parse_decoder(p)) parts.push_back(std::move(d));
    }
    return make_sequence_decoder(std::move(parts));
  }
  unsupported("decoder", type);
}

std::int32_t id_of(const Tokenizer::Impl& impl, const std::string& token,
                   const std::string& where) {
  if (const auto id = lookup(impl.added_by_content, token)) return *id;
  if (const auto id = impl.model->token_to_id(token)) return *id;
  malformed(where + " names token '" + token + "' that is not in the vocabulary", where);
}

std::optional<PostProcessor> parse_post(const json& j, const Tokenizer::Impl& impl) {
  if (j.is_null()) return std::nullopt;
  const std::string type = type_of(j, "post_processor");
  auto special = [&](const json& pair, const char* name) {
    const json& p = member(j, name, type);
    if (!p.is_array() || p.size() != 2 || !p[1].is_number_integer())
      malformed(type + " '" + name + "' is not [token, id]", "post_processor");
    (void)pair;
    return p[1].get<std::int32_t>();
  };
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const std::int32_t cls = special(j, "cls");
    const std::int32_t sep = special(j, "sep");
    const bool bert = type == "BertProcessing";
    PostProcessor pp;
    pp.single = {{false, 0, {cls}, 0}, {true, 0, {}, 0}, {false, 0, {sep}, 0}};
    if (bert) {
      pp.pair = {{false, 0, {cls}, 0},
                 {true, 0, {}, 0},
                 {false, 0, {sep}, 0},
                 {true, 1, {}, 1},
                 {false, 0, {sep}, 1}};
    } else {
      pp.pair = {{false, 0, {cls}, 0},
                 {true, 0, {}, 0},
                 {false, 0, {sep, sep}, 0},
                 {true, 1, {}, 0},
                 {false, 0, {sep}, 0}};
    }
    return pp;
  }
  if (type == "ByteLevel") return std::nullopt;
  if (type == "TemplateProcessing") {
    const json& specials = j.contains("special_tokens") ? j.at("special_tokens") : json::object();
    auto parse_template = [&](const char* name) {
      std::vector<TemplatePiece> out;
      for (const auto& item : member(j, name, "TemplateProcessing")) {
        TemplatePiece p;
        if (item.contains("Sequence")) {
          const json& s = item.at("Sequence");
          p.is_sequence = true;
          p.sequence = member(s, "id", "TemplateProcessing").get<std::string>() == "B" ? 1 : 0;
          p.type_id = member(s, "type_id", "TemplateProcessing").get<std::int32_t>();
        } else if (item.contains("SpecialToken")) {
          const json& s = item.at("SpecialToken");
          const std::string id = member(s, "id", "TemplateProcessing").get<std::string>();
          p.type_id = member(s, "type_id", "TemplateProcessing").get<std::int32_t>();
          if (specials.contains(id)) {
            for (const auto& v : member(specials.at(id), "ids", "TemplateProcessing")) {
              p.ids.push_back(v.get<std::int32_t>());
            }
          } else {
            p.ids.push_back(id_of(impl, id, "TemplateProcessing"));
          }
        } else {
          malformed("TemplateProcessing item is neither Sequence nor SpecialToken",
                    "post_processor");
        }
        out.push_back(std::move(p));
      }
      return out;
    };
    PostProcessor pp;
    pp.single = parse_template("single");
    pp.pair = parse_template("pair");
    return pp;
  }
  if (type == "Sequence") {
    std::optional<PostProcessor> result;
    for (const auto& p : member(j, "processors", "Sequence")) {
      if (auto pp = parse_post(p, impl)) {
        if (result) unsupported("post_processor", "Sequence with two templates");
        result = std::move(pp);
      }
    }
    return result;
  }
  unsupported("post_processor", type);
}

std::vector<std::string> vocab_from_object(const json& v, const std::string& where) {
  if (!v.is_object()) malformed(where + " vocab is not an object", "model.vocab");
  std::vector<std::string> vocab;
  // Ids index a table: bound them by the number of entries (plus slack for holes) so that a
  // hostile file cannot ask for a huge allocation.
  const std::uint64_t limit = v.size() + 65536;
  for (const auto& [token, id] : v.items()) {
    if (!id.is_number_unsigned() || id.get<std::uint64_t>() >= limit) {
      malformed(where + " vocab id for '" + token + "' is not an integer in [0, entries + 65536)",
                "model.vocab");
    }
    const auto i = id.get<std::size_t>();
    if (vocab.size() <= i) vocab.resize(i + 1);
    vocab[i] = token;
  }
  return vocab;
}

ModelPtr parse_model(const json& j) {
  const std::string type =
      j.contains("type") ? type_of(j, "model") : (j.contains("merges") ? "BPE" : "WordPiece");
  if (type == "WordPiece") {
    WordPieceConfig c;
    c.vocab = vocab_from_object(member(j, "vocab", "WordPiece"), "WordPiece");
    c.unk_token = str_or(j, "unk_token", "[UNK]");
    c.prefix = str_or(j, "continuing_subword_prefix", "##");
    if (j.contains("max_input_chars_per_word") &&
        j.at("max_input_chars_per_word").is_number_unsigned()) {
      c.max_input_chars_per_word = j.at("max_input_chars_per_word").get<std::size_t>();
    }
    return make_wordpiece(std::move(c));
  }
  if (type == "BPE") {
    BpeConfig c;
    c.vocab = vocab_from_object(member(j, "vocab", "BPE"), "BPE");
    for (const auto& m : member(j, "merges", "BPE")) {
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const std::size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          malformed("BPE merge '" + s + "' is not two tokens separated by one space",
                    "model.merges");
        }
        c.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        c.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        malformed("BPE merge is neither \"a b\" nor [a, b]", "model.merges");
      }
    }
    if (j.contains("unk_token") && j.at("unk_token").is_string())
      c.unk_token = j.at("unk_token").get<std::string>();
    c.prefix = str_or(j, "continuing_subword_prefix", "");
    c.suffix = str_or(j, "end_of_word_suffix", "");
    c.fuse_unk = bool_or(j, "fuse_unk", false);
    c.byte_fallback = bool_or(j, "byte_fallback", false);
    c.ignore_merges = bool_or(j, "ignore_merges", false);
    if (j.contains("dropout") && !j.at("dropout").is_null()) unsupported("BPE option", "dropout");
    return make_bpe(std::move(c));
  }
  if (type == "Unigram") {
    UnigramConfig c;
    for (const auto& item : member(j, "vocab", "Unigram")) {
      if (!item.is_array() || item.size() != 2 || !item[0].is_string() || !item[1].is_number()) {
        malformed("Unigram vocab entry is not [piece, score]", "model.vocab");
      }
      c.vocab.push_back(item[0].get<std::string>());
      c.scores.push_back(item[1].get<double>());
    }
    if (j.contains("unk_id") && j.at("unk_id").is_number_unsigned()) {
      const auto id = j.at("unk_id").get<std::size_t>();
      if (id >= c.vocab.size()) malformed("Unigram unk_id is out of range", "model.unk_id");
      c.unk_id = static_cast<std::int32_t>(id);
    }
    c.byte_fallback = bool_or(j, "byte_fallback", false);
    return make_unigram(std::move(c));
  }
  unsupported("model", type);
}

std::shared_ptr<Tokenizer::Impl> impl_from_json(const json& root) {
  if (!root.is_object()) malformed("tokenizer.json is not a JSON object");
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->model = parse_model(member(root, "model", "tokenizer.json"));
  const std::string type = type_of(
      root.at("model").contains("type") ? root.at("model") : json{{"type", "BPE"}}, "model");
  impl->model_type = type;
  if (root.contains("added_tokens")) {
    for (const auto& t : root.at("added_tokens")) {
      AddedToken a;
      a.id = member(t, "id", "added_tokens").get<std::int32_t>();
      if (a.id < 0) malformed("added token id is negative", "added_tokens");
      a.content = member(t, "content", "added_tokens").get<std::string>();
      a.special = bool_or(t, "special", false);
      a.single_word = bool_or(t, "single_word", false);
      a.lstrip = bool_or(t, "lstrip", false);
      a.rstrip = bool_or(t, "rstrip", false);
      a.normalized = bool_or(t, "normalized", !a.special);
      impl->added.push_back(std::move(a));
    }
  }
  impl->finish();
  impl->normalizer = parse_normalizer(root.value("normalizer", json()));
  impl->pre_tokenizer = parse_pre_tokenizer(root.value("pre_tokenizer", json()));
  impl->post = parse_post(root.value("post_processor", json()), *impl);
  impl->decoder = parse_decoder(root.value("decoder", json()));
  return impl;
}

// ---- vocab.txt (BERT) ------------------------------------------------------------------------

std::shared_ptr<Tokenizer::Impl> impl_from_vocab_txt(const std::filesystem::path& vocab_path,
                                                     const json& config) {
  const std::string text = formats::read_text_file(vocab_path);
  WordPieceConfig c;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    c.vocab.push_back(std::move(line));
    start = end + 1;
  }
  if (c.vocab.empty()) malformed("vocab.txt is empty");
  const bool lower = bool_or(config, "do_lower_case", true);
  bool strip = lower;
  if (config.contains("strip_accents") && config.at("strip_accents").is_boolean())
    strip = config.at("strip_accents").get<bool>();
  auto impl = std::make_shared<Tokenizer::Impl>();
  c.unk_token = str_or(config, "unk_token", "[UNK]");
  impl->model = make_wordpiece(std::move(c));
  impl->model_type = "WordPiece";
  for (const char* key : {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"}) {
    static const std::unordered_map<std::string, std::string> kDefaults = {
        {"pad_token", "[PAD]"},
        {"unk_token", "[UNK]"},
        {"cls_token", "[CLS]"},
        {"sep_token", "[SEP]"},
        {"mask_token", "[MASK]"}};
    const std::string token = str_or(config, key, kDefaults.at(key));
    if (const auto id = impl->model->token_to_id(token)) {
      impl->added.push_back({*id, token, true, false, false, false, false});
    }
  }
  std::sort(impl->added.begin(), impl->added.end(),
            [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  impl->finish();
  impl->normalizer =
      make_bert_normalizer(true, bool_or(config, "tokenize_chinese_chars", true), strip, lower);
  impl->pre_tokenizer = make_bert_pre_tokenizer();
  const std::int32_t cls = id_of(*impl, str_or(config, "cls_token", "[CLS]"), "vocab.txt");
  const std::int32_t sep = id_of(*impl, str_or(config, "sep_token", "[SEP]"), "vocab.txt");
  PostProcessor pp;
  pp.single = {{false, 0, {cls}, 0}, {true, 0, {}, 0}, {false, 0, {sep}, 0}};
  pp.pair = {{false, 0, {cls}, 0},
             {true, 0, {}, 0},
             {false, 0, {sep}, 0},
             {true, 1, {}, 1},
             {false, 0, {sep}, 1}};
  impl->post = std::move(pp);
  impl->decoder = make_wordpiece_decoder("##", true);
  return impl;
}

// ---- vocab.json + merges.txt (CLIP) ----------------------------------------------------------

// A CLIPTokenizer folder without tokenizer.json (FLUX's and Stable Diffusion's tokenizer/) becomes
// the pipeline Hugging Face's converter (CLIPConverter) writes for it: NFC, whitespace runs to one
// space, lowercase; CLIP's split pattern (letters, single digits, other runs; whitespace removed)
// then byte-level; BPE with "</w>" word ends; <|startoftext|> A <|endoftext|>; decoding as
// CLIPTokenizerFast does it (byte-level, each "</w>" a space, the last one stripped).
json clip_tokenizer_json(const std::filesystem::path& dir, const json& config) {
  const std::string cls = str_or(config, "tokenizer_class", "");
  if (cls != "CLIPTokenizer" && cls != "CLIPTokenizerFast") {
    throw Error(
        ErrorCode::kUnsupported,
        "vocab.json/merges.txt are supported for tokenizer_class CLIPTokenizer only, not '" + cls +
            "'",
        {.file = (dir / "tokenizer_config.json").string(), .key = "tokenizer_class"});
  }
  const json vocab = formats::read_json_file(dir / "vocab.json");
  const std::string text = formats::read_text_file(dir / "merges.txt");
  json merges = json::array();
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    merges.push_back(std::move(line));
  }
  auto token_text = [&](const char* key, const char* fallback) {
    if (config.contains(key) && config.at(key).is_object())
      return str_or(config.at(key), "content", fallback);
    return str_or(config, key, fallback);
  };
  const std::string bos = token_text("bos_token", "<|startoftext|>");
  const std::string eos = token_text("eos_token", "<|endoftext|>");
  const std::string unk = token_text("unk_token", "<|endoftext|>");
  auto id = [&](const std::string& token) {
    if (!vocab.is_object() || !vocab.contains(token) || !vocab.at(token).is_number_unsigned()) {
      throw Error(ErrorCode::kFormat, "special token '" + token + "' is not in the vocabulary",
                  {.file = (dir / "vocab.json").string()});
    }
    return vocab.at(token).get<std::int64_t>();
  };
  json added = json::array();
  if (config.contains("added_tokens_decoder") && config.at("added_tokens_decoder").is_object()) {
    for (const auto& [key, t] : config.at("added_tokens_decoder").items()) {
      std::int64_t token_id = -1;
      const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), token_id);
      if (ec != std::errc() || end != key.data() + key.size() || token_id < 0 || !t.is_object()) {
        throw Error(
            ErrorCode::kFormat, "added_tokens_decoder entry '" + key + "' is malformed",
            {.file = (dir / "tokenizer_config.json").string(), .key = "added_tokens_decoder"});
      }
      json a = t;
      a["id"] = token_id;
      added.push_back(std::move(a));
    }
  } else {
    added.push_back({{"id", id(bos)}, {"content", bos}, {"special", true}, {"normalized", true}});
    added.push_back({{"id", id(eos)}, {"content", eos}, {"special", true}, {"normalized", false}});
  }
  return {{"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "NFC"}},
              {{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}},
              {{"type", "Lowercase"}}}}}},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"},
               {"pattern",
                {{"Regex", "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"}}},
               {"behavior", "Removed"},
               {"invert", true}},
              {{"type", "ByteLevel"},
               {"add_prefix_space", false},
               {"trim_offsets", true},
               {"use_regex", true}}}}}},
          {"post_processor",
           {{"type", "RobertaProcessing"},
            {"sep", {eos, id(eos)}},
            {"cls", {bos, id(bos)}},
            {"trim_offsets", false},
            {"add_prefix_space", false}}},
          // CLIPTokenizerFast wraps the ByteLevel decoder: "</w>" becomes a space, then strip().
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "ByteLevel"}},
              {{"type", "Replace"}, {"pattern", {{"String", "</w>"}}}, {"content", " "}},
              {{"type", "Strip"}, {"content", " "}, {"start", 0u}, {"stop", 1u}}}}}},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges", merges},
            {"continuing_subword_prefix", ""},
            {"end_of_word_suffix", "</w>"},
            {"fuse_unk", false},
            {"unk_token", unk}}}};
}

// ---- GGUF ------------------------------------------------------------------------------------

enum GgufTokenType {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

std::optional<std::int32_t> gguf_id(const formats::GGUFFile& f, const char* key, std::size_t n) {
  const formats::GGUFValue* v = f.find(key);
  if (!v) return std::nullopt;
  const auto i = v->as_int();
  if (!i || *i < 0 || static_cast<std::size_t>(*i) >= n) {
    throw Error(ErrorCode::kFormat, "token id is out of range", {.file = f.source(), .key = key});
  }
  return static_cast<std::int32_t>(*i);
}

bool gguf_bool(const formats::GGUFFile& f, const char* key, bool fallback) {
  const formats::GGUFValue* v = f.find(key);
  if (!v) return fallback;
  if (const bool* b = v->get_if<bool>()) return *b;
  throw Error(ErrorCode::kFormat, "expected a bool", {.file = f.source(), .key = key});
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& source) {
  try {
    const json root = json::parse(json_text);
    return Tokenizer(impl_from_json(root));
  } catch (const json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("malformed tokenizer JSON: ") + e.what(),
                {.file = source});
  } catch (const Error& e) {
    if (!e.where().file.empty()) throw;
    throw e.with_file(source);
  }
}

Tokenizer Tokenizer::from_gguf(const formats::GGUFFile& f) {
  try {
    const std::string model = f.get_string("tokenizer.ggml.model");
    const formats::GGUFArray& tokens_array = f.get_array("tokenizer.ggml.tokens");
    const auto* tokens = tokens_array.get_if<std::string>();
    if (!tokens || tokens->empty()) {
      throw Error(ErrorCode::kFormat, "is not a non-empty string array",
                  {.key = "tokenizer.ggml.tokens"});
    }
    const std::size_t n = tokens->size();
    std::vector<std::int32_t> types(n, kNormal);
    if (const auto* v = f.find("tokenizer.ggml.token_type")) {
      const auto* arr = v->as_array() ? v->as_array()->get_if<std::int32_t>() : nullptr;
      if (!arr || arr->size() != n) {
        throw Error(ErrorCode::kFormat, "is not an i32 array with one entry per token",
                    {.key = "tokenizer.ggml.token_type"});
      }
      types = *arr;
    }
    auto impl = std::make_shared<Tokenizer::Impl>();
    for (std::size_t i = 0; i < n; ++i) {
      const int t = types[i];
      if (t == kControl || t == kUnknown || t == kUserDefined) {
        impl->added.push_back({static_cast<std::int32_t>(i), (*tokens)[i], t != kUserDefined, false,
                               false, false, false});
      }
    }
    const bool add_bos = gguf_bool(f, "tokenizer.ggml.add_bos_token", model == "llama");
    // T5 appends </s> (llama.cpp's default for its UGM vocabularies).
    const bool add_eos = gguf_bool(f, "tokenizer.ggml.add_eos_token", model == "t5");
    const auto bos = gguf_id(f, "tokenizer.ggml.bos_token_id", n);
    const auto eos = gguf_id(f, "tokenizer.ggml.eos_token_id", n);
    PostProcessor pp;
    pp.single.push_back({true, 0, {}, 0});
    pp.pair = {{true, 0, {}, 0}};
    if (model == "bert") {
      WordPieceConfig c;
      c.vocab.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        // llama.cpp's converter stores "##piece" as "piece" and a word-initial "piece" as
        // "\u2581piece"; bracketed specials stay as they are.
        const std::string& t = (*tokens)[i];
        static const std::string kPhantom = "\u2581";
        if (t.size() >= 2 && t.front() == '[' && t.back() == ']') {
          c.vocab.push_back(t);
        } else if (t.compare(0, kPhantom.size(), kPhantom) == 0) {
          c.vocab.push_back(t.substr(kPhantom.size()));
        } else {
          c.vocab.push_back("##" + t);
        }
      }
      const auto unk = gguf_id(f, "tokenizer.ggml.unknown_token_id", n).value_or(100);
      c.unk_token = c.vocab[static_cast<std::size_t>(unk)];
      impl->model = make_wordpiece(std::move(c));
      impl->model_type = "WordPiece";
      impl->normalizer = make_bert_normalizer(true, true, true, true);
      impl->pre_tokenizer = make_bert_pre_tokenizer();
      impl->decoder = make_wordpiece_decoder("##", true);
      const auto cls = gguf_id(f, "tokenizer.ggml.cls_token_id", n);
      const auto sep = gguf_id(f, "tokenizer.ggml.seperator_token_id", n);
      if (!cls || !sep) {
        throw Error(ErrorCode::kFormat,
                    "a bert vocabulary needs cls_token_id and seperator_token_id",
                    {.key = "tokenizer.ggml"});
      }
      pp.single = {{false, 0, {*cls}, 0}, {true, 0, {}, 0}, {false, 0, {*sep}, 0}};
      pp.pair = {{false, 0, {*cls}, 0},
                 {true, 0, {}, 0},
                 {false, 0, {*sep}, 0},
                 {true, 1, {}, 1},
                 {false, 0, {*sep}, 1}};
    } else if (model == "llama") {
      const auto* sv = f.find("tokenizer.ggml.scores");
      const auto* scores = sv && sv->as_array() ? sv->as_array()->get_if<float>() : nullptr;
      if (!scores || scores->size() != n) {
        throw Error(ErrorCode::kFormat, "is not an f32 array with one entry per token",
                    {.key = "tokenizer.ggml.scores"});
      }
      SpmConfig c;
      c.vocab = *tokens;
      c.scores = *scores;
      c.unk_id = gguf_id(f, "tokenizer.ggml.unknown_token_id", n).value_or(0);
      impl->model = make_spm_bpe(std::move(c));
      impl->model_type = "SentencePiece-BPE";
      std::vector<NormalizerPtr> norm;
      if (gguf_bool(f, "tokenizer.ggml.add_space_prefix", true))
        norm.push_back(make_prepend_normalizer("\u2581"));
      norm.push_back(make_replace_normalizer(" ", false, "\u2581"));
      impl->normalizer = make_sequence_normalizer(std::move(norm));
      std::vector<DecoderPtr> dec;
      dec.push_back(make_replace_decoder("\u2581", false, " "));
      dec.push_back(make_byte_fallback_decoder());
      dec.push_back(make_fuse_decoder());
      dec.push_back(make_strip_decoder(" ", 1, 0));
      impl->decoder = make_sequence_decoder(std::move(dec));
      if (add_bos && bos) {
        pp.single.insert(pp.single.begin(), TemplatePiece{false, 0, {*bos}, 0});
        pp.pair = {
            {false, 0, {*bos}, 0}, {true, 0, {}, 0}, {false, 0, {*bos}, 1}, {true, 1, {}, 1}};
      }
      if (add_eos && eos) {
        pp.single.push_back({false, 0, {*eos}, 0});
        pp.pair.push_back({false, 0, {*eos}, 1});
      }
    } else if (model == "t5") {
      // SentencePiece Unigram (T5, XLM-R, ...): llama.cpp's convert script writes the pieces,
      // their scores and types and the normalizer's precompiled_charsmap as a u8 (or i8) array.
      const auto* sv = f.find("tokenizer.ggml.scores");
      const auto* scores = sv && sv->as_array() ? sv->as_array()->get_if<float>() : nullptr;
      if (!scores || scores->size() != n) {
        throw Error(ErrorCode::kFormat, "is not an f32 array with one entry per token",
                    {.key = "tokenizer.ggml.scores"});
      }
      UnigramConfig c;
      c.vocab = *tokens;
      c.scores.assign(scores->begin(), scores->end());
      c.unmatchable.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const int t = types[i];
        c.unmatchable[i] = t == kControl || t == kUnknown || t == kUnused;
        if (t == kUnknown && !c.unk_id) c.unk_id = static_cast<std::int32_t>(i);
        if (t == kByte) c.byte_fallback = true;
      }
      if (const auto unk = gguf_id(f, "tokenizer.ggml.unknown_token_id", n)) c.unk_id = *unk;
      std::string blob;
      if (const auto* v = f.find("tokenizer.ggml.precompiled_charsmap")) {
        const formats::GGUFArray* arr = v->as_array();
        if (const auto* u8 = arr ? arr->get_if<std::uint8_t>() : nullptr) {
          blob.assign(u8->begin(), u8->end());
        } else if (const auto* i8 = arr ? arr->get_if<std::int8_t>() : nullptr) {
          for (const std::int8_t b : *i8) blob.push_back(static_cast<char>(b));
        } else {
          throw Error(ErrorCode::kFormat, "is not a u8 or i8 array",
                      {.key = "tokenizer.ggml.precompiled_charsmap"});
        }
      }
      CharsMap map;
      try {
        map = CharsMap(blob);
      } catch (const Error& e) {
        throw Error(e.code(), e.message(), {.key = "tokenizer.ggml.precompiled_charsmap"});
      }
      // A split before each U+2581 gives SentencePiece's result when no piece holds U+2581
      // after its first character and unknown characters cannot run across one.
      bool split = !c.unk_id || [&] {
        for (std::size_t i = 0; i < n; ++i) {
          if (!c.unmatchable[i] && (*tokens)[i] == "\u2581") return true;
        }
        return false;
      }();
      for (std::size_t i = 0; i < n && split; ++i) {
        if ((*tokens)[i].find("\u2581", 1) != std::string::npos) split = false;
      }
      const bool dummy_prefix = gguf_bool(f, "tokenizer.ggml.add_space_prefix", true);
      impl->normalizer = make_sentencepiece_normalizer(
          std::move(map), dummy_prefix,
          gguf_bool(f, "tokenizer.ggml.remove_extra_whitespaces", true), true);
      impl->pre_tokenizer = make_metaspace_pre_tokenizer("\u2581", PrependScheme::kNever, split);
      impl->model = make_unigram(std::move(c));
      impl->model_type = "Unigram";
      std::vector<DecoderPtr> dec;
      dec.push_back(make_replace_decoder("\u2581", false, " "));
      dec.push_back(make_byte_fallback_decoder());
      dec.push_back(make_fuse_decoder());
      if (dummy_prefix) dec.push_back(make_strip_decoder(" ", 1, 0));
      impl->decoder = make_sequence_decoder(std::move(dec));
      if (add_bos && bos) pp.single.insert(pp.single.begin(), TemplatePiece{false, 0, {*bos}, 0});
      pp.pair = pp.single;
      for (auto& piece : pp.pair) piece.type_id = 0;
      if (add_eos && eos) {
        pp.single.push_back({false, 0, {*eos}, 0});
        pp.pair.push_back({false, 0, {*eos}, 0});
      }
      const std::size_t first_len = pp.pair.size();
      for (std::size_t k = 0; k < first_len; ++k) {
        TemplatePiece piece = pp.pair[k];
        if (piece.is_sequence) piece.sequence = 1;
        pp.pair.push_back(piece);
      }
    } else if (model == "gpt2") {
      const auto& merges_array = f.get_array("tokenizer.ggml.merges");
      const auto* merges = merges_array.get_if<std::string>();
      if (!merges)
        throw Error(ErrorCode::kFormat, "is not a string array", {.key = "tokenizer.ggml.merges"});
      BpeConfig c;
      c.vocab = *tokens;
      for (const auto& m : *merges) {
        const std::size_t sp = m.find(' ', 1);
        if (sp == std::string::npos) {
          throw Error(ErrorCode::kFormat, "merge '" + m + "' has no space",
                      {.key = "tokenizer.ggml.merges"});
        }
        c.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
      }
      impl->model = make_bpe(std::move(c));
      impl->model_type = "BPE";
      std::string pre = "default";
      if (const auto* p = f.find("tokenizer.ggml.pre"); p && p->as_string()) pre = *p->as_string();
      if (pre == "gpt-2" || pre == "default") {
        impl->pre_tokenizer = make_byte_level_pre_tokenizer(false, true);
      } else if (pre == "llama-bpe" || pre == "llama3" || pre == "qwen2") {
        const char* pattern =
            pre == "qwen2"
                ? R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"
                : R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
        std::vector<PreTokenizerPtr> parts;
        parts.push_back(make_split_pre_tokenizer(pattern, true, SplitBehavior::kIsolated, false));
        parts.push_back(make_byte_level_pre_tokenizer(false, false));
        impl->pre_tokenizer = make_sequence_pre_tokenizer(std::move(parts));
        if (pre == "qwen2") impl->normalizer = make_unicode_normalizer("NFC");
      } else {
        throw Error(ErrorCode::kUnsupported, "pre-tokenizer type '" + pre + "' is not supported",
                    {.key = "tokenizer.ggml.pre"});
      }
      impl->decoder = make_byte_level_decoder();
      if (add_bos && bos) {
        pp.single.insert(pp.single.begin(), TemplatePiece{false, 0, {*bos}, 0});
        pp.pair.insert(pp.pair.begin(), TemplatePiece{false, 0, {*bos}, 0});
      }
      pp.pair.push_back({true, 1, {}, 1});
    } else {
      throw Error(ErrorCode::kUnsupported, "tokenizer model type '" + model + "' is not supported",
                  {.key = "tokenizer.ggml.model"});
    }
    if (pp.pair.size() == 1) pp.pair.push_back({true, 1, {}, 1});
    impl->post = std::move(pp);
    impl->finish();
    return Tokenizer(impl);
  } catch (const Error& e) {
    if (!e.where().file.empty()) throw;
    throw e.with_file(f.source());
  }
}

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // Only the tokenizer files matter here (ModelFolder would also validate weights and
    // sentence-transformers modules).
    auto has = [&](const char* name) { return std::filesystem::is_regular_file(path / name, ec); };
    if (has("tokenizer.json")) return load(path / "tokenizer.json");
    if (has("vocab.txt")) return load(path / "vocab.txt");
    if (has("vocab.json") && has("merges.txt") && has("tokenizer_config.json")) {
      const json config = formats::read_json_file(path / "tokenizer_config.json");
      try {
        return Tokenizer(impl_from_json(clip_tokenizer_json(path, config)));
      } catch (const Error& e) {
        throw e.where().file.empty() ? e.with_file(path.string()) : e;
      }
    }
    if (has("vocab.json") || has("tokenizer.model")) {
      throw Error(ErrorCode::kUnsupported,
                  "has no tokenizer.json or vocab.txt; tokenizer.model, and vocab.json without "
                  "merges.txt and a CLIPTokenizer tokenizer_config.json, are not supported",
                  {.file = path.string()});
    }
    throw Error(ErrorCode::kNotFound, "no tokenizer files (tokenizer.json, vocab.txt)",
                {.file = path.string()});
  }
  const std::string name = path.filename().string();
  // A GGUF file is known by its magic, whatever its name.
  char magic[4] = {};
  std::ifstream(path, std::ios::binary).read(magic, sizeof magic);
  if (std::string_view(magic, sizeof magic) == "GGUF") {
    return from_gguf(formats::GGUFFile::open(path));
  }
  if (name == "vocab.txt") {
    json config = json::object();
    const auto cfg = path.parent_path() / "tokenizer_config.json";
    if (std::filesystem::exists(cfg, ec)) config = formats::read_json_file(cfg);
    try {
      return Tokenizer(impl_from_vocab_txt(path, config));
    } catch (const Error& e) {
      throw e.where().file.empty() ? e.with_file(path.string()) : e;
    }
  }
  return from_json(formats::read_text_file(path), path.string());
}

}  // namespace hearth::tokenize
