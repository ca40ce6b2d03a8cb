// CLIP's text encoder (Hugging Face CLIPTextModel, as FLUX.1 and Stable Diffusion use it): token
// and position embeddings, pre-LN transformer layers with a causal mask and quick-GELU MLPs, a
// final layer norm; the pooled output is the final hidden state at the end-of-text token. Weights
// come from a Hugging Face folder (text_encoder/: config.json + model.safetensors) or a single
// safetensors file with the same names (ComfyUI's clip_l.safetensors; also under the
// "transformer." / "clip_l.transformer." / "cond_stage_model.transformer." prefixes), in f32, f16
// or bf16, read in place.
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

struct ClipTextConfig {
  std::int64_t vocab = 49408;
  std::int64_t hidden = 768;
  std::int64_t layers = 12;
  std::int64_t heads = 12;
  std::int64_t ffn = 3072;
  std::int64_t max_positions = 77;
  float eps = 1e-5f;
  kernels::Activation act = kernels::Activation::kQuickGelu;  // hidden_act quick_gelu or gelu
  // config.json eos_token_id. 2 (the original CLIP configs, FLUX.1's text_encoder) means the
  // pooled token is the argmax of the ids (the first highest id, which is <|endoftext|> in CLIP's
  // vocabulary), as transformers does for that legacy value; otherwise the first position
  // holding this id.
  std::int64_t eos_token_id = 2;
};

struct ClipTextOutput {
  std::vector<float> hidden;  // [len, hidden]: the final layer norm's output
  std::vector<float> pooled;  // [hidden]: hidden at the end-of-text position
};

class ClipTextModel {
 public:
  // A folder (config.json required) or a single .safetensors file (the shape is read from the
  // tensors: heads = hidden / 64, quick-GELU, eps 1e-5, argmax pooling). Errors name the file and
  // the tensor or key. mflux's saved text_encoder/ (found by its shards' metadata, see
  // is_mflux_folder) is read too: the same names and shape rules, its MLX affine linears and
  // embedding tables (mflux-save --quantize 4|8) read in place by the affine kernels.
  static std::unique_ptr<ClipTextModel> load(const std::filesystem::path& path,
                                             const TextEncoderOptions& options = {});
  // Random weights of the given shape in dtype (f32, f16, bf16), no file.
  static std::unique_ptr<ClipTextModel> random(const ClipTextConfig& config, DType dtype,
                                               unsigned seed,
                                               const TextEncoderOptions& options = {});
  ~ClipTextModel();

  const ClipTextConfig& config() const { return config_; }
  const std::string& source() const { return source_; }
  std::int64_t parameters() const { return parameters_; }
  kernels::Backend& backend() { return *backend_; }

  // One sequence of 1..max_positions ids (the tokenizer's <|startoftext|> ... <|endoftext|>,
  // padded). Safe from several threads (calls are serialised).
  ClipTextOutput encode(std::span<const std::int32_t> ids);
  // The position encode() pools at.
  std::int64_t pooled_position(std::span<const std::int32_t> ids) const;

 private:
  struct Layer;
  ClipTextModel() = default;
  void build(const detail::EncoderWeights& w, const TextEncoderOptions& options);
  static std::unique_ptr<ClipTextModel> load_mflux(const std::filesystem::path& dir,
                                                   const TextEncoderOptions& options);

  ClipTextConfig config_;
  std::string source_;
  std::int64_t parameters_ = 0;
  std::shared_ptr<ThreadPool> pool_;
  std::unique_ptr<kernels::Backend> backend_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  kernels::WeightView token_embedding_;
  std::vector<float> positions_, final_gamma_, final_beta_;
  std::vector<Layer> layers_;
  std::mutex mutex_;
};

}  // namespace hearth::models
