// A conversation with a decoder model: the model's own chat template renders the history, the
// markup it writes is tokenized with special tokens and every message's text without them (so a
// document or a user cannot close a turn or open a role), and each turn reuses the cached prefix
// of the previous one, so it prefills only its new tokens.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/decoder.hpp"
#include "hearth/models/generate.hpp"
#include "hearth/tokenize/chat_template.hpp"

namespace hearth::models {

// The model's chat template (tokenizer_config.json, chat_template.jinja or GGUF
// tokenizer.chat_template) bound to its tokenizer and special-token strings.
class ChatFormat {
 public:
  // Throws Error(kNotFound) naming the model when it has no template.
  static ChatFormat load(const LanguageModel& model);
  // The rendered conversation: its text and its token ids (no BOS unless the template writes
  // it; markup with special tokens, message text without).
  struct Prompt {
    std::string text;
    std::vector<std::int32_t> ids;
  };
  Prompt prompt(std::span<const tokenize::ChatMessage> messages, bool add_generation_prompt) const;

 private:
  ChatFormat(const LanguageModel& model, tokenize::ChatTemplate t)
      : model_(&model), template_(std::move(t)) {}
  const LanguageModel* model_;
  tokenize::ChatTemplate template_;
};

class Conversation {
 public:
  // system: an optional system message that starts the history.
  Conversation(const LanguageModel& model, std::int64_t context = 0,
               std::optional<std::string> system = std::nullopt);

  // Adds the user's message, generates the answer (streamed to on_text) and keeps it in the
  // history, also when Ctrl+C cut it short.
  Generation reply(const std::string& user, const GenerateOptions& options,
                   const std::function<void(std::string_view)>& on_text = {});
  // Forgets the history (the system message stays) and the cache.
  void reset();

  const std::vector<tokenize::ChatMessage>& messages() const { return messages_; }
  Session& session() { return *session_; }

 private:
  const LanguageModel& model_;
  ChatFormat format_;
  std::unique_ptr<Session> session_;
  std::optional<std::string> system_;
  std::vector<tokenize::ChatMessage> messages_;
};

}  // namespace hearth::models
