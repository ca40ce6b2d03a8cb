// Qwen3 (Qwen3ForCausalLM, GGUF `qwen3`): an RMS norm over each query and key head (q_norm,
// k_norm; GGUF attn_q_norm, attn_k_norm) before the rotate-half rope (llama.cpp NEOX), no
// biases, head_dim from the config (not always hidden / heads).
#include "hearth/core/error.hpp"
#include "hearth/models/decoder_impl.hpp"

namespace hearth::models {

const ArchSpec& qwen3_arch() {
  static const ArchSpec spec{
      "qwen3",
      {"Qwen3ForCausalLM"},
      {"qwen3"},
      {"qwen3"},
      [](const HfConfig& cfg, DecoderConfig& c) {
        if (cfg.boolean("attention_bias", false)) {
          throw Error(ErrorCode::kUnsupported, "attention biases are not supported for qwen3",
                      {.file = cfg.file(), .key = "attention_bias"});
        }
        c.qk_norm = true;
        read_hf_qwen_window(cfg, c);
        read_hf_rope_scaling(cfg, c);
      },
      [](const formats::GGUFFile&, DecoderConfig& c) {
        c.rope.style = RopeStyle::kNeox;
        c.qk_norm = true;
      },
  };
  return spec;
}

}  // namespace hearth::models
