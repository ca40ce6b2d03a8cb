#include "hearth/formats/hf_folder.hpp"

#include <algorithm>
#include <type_traits>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"

namespace hearth::formats {
namespace fs = std::filesystem;
namespace {

std::optional<fs::path> existing(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p;
  return std::nullopt;
}

[[noreturn]] void bad_config(const fs::path& file, const std::string& message,
                             const std::string& key = {}) {
  throw Error(ErrorCode::kFormat, message, {.file = file.string(), .key = key});
}

// A shard name from an index file must name a file inside the folder, never a path out of it.
void check_shard_name(const std::string& name, const fs::path& index_file) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
      name.find('\\') != std::string::npos) {
    bad_config(index_file, "weight_map names a file outside the model folder: \"" + name + "\"");
  }
}

// obj[key] as T when present and of T's JSON type, fallback when absent; another type is an error
// naming the file and key (the JSON library's own exception would name neither).
template <class T>
T get_or(const nlohmann::json& obj, const char* key, T fallback, const fs::path& file) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  const bool ok = std::is_same_v<T, bool>          ? it->is_boolean()
                  : std::is_same_v<T, std::string> ? it->is_string()
                                                   : it->is_number_integer();
  if (!ok) bad_config(file, std::string("has the wrong JSON type (") + it->type_name() + ")", key);
  return it->get<T>();
}

}  // namespace

bool TokenizerFiles::any() const {
  return tokenizer_json || vocab_txt || vocab_json || sentencepiece;
}

const char* to_string(PoolingMode mode) {
  switch (mode) {
    case PoolingMode::kMean:
      return "mean";
    case PoolingMode::kCls:
      return "cls";
    case PoolingMode::kMax:
      return "max";
    case PoolingMode::kMeanSqrtLen:
      return "mean_sqrt_len_tokens";
    case PoolingMode::kLastToken:
      return "lasttoken";
    case PoolingMode::kWeightedMean:
      return "weightedmean";
  }
  return "?";
}

nlohmann::json read_json_file(const fs::path& path) {
  const std::string text = read_text_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(ErrorCode::kFormat, std::string("not valid JSON: ") + e.what(),
                {.file = path.string(), .offset = e.byte});
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("not valid JSON: ") + e.what(),
                {.file = path.string()});
  }
}

ModelFolder ModelFolder::open(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    throw Error(ErrorCode::kNotFound, "model folder does not exist", {.file = dir.string()});
  }
  if (!fs::is_directory(dir, ec)) {
    throw Error(ErrorCode::kInvalidArgument, "expected a model folder, found a file",
                {.file = dir.string()});
  }
  ModelFolder m;
  m.path_ = dir;
  if (const auto p = existing(dir / "config.json")) {
    m.config_ = read_json_file(*p);
    if (!m.config_.is_object()) bad_config(*p, "config.json must hold a JSON object");
    m.has_config_ = true;
  }
  if (const auto p = existing(dir / "generation_config.json")) {
    m.generation_config_ = read_json_file(*p);
  }
  TokenizerFiles& t = m.tokenizer_files_;
  t.tokenizer_json = existing(dir / "tokenizer.json");
  t.tokenizer_config = existing(dir / "tokenizer_config.json");
  t.special_tokens_map = existing(dir / "special_tokens_map.json");
  t.vocab_txt = existing(dir / "vocab.txt");
  t.vocab_json = existing(dir / "vocab.json");
  t.merges_txt = existing(dir / "merges.txt");
  t.sentencepiece = existing(dir / "tokenizer.model");

  m.load_sentence_transformers();
  m.load_weights();
  m.load_quantization();
  return m;
}

std::string ModelFolder::architecture() const {
  const auto it = config_.find("architectures");
  if (it != config_.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    return (*it)[0].get<std::string>();
  }
  return {};
}

std::string ModelFolder::model_type() const {
  const auto it = config_.find("model_type");
  return it != config_.end() && it->is_string() ? it->get<std::string>() : std::string();
}

void ModelFolder::load_sentence_transformers() {
  if (const auto p = existing(path_ / "sentence_bert_config.json")) {
    const nlohmann::json cfg = read_json_file(*p);
    const auto it = cfg.find("max_seq_length");
    if (cfg.is_object() && it != cfg.end() && it->is_number_unsigned() &&
        it->get<std::uint64_t>() <= 1u << 20) {
      max_seq_length_ = it->get<int>();
    }
  }
  const auto modules_file = existing(path_ / "modules.json");
  if (!modules_file) return;
  const nlohmann::json modules = read_json_file(*modules_file);
  if (!modules.is_array()) bad_config(*modules_file, "modules.json must hold a JSON array");
  for (const auto& entry : modules) {
    if (!entry.is_object()) bad_config(*modules_file, "each module must be an object");
    SentenceTransformersModule mod;
    mod.idx = get_or(entry, "idx", 0, *modules_file);
    mod.name = get_or(entry, "name", std::string(), *modules_file);
    mod.path = get_or(entry, "path", std::string(), *modules_file);
    mod.type = get_or(entry, "type", std::string(), *modules_file);
    if (mod.path.find("..") != std::string::npos || (!mod.path.empty() && mod.path[0] == '/')) {
      bad_config(*modules_file, "module path leaves the model folder", mod.path);
    }
    const std::string_view type = mod.type;
    if (type.ends_with(".Normalize")) normalize_ = true;
    if (type.ends_with(".Pooling")) {
      const fs::path cfg_file = path_ / mod.path / "config.json";
      if (!existing(cfg_file)) {
        // A folder with only the tokenizer files (no weights) often lacks it; whoever needs the
        // pooling asks pooling() and reports it missing then.
        st_modules_.push_back(std::move(mod));
        continue;
      }
      const nlohmann::json cfg = read_json_file(cfg_file);
      if (!cfg.is_object()) bad_config(cfg_file, "pooling config must be a JSON object");
      PoolingConfig pc;
      const auto flag = [&](const char* key) {
        const auto it = cfg.find(key);
        return it != cfg.end() && it->is_boolean() && it->get<bool>();
      };
      int modes = 0;
      const std::pair<const char*, PoolingMode> kModes[] = {
          {"pooling_mode_cls_token", PoolingMode::kCls},
          {"pooling_mode_mean_tokens", PoolingMode::kMean},
          {"pooling_mode_max_tokens", PoolingMode::kMax},
          {"pooling_mode_mean_sqrt_len_tokens", PoolingMode::kMeanSqrtLen},
          {"pooling_mode_lasttoken", PoolingMode::kLastToken},
          {"pooling_mode_weightedmean_tokens", PoolingMode::kWeightedMean},
      };
      for (const auto& [key, mode] : kModes) {
        if (flag(key)) {
          pc.mode = mode;
          ++modes;
        }
      }
      if (modes != 1) {
        throw Error(ErrorCode::kUnsupported,
                    "pooling config enables " + std::to_string(modes) +
                        " modes; hearth supports exactly one",
                    {.file = cfg_file.string()});
      }
      pc.dimension = get_or(cfg, "word_embedding_dimension", 0, cfg_file);
      pc.include_prompt = get_or(cfg, "include_prompt", true, cfg_file);
      pooling_ = pc;
    }
    st_modules_.push_back(std::move(mod));
  }
}

void ModelFolder::load_weights() {
  std::vector<std::string> shard_names;
  std::optional<nlohmann::json> weight_map;
  fs::path index_file = path_ / "model.safetensors.index.json";
  // diffusers names its shards' index after diffusion_pytorch_model.
  if (!existing(index_file)) index_file = path_ / "diffusion_pytorch_model.safetensors.index.json";
  if (existing(index_file)) {
    const nlohmann::json index = read_json_file(index_file);
    const auto it = index.find("weight_map");
    if (!index.is_object() || it == index.end() || !it->is_object()) {
      bad_config(index_file, "index has no \"weight_map\" object");
    }
    for (const auto& [tensor, shard] : it->items()) {
      if (!shard.is_string())
        bad_config(index_file, "weight_map values must be file names", tensor);
      const std::string name = shard.get<std::string>();
      check_shard_name(name, index_file);
      if (std::find(shard_names.begin(), shard_names.end(), name) == shard_names.end()) {
        shard_names.push_back(name);
      }
    }
    weight_map = *it;
  } else {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(path_, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
        shard_names.push_back(entry.path().filename().string());
      }
    }
    std::sort(shard_names.begin(), shard_names.end());
    if (shard_names.empty() &&
        (existing(path_ / "pytorch_model.bin") || existing(path_ / "model.bin"))) {
      throw Error(ErrorCode::kUnsupported,
                  "weights are in PyTorch pickle format (.bin); hearth reads only .safetensors "
                  "(convert with safetensors' convert script, or download the safetensors files)",
                  {.file = path_.string()});
    }
  }
  for (const std::string& name : shard_names) {
    const fs::path p = path_ / name;
    if (!existing(p)) {
      throw Error(ErrorCode::kNotFound, "weight shard listed in the index is missing",
                  {.file = p.string()});
    }
    shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(p)));
    const SafetensorsFile* shard = shards_.back().get();
    for (const SafetensorsTensorInfo& info : shard->tensors()) {
      if (!index_.emplace(info.name, TensorRef{shard, &info}).second) {
        throw Error(ErrorCode::kFormat, "tensor appears in more than one weight file",
                    {.file = p.string(), .key = info.name});
      }
    }
  }
  if (weight_map) {
    for (const auto& [tensor, shard] : weight_map->items()) {
      const auto it = index_.find(tensor);
      const fs::path expected = path_ / shard.get<std::string>();
      if (it == index_.end() || it->second.file->source() != expected.string()) {
        throw Error(ErrorCode::kFormat,
                    "index says this tensor is in " + shard.get<std::string>() + ", but it is not",
                    {.file = index_file.string(), .key = tensor});
      }
    }
  }
}

void ModelFolder::load_quantization() {
  const fs::path cfg_file = path_ / "config.json";
  auto it = config_.find("quantization");
  if (it == config_.end()) it = config_.find("quantization_config");
  if (it == config_.end() || !it->is_object()) return;
  const auto spec_of = [&](const nlohmann::json& j, const std::string& key) {
    const auto bits = j.find("bits");
    const auto group = j.find("group_size");
    if (bits == j.end() || group == j.end() || !bits->is_number_integer() ||
        !group->is_number_integer()) {
      bad_config(cfg_file, "quantization needs integer \"bits\" and \"group_size\"", key);
    }
    QuantSpec s{bits->get<int>(), group->get<int>()};
    if (s.bits != 2 && s.bits != 3 && s.bits != 4 && s.bits != 5 && s.bits != 6 && s.bits != 8) {
      throw Error(ErrorCode::kUnsupported, "quantization bits " + std::to_string(s.bits),
                  {.file = cfg_file.string(), .key = key});
    }
    if (s.group_size <= 0 || s.group_size > 4096) {
      bad_config(cfg_file, "group_size " + std::to_string(s.group_size) + " is out of range", key);
    }
    return s;
  };
  if (!it->contains("bits")) return;  // a quantization_config of another kind (GPTQ, AWQ...)
  quantization_ = spec_of(*it, "quantization");

  for (const auto& [name, ref] : index_) {
    if (!name.ends_with(".scales")) continue;
    const std::string base = name.substr(0, name.size() - 7);
    QuantSpec spec = *quantization_;
    if (const auto o = it->find(base); o != it->end()) {
      if (o->is_boolean() && !o->get<bool>()) continue;
      if (o->is_object()) spec = spec_of(*o, "quantization." + base);
    }
    const auto w = index_.find(base + ".weight");
    if (w == index_.end()) {
      throw Error(ErrorCode::kFormat, "has scales but no packed weight " + base + ".weight",
                  {.file = ref.file->source(), .key = name});
    }
    QuantizedWeight q;
    q.base = base;
    q.spec = spec;
    q.weight = w->second;
    q.scales = ref;
    if (const auto b = index_.find(base + ".biases"); b != index_.end()) q.biases = b->second;
    const SafetensorsTensorInfo& wi = *q.weight.info;
    const SafetensorsTensorInfo& si = *q.scales.info;
    const auto mismatch = [&](const std::string& why) {
      throw Error(ErrorCode::kFormat, why, {.file = q.weight.file->source(), .key = base});
    };
    if (wi.dtype != DType::kU32) mismatch("packed weight must be U32");
    if (wi.shape.empty() || wi.shape.size() != si.shape.size()) {
      mismatch("packed weight and scales differ in rank");
    }
    q.in_features = si.shape.back() * spec.group_size;
    if (wi.shape.back() * 32 != q.in_features * spec.bits) {
      mismatch("packed weight row of " + std::to_string(wi.shape.back()) + " words does not hold " +
               std::to_string(q.in_features) + " inputs of " + std::to_string(spec.bits) + " bits");
    }
    for (std::size_t d = 0; d + 1 < wi.shape.size(); ++d) {
      if (wi.shape[d] != si.shape[d]) mismatch("packed weight and scales differ in outer shape");
    }
    if (q.biases && q.biases->info->shape != si.shape)
      mismatch("biases and scales differ in shape");
    q.out_features = wi.shape.size() >= 2 ? wi.shape[wi.shape.size() - 2] : 1;
    quantized_.push_back(std::move(q));
  }
  std::sort(quantized_.begin(), quantized_.end(),
            [](const auto& a, const auto& b) { return a.base < b.base; });
}

const QuantizedWeight* ModelFolder::find_quantized(std::string_view base) const {
  const auto it =
      std::lower_bound(quantized_.begin(), quantized_.end(), base,
                       [](const QuantizedWeight& q, std::string_view b) { return q.base < b; });
  return it != quantized_.end() && it->base == base ? &*it : nullptr;
}

std::vector<TensorRef> ModelFolder::tensors() const {
  std::vector<TensorRef> out;
  for (const auto& shard : shards_) {
    for (const auto& info : shard->tensors()) out.push_back({shard.get(), &info});
  }
  return out;
}

std::optional<TensorRef> ModelFolder::find_tensor(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

}  // namespace hearth::formats
