#include "hearth/models/chat.hpp"

#include "hearth/core/error.hpp"

namespace hearth::models {

ChatFormat ChatFormat::load(const LanguageModel& model) {
  std::optional<tokenize::ChatTemplate> t = tokenize::find_chat_template(model.path());
  if (!t) {
    throw Error(ErrorCode::kNotFound,
                "the model has no chat template (looked for chat_template.jinja, "
                "tokenizer_config.json chat_template, GGUF tokenizer.chat_template); send the "
                "prompt as plain text with --raw",
                {model.path().string(), {}, {}});
  }
  return ChatFormat(model, std::move(*t));
}

namespace {

tokenize::ChatRenderOptions render_options(const LanguageModel& model, bool add_generation_prompt) {
  tokenize::ChatRenderOptions o;
  o.add_generation_prompt = add_generation_prompt;
  // A model without such a token leaves the variable undefined, as transformers does.
  if (std::string bos = model.bos_token(); !bos.empty()) o.bos_token = std::move(bos);
  if (std::string eos = model.eos_token(); !eos.empty()) o.eos_token = std::move(eos);
  return o;
}

}  // namespace

ChatFormat::Prompt ChatFormat::prompt(std::span<const tokenize::ChatMessage> messages,
                                      bool add_generation_prompt) const {
  const std::vector<tokenize::TextSegment> segments =
      template_.render(messages, render_options(*model_, add_generation_prompt));
  return {tokenize::ChatTemplate::join(segments),
          model_->tokenizer().encode_segments(segments, false).ids};
}

Conversation::Conversation(const LanguageModel& model, std::int64_t context,
                           std::optional<std::string> system)
    : model_(model),
      format_(ChatFormat::load(model)),
      session_(std::make_unique<Session>(model, context)),
      system_(std::move(system)) {
  reset();
}

void Conversation::reset() {
  messages_.clear();
  if (system_) messages_.push_back({"system", *system_});
  session_->truncate(0);
}

Generation Conversation::reply(const std::string& user, const GenerateOptions& options,
                               const std::function<void(std::string_view)>& on_text) {
  messages_.push_back({"user", user});
  Generation g;
  try {
    g = generate(*session_, format_.prompt(messages_, true).ids, options, on_text);
  } catch (...) {
    messages_.pop_back();  // nothing was answered (a cancelled prompt, a full context)
    throw;
  }
  messages_.push_back({"assistant", g.text});
  return g;
}

}  // namespace hearth::models
