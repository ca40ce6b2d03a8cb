#include "hearth/models/flux_text.hpp"

#include "hearth/core/error.hpp"
#include "hearth/formats/hf_folder.hpp"

namespace hearth::models {

PromptTokens flux_prompt_tokens(const tokenize::Tokenizer& tokenizer, std::string_view prompt,
                                std::size_t max_length, std::string_view pad_token) {
  const auto pad = tokenizer.token_to_id(pad_token);
  if (!pad) {
    throw Error(ErrorCode::kInvalidArgument,
                "pad token '" + std::string(pad_token) + "' is not in the tokenizer's vocabulary");
  }
  const std::size_t specials = tokenizer.encode("", true).ids.size();
  if (max_length <= specials) {
    throw Error(ErrorCode::kInvalidArgument, "a token limit of " + std::to_string(max_length) +
                                                 " leaves no room for the prompt");
  }
  PromptTokens out;
  tokenize::Encoding e = tokenizer.encode(prompt, true);
  out.needed = e.ids.size();
  if (e.ids.size() > max_length) {
    e = tokenizer.encode(prompt, true, {max_length, tokenize::TruncationStrategy::kLongestFirst});
  }
  out.ids = std::move(e.ids);
  out.used = out.ids.size();
  out.ids.resize(max_length, *pad);
  return out;
}

std::string tokenizer_pad_token(const std::filesystem::path& tokenizer_dir,
                                const std::string& fallback) {
  const auto file = tokenizer_dir / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return fallback;
  const nlohmann::json cfg = formats::read_json_file(file);
  const auto it = cfg.find("pad_token");
  if (it == cfg.end() || it->is_null()) return fallback;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string()) {
    return it->at("content").get<std::string>();
  }
  throw Error(ErrorCode::kFormat, "pad_token is neither a string nor {\"content\": ...}",
              {.file = file.string(), .key = "pad_token"});
}

void check_flux_t5(const T5EncoderConfig& config, const std::string& source) {
  if (config.d_model != kFluxT5Width) {
    throw Error(ErrorCode::kFormat,
                "T5 encoder has d_model " + std::to_string(config.d_model) + "; FLUX.1 needs " +
                    std::to_string(kFluxT5Width) + " (T5 v1.1 XXL)",
                {.file = source, .key = "d_model"});
  }
}

void check_flux_clip(const ClipTextConfig& config, const std::string& source) {
  if (config.hidden != kFluxClipWidth) {
    throw Error(ErrorCode::kFormat,
                "CLIP text encoder has hidden size " + std::to_string(config.hidden) +
                    "; FLUX.1 needs " + std::to_string(kFluxClipWidth) + " (CLIP ViT-L/14)",
                {.file = source, .key = "hidden_size"});
  }
}

}  // namespace hearth::models
