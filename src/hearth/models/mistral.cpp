// Mistral (MistralForCausalLM): the Llama graph with sliding-window attention when config.json
// has a `sliding_window` (keys farther than the window behind the query are masked on every
// layer). llama.cpp converts Mistral checkpoints to GGUF `llama` (loaded by llama.cpp here, no
// window, as llama.cpp runs them); a GGUF `mistral` file with mistral.attention.sliding_window
// is read with the window.
#include "hearth/core/error.hpp"
#include "hearth/models/decoder_impl.hpp"

namespace hearth::models {

const ArchSpec& mistral_arch() {
  static const ArchSpec spec{
      "mistral",
      {"MistralForCausalLM"},
      {"mistral"},
      {"mistral"},
      [](const HfConfig& cfg, DecoderConfig& c) {
        c.sliding_window = cfg.integer("sliding_window", 0);
        read_hf_rope_scaling(cfg, c);
      },
      [](const formats::GGUFFile& f, DecoderConfig& c) {
        c.rope.style = RopeStyle::kNormal;  // converted like llama (permuted q/k rows)
        const formats::GGUFValue* w = f.find("mistral.attention.sliding_window");
        c.sliding_window = w != nullptr ? w->as_int().value_or(0) : 0;
      },
  };
  return spec;
}

}  // namespace hearth::models
