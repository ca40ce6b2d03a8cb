// Phi-3 / Phi-3.5 (Phi3ForCausalLM, GGUF `phi3`): fused qkv_proj ([Q | K | V] rows; GGUF
// attn_qkv) and gate_up_proj ([gate | up] rows; GGUF ffn_up), rotate-half rope (llama.cpp NEOX),
// rope_scaling longrope / su: short factors up to original_max_position_embeddings, long ones for
// sessions whose context exceeds it, cos and sin scaled by the attention factor
// (sqrt(1 + ln(max / original) / ln(original)) unless the config gives one).
//
// Sliding window: transformers masks keys beyond config.json sliding_window, so the HF source
// does; llama.cpp disables Phi-3's window (llama-model.cpp, "Phi SWA is currently disabled"), so
// the GGUF source does not.
#include "hearth/core/error.hpp"
#include "hearth/models/decoder_impl.hpp"

namespace hearth::models {

const ArchSpec& phi3_arch() {
  static const ArchSpec spec{
      "phi3",
      {"Phi3ForCausalLM"},
      {"phi3"},
      {"phi3"},
      [](const HfConfig& cfg, DecoderConfig& c) {
        c.fused_qkv = true;
        c.fused_gate_up = true;
        c.sliding_window = cfg.integer("sliding_window", 0);
        read_hf_rope_scaling(cfg, c);
      },
      [](const formats::GGUFFile& f, DecoderConfig& c) {
        c.rope.style = RopeStyle::kNeox;
        c.fused_qkv = true;
        c.fused_gate_up = true;
        c.rope.short_factors = gguf_rope_factors(f, "rope_factors_short.weight", c.rope.dims);
        c.rope.long_factors = gguf_rope_factors(f, "rope_factors_long.weight", c.rope.dims);
        if (c.rope.short_factors.empty() != c.rope.long_factors.empty()) {
          throw Error(ErrorCode::kFormat, "LongRoPE needs both short and long factors",
                      {.file = f.source(), .key = "rope_factors_long.weight"});
        }
        if (!c.rope.short_factors.empty()) {
          c.rope.scaling = RopeScaling::kLongRope;
          if (c.rope.original_context <= 0) c.rope.original_context = c.context;
        }
      },
  };
  return spec;
}

}  // namespace hearth::models
