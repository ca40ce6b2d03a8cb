// Llama (LlamaForCausalLM; TinyLlama, SmolLM, Llama 2/3.x) and GGUF `llama`: GQA, tied or
// separate output, rope_scaling none / linear / llama3.
//
// GGUF `llama` files come from llama.cpp's converter, which permutes the rows of q_proj and
// k_proj so that rotating adjacent pairs (x[2i], x[2i+1], llama.cpp's "normal" rope) equals
// Hugging Face's rotate-half on the original rows: so the GGUF source uses RopeStyle::kNormal
// and the HF source kNeox, over the weights as stored. llama3 scaling arrives in GGUF as the
// rope_freqs.weight divisors the converter computed.
#include "hearth/core/error.hpp"
#include "hearth/models/decoder_impl.hpp"

namespace hearth::models {

const ArchSpec& llama_arch() {
  static const ArchSpec spec{
      "llama",
      {"LlamaForCausalLM"},
      {"llama"},
      {"llama"},
      [](const HfConfig& cfg, DecoderConfig& c) {
        if (cfg.boolean("attention_bias", false)) {
          throw Error(ErrorCode::kUnsupported, "attention biases are not supported for llama",
                      {.file = cfg.file(), .key = "attention_bias"});
        }
        read_hf_rope_scaling(cfg, c);
      },
      [](const formats::GGUFFile& f, DecoderConfig& c) {
        c.rope.style = RopeStyle::kNormal;
        c.rope.short_factors = gguf_rope_factors(f, "rope_freqs.weight", c.rope.dims);
        if (!c.rope.short_factors.empty()) c.rope.scaling = RopeScaling::kLlama3;
      },
  };
  return spec;
}

}  // namespace hearth::models
