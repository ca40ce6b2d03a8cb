#include "hearth/tokenize/chat_template.hpp"

#include <system_error>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"

namespace hearth::tokenize {
namespace fs = std::filesystem;

ChatTemplate ChatTemplate::parse(std::string_view source, std::string origin,
                                 jinja::Limits limits) {
  return ChatTemplate(jinja::Template::parse(source, std::move(origin), limits));
}

void ChatTemplate::set_special_tokens(std::optional<std::string> bos,
                                      std::optional<std::string> eos) {
  bos_ = std::move(bos);
  eos_ = std::move(eos);
}

std::vector<TextSegment> ChatTemplate::render(std::span<const ChatMessage> messages,
                                              const ChatRenderOptions& options) const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return render_json(list, options);
}

std::vector<TextSegment> ChatTemplate::render_json(const nlohmann::json& messages,
                                                   const ChatRenderOptions& options) const {
  if (!options.extra.is_object() || !options.trusted_extra.is_object()) {
    throw Error(ErrorCode::kInvalidArgument, "chat template variables must be JSON objects",
                {.file = origin()});
  }
  nlohmann::json trusted = options.trusted_extra;
  trusted["add_generation_prompt"] = options.add_generation_prompt;
  const auto& bos = options.bos_token ? options.bos_token : bos_;
  const auto& eos = options.eos_token ? options.eos_token : eos_;
  if (bos) trusted["bos_token"] = *bos;
  if (eos) trusted["eos_token"] = *eos;
  nlohmann::json untrusted = options.extra;
  untrusted["messages"] = messages;
  for (const char* key : {"add_generation_prompt", "bos_token", "eos_token"}) untrusted.erase(key);
  return template_.render(trusted, untrusted);
}

std::string ChatTemplate::join(std::span<const TextSegment> segments) {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}

namespace {

std::optional<std::string> config_token(const nlohmann::json& config, const char* key,
                                        const std::string& file) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw Error(ErrorCode::kFormat, "must be a string or an object with a string \"content\"",
              {.file = file, .key = key});
}

std::string pick_template(const nlohmann::json& value, const std::string& file) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    std::vector<std::string> names;
    for (const auto& entry : value) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("template") || !entry["template"].is_string()) {
        throw Error(ErrorCode::kFormat, "must be a list of {\"name\", \"template\"} strings",
                    {.file = file, .key = "chat_template"});
      }
      if (entry["name"] == "default") return entry["template"].get<std::string>();
      names.push_back(entry["name"].get<std::string>());
    }
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::kUnsupported,
                "holds several templates and none is named \"default\" (" + list + ")",
                {.file = file, .key = "chat_template"});
  }
  throw Error(ErrorCode::kFormat, "must be a string or a list of {\"name\", \"template\"}",
              {.file = file, .key = "chat_template"});
}

nlohmann::json read_json(const fs::path& path) {
  try {
    return nlohmann::json::parse(formats::read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("invalid JSON: ") + e.what(),
                {.file = path.string()});
  }
}

std::optional<ChatTemplate> from_tokenizer_config(const fs::path& config_path,
                                                  const std::optional<fs::path>& jinja_file) {
  nlohmann::json config = nlohmann::json::object();
  if (!config_path.empty()) {
    config = read_json(config_path);
    if (!config.is_object()) {
      throw Error(ErrorCode::kFormat, "must hold a JSON object", {.file = config_path.string()});
    }
  }
  std::optional<ChatTemplate> t;
  if (jinja_file) {
    t = ChatTemplate::parse(formats::read_text_file(*jinja_file), jinja_file->string());
  } else if (const auto it = config.find("chat_template"); it != config.end() && !it->is_null()) {
    t = ChatTemplate::parse(pick_template(*it, config_path.string()), config_path.string());
  }
  if (!t) return std::nullopt;
  const std::string file = config_path.string();
  t->set_special_tokens(config_token(config, "bos_token", file),
                        config_token(config, "eos_token", file));
  return t;
}

std::optional<std::string> gguf_token(const formats::GGUFFile& f, const char* key) {
  const auto* id = f.find(key);
  const auto* tokens = f.find("tokenizer.ggml.tokens");
  if (!id || !tokens || !tokens->as_array()) return std::nullopt;
  const auto n = id->as_uint();
  const auto* list = tokens->as_array()->get_if<std::string>();
  if (!n || !list || *n >= list->size()) {
    throw Error(ErrorCode::kFormat, "is not a token id of tokenizer.ggml.tokens",
                {.file = f.source(), .key = key});
  }
  return (*list)[*n];
}

}  // namespace

std::optional<ChatTemplate> find_chat_template(const fs::path& model) {
  std::error_code ec;
  if (fs::is_directory(model, ec)) {
    const formats::ModelFolder folder = formats::ModelFolder::open(model);
    const auto& config = folder.tokenizer_files().tokenizer_config;
    std::optional<fs::path> jinja_file;
    if (fs::is_regular_file(model / "chat_template.jinja", ec))
      jinja_file = model / "chat_template.jinja";
    return from_tokenizer_config(config.value_or(fs::path()), jinja_file);
  }
  if (!fs::exists(model, ec)) {
    throw Error(ErrorCode::kNotFound, "model file or folder does not exist",
                {.file = model.string()});
  }
  const std::string ext = model.extension().string();
  if (ext == ".jinja") return from_tokenizer_config(fs::path(), model);
  if (ext == ".json") return from_tokenizer_config(model, std::nullopt);
  const formats::GGUFFile f = formats::GGUFFile::open(model);
  const auto* value = f.find("tokenizer.chat_template");
  if (!value) return std::nullopt;
  const std::string* text = value->as_string();
  if (!text) {
    throw Error(ErrorCode::kFormat, "is not a string",
                {.file = f.source(), .key = "tokenizer.chat_template"});
  }
  ChatTemplate t = ChatTemplate::parse(*text, f.source() + " (tokenizer.chat_template)");
  t.set_special_tokens(gguf_token(f, "tokenizer.ggml.bos_token_id"),
                       gguf_token(f, "tokenizer.ggml.eos_token_id"));
  return t;
}

}  // namespace hearth::tokenize
