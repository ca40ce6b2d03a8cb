// One description of any model file or folder hearth can read, for `bench-cli inspect` and for
// the CLIs' "what did I just load" lines. Like llama.cpp's gguf-dump, for every format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hearth/tensor/dtype.hpp"
#include "hearth/tensor/tensor.hpp"

namespace hearth::formats {

enum class ModelFormat { kGGUF, kSafetensors, kHFFolder };
const char* to_string(ModelFormat f);

// Sniffs a path: a folder is a Hugging Face model folder; a file is GGUF by its magic number or
// safetensors by its header. Throws Error(kUnsupported) naming the path for anything else.
ModelFormat detect_format(const std::filesystem::path& path);

struct ModelSummary {
  struct Entry {
    std::string key;
    std::string type;   // "u32", "string", "array[string]", "json"...
    std::string value;  // display form
  };
  struct TensorRow {
    std::string name;
    DType dtype;
    Shape shape;
    std::uint64_t nbytes;
    std::string file;  // shard file name for folders, "" otherwise
  };
  std::string path;
  ModelFormat format;
  std::string version;       // "3" for GGUF v3; "" when the format has none
  std::string architecture;  // "llama", "BertModel", ...
  std::vector<Entry> metadata;
  std::vector<TensorRow> tensors;
  std::uint64_t file_bytes = 0;
  // Model parameters: elements of every tensor, except that mlx-packed weights count the values
  // they hold (words x 32 / bits) and their scales and biases count nothing.
  std::uint64_t parameters = 0;

  // What a decoder (causal LM) declares, read from its metadata alone; absent for other models.
  struct Decoder {
    std::int64_t context = 0;  // max_position_embeddings / <arch>.context_length
    std::int64_t layers = 0;
    std::int64_t hidden = 0;
    std::int64_t heads = 0;
    std::int64_t kv_heads = 0;
    std::int64_t vocab = 0;
    std::int64_t sliding_window = 0;  // 0: none
    std::string rope_scaling;         // "" when none
    bool chat_template = false;
  };
  std::optional<Decoder> decoder;

  std::uint64_t tensor_bytes() const;
};

// max_items bounds how many array elements each metadata value shows.
ModelSummary summarize(const std::filesystem::path& path, std::size_t max_items = 8);

std::string to_text(const ModelSummary& s);
nlohmann::json to_json(const ModelSummary& s);

}  // namespace hearth::formats
