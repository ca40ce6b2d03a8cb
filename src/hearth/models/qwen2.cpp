// Qwen2 / Qwen2.5 (Qwen2ForCausalLM, GGUF `qwen2`): biases on q, k and v; tied embeddings in the
// small models (tie_word_embeddings; GGUF: no output.weight); rotate-half rope (llama.cpp NEOX).
// use_sliding_window puts a window on the layers from max_window_layers on, as transformers does.
#include <algorithm>

#include "hearth/core/error.hpp"
#include "hearth/models/decoder_impl.hpp"

namespace hearth::models {

void read_hf_qwen_window(const HfConfig& cfg, DecoderConfig& c) {
  if (!cfg.boolean("use_sliding_window", false)) return;
  if (c.layers <= 0 || c.layers > 4096) return;  // refused by the config check
  c.sliding_window = cfg.integer("sliding_window", 0);
  const std::int64_t first = cfg.integer("max_window_layers", c.layers);
  c.sliding_layers.assign(static_cast<std::size_t>(std::max<std::int64_t>(c.layers, 0)), false);
  for (std::int64_t l = std::max<std::int64_t>(first, 0); l < c.layers; ++l) {
    c.sliding_layers[static_cast<std::size_t>(l)] = true;
  }
}

const ArchSpec& qwen2_arch() {
  static const ArchSpec spec{
      "qwen2",
      {"Qwen2ForCausalLM"},
      {"qwen2"},
      {"qwen2"},
      [](const HfConfig& cfg, DecoderConfig& c) {
        c.qkv_bias = true;
        read_hf_qwen_window(cfg, c);
        read_hf_rope_scaling(cfg, c);
      },
      [](const formats::GGUFFile&, DecoderConfig& c) {
        c.rope.style = RopeStyle::kNeox;
        c.qkv_bias = true;
      },
  };
  return spec;
}

}  // namespace hearth::models
