#include "hearth/models/gguf_names.hpp"

namespace hearth::models {

std::string gguf_name(const std::string& hf, const GgufNameTable& table) {
  for (const auto& [from, to] : table.whole) {
    if (hf == from) return to;
  }
  if (!hf.starts_with(table.layer_prefix)) return hf;
  const std::size_t dot = hf.find('.', table.layer_prefix.size());
  if (dot == std::string::npos) return hf;
  const std::string layer = hf.substr(table.layer_prefix.size(), dot - table.layer_prefix.size());
  const std::string rest = hf.substr(dot + 1);
  for (const auto& [from, to] : table.layer) {
    const std::string f = from;
    if (rest.starts_with(f + ".")) return "blk." + layer + "." + to + rest.substr(f.size());
  }
  return hf;
}

}  // namespace hearth::models
