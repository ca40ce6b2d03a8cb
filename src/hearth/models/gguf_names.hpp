// Hugging Face tensor names as llama.cpp's converter writes them into GGUF files: whole names
// ("model.norm.weight" -> "output_norm.weight") and per-layer ones
// ("model.layers.3.mlp.up_proj.weight" -> "blk.3.ffn_up.weight"), from one table per model family.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace hearth::models {

using NamePair = std::pair<const char*, const char*>;

struct GgufNameTable {
  std::span<const NamePair> whole;  // exact names
  std::string_view layer_prefix;    // "model.layers." then the layer number
  std::span<const NamePair> layer;  // a module inside a layer -> its GGUF name
};

// The GGUF name of hf; a name the table does not know is returned unchanged.
std::string gguf_name(const std::string& hf, const GgufNameTable& table);

}  // namespace hearth::models
