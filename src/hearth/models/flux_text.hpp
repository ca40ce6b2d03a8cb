// FLUX.1's text side as the reference pipelines (diffusers FluxPipeline) run it: the prompt is
// tokenized for CLIP (<|startoftext|> ... <|endoftext|>, truncated and padded to 77 with the
// tokenizer config's pad token, <|endoftext|>) and for T5 (... </s>, truncated and padded with
// <pad> to 256 tokens for schnell, 512 for dev; no attention mask), and the checks FLUX loading
// applies to the two encoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/clip_text.hpp"
#include "hearth/models/t5_encoder.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::models {

inline constexpr std::size_t kFluxClipTokens = 77;
inline constexpr std::size_t kFluxT5TokensSchnell = 256;
inline constexpr std::size_t kFluxT5TokensDev = 512;
inline constexpr std::int64_t kFluxT5Width = 4096;   // FLUX.1's context_in_dim
inline constexpr std::int64_t kFluxClipWidth = 768;  // FLUX.1's vec_in_dim

struct PromptTokens {
  std::vector<std::int32_t> ids;  // exactly max_length ids, special tokens and padding included
  std::size_t used = 0;           // ids before the padding
  std::size_t needed = 0;         // ids the whole prompt takes (special tokens included)
  bool truncated() const { return needed > used; }
};

// The prompt with the tokenizer's special tokens (its post-processor), truncated to max_length
// (the end token kept, as Hugging Face truncation does) and padded with pad_token to max_length.
// Throws Error(kInvalidArgument) when pad_token is not in the vocabulary or max_length cannot
// hold the special tokens.
PromptTokens flux_prompt_tokens(const tokenize::Tokenizer& tokenizer, std::string_view prompt,
                                std::size_t max_length, std::string_view pad_token);

// The pad token a tokenizer folder's tokenizer_config.json names (a string or {"content": ...}),
// or fallback when the file or key is absent.
std::string tokenizer_pad_token(const std::filesystem::path& tokenizer_dir,
                                const std::string& fallback);

// FLUX.1's transformer takes T5 states of width 4096 and a CLIP pooled vector of width 768:
// anything else is an Error(kFormat) naming source (the encoder's file or folder).
void check_flux_t5(const T5EncoderConfig& config, const std::string& source);
void check_flux_clip(const ClipTextConfig& config, const std::string& source);

}  // namespace hearth::models
