// The shared decoder skeleton behind LanguageModel (decoder.hpp): the architecture table that the
// per-architecture files (llama.cpp, mistral.cpp, phi3.cpp, qwen2.cpp, qwen3.cpp) fill in, the
// config readers they share, and the loaded model. Internal to models/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/models/decoder.hpp"

namespace hearth::models {

// Reads config.json values with errors naming the file and key.
class HfConfig {
 public:
  HfConfig(const nlohmann::json& json, std::string file) : json_(json), file_(std::move(file)) {}
  const nlohmann::json& json() const { return json_; }
  const std::string& file() const { return file_; }
  bool has(const char* key) const;  // present and not null
  std::int64_t integer(const char* key, std::optional<std::int64_t> fallback = {}) const;
  double number(const char* key, std::optional<double> fallback = {}) const;
  bool boolean(const char* key, bool fallback) const;
  [[noreturn]] void fail(const char* key, const std::string& what) const;

 private:
  const nlohmann::json& json_;
  std::string file_;
};

// One architecture: how to recognise it and what it adds to the common config.
struct ArchSpec {
  const char* name;                           // DecoderConfig::architecture
  std::vector<std::string> hf_architectures;  // config.json "architectures"[0]
  std::vector<std::string> hf_model_types;    // config.json "model_type"
  std::vector<std::string> gguf_archs;        // general.architecture
  // After the common keys: flags and the architecture's own keys.
  std::function<void(const HfConfig&, DecoderConfig&)> from_hf;
  std::function<void(const formats::GGUFFile&, DecoderConfig&)> from_gguf;
};

const ArchSpec& llama_arch();
const ArchSpec& mistral_arch();
const ArchSpec& phi3_arch();
const ArchSpec& qwen2_arch();
const ArchSpec& qwen3_arch();

// config.json rope_scaling (none, default, linear, llama3, longrope/su) into c.rope; needs
// c.rope.dims and c.context set.
void read_hf_rope_scaling(const HfConfig& cfg, DecoderConfig& c);

// A weight source by Hugging Face name (model.layers.N.self_attn.q_proj.weight ...): the folder's
// tensors, or a GGUF file's under llama.cpp's names.
// expected is the shape the config implies (random weights are made to it).
using FindTensor =
    std::function<std::optional<TensorView>(const std::string& hf_name, const Shape& expected)>;
// An mlx affine weight by Hugging Face module path (model.layers.N.self_attn.q_proj, lm_head,
// model.embed_tokens): its packed view checked against [rows, cols], or nullopt when that module
// is not quantized (then FindTensor gives its plain weight). Errors name the file and tensor.
using FindAffine = std::function<std::optional<kernels::WeightView>(
    const std::string& module, std::int64_t rows, std::int64_t cols)>;

// A GGUF rope-factor tensor (rope_freqs, rope_factors_short/long: f32 [dims / 2]); empty when
// absent, an error naming it when mis-shaped.
std::vector<float> gguf_rope_factors(const formats::GGUFFile& f, const char* name,
                                     std::int64_t dims);

// Qwen2/Qwen3 use_sliding_window: the window on layers from max_window_layers on.
void read_hf_qwen_window(const HfConfig& cfg, DecoderConfig& c);

// llama.cpp's GGUF name for a Hugging Face decoder tensor name; unknown names come back unchanged.
std::string decoder_gguf_name(const std::string& hf);

struct DecoderLayer {
  std::unique_ptr<kernels::LinearWeights> q, k, v, qkv, o, gate, up, gate_up, down;
  std::vector<float> attn_norm, ffn_norm, q_norm, k_norm;
  std::int64_t window = 0;
};

// Activations of one forward pass (a session's feed, or a batched decode step), grown on demand.
struct DecoderScratch {
  std::vector<float> x, xn, q, k, v, qkv, attn, tmp, gate, up, act, logits;
  std::vector<std::int64_t> positions;
};

class ModelImpl {
 public:
  DecoderConfig config;
  std::string name;
  std::filesystem::path path;
  std::string source;       // file named in errors
  bool gguf_names = false;  // errors name tensors as the GGUF file does
  std::optional<tokenize::Tokenizer> tokenizer;
  std::int32_t bos_id = -1;
  bool add_bos = false;
  std::vector<std::int32_t> eos_ids;
  std::string bos_token, eos_token;
  std::int64_t default_context = 0;
  std::string context_note;
  DType kv_dtype = DType::kF16;

  // Keeps the mapped files (and random weights) alive for the views below.
  std::vector<std::shared_ptr<const void>> keep_alive;
  std::shared_ptr<ThreadPool> pool;
  std::unique_ptr<kernels::Backend> backend;
  std::mutex mutex;              // serialises sessions on the pool
  DecoderScratch batch_scratch;  // decode_step's, under mutex

  kernels::WeightView embedding;
  std::unique_ptr<kernels::LinearWeights> output;
  std::vector<float> final_norm;
  std::vector<DecoderLayer> layers;
  // Inverse rotary frequencies (rope.dims / 2): short (or only) and long (longrope).
  std::vector<float> inv_freq_short, inv_freq_long;
  std::uint64_t weight_bytes_per_token = 0;

  // Validates the config, builds the backend and every layer from find (and find_affine for mlx
  // quantized modules, when given).
  void build(const FindTensor& find, const LlmOptions& options, const FindAffine& find_affine = {});
  // The context a session of `requested` tokens gets (0 = default), checked against memory.
  std::int64_t session_context(std::int64_t requested) const;
  std::uint64_t kv_bytes(std::int64_t context) const;
};

void check_decoder_config(const DecoderConfig& c, const std::string& source);

}  // namespace hearth::models
