// The T5 v1.1 encoder (Hugging Face T5EncoderModel, FLUX.1's text_encoder_2): shared token
// embedding (unscaled), blocks of RMS-normed self-attention without score scaling plus a relative
// position bias (bidirectional buckets; the table lives in block 0 and is shared by every block)
// and an RMS-normed gated-GELU feed-forward (gelu_new, the tanh approximation), then a final RMS
// norm. Weights come from a Hugging Face folder (text_encoder_2/: config.json and
// model*.safetensors, sharded or not) or a single safetensors file with the same names
// (ComfyUI's t5xxl_fp16.safetensors and kin), in f32, f16 or bf16, read in place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "hearth/models/encoder_common.hpp"

namespace hearth::models {

struct T5EncoderConfig {
  std::int64_t vocab = 32128;
  std::int64_t d_model = 4096;
  std::int64_t d_kv = 64;
  std::int64_t heads = 64;
  std::int64_t d_ff = 10240;
  std::int64_t layers = 24;
  std::int64_t num_buckets = 32;
  std::int64_t max_distance = 128;
  float eps = 1e-6f;
  bool gated = true;  // feed_forward_proj "gated-gelu" (v1.1); false: "relu" (original T5)
};

// The relative-position bucket of key position minus query position, bidirectional, as
// transformers' T5Attention._relative_position_bucket computes it (in float32 for the log part).
std::int64_t t5_relative_bucket(std::int64_t relative_position, std::int64_t num_buckets,
                                std::int64_t max_distance);

class T5Encoder {
 public:
  // A folder (config.json required) or a single .safetensors file (shape from the tensors:
  // d_kv 64, heads from the bias table, 128 max distance, gated-GELU, eps 1e-6). Errors name the
  // file and the tensor or key. mflux's saved text_encoder_2/ (found by its shards' metadata, see
  // is_mflux_folder) is read too: mflux's names (t5_blocks.N.attention / .ff, final_layer_norm),
  // the same shape rules, its MLX affine linears and embedding tables (mflux-save --quantize 4|8)
  // read in place by the affine kernels.
  static std::unique_ptr<T5Encoder> load(const std::filesystem::path& path,
                                         const TextEncoderOptions& options = {});
  // Random weights of the given shape in dtype (f32, f16, bf16), no file.
  static std::unique_ptr<T5Encoder> random(const T5EncoderConfig& config, DType dtype,
                                           unsigned seed, const TextEncoderOptions& options = {});
  ~T5Encoder();

  const T5EncoderConfig& config() const { return config_; }
  const std::string& source() const { return source_; }
  std::int64_t parameters() const { return parameters_; }
  kernels::Backend& backend() { return *backend_; }

  // Final hidden states [len, d_model] of one sequence of 1..1024 ids (no attention mask: padding
  // tokens are attended to, as the FLUX pipelines do). Safe from several threads (serialised).
  std::vector<float> encode(std::span<const std::int32_t> ids);

 private:
  struct Layer;
  T5Encoder() = default;
  void build(const detail::EncoderWeights& w, const TextEncoderOptions& options);
  static std::unique_ptr<T5Encoder> load_mflux(const std::filesystem::path& dir,
                                               const TextEncoderOptions& options);

  T5EncoderConfig config_;
  std::string source_;
  std::int64_t parameters_ = 0;
  std::shared_ptr<ThreadPool> pool_;
  std::unique_ptr<kernels::Backend> backend_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  kernels::WeightView embedding_;
  std::vector<float> bias_table_;  // [num_buckets, heads]
  std::vector<float> final_gamma_;
  std::vector<Layer> layers_;
  std::mutex mutex_;
};

}  // namespace hearth::models
