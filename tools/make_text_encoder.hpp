// hearth-make-model --arch clip-text | t5-encoder: random FLUX text encoders in the real layouts.
#pragma once

#include <optional>
#include <string>

#include "hearth/tensor/dtype.hpp"

struct TextEncoderShape {
  std::optional<int> hidden, layers, heads, ffn;
};

// Writes a Hugging Face folder (format "hf": config.json as transformers writes it for
// CLIPTextModel / T5EncoderModel, model.safetensors, and the tokenizer files of tokenizer_dir
// when given) or a single safetensors file (format "safetensors": the same names, as ComfyUI's
// clip_l.safetensors / t5xxl_*.safetensors). The vocabulary is the tokenizer's, rounded up to a
// multiple of 128 (49,408 for CLIP, 32,128 for T5, as the real models), else 1,024.
void make_text_encoder(const std::string& arch, const std::string& out, const std::string& format,
                       hearth::DType dtype, unsigned seed, const std::string& tokenizer_dir,
                       const TextEncoderShape& shape);
