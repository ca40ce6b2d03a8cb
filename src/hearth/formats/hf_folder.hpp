// A Hugging Face model folder as people download it: config.json, weights in *.safetensors
// (single file, or shards listed by model.safetensors.index.json), tokenizer files, the
// sentence-transformers extras (modules.json, 1_Pooling/config.json, Normalize) and the
// mlx-community quantization block (config.json "quantization": {group_size, bits}) whose packed
// U32 weights come with *.scales / *.biases tensors.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hearth/formats/safetensors.hpp"

namespace hearth::formats {

struct TokenizerFiles {
  std::optional<std::filesystem::path> tokenizer_json;
  std::optional<std::filesystem::path> tokenizer_config;
  std::optional<std::filesystem::path> special_tokens_map;
  std::optional<std::filesystem::path> vocab_txt;   // WordPiece
  std::optional<std::filesystem::path> vocab_json;  // GPT-2 style BPE
  std::optional<std::filesystem::path> merges_txt;
  std::optional<std::filesystem::path> sentencepiece;  // tokenizer.model
  bool any() const;
};

struct SentenceTransformersModule {
  int idx = 0;
  std::string name;
  std::string path;  // relative to the model folder ("" for the transformer itself)
  std::string type;  // "sentence_transformers.models.Pooling", ...
};

enum class PoolingMode { kMean, kCls, kMax, kMeanSqrtLen, kLastToken, kWeightedMean };
const char* to_string(PoolingMode mode);

struct PoolingConfig {
  PoolingMode mode = PoolingMode::kMean;
  int dimension = 0;
  bool include_prompt = true;
};

// mlx affine quantization: w = scales * q + biases, per group of group_size inputs (see
// tensor/mlx_quant.hpp for the packing). bits 2, 3, 4, 5, 6 or 8; group_size 32, 64 or 128.
struct QuantSpec {
  int bits = 0;
  int group_size = 0;
};

struct TensorRef {
  const SafetensorsFile* file = nullptr;
  const SafetensorsTensorInfo* info = nullptr;
};

struct QuantizedWeight {
  std::string base;  // "model.layers.0.mlp.down_proj"
  QuantSpec spec;
  TensorRef weight;  // U32, [out, in * bits / 32]
  TensorRef scales;  // F16, BF16 or F32 [out, in / group_size]
  TensorRef biases;  // the scales' type and shape
  std::int64_t in_features = 0;
  std::int64_t out_features = 0;
};

class ModelFolder {
 public:
  // Reads the configs and maps every weight file. Errors name the file at fault.
  static ModelFolder open(const std::filesystem::path& dir);

  const std::filesystem::path& path() const { return path_; }
  const nlohmann::json& config() const { return config_; }  // {} when config.json is absent
  bool has_config() const { return has_config_; }
  const std::optional<nlohmann::json>& generation_config() const { return generation_config_; }
  std::string architecture() const;  // config "architectures"[0], or ""
  std::string model_type() const;    // config "model_type", or ""

  const TokenizerFiles& tokenizer_files() const { return tokenizer_files_; }

  const std::vector<SentenceTransformersModule>& st_modules() const { return st_modules_; }
  // From 1_Pooling/config.json when modules.json lists a Pooling module and the file exists.
  const std::optional<PoolingConfig>& pooling() const { return pooling_; }
  bool normalize() const { return normalize_; }
  // sentence_bert_config.json "max_seq_length" (sentence-transformers truncates inputs there).
  const std::optional<int>& max_seq_length() const { return max_seq_length_; }

  // config.json "quantization" (else "quantization_config") when it is mlx affine: the default
  // spec. Modules listed in it by path ("model.layers.0.mlp.down_proj": {bits, group_size}) get
  // their own; a weight is quantized when it has *.scales (U32 weight, *.biases beside), and
  // every such weight is checked against its spec here (errors name the file and tensor).
  const std::optional<QuantSpec>& quantization() const { return quantization_; }
  const std::vector<QuantizedWeight>& quantized_weights() const { return quantized_; }
  // The quantized weight whose base name is base (without ".weight"), or nullptr.
  const QuantizedWeight* find_quantized(std::string_view base) const;

  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  std::vector<TensorRef> tensors() const;  // every tensor, shard by shard, in header order
  std::optional<TensorRef> find_tensor(std::string_view name) const;
  static TensorView view(const TensorRef& ref) { return ref.file->view(*ref.info); }

 private:
  void load_weights();
  void load_sentence_transformers();
  void load_quantization();

  std::filesystem::path path_;
  nlohmann::json config_ = nlohmann::json::object();
  bool has_config_ = false;
  std::optional<nlohmann::json> generation_config_;
  TokenizerFiles tokenizer_files_;
  std::vector<SentenceTransformersModule> st_modules_;
  std::optional<PoolingConfig> pooling_;
  bool normalize_ = false;
  std::optional<int> max_seq_length_;
  std::optional<QuantSpec> quantization_;
  std::vector<QuantizedWeight> quantized_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, TensorRef> index_;
};

// Parses a JSON file; errors name the file and the byte where parsing failed.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace hearth::formats
