// hearth-make-model --arch clip-text | t5-encoder | flux-transformer: random FLUX text encoders
// and transformers in the real layouts.
#pragma once

#include <optional>
#include <string>

#include "hearth/tensor/dtype.hpp"

struct TextEncoderShape {
  std::optional<int> hidden, layers, heads, ffn;
  int mlx_bits = 0;  // format mflux: 4 or 8, or 0 (quantization_level None)
};

// Writes a Hugging Face folder (format "hf": config.json as transformers writes it for
// CLIPTextModel / T5EncoderModel, model.safetensors, and the tokenizer files of tokenizer_dir
// when given) or a single safetensors file (format "safetensors": the same names, as ComfyUI's
// clip_l.safetensors / t5xxl_*.safetensors). The vocabulary is the tokenizer's, rounded up to a
// multiple of 128 (49,408 for CLIP, 32,128 for T5, as the real models), else 1,024. Format
// "mflux": mflux's saved text_encoder/ (clip-text: the same names) or text_encoder_2/
// (t5-encoder: mflux's names, t5_blocks.N.attention / .ff, block 0's position bias copied into
// every block) with no config.json, one shard
// 0.safetensors with mflux's metadata and its index), every matrix and embedding table whose
// rows are whole groups of 64 MLX-affine quantized to shape.mlx_bits when it is 4 or 8, as
// mflux-save --quantize does (nn.Linear and nn.Embedding have quantized forms).
void make_text_encoder(const std::string& arch, const std::string& out, const std::string& format,
                       hearth::DType dtype, unsigned seed, const std::string& tokenizer_dir,
                       const TextEncoderShape& shape);

struct FluxTransformerShape {
  std::optional<int> heads, head_dim, layers, single_layers, joint_dim, pooled_dim;
  bool guidance = false;   // guidance_embeds (dev)
  bool f8_scaled = false;  // float8 dtypes: per-tensor scale_weight (ComfyUI's scaled fp8)
  int mlx_bits = 0;        // format mflux: 4 or 8
};

// Format "hf": a diffusers transformer/ folder, config.json as diffusers writes it for
// FluxTransformer2DModel and the weights in two shards with
// diffusion_pytorch_model.safetensors.index.json. Format "safetensors": the same weights in
// Black Forest Labs' single file (flux1-schnell.safetensors names, fused). Format "gguf": those
// names and shapes in a GGUF file of general.architecture "flux" as city96's convert.py writes
// them, matrices in dtype (f32, f16, bf16 or a ggml block type by hearth's quantizer) except the
// embedders, the final layer and rows that are not whole blocks (f32). dtype f8_e4m3 / f8_e5m2
// (hf or safetensors): the bf16 weights of the seed with every matrix as float8 (scaled by
// max|w| / 448 with scale_weight beside it when f8_scaled), vectors bf16. Format "mflux": mflux's
// saved transformer/ folder, dtype's weights with every matrix of whole 64-groups MLX-affine
// quantized to mlx_bits (scales and biases in dtype), no config.json. 64 input channels;
// head_dim 16 (axes_dims_rope [4, 6, 6]; default) or 128 ([16, 56, 56], which single files need);
// by default 2 heads, 2 double and 2 single blocks, text widths 32. The seed gives the same
// weights in both formats.
void make_flux_transformer(const std::string& out, const std::string& format, hearth::DType dtype,
                           unsigned seed, const FluxTransformerShape& shape);

// --arch flux-pipeline: a tiny random FLUX.1 pipeline in both layouts, the same weights in each:
//   OUT/diffusers/: model_index.json, transformer/, text_encoder/, text_encoder_2/, vae/,
//                   tokenizer/, tokenizer_2/, scheduler/ (FLUX.1-schnell's or -dev's config);
//   OUT/bfl/:       flux1-schnell.safetensors (or flux1-dev), ae.safetensors, clip_l.safetensors,
//                   t5xxl_fp32/fp16/bf16.safetensors, tokenizer/, tokenizer_2/;
//   OUT/mflux/:     mflux's saved layout, unquantized: transformer/, text_encoder/, vae/,
//                   tokenizer/, tokenizer_2/, and the T5 single file (its text_encoder_2/ is
//                   not written: hearth does not read mflux's T5).
// Shapes: CLIP 64 wide (one head of 64, as single files imply), T5 32 wide (4 heads of 8), both
// 2 layers; the transformer 1 head of 128 (FLUX.1's rotary axes, which BFL files need), 1 double
// and 1 single block, text widths 32 (T5) and 64 (CLIP); the VAE 4 levels of 32 channels (8x
// downscale, 16 latent channels). The tokenizers are tokenizer_dir's tokenizer/ and tokenizer_2/
// (FLUX.1's real ones) where it has them, else small stand-ins of the same kinds (CLIP byte-level
// BPE without merges; T5-style Unigram over ASCII pieces).
void make_flux_pipeline(const std::string& out, hearth::DType dtype, unsigned seed,
                        const std::string& tokenizer_dir, bool dev);
