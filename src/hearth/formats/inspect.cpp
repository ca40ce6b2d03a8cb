#include "hearth/formats/inspect.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/formats/safetensors.hpp"

namespace hearth::formats {
namespace fs = std::filesystem;
namespace {

void count_parameters(ModelSummary& s) {
  s.parameters = 0;
  for (const auto& t : s.tensors) s.parameters += static_cast<std::uint64_t>(numel(t.shape));
}

std::string gguf_type_label(const GGUFValue& v) {
  if (const GGUFArray* a = v.as_array()) {
    return std::string("array[") + gguf_type_name(a->elem_type()) + "]";
  }
  return gguf_type_name(v.type());
}

void summarize_gguf(const fs::path& path, std::size_t max_items, ModelSummary& s) {
  const GGUFFile f = GGUFFile::open(path);
  s.version = std::to_string(f.version());
  s.architecture = f.architecture();
  for (const auto& [k, v] : f.metadata()) {
    s.metadata.push_back({k, gguf_type_label(v), v.to_display(max_items)});
  }
  for (const auto& t : f.tensors()) s.tensors.push_back({t.name, t.dtype, t.shape, t.nbytes, ""});
}

void add_safetensors(const SafetensorsFile& f, const std::string& file_label, ModelSummary& s) {
  for (const auto& t : f.tensors()) {
    s.tensors.push_back({t.name, t.dtype, t.shape, t.nbytes, file_label});
  }
}

void summarize_safetensors(const fs::path& path, ModelSummary& s) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  for (const auto& [k, v] : f.metadata()) s.metadata.push_back({k, "string", "\"" + v + "\""});
  add_safetensors(f, "", s);
}

std::string json_display(const nlohmann::json& j) {
  std::string text = j.dump();
  if (text.size() > 120) text = text.substr(0, 117) + "...";
  return text;
}

void summarize_folder(const fs::path& path, ModelSummary& s) {
  const ModelFolder m = ModelFolder::open(path);
  s.architecture = m.architecture();
  if (s.architecture.empty()) s.architecture = m.model_type();
  for (const auto& [k, v] : m.config().items()) {
    s.metadata.push_back({"config." + k, v.type_name(), json_display(v)});
  }
  const TokenizerFiles& t = m.tokenizer_files();
  std::string tok;
  for (const auto& p : {t.tokenizer_json, t.tokenizer_config, t.special_tokens_map, t.vocab_txt,
                        t.vocab_json, t.merges_txt, t.sentencepiece}) {
    if (p) tok += (tok.empty() ? "" : ", ") + p->filename().string();
  }
  s.metadata.push_back({"tokenizer.files", "files", tok.empty() ? "(none)" : tok});
  if (m.pooling()) {
    s.metadata.push_back({"sentence_transformers.pooling", "string", to_string(m.pooling()->mode)});
    s.metadata.push_back(
        {"sentence_transformers.normalize", "bool", m.normalize() ? "true" : "false"});
  }
  if (m.quantization()) {
    s.metadata.push_back({"quantization", "mlx affine",
                          std::to_string(m.quantization()->bits) + " bits, group " +
                              std::to_string(m.quantization()->group_size) + ", " +
                              std::to_string(m.quantized_weights().size()) + " weights"});
  }
  for (const auto& shard : m.shards()) {
    s.file_bytes += shard->file_size();
    add_safetensors(*shard, fs::path(shard->source()).filename().string(), s);
  }
  count_parameters(s);
  for (const QuantizedWeight& q : m.quantized_weights()) {
    s.parameters -=
        static_cast<std::uint64_t>(numel(q.weight.info->shape) + numel(q.scales.info->shape));
    if (q.biases) s.parameters -= static_cast<std::uint64_t>(numel(q.biases->info->shape));
    s.parameters += static_cast<std::uint64_t>(numel(q.weight.info->shape)) * 32 / q.spec.bits;
  }
}

}  // namespace

const char* to_string(ModelFormat f) {
  switch (f) {
    case ModelFormat::kGGUF:
      return "gguf";
    case ModelFormat::kSafetensors:
      return "safetensors";
    case ModelFormat::kHFFolder:
      return "hf-folder";
  }
  return "?";
}

ModelFormat detect_format(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error(ErrorCode::kNotFound, "no such file or folder", {.file = path.string()});
  }
  if (fs::is_directory(path, ec)) return ModelFormat::kHFFolder;
  std::ifstream in(path, std::ios::binary);
  char head[9] = {};
  in.read(head, sizeof head);
  if (in.gcount() >= 4 && std::memcmp(head, "GGUF", 4) == 0) return ModelFormat::kGGUF;
  if (in.gcount() == 9 && head[8] == '{') return ModelFormat::kSafetensors;
  throw Error(ErrorCode::kUnsupported,
              "not a model hearth can read (expected GGUF, safetensors or a model folder)",
              {.file = path.string()});
}

ModelSummary summarize(const fs::path& path, std::size_t max_items) {
  ModelSummary s;
  s.path = path.string();
  s.format = detect_format(path);
  switch (s.format) {
    case ModelFormat::kGGUF:
      summarize_gguf(path, max_items, s);
      count_parameters(s);
      break;
    case ModelFormat::kSafetensors:
      summarize_safetensors(path, s);
      count_parameters(s);
      break;
    case ModelFormat::kHFFolder:
      summarize_folder(path, s);
      break;
  }
  if (s.format != ModelFormat::kHFFolder) s.file_bytes = fs::file_size(path);
  return s;
}

std::uint64_t ModelSummary::tensor_bytes() const {
  std::uint64_t n = 0;
  for (const auto& t : tensors) n += t.nbytes;
  return n;
}

std::string to_text(const ModelSummary& s) {
  std::string out;
  out += "path:         " + s.path + "\n";
  out += "format:       " + std::string(to_string(s.format));
  if (!s.version.empty()) out += " v" + s.version;
  out += "\n";
  out += "architecture: " + (s.architecture.empty() ? std::string("(unknown)") : s.architecture) +
         "\n";
  out += "size:         " + format_bytes(s.file_bytes) + ", " + std::to_string(s.tensors.size()) +
         " tensors, " + std::to_string(s.parameters) + " parameters\n";
  if (!s.metadata.empty()) {
    out += "\nmetadata (" + std::to_string(s.metadata.size()) + " keys):\n";
    std::size_t kw = 0;
    std::size_t tw = 0;
    for (const auto& e : s.metadata) {
      kw = std::max(kw, e.key.size());
      tw = std::max(tw, e.type.size());
    }
    for (const auto& e : s.metadata) {
      out += "  " + e.key + std::string(kw - e.key.size() + 2, ' ') + e.type +
             std::string(tw - e.type.size() + 2, ' ') + e.value + "\n";
    }
  }
  if (!s.tensors.empty()) {
    out += "\ntensors (" + std::to_string(s.tensors.size()) + "):\n";
    std::size_t nw = 4;
    std::size_t sw = 5;
    for (const auto& t : s.tensors) {
      nw = std::max(nw, t.name.size());
      sw = std::max(sw, shape_string(t.shape).size());
    }
    char line[64];
    out += "  " + std::string("name") + std::string(nw - 2, ' ') + "dtype    " + "shape" +
           std::string(sw - 3, ' ') + "bytes\n";
    for (const auto& t : s.tensors) {
      const std::string shape = shape_string(t.shape);
      const std::string dtype(dtype_name(t.dtype));
      std::snprintf(line, sizeof line, "%12llu", static_cast<unsigned long long>(t.nbytes));
      out += "  " + t.name + std::string(nw - t.name.size() + 2, ' ') + dtype +
             std::string(dtype.size() < 9 ? 9 - dtype.size() : 1, ' ') + shape +
             std::string(sw - shape.size() + 2, ' ') + line;
      if (!t.file.empty()) out += "  " + t.file;
      out += "\n";
    }
  }
  return out;
}

nlohmann::json to_json(const ModelSummary& s) {
  nlohmann::json j;
  j["path"] = s.path;
  j["format"] = to_string(s.format);
  if (!s.version.empty()) j["version"] = s.version;
  j["architecture"] = s.architecture;
  j["file_bytes"] = s.file_bytes;
  j["tensor_bytes"] = s.tensor_bytes();
  j["parameters"] = s.parameters;
  j["metadata"] = nlohmann::json::array();
  for (const auto& e : s.metadata) {
    j["metadata"].push_back({{"key", e.key}, {"type", e.type}, {"value", e.value}});
  }
  j["tensors"] = nlohmann::json::array();
  for (const auto& t : s.tensors) {
    nlohmann::json row = {{"name", t.name},
                          {"dtype", std::string(dtype_name(t.dtype))},
                          {"shape", t.shape},
                          {"bytes", t.nbytes}};
    if (!t.file.empty()) row["file"] = t.file;
    j["tensors"].push_back(std::move(row));
  }
  return j;
}

}  // namespace hearth::formats
