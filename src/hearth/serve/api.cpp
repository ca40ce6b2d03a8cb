#include "hearth/serve/api.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "hearth/core/utf8.hpp"
#include "hearth/models/flux_pipeline.hpp"

namespace hearth::serve {
namespace {

using nlohmann::json;

// Thrown inside the parsers and turned into Parsed::error at their edge.
struct Refusal {
  ApiError error;
};

[[noreturn]] void refuse(std::string message, std::string param = "") {
  throw Refusal{bad_request(std::move(message), std::move(param))};
}

// The deepest nesting of arrays and objects in text (strings skipped), stopping past max.
std::size_t nesting_depth(std::string_view text, std::size_t max) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > max) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

json parse_object(std::string_view body, const Limits& limits) {
  if (body.empty()) refuse("the request body is empty; send a JSON object");
  if (nesting_depth(body, limits.max_depth) > limits.max_depth) {
    refuse("the JSON is nested more than " + std::to_string(limits.max_depth) + " levels deep");
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    refuse(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) refuse("the body must be a JSON object");
  return j;
}

// Field getters: absent or null gives the default; a wrong type is refused naming the field.
const json* field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string get_string(const json& j, const char* name, std::string fallback = "") {
  const json* v = field(j, name);
  if (v == nullptr) return fallback;
  if (!v->is_string()) refuse(std::string("'") + name + "' must be a string", name);
  return v->get<std::string>();
}

bool get_bool(const json& j, const char* name, bool fallback) {
  const json* v = field(j, name);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) refuse(std::string("'") + name + "' must be true or false", name);
  return v->get<bool>();
}

std::optional<double> get_number(const json& j, const char* name, double lo, double hi) {
  const json* v = field(j, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) refuse(std::string("'") + name + "' must be a number", name);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) {
    refuse(std::string("'") + name + "' must be between " + json(lo).dump() + " and " +
               json(hi).dump(),
           name);
  }
  return d;
}

std::optional<std::int64_t> get_int(const json& j, const char* name, std::int64_t lo,
                                    std::int64_t hi) {
  const json* v = field(j, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer() && !v->is_number_unsigned()) {
    refuse(std::string("'") + name + "' must be an integer", name);
  }
  if (v->is_number_unsigned() &&
      v->get<std::uint64_t>() >
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    refuse(std::string("'") + name + "' must be at most " + std::to_string(hi), name);
  }
  const std::int64_t n = v->get<std::int64_t>();
  if (n < lo || n > hi) {
    refuse(std::string("'") + name + "' must be between " + std::to_string(lo) + " and " +
               std::to_string(hi),
           name);
  }
  return n;
}

std::vector<std::string> get_stop(const json& j, const Limits& limits) {
  const json* v = field(j, "stop");
  if (v == nullptr) return {};
  std::vector<std::string> stop;
  const auto add = [&](const json& s) {
    if (!s.is_string()) refuse("'stop' must be a string or a list of strings", "stop");
    std::string text = s.get<std::string>();
    if (text.empty()) refuse("'stop' strings must not be empty", "stop");
    if (text.size() > limits.max_stop_bytes) {
      refuse("'stop' strings are at most " + std::to_string(limits.max_stop_bytes) + " bytes",
             "stop");
    }
    stop.push_back(std::move(text));
  };
  if (v->is_array()) {
    if (v->size() > limits.max_stop) {
      refuse("'stop' holds at most " + std::to_string(limits.max_stop) + " strings", "stop");
    }
    for (const json& s : *v) add(s);
  } else {
    add(*v);
  }
  return stop;
}

void refuse_unsupported(const json& j) {
  if (const auto n = get_int(j, "n", 1, std::numeric_limits<std::int64_t>::max()); n && *n != 1) {
    refuse("'n' must be 1: hearth-server generates one choice per request", "n");
  }
  if (get_bool(j, "logprobs", false)) {
    refuse("'logprobs' is not supported", "logprobs");
  }
  for (const char* name : {"tools", "functions"}) {
    if (const json* v = field(j, name); v != nullptr && !(v->is_array() && v->empty())) {
      refuse(std::string("'") + name + "' (tool calls) is not supported", name);
    }
  }
}

GenerationRequest parse_generation(const json& j, const Limits& limits) {
  GenerationRequest g;
  g.model = get_string(j, "model");
  refuse_unsupported(j);
  g.sampling.temperature = static_cast<float>(get_number(j, "temperature", 0.0, 2.0).value_or(1.0));
  g.sampling.top_p = static_cast<float>(get_number(j, "top_p", 0.0, 1.0).value_or(1.0));
  if (g.sampling.top_p <= 0.0f) refuse("'top_p' must be above 0", "top_p");
  g.sampling.top_k = static_cast<std::int32_t>(get_int(j, "top_k", 0, 1 << 20).value_or(0));
  g.sampling.min_p = static_cast<float>(get_number(j, "min_p", 0.0, 1.0).value_or(0.0));
  g.sampling.repetition_penalty =
      static_cast<float>(get_number(j, "repetition_penalty", 0.01, 100.0).value_or(1.0));
  // frequency_penalty / presence_penalty: OpenAI's range is checked; only 0 is honoured.
  for (const char* name : {"frequency_penalty", "presence_penalty"}) {
    if (const auto p = get_number(j, name, -2.0, 2.0); p && *p != 0.0) {
      refuse(std::string("'") + name + "' is not supported (only 0)", name);
    }
  }
  if (const auto seed = get_int(j, "seed", std::numeric_limits<std::int64_t>::min(),
                                std::numeric_limits<std::int64_t>::max())) {
    g.sampling.seed = static_cast<std::uint64_t>(*seed);
    g.seeded = true;
  }
  for (const char* name : {"max_completion_tokens", "max_tokens"}) {
    if (const auto m = get_int(j, name, 1, limits.max_tokens); m && !g.max_tokens) g.max_tokens = m;
  }
  g.stop = get_stop(j, limits);
  g.stream = get_bool(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) refuse("'stream_options' must be an object", "stream_options");
    g.include_usage = get_bool(*so, "include_usage", false);
  }
  return g;
}

std::string message_text(const json& content, std::size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) refuse("message content must be a string or a list of parts", param);
  std::string text;
  for (const json& part : content) {
    if (!part.is_object()) refuse("content parts must be objects", param);
    const std::string type = get_string(part, "type");
    if (type != "text") {
      refuse("content parts of type '" + type + "' are not supported (only 'text')", param);
    }
    const json* t = field(part, "text");
    if (t == nullptr || !t->is_string()) refuse("a text part needs a string 'text'", param);
    text += t->get<std::string>();
  }
  return text;
}

std::vector<std::string> string_list(const json& v, const char* name, const Limits& limits,
                                     bool allow_objects) {
  std::vector<std::string> out;
  const auto add = [&](const json& item) {
    if (item.is_string()) {
      out.push_back(item.get<std::string>());
    } else if (allow_objects && item.is_object() && field(item, "text") != nullptr &&
               item["text"].is_string()) {
      out.push_back(item["text"].get<std::string>());
    } else {
      refuse(std::string("'") + name + "' must be a string or a list of strings", name);
    }
  };
  if (v.is_array()) {
    if (v.empty()) refuse(std::string("'") + name + "' must not be empty", name);
    if (v.size() > limits.max_inputs) {
      refuse(std::string("'") + name + "' holds at most " + std::to_string(limits.max_inputs) +
                 " items",
             name);
    }
    for (const json& item : v) add(item);
  } else {
    add(v);
  }
  return out;
}

template <class T, class F>
Parsed<T> guarded(F&& f) {
  Parsed<T> p;
  try {
    p.value = f();
  } catch (const Refusal& r) {
    p.error = r.error;
  }
  return p;
}

std::string required_string(const json& j, const char* name) {
  const json* v = field(j, name);
  if (v == nullptr) refuse(std::string("'") + name + "' is required", name);
  if (!v->is_string()) refuse(std::string("'") + name + "' must be a string", name);
  return v->get<std::string>();
}

}  // namespace

nlohmann::json error_json(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return {{"error", err}};
}

std::string error_body(const ApiError& e) {
  return error_json(e).dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiError bad_request(std::string message, std::string param) {
  return {400, std::move(message), "invalid_request_error", std::move(param), ""};
}
ApiError not_found(std::string message, std::string code) {
  return {404, std::move(message), "invalid_request_error", "", std::move(code)};
}
ApiError unauthorized() {
  return {401, "a valid API key is required (Authorization: Bearer KEY)", "authentication_error",
          "", "invalid_api_key"};
}
ApiError too_large(std::size_t limit) {
  return {413, "the request body is larger than " + std::to_string(limit) + " bytes",
          "invalid_request_error", "", "request_too_large"};
}
ApiError busy(std::string message) {
  return {429, std::move(message), "rate_limit_error", "", "server_busy"};
}
ApiError unavailable(std::string message) {
  return {503, std::move(message), "unavailable_error", "", "unavailable"};
}
ApiError internal_error(std::string message) {
  return {500, std::move(message), "server_error", "", "internal_error"};
}

Parsed<ChatRequest> parse_chat_request(std::string_view body, const Limits& limits) {
  return guarded<ChatRequest>([&] {
    const json j = parse_object(body, limits);
    ChatRequest r;
    static_cast<GenerationRequest&>(r) = parse_generation(j, limits);
    const json* messages = field(j, "messages");
    if (messages == nullptr) refuse("'messages' is required", "messages");
    if (!messages->is_array() || messages->empty()) {
      refuse("'messages' must be a non-empty list", "messages");
    }
    if (messages->size() > limits.max_messages) {
      refuse("'messages' holds at most " + std::to_string(limits.max_messages) + " messages",
             "messages");
    }
    for (std::size_t i = 0; i < messages->size(); ++i) {
      const json& m = (*messages)[i];
      const std::string param = "messages[" + std::to_string(i) + "]";
      if (!m.is_object()) refuse("each message must be an object", param);
      const json* role = field(m, "role");
      if (role == nullptr || !role->is_string()) refuse("a message needs a string 'role'", param);
      std::string name = role->get<std::string>();
      if (name == "developer") name = "system";
      if (name != "system" && name != "user" && name != "assistant") {
        refuse("role '" + printable(name, 40) +
                   "' is not supported (system, developer, user, "
                   "assistant)",
               param + ".role");
      }
      const auto it = m.find("content");
      r.messages.push_back({name, message_text(it == m.end() ? json() : *it, i)});
    }
    r.bank = get_string(j, "bank");
    if (!r.bank.empty() && !is_safe_name(r.bank)) refuse("'bank' is not a valid bank name", "bank");
    r.bank_top_k = static_cast<std::size_t>(
        get_int(j, "bank_top_k", 1, static_cast<std::int64_t>(limits.max_top_k)).value_or(5));
    if (!r.bank.empty() && r.messages.back().role != "user") {
      refuse("a chat over a bank must end with the user's question", "messages");
    }
    return r;
  });
}

Parsed<CompletionRequest> parse_completion_request(std::string_view body, const Limits& limits) {
  return guarded<CompletionRequest>([&] {
    const json j = parse_object(body, limits);
    CompletionRequest r;
    static_cast<GenerationRequest&>(r) = parse_generation(j, limits);
    const json* p = field(j, "prompt");
    if (p == nullptr) refuse("'prompt' is required", "prompt");
    if (p->is_string()) {
      r.prompt = p->get<std::string>();
    } else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
      r.prompt = (*p)[0].get<std::string>();
    } else if (p->is_array() && !p->empty() && (*p)[0].is_number()) {
      for (const json& id : *p) {
        if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
            id.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max()) {
          refuse("token ids in 'prompt' must be non-negative integers", "prompt");
        }
        r.prompt_ids.push_back(static_cast<std::int32_t>(id.get<std::int64_t>()));
      }
    } else {
      refuse("'prompt' must be a string, a list of one string, or a list of token ids", "prompt");
    }
    if (get_bool(j, "echo", false)) refuse("'echo' is not supported", "echo");
    if (!get_string(j, "suffix").empty()) refuse("'suffix' is not supported", "suffix");
    return r;
  });
}

Parsed<EmbeddingRequest> parse_embedding_request(std::string_view body, const Limits& limits) {
  return guarded<EmbeddingRequest>([&] {
    const json j = parse_object(body, limits);
    EmbeddingRequest r;
    r.model = get_string(j, "model");
    const json* input = field(j, "input");
    if (input == nullptr) refuse("'input' is required", "input");
    r.input = string_list(*input, "input", limits, false);
    const std::string format = get_string(j, "encoding_format", "float");
    if (format != "float" && format != "base64") {
      refuse("'encoding_format' must be 'float' or 'base64'", "encoding_format");
    }
    r.base64 = format == "base64";
    if (field(j, "dimensions") != nullptr) {
      refuse("'dimensions' is not supported: the model's own dimension is used", "dimensions");
    }
    return r;
  });
}

Parsed<RerankRequest> parse_rerank_request(std::string_view body, const Limits& limits) {
  return guarded<RerankRequest>([&] {
    const json j = parse_object(body, limits);
    RerankRequest r;
    r.model = get_string(j, "model");
    r.query = required_string(j, "query");
    const json* docs = field(j, "documents");
    if (docs == nullptr) refuse("'documents' is required", "documents");
    if (!docs->is_array()) refuse("'documents' must be a list", "documents");
    r.documents = string_list(*docs, "documents", limits, true);
    if (const auto n = get_int(j, "top_n", 1, std::numeric_limits<std::int64_t>::max())) {
      r.top_n = static_cast<std::size_t>(*n);
    }
    r.return_documents = get_bool(j, "return_documents", true);
    return r;
  });
}

Parsed<BankSearchRequest> parse_bank_search_request(std::string_view body, const Limits& limits) {
  return guarded<BankSearchRequest>([&] {
    const json j = parse_object(body, limits);
    BankSearchRequest r;
    r.query = required_string(j, "query");
    if (r.query.empty()) refuse("'query' must not be empty", "query");
    r.top_k = static_cast<std::size_t>(
        get_int(j, "top_k", 1, static_cast<std::int64_t>(limits.max_top_k)).value_or(5));
    r.mode = get_string(j, "mode", "auto");
    if (r.mode != "auto" && r.mode != "bm25" && r.mode != "dense" && r.mode != "hybrid") {
      refuse("'mode' must be auto, bm25, dense or hybrid", "mode");
    }
    return r;
  });
}

Parsed<UploadRequest> parse_upload_request(std::string_view body, const Limits& limits) {
  return guarded<UploadRequest>([&] {
    const json j = parse_object(body, limits);
    const json* docs = field(j, "documents");
    if (docs == nullptr || !docs->is_array() || docs->empty()) {
      refuse("'documents' must be a non-empty list of {name, content | content_base64}",
             "documents");
    }
    if (docs->size() > limits.max_files) {
      refuse("at most " + std::to_string(limits.max_files) + " documents per upload", "documents");
    }
    UploadRequest r;
    for (std::size_t i = 0; i < docs->size(); ++i) {
      const json& d = (*docs)[i];
      const std::string param = "documents[" + std::to_string(i) + "]";
      if (!d.is_object()) refuse("each document must be an object", param);
      UploadedFile f;
      f.name = required_string(d, "name");
      if (!is_safe_name(f.name, limits.max_name_bytes)) {
        refuse("'" + printable(f.name, 60) +
                   "' is not a plain file name (no '/', '\\', '..', NUL, control or glob "
                   "characters, not hidden)",
               param + ".name");
      }
      for (const UploadedFile& other : r.files) {
        if (other.name == f.name) refuse("the name '" + f.name + "' is given twice", param);
      }
      const json* text = field(d, "content");
      const json* b64 = field(d, "content_base64");
      if ((text == nullptr) == (b64 == nullptr)) {
        refuse("give exactly one of 'content' and 'content_base64'", param);
      }
      if (text != nullptr) {
        if (!text->is_string()) refuse("'content' must be a string", param + ".content");
        f.bytes = text->get<std::string>();
      } else {
        if (!b64->is_string()) refuse("'content_base64' must be a string", param);
        auto bytes = base64_decode(b64->get<std::string>());
        if (!bytes) refuse("'content_base64' is not valid base64", param + ".content_base64");
        f.bytes = std::move(*bytes);
      }
      r.files.push_back(std::move(f));
    }
    return r;
  });
}

Parsed<RemoveRequest> parse_remove_request(std::string_view body, const Limits& limits) {
  return guarded<RemoveRequest>([&] {
    const json j = parse_object(body, limits);
    const json* paths = field(j, "paths");
    if (paths == nullptr) refuse("'paths' is required", "paths");
    RemoveRequest r;
    r.paths = string_list(*paths, "paths", limits, false);
    for (const std::string& p : r.paths) {
      if (p.empty() || p.find('\0') != std::string::npos || !is_valid_utf8(p) ||
          p.find_first_of("*?[]") != std::string::npos) {
        refuse("'paths' must name documents exactly (no NUL or glob characters)", "paths");
      }
    }
    return r;
  });
}

Parsed<ImageRequest> parse_image_request(std::string_view body, const Limits& limits) {
  return guarded<ImageRequest>([&] {
    const json j = parse_object(body, limits);
    ImageRequest r;
    r.model = get_string(j, "model");
    r.prompt = required_string(j, "prompt");
    if (r.prompt.empty()) refuse("'prompt' must not be empty", "prompt");
    if (r.prompt.size() > limits.max_prompt_bytes) {
      refuse("'prompt' is at most " + std::to_string(limits.max_prompt_bytes) + " bytes", "prompt");
    }
    r.n = static_cast<int>(get_int(j, "n", 1, limits.max_images).value_or(1));
    const std::string size = get_string(j, "size", "auto");
    if (size != "auto") {
      // "WxH": two decimal numbers of at most 5 digits around one 'x'.
      const auto x = size.find('x');
      const auto digits = [](std::string_view t) {
        return !t.empty() && t.size() <= 5 && t.find_first_not_of("0123456789") == t.npos;
      };
      if (x == std::string::npos || !digits(std::string_view(size).substr(0, x)) ||
          !digits(std::string_view(size).substr(x + 1))) {
        refuse("'size' must be \"WIDTHxHEIGHT\" (e.g. \"512x512\") or \"auto\"", "size");
      }
      r.width = std::stoll(size.substr(0, x));
      r.height = std::stoll(size.substr(x + 1));
      for (const std::int64_t side : {r.width, r.height}) {
        if (side < 16 || side > models::kFluxMaxSide || side % 16 != 0) {
          refuse("'size' " + size + ": each side must be a multiple of 16 from 16 to " +
                     std::to_string(models::kFluxMaxSide),
                 "size");
        }
      }
      if (r.width * r.height > models::kFluxMaxPixels) {
        refuse("'size' " + size + " is more than " + std::to_string(models::kFluxMaxPixels >> 20) +
                   " megapixels",
               "size");
      }
    }
    const std::string format = get_string(j, "response_format", "b64_json");
    if (format == "url") {
      refuse(
          "'response_format' 'url' is not supported: hearth-server hosts no image files; use "
          "'b64_json'",
          "response_format");
    }
    if (format != "b64_json") refuse("'response_format' must be 'b64_json'", "response_format");
    if (get_string(j, "output_format", "png") != "png") {
      refuse("'output_format' must be 'png'", "output_format");
    }
    if (get_bool(j, "stream", false)) refuse("streamed images are not supported", "stream");
    if (const auto seed = get_int(j, "seed", 0, std::numeric_limits<std::int64_t>::max())) {
      r.seed = static_cast<std::uint64_t>(*seed);
    }
    if (const auto steps = get_int(j, "steps", 1, limits.max_image_steps)) {
      r.steps = static_cast<int>(*steps);
    }
    if (const auto g = get_number(j, "guidance", 0.0, 100.0)) r.guidance = static_cast<float>(*g);
    if (const auto t5 = get_int(j, "t5_max_length", 2, 512)) {
      r.t5_max_length = static_cast<std::size_t>(*t5);
    }
    return r;
  });
}

bool is_safe_name(std::string_view name, std::size_t max_bytes) {
  if (name.empty() || name.size() > max_bytes || name.front() == '.') return false;
  if (!is_valid_utf8(name)) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F || c == '/' || c == '\\' || c == '*' || c == '?' || c == '[' ||
        c == ']') {
      return false;
    }
  }
  return true;
}

std::string base64_encode(std::string_view bytes) {
  static const char* const kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (static_cast<std::uint8_t>(bytes[i]) << 16) |
                            (static_cast<std::uint8_t>(bytes[i + 1]) << 8) |
                            static_cast<std::uint8_t>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<std::uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  const auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2 && (k == 3 || text[i + 3] == '=')) {
        ++pad;
        v <<= 6;
        continue;
      }
      const int d = value(c);
      if (d < 0 || pad > 0) return std::nullopt;
      v = (v << 6) | static_cast<std::uint32_t>(d);
    }
    // The bits a padded group leaves unused must be zero (one text per byte string).
    if ((pad == 1 && (v & 0xFF) != 0) || (pad == 2 && (v & 0xFFFF) != 0)) return std::nullopt;
    out += static_cast<char>((v >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(v & 0xFF);
  }
  return out;
}

const char* finish_reason(models::FinishReason f) {
  switch (f) {
    case models::FinishReason::kLength:
    case models::FinishReason::kContext:
      return "length";
    case models::FinishReason::kStop:
    case models::FinishReason::kCancelled:
      return "stop";
  }
  return "stop";
}

nlohmann::json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

nlohmann::json chat_completion_json(const std::string& id, std::int64_t created,
                                    const std::string& model, const std::string& text,
                                    const char* finish, const Usage& usage) {
  return {{"id", id},
          {"object", "chat.completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", text}}},
                                    {"logprobs", nullptr},
                                    {"finish_reason", finish}}})},
          {"usage", usage_json(usage)}};
}

nlohmann::json chat_chunk_json(const std::string& id, std::int64_t created,
                               const std::string& model, const std::string* role,
                               const std::string* content, const char* finish) {
  json delta = json::object();
  if (role != nullptr) delta["role"] = *role;
  if (content != nullptr) delta["content"] = *content;
  return {
      {"id", id},
      {"object", "chat.completion.chunk"},
      {"created", created},
      {"model", model},
      {"choices", json::array({{{"index", 0},
                                {"delta", delta},
                                {"logprobs", nullptr},
                                {"finish_reason", finish == nullptr ? json() : json(finish)}}})}};
}

nlohmann::json completion_json(const std::string& id, std::int64_t created,
                               const std::string& model, const std::string& text,
                               const char* finish, const Usage& usage) {
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices",
           json::array(
               {{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}}})},
          {"usage", usage_json(usage)}};
}

nlohmann::json completion_chunk_json(const std::string& id, std::int64_t created,
                                     const std::string& model, const std::string& text,
                                     const char* finish) {
  return {
      {"id", id},
      {"object", "text_completion"},
      {"created", created},
      {"model", model},
      {"choices", json::array({{{"index", 0},
                                {"text", text},
                                {"logprobs", nullptr},
                                {"finish_reason", finish == nullptr ? json() : json(finish)}}})}};
}

nlohmann::json usage_chunk_json(const std::string& id, const char* object, std::int64_t created,
                                const std::string& model, const Usage& usage) {
  return {{"id", id},       {"object", object},         {"created", created},
          {"model", model}, {"choices", json::array()}, {"usage", usage_json(usage)}};
}

nlohmann::json images_json(std::int64_t created, const std::vector<std::string>& b64_png,
                           const std::vector<std::uint64_t>& seeds, std::int64_t width,
                           std::int64_t height, const ImageTimings& timings) {
  json data = json::array();
  for (std::size_t i = 0; i < b64_png.size(); ++i) {
    json item = {{"b64_json", b64_png[i]}};
    if (i < seeds.size()) item["seed"] = seeds[i];
    data.push_back(std::move(item));
  }
  const double per = b64_png.empty() ? 0.0 : timings.generate_seconds / b64_png.size();
  return {{"created", created},
          {"data", data},
          {"size", std::to_string(width) + "x" + std::to_string(height)},
          {"output_format", "png"},
          {"timings",
           {{"queue_seconds", timings.queue_seconds},
            {"generate_seconds", timings.generate_seconds},
            {"per_image_seconds", per}}}};
}

std::string sse(const nlohmann::json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

}  // namespace hearth::serve
