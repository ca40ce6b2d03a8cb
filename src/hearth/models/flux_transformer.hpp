// FLUX.1's transformer (diffusers FluxTransformer2DModel): x_embedder and context_embedder,
// the time / pooled-text (and, for dev, guidance) embedding, double-stream blocks (adaptive
// layer-norm modulation of the image and text streams, joint attention over [text; image] with
// q/k RMS norms and a three-axis rotary embedding), single-stream blocks (parallel attention and
// MLP), the continuous adaptive output norm and proj_out. Weights come from a diffusers
// `transformer/` folder (config.json + diffusion_pytorch_model*.safetensors, sharded with its
// index or not) or Black Forest Labs' single file (flux1-schnell.safetensors / flux1-dev: fused
// qkv and linear1 sliced by rows; also under ComfyUI's "model.diffusion_model." prefix) in f32,
// f16, bf16 or float8 (e4m3fn / e5m2 matrices, with or without the per-tensor or per-row scales
// of "scaled fp8" files, read in place by the f8 kernels), mflux's saved (MLX affine 4- or 8-bit)
// transformer/ folder, or a GGUF file of general.architecture
// "flux" (city96's FLUX GGUFs: the single file's names and shapes, matrices in any block type of
// tensor/ggml_quant.hpp or f32/f16/bf16), and are read in place.
// FluxTransformerOptions::quantize_bits quantizes f32/f16/bf16/float8 matrices (scales folded in)
// to q4_0 / q8_0 at load (the file's pages dropped as each is done).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "hearth/models/encoder_common.hpp"

namespace hearth::models {

struct FluxTransformerConfig {
  std::int64_t in_channels = 64;   // packed latent channels (16 x 2 x 2)
  std::int64_t out_channels = 64;  // config out_channels, null = in_channels
  std::int64_t layers = 19;        // double-stream blocks (num_layers)
  std::int64_t single_layers = 38;
  std::int64_t heads = 24;
  std::int64_t head_dim = 128;
  std::int64_t joint_dim = 4096;                      // T5 width (joint_attention_dim)
  std::int64_t pooled_dim = 768;                      // CLIP pooled width (pooled_projection_dim)
  bool guidance_embeds = false;                       // dev: true
  std::array<std::int64_t, 3> axes_dims{16, 56, 56};  // sums to head_dim
  float theta = 10000.0f;
  std::int64_t inner() const { return heads * head_dim; }
};

// A LoRA adapter (a .safetensors file) and its strength: y = W x + b + scale * s * B (A x) for
// every layer it names, s = alpha / rank when the file stores alpha, else 1.
struct FluxLora {
  std::filesystem::path path;
  float scale = 1.0f;
};
// "PATH" or "PATH:SCALE" (--lora): the scale is what follows the last ':' when that is a number.
FluxLora parse_flux_lora(const std::string& arg);

// Load options: the text encoders' (threads, pool, SIMD level) and what FLUX adds.
struct FluxTransformerOptions : TextEncoderOptions {
  // 0: matrices as stored. 4 or 8: every f32/f16/bf16/float8 matrix whose rows are whole blocks
  // of 32 is quantized at load to q4_0 or q8_0 by hearth's quantizer (already-quantized GGUF
  // matrices are kept); its file pages are released once its copy is made.
  int quantize_bits = 0;
  // LoRA adapters, applied as extra low-rank products beside the (possibly quantized) base
  // weights, which are never dequantized. Names: diffusers / PEFT (`transformer.<module>.lora_A`
  // / `lora_B`), kohya (`lora_unet_<module with _>.lora_down` / `lora_up` / `alpha`) and Black
  // Forest Labs' modules (`double_blocks.N.img_attn.qkv`, under `diffusion_model.` or not; fused
  // layers' up matrices are split by rows). Text-encoder tensors (`lora_te*`, `text_encoder*`)
  // are skipped; any other name or shape that fits no layer is an Error naming file and tensor.
  std::vector<FluxLora> loras;
};

// One transformer call. Token ids are (axis 0, axis 1, axis 2) per token: zeros for text, (0,
// row, column) of the 2x2-packed latent for the image (flux_image_ids).
struct FluxTransformerInput {
  std::span<const float> image;           // [image_tokens, in_channels]
  std::span<const std::int64_t> img_ids;  // [image_tokens, 3]
  std::span<const float> context;         // [text_tokens, joint_dim] (T5 hidden states)
  std::span<const std::int64_t> txt_ids;  // [text_tokens, 3]
  std::span<const float> pooled;          // [pooled_dim] (CLIP pooled)
  float timestep = 1.0f;                  // the sigma in [0, 1]; embedded as 1000 * timestep
  std::optional<float> guidance;          // required iff guidance_embeds; embedded as 1000 * g
};

class FluxTransformer {
 public:
  // A diffusers transformer/ folder (config.json required), mflux's saved transformer/ folder
  // (found by its shards' quantization_level / mflux_version metadata; see is_mflux_folder), or
  // a BFL single .safetensors file (for the last two the shape is read from the tensors: 128-wide
  // heads, FLUX.1's rotary axes). Errors name the file and the tensor or key.
  static std::unique_ptr<FluxTransformer> load(const std::filesystem::path& path,
                                               const FluxTransformerOptions& options = {});
  static std::unique_ptr<FluxTransformer> load(const std::filesystem::path& path,
                                               const TextEncoderOptions& options);
  // Random weights of the given shape in dtype (f32, f16, bf16, or a ggml block type: matrices
  // whose rows are whole blocks quantized by hearth's quantizer, the others f32), no file.
  static std::unique_ptr<FluxTransformer> random(const FluxTransformerConfig& config, DType dtype,
                                                 unsigned seed,
                                                 const TextEncoderOptions& options = {});
  ~FluxTransformer();

  const FluxTransformerConfig& config() const { return config_; }
  const std::string& source() const { return source_; }
  std::int64_t parameters() const { return parameters_; }
  kernels::Backend& backend() { return *backend_; }

  // The predicted velocity [image_tokens, out_channels]. Serialised; cancellable between blocks.
  std::vector<float> forward(const FluxTransformerInput& in);

 private:
  struct Double;
  struct Single;
  struct Mlp {
    std::unique_ptr<kernels::LinearWeights> fc1, fc2;
  };
  struct LoraPath {
    std::unique_ptr<kernels::LinearWeights> down, up;  // A [rank, in], B [out, rank]
    float scale = 1.0f;
  };
  // Where a LoRA module name lands: hearth layers and the first row of each in the module's rows.
  struct LoraTarget {
    const kernels::LinearWeights* layer;
    std::int64_t first;
    bool swap_halves;  // the final modulation: (shift, scale) in one naming, (scale, shift) in the
                       // other
  };
  FluxTransformer() = default;
  static std::unique_ptr<FluxTransformer> load_single(const std::filesystem::path& path,
                                                      const FluxTransformerOptions& options);
  static std::unique_ptr<FluxTransformer> load_mflux(const std::filesystem::path& path,
                                                     const FluxTransformerOptions& options);
  // An MLX affine matrix (base name without ".weight", diffusers' names) or none.
  using FindAffine = std::function<std::optional<kernels::WeightView>(
      const std::string& base, std::int64_t out, std::int64_t in)>;
  void build(const detail::EncoderWeights& w, const FluxTransformerOptions& options,
             const FindAffine& affine = {});
  void embed_mlp(const Mlp& m, const float* x, float* out, kernels::Activation act);
  void add_lora(const FluxLora& lora,
                const std::map<std::string, std::vector<LoraTarget>>& targets);
  // backend_->linear plus the layer's LoRA paths (before the activation).
  void run(const kernels::LinearWeights& w, const float* x, std::int64_t rows, float* y,
           kernels::Activation act = kernels::Activation::kNone);

  FluxTransformerConfig config_;
  std::string source_;
  std::int64_t parameters_ = 0;
  bool bfl_ = false;  // Black Forest Labs' names (and final-layer modulation order)
  std::shared_ptr<ThreadPool> pool_;
  std::unique_ptr<kernels::Backend> backend_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  std::vector<std::unique_ptr<std::byte[]>> quantized_;  // matrices quantized at load
  std::unordered_map<const kernels::LinearWeights*, std::vector<LoraPath>> lora_;
  // Scaled float8 layers (made without their bias): y = scale * (W x) + bias, scale one value or
  // one per output.
  struct Scaled {
    std::vector<float> scale, bias;
  };
  std::unordered_map<const kernels::LinearWeights*, Scaled> scaled_;
  std::unique_ptr<kernels::LinearWeights> x_embedder_, context_embedder_, norm_out_, proj_out_;
  Mlp time_, guidance_, text_;
  std::vector<Double> doubles_;
  std::vector<Single> singles_;
  std::array<std::vector<float>, 3> inv_freq_;
  std::mutex mutex_;
};

// Whether dir is a component folder saved by mflux (mflux-save / Flux1.save_model): its first
// *.safetensors shard's metadata holds "quantization_level" or "mflux_version". mflux writes
// shards 0.safetensors, 1.safetensors, ... with model.safetensors.index.json and no config.json;
// the transformer keeps diffusers' names but ff.linear1 / ff.linear2 (for ff.net.0.proj /
// ff.net.2, also in ff_context), and every Linear layer MLX nn.quantize reached is MLX affine
// (<base>.weight U32 codes, <base>.scales, <base>.biases; quantization_level bits, group size
// 64, the scales bf16) with its bias as is.
bool is_mflux_folder(const std::filesystem::path& dir);
// The shape of mflux's saved transformer in dir, from its tensors' headers (128-wide heads).
FluxTransformerConfig mflux_transformer_config(const std::filesystem::path& dir);

// The sinusoidal timestep embedding FLUX uses (diffusers Timesteps(dim, flip_sin_to_cos=True,
// downscale_freq_shift=0)): [cos(t f_i), sin(t f_i)], f_i = 10000^(-i / (dim / 2)).
std::vector<float> flux_timestep_embedding(double t, std::int64_t dim);

}  // namespace hearth::models
