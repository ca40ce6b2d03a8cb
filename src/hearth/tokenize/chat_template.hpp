// Chat templates: a model's own Jinja template (tokenizer_config.json "chat_template", a
// chat_template.jinja file, or GGUF tokenizer.chat_template) rendered over a conversation.
// The output is a list of segments marked trusted (the template's own markup, bos_token and
// eos_token) or untrusted (message contents and every other caller-supplied string), for
// Tokenizer::encode_segments, which parses special tokens in trusted segments only.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/tokenize/jinja.hpp"

namespace hearth::tokenize {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
};

struct ChatRenderOptions {
  bool add_generation_prompt = true;
  // Unset: the model's own (from find_chat_template), else undefined in the template.
  std::optional<std::string> bos_token, eos_token;
  // More variables, untrusted (tools, documents, date_string, enable_thinking, ...).
  nlohmann::json extra = nlohmann::json::object();
  // More variables whose strings are trusted markup (other special tokens the template reads).
  nlohmann::json trusted_extra = nlohmann::json::object();
};

class ChatTemplate {
 public:
  // origin names the template in errors (the file it came from). Syntax errors and unsupported
  // statements are an Error naming the construct and its line and column.
  static ChatTemplate parse(std::string_view source, std::string origin, jinja::Limits limits = {});

  // Renders messages as the template's `messages` list of {role, content}.
  std::vector<TextSegment> render(std::span<const ChatMessage> messages,
                                  const ChatRenderOptions& options) const;
  // messages as JSON (a list of objects: role, content and whatever else templates read, such
  // as tool_calls or reasoning_content); all of it untrusted.
  std::vector<TextSegment> render_json(const nlohmann::json& messages,
                                       const ChatRenderOptions& options) const;

  static std::string join(std::span<const TextSegment> segments);

  const std::string& origin() const { return template_.origin(); }
  // The model's special tokens, when the template was found in a model.
  const std::optional<std::string>& bos_token() const { return bos_; }
  const std::optional<std::string>& eos_token() const { return eos_; }
  void set_special_tokens(std::optional<std::string> bos, std::optional<std::string> eos);

 private:
  explicit ChatTemplate(jinja::Template t) : template_(std::move(t)) {}
  jinja::Template template_;
  std::optional<std::string> bos_, eos_;
};

// The chat template of a model: a Hugging Face folder (chat_template.jinja, else
// tokenizer_config.json "chat_template": a string, or a list of {name, template} from which
// "default" is taken), a GGUF file (tokenizer.chat_template), a tokenizer_config.json or a
// .jinja file. bos_token / eos_token come from tokenizer_config.json (a string or an
// {"content": ...} object) or from the GGUF vocabulary. nullopt when the model has no template;
// malformed files are an Error naming the file and key.
std::optional<ChatTemplate> find_chat_template(const std::filesystem::path& model);

}  // namespace hearth::tokenize
