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

// The GGUF architectures and Hugging Face classes hearth runs as decoders.
bool is_decoder_architecture(const std::string& a) {
  for (const char* d : {"llama", "mistral", "phi3", "qwen2", "qwen3"}) {
    if (a == d) return true;
  }
  return a.size() > 11 && a.compare(a.size() - 11, 11, "ForCausalLM") == 0;
}

std::int64_t gguf_int(const GGUFFile& f, const std::string& key) {
  const GGUFValue* v = f.find(key);
  const std::optional<std::int64_t> n = v != nullptr ? v->as_int() : std::nullopt;
  return n.value_or(0);
}

ModelSummary::Decoder gguf_decoder(const GGUFFile& f) {
  const std::string a = f.architecture() + ".";
  ModelSummary::Decoder d;
  d.context = gguf_int(f, a + "context_length");
  d.layers = gguf_int(f, a + "block_count");
  d.hidden = gguf_int(f, a + "embedding_length");
  d.heads = gguf_int(f, a + "attention.head_count");
  d.kv_heads = gguf_int(f, a + "attention.head_count_kv");
  if (d.kv_heads == 0) d.kv_heads = d.heads;
  d.sliding_window = gguf_int(f, a + "attention.sliding_window");
  if (const GGUFValue* v = f.find(a + "rope.scaling.type"); v != nullptr && v->as_string()) {
    if (*v->as_string() != "none") d.rope_scaling = *v->as_string();
  }
  if (const GGUFValue* v = f.find("tokenizer.ggml.tokens"); v != nullptr && v->as_array()) {
    d.vocab = static_cast<std::int64_t>(v->as_array()->size());
  }
  d.chat_template = f.find("tokenizer.chat_template") != nullptr;
  return d;
}

std::int64_t json_int(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

ModelSummary::Decoder folder_decoder(const ModelFolder& m, const fs::path& path) {
  const nlohmann::json& c = m.config();
  ModelSummary::Decoder d;
  d.context = json_int(c, "max_position_embeddings");
  d.layers = json_int(c, "num_hidden_layers");
  d.hidden = json_int(c, "hidden_size");
  d.heads = json_int(c, "num_attention_heads");
  d.kv_heads = json_int(c, "num_key_value_heads");
  if (d.kv_heads == 0) d.kv_heads = d.heads;
  d.vocab = json_int(c, "vocab_size");
  if (const auto it = c.find("use_sliding_window");
      it == c.end() || !it->is_boolean() || it->get<bool>()) {
    d.sliding_window = json_int(c, "sliding_window");
  }
  if (const auto it = c.find("rope_scaling"); it != c.end() && it->is_object()) {
    for (const char* k : {"rope_type", "type"}) {
      if (const auto t = it->find(k); t != it->end() && t->is_string()) {
        d.rope_scaling = t->get<std::string>();
        break;
      }
    }
  }
  std::error_code ec;
  d.chat_template = fs::exists(path / "chat_template.jinja", ec);
  if (!d.chat_template && m.tokenizer_files().tokenizer_config) {
    try {
      const nlohmann::json t =
          nlohmann::json::parse(std::ifstream(*m.tokenizer_files().tokenizer_config));
      d.chat_template = t.contains("chat_template") && !t["chat_template"].is_null();
    } catch (const nlohmann::json::exception&) {
      // A damaged tokenizer_config.json is the tokenizer loader's to report.
    }
  }
  return d;
}

void summarize_gguf(const fs::path& path, std::size_t max_items, ModelSummary& s) {
  const GGUFFile f = GGUFFile::open(path);
  s.version = std::to_string(f.version());
  s.architecture = f.architecture();
  if (is_decoder_architecture(s.architecture)) s.decoder = gguf_decoder(f);
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
  if (is_decoder_architecture(s.architecture)) s.decoder = folder_decoder(m, path);
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
    s.parameters -= static_cast<std::uint64_t>(numel(q.biases.info->shape));
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
  if (const auto& d = s.decoder) {
    out += "decoder:      " + std::to_string(d->layers) + " layers, hidden " +
           std::to_string(d->hidden) + ", " + std::to_string(d->heads) + " heads (" +
           std::to_string(d->kv_heads) + " kv), vocab " + std::to_string(d->vocab) + "\n";
    out += "context:      " + std::to_string(d->context) + " tokens";
    if (!d->rope_scaling.empty()) out += ", rope scaling " + d->rope_scaling;
    if (d->sliding_window > 0) out += ", sliding window " + std::to_string(d->sliding_window);
    out += "\n";
    out += std::string("chat template: ") + (d->chat_template ? "yes" : "none") + "\n";
  }
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
  if (const auto& d = s.decoder) {
    j["decoder"] = {{"context", d->context},
                    {"layers", d->layers},
                    {"hidden", d->hidden},
                    {"heads", d->heads},
                    {"kv_heads", d->kv_heads},
                    {"vocab", d->vocab},
                    {"sliding_window", d->sliding_window},
                    {"rope_scaling", d->rope_scaling},
                    {"chat_template", d->chat_template}};
  }
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
