#include "hearth/formats/hf_folder.hpp"

#include <algorithm>
#include <type_traits>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/tensor/mlx_quant.hpp"

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
  const char* block_key = "quantization";
  auto it = config_.find(block_key);
  if (it == config_.end() || !it->is_object()) {
    block_key = "quantization_config";
    it = config_.find(block_key);
  }
  // mflux's saved models (mflux-save) have no config.json: each shard's metadata holds
  // "quantization_level" (the bits, or "None") beside "mflux_version", and MLX's nn.quantize
  // used its default group size, 64.
  std::optional<QuantSpec> mflux;
  if ((it == config_.end() || !it->is_object()) && !shards_.empty()) {
    if (const std::string* level = shards_.front()->find_metadata("quantization_level");
        level != nullptr && *level != "None" && *level != "null" && !level->empty()) {
      const bool digits =
          level->size() <= 2 &&
          std::all_of(level->begin(), level->end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits || !mlx::valid_bits(std::stoi(*level))) {
        throw Error(ErrorCode::kUnsupported,
                    "mflux quantization_level \"" + *level + "\" (mlx has 2, 3, 4, 5, 6, 8 bits)",
                    {.file = shards_.front()->source(), .key = "quantization_level"});
      }
      mflux = QuantSpec{std::stoi(*level), 64};
      block_key = "mflux's quantization_level metadata";
    }
  }
  if ((it == config_.end() || !it->is_object()) && !mflux) {
    for (const auto& [name, ref] : index_) {
      if (!name.ends_with(".weight") || ref.info->dtype != DType::kU32) continue;
      if (index_.count(name.substr(0, name.size() - 7) + ".scales") != 0) {
        throw Error(ErrorCode::kFormat,
                    "packed U32 weight with scales, but config.json has no \"quantization\" "
                    "block saying its bits and group_size",
                    {.file = ref.file->source(), .key = name});
      }
    }
    return;
  }
  static const nlohmann::json kNoBlock = nlohmann::json::object();
  const nlohmann::json& block = mflux ? kNoBlock : *it;
  if (!mflux && !block.contains("bits")) return;  // a quantization_config of another kind (GPTQ...)
  if (const auto mode = block.find("mode");
      mode != block.end() && !(mode->is_string() && mode->get<std::string>() == "affine")) {
    throw Error(ErrorCode::kUnsupported,
                "quantization mode " + mode->dump() + " (hearth reads mlx \"affine\")",
                {.file = cfg_file.string(), .key = std::string(block_key) + ".mode"});
  }
  const auto spec_of = [&](const nlohmann::json& j, const std::string& key) {
    const auto bits = j.find("bits");
    const auto group = j.find("group_size");
    if (bits == j.end() || group == j.end() || !bits->is_number_integer() ||
        !group->is_number_integer()) {
      bad_config(cfg_file, "quantization needs integer \"bits\" and \"group_size\"", key);
    }
    QuantSpec s{bits->get<int>(), group->get<int>()};
    if (!mlx::valid_bits(s.bits)) {
      throw Error(ErrorCode::kUnsupported,
                  "quantization bits " + std::to_string(s.bits) + " (mlx has 2, 3, 4, 5, 6, 8)",
                  {.file = cfg_file.string(), .key = key});
    }
    if (!mlx::valid_group_size(s.group_size)) {
      throw Error(
          ErrorCode::kUnsupported,
          "quantization group_size " + std::to_string(s.group_size) + " (mlx has 32, 64, 128)",
          {.file = cfg_file.string(), .key = key});
    }
    return s;
  };
  quantization_ = mflux ? *mflux : spec_of(block, block_key);
  // Per-module overrides: "model.layers.0.mlp.down_proj": {bits, group_size} or false.
  std::unordered_map<std::string, std::optional<QuantSpec>> overrides;
  for (const auto& [key, value] : block.items()) {
    const std::string where = std::string(block_key) + "." + key;
    if (value.is_object()) {
      overrides[key] = spec_of(value, where);
    } else if (value.is_boolean()) {
      if (value.get<bool>()) bad_config(cfg_file, "a module override is an object or false", where);
      overrides[key] = std::nullopt;
    }
  }

  for (const auto& [name, ref] : index_) {
    const bool is_scales = name.ends_with(".scales");
    if (!is_scales && !name.ends_with(".weight")) continue;
    const std::string base = name.substr(0, name.size() - 7);
    const auto w = index_.find(base + ".weight");
    const auto sc = index_.find(base + ".scales");
    if (!is_scales) {  // a packed weight needs its scales
      if (ref.info->dtype == DType::kU32 && sc == index_.end()) {
        throw Error(ErrorCode::kFormat, "packed U32 weight has no " + base + ".scales tensor",
                    {.file = ref.file->source(), .key = name});
      }
      continue;
    }
    if (w == index_.end()) {
      throw Error(ErrorCode::kFormat, "has scales but no packed weight " + base + ".weight",
                  {.file = ref.file->source(), .key = name});
    }
    QuantSpec spec = *quantization_;
    if (const auto o = overrides.find(base); o != overrides.end()) {
      if (!o->second) {
        throw Error(ErrorCode::kFormat,
                    "config.json marks " + base + " unquantized (false) but it has scales",
                    {.file = ref.file->source(), .key = name});
      }
      spec = *o->second;
    }
    const auto b = index_.find(base + ".biases");
    if (b == index_.end()) {
      throw Error(ErrorCode::kFormat, "quantized weight has no " + base + ".biases tensor",
                  {.file = ref.file->source(), .key = name});
    }
    QuantizedWeight q;
    q.base = base;
    q.spec = spec;
    q.weight = w->second;
    q.scales = ref;
    q.biases = b->second;
    const SafetensorsTensorInfo& wi = *q.weight.info;
    const SafetensorsTensorInfo& si = *q.scales.info;
    const SafetensorsTensorInfo& bi = *q.biases.info;
    const auto fail = [&](const TensorRef& at, const std::string& why) {
      throw Error(ErrorCode::kFormat, why, {.file = at.file->source(), .key = at.info->name});
    };
    if (wi.dtype != DType::kU32) {
      fail(q.weight,
           "a weight with scales must be packed U32, not " + std::string(dtype_name(wi.dtype)));
    }
    if (si.dtype != DType::kF16 && si.dtype != DType::kBF16 && si.dtype != DType::kF32) {
      fail(q.scales, "scales must be F16, BF16 or F32, not " + std::string(dtype_name(si.dtype)));
    }
    if (bi.dtype != si.dtype) {
      fail(q.biases, "biases are " + std::string(dtype_name(bi.dtype)) + " but scales " +
                         std::string(dtype_name(si.dtype)));
    }
    if (wi.shape.size() < 2 || wi.shape.size() != si.shape.size()) {
      fail(q.weight, "packed weight " + shape_string(wi.shape) + " and scales " +
                         shape_string(si.shape) + " differ in rank (both must be matrices)");
    }
    if (bi.shape != si.shape) {
      fail(q.biases, "biases " + shape_string(bi.shape) + " and scales " + shape_string(si.shape) +
                         " differ in shape");
    }
    for (std::size_t d = 0; d + 1 < wi.shape.size(); ++d) {
      if (wi.shape[d] != si.shape[d]) {
        fail(q.scales, "scales " + shape_string(si.shape) + " and packed weight " +
                           shape_string(wi.shape) + " differ in rows");
      }
    }
    const std::string params = " (bits " + std::to_string(spec.bits) + ", group_size " +
                               std::to_string(spec.group_size) + " from " + std::string(block_key) +
                               ")";
    const std::int64_t words = wi.shape.back();
    if (words * 32 % spec.bits != 0) {
      fail(q.weight, "packed rows of " + std::to_string(words) + " words do not hold whole " +
                         std::to_string(spec.bits) + "-bit codes" + params);
    }
    q.in_features = words * 32 / spec.bits;
    if (q.in_features % spec.group_size != 0) {
      fail(q.weight, "group size " + std::to_string(spec.group_size) +
                         " does not divide the input width " + std::to_string(q.in_features) +
                         params);
    }
    if (q.in_features / spec.group_size != si.shape.back()) {
      fail(q.scales, "scales " + shape_string(si.shape) + " do not match the packed weight " +
                         shape_string(wi.shape) + ": " + std::to_string(q.in_features) +
                         " inputs make " + std::to_string(q.in_features / spec.group_size) +
                         " groups per row" + params);
    }
    q.out_features = wi.shape[wi.shape.size() - 2];
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
