// Decoder-only language models (Llama, Mistral, Phi-3, Qwen2, Qwen3) on hearth's compute core.
//
// LanguageModel::load reads a Hugging Face folder (config.json `architectures` / `model_type`,
// safetensors, sharded or not) or a GGUF file (llama.cpp's tensor names and `<arch>.*` keys).
// Weights stay in their stored type (f32, f16, bf16, or in GGUF files any of the ggml block types
// of tensor/ggml_quant.hpp, mixed per tensor) over the file mapping, with no dequantized copy; only
// norm gains and biases (vectors) are converted to f32. Each architecture file (llama.cpp,
// mistral.cpp, phi3.cpp, qwen2.cpp, qwen3.cpp) maps its names and config keys onto the shared
// skeleton here.
//
// A Session is one conversation: it owns a KV cache (f16 by default, f32 on request) and runs new
// tokens over it, batched prefill for several tokens, GEMV decode for one. The cache keeps the
// tokens it holds, so a caller continuing a conversation truncates to the common prefix and feeds
// only the new tokens.
//
//   auto model = hearth::models::LanguageModel::load("Phi-3-mini-4k-instruct");
//   hearth::models::Session session(*model);
//   std::span<const float> logits = session.feed(prompt_ids);   // vocab floats
//   ... pick next id ...; logits = session.feed(std::span(&next, 1));
//
// Several sessions of one model decode together with decode_step() (one new token each, every
// projection one matrix product over the batch, so the weights are read once per step for all).
//
// Thread safety: a LanguageModel is immutable after load and may be shared by several sessions
// (their computations are serialised on the model's pool); a Session is not thread-safe.
// Cancellation: feed() polls throw_if_cancelled() between layers and throws Error(kCancelled);
// the session then holds the tokens it had before that call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/tensor/dtype.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::models {

// How the rotary embedding pairs the dimensions of a head.
enum class RopeStyle {
  kNeox,    // (x[i], x[i + d/2]): Hugging Face rotate_half, llama.cpp NEOX (phi3, qwen2, qwen3)
  kNormal,  // (x[2i], x[2i+1]): GGUF `llama` files, whose q/k rows llama.cpp's converter permuted
};
const char* to_string(RopeStyle s);

enum class RopeScaling { kNone, kLinear, kLlama3, kLongRope };
const char* to_string(RopeScaling s);

struct RopeConfig {
  RopeStyle style = RopeStyle::kNeox;
  double base = 10000.0;  // rope_theta / <arch>.rope.freq_base
  std::int64_t dims = 0;  // rotated dimensions per head (<= head_dim, even)
  RopeScaling scaling = RopeScaling::kNone;
  double factor = 1.0;                // linear: positions / factor; llama3: low-frequency divisor
  double low_freq_factor = 1.0;       // llama3
  double high_freq_factor = 4.0;      // llama3
  std::int64_t original_context = 0;  // llama3 / longrope original_max_position_embeddings
  // Per-frequency divisors (dims / 2 each): longrope short/long factors; GGUF rope_freqs.weight
  // (llama3 files) goes to short_factors. Empty when unused.
  std::vector<float> short_factors, long_factors;
  double attention_factor = 1.0;  // longrope: cos and sin are multiplied by it
};

struct DecoderConfig {
  std::string architecture;  // "llama", "mistral", "phi3", "qwen2", "qwen3"
  std::int64_t vocab = 0;
  std::int64_t hidden = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t head_dim = 0;
  std::int64_t ffn = 0;
  std::int64_t context = 0;  // the model's (max_position_embeddings / <arch>.context_length)
  double rms_eps = 1e-5;
  RopeConfig rope;
  // Keys farther than this behind the query are masked (query - key >= window); 0 = none.
  std::int64_t sliding_window = 0;
  // Per layer: whether the sliding window applies (all layers when a window is set, except
  // Qwen2's first max_window_layers). Empty = every layer.
  std::vector<bool> sliding_layers;
  bool fused_qkv = false;      // phi3: one qkv projection
  bool fused_gate_up = false;  // phi3: one projection holding gate then up
  bool qkv_bias = false;       // qwen2
  bool qk_norm = false;        // qwen3: RMS norm over each q/k head before RoPE
  bool tied_embeddings = false;
  DType weight_dtype = DType::kF32;  // of most projection bytes (kU32: mlx affine)
  // The types of the projection matrices not mlx affine, most bytes first, joined by "+"
  // ("q4_K+q5_K+q6_K" for a llama.cpp Q4_K_M file).
  std::string weight_types;
  int weight_bits = 0;  // mlx affine projections: bits and group size, else 0
  int weight_group_size = 0;
  std::int64_t parameters = 0;  // every weight element, the embedding table included
};

struct LlmOptions {
  std::size_t threads = 0;           // pool size when no pool is given; 0 = every core
  std::shared_ptr<ThreadPool> pool;  // optional shared pool
  SimdLevel level = simd_level();
  DType kv_dtype = DType::kF16;  // kF16 or kF32
  // Default session context; 0 = the model's, capped so the KV cache fits in memory (see
  // LanguageModel::context_note()).
  std::int64_t context = 0;
};

// The stored form of random() weights: a DType (f32, f16, bf16; converts implicitly, so
// random(config, DType::kF16, ...) keeps working) or mlx affine quantization by hearth's own
// quantizer (tensor/mlx_quant.hpp): bits 2-6 or 8, group size 32/64/128, f16 scales and biases,
// every matrix quantized whose input width the group divides, the embeddings and head included
// (as mlx-community's models are).
struct WeightFormat {
  DType dtype = DType::kF32;
  int mlx_bits = 0;  // > 0: mlx affine
  int mlx_group_size = 0;
  WeightFormat(DType d) : dtype(d) {}  // NOLINT(google-explicit-constructor): DType callers
  static WeightFormat mlx(int bits, int group_size) {
    WeightFormat f(DType::kF16);
    f.mlx_bits = bits;
    f.mlx_group_size = group_size;
    return f;
  }
};

class ModelImpl;
class Session;

class LanguageModel {
 public:
  // folder_or_gguf: a Hugging Face folder or a .gguf file. Unknown architectures, missing or
  // mis-shaped tensors and out-of-range configs throw hearth::Error naming the file, the tensor
  // or key and the expected shape.
  static std::unique_ptr<LanguageModel> load(const std::filesystem::path& folder_or_gguf,
                                             const LlmOptions& options = {});
  // A model of the given shape with random weights in the given format (f32, f16, bf16, mlx
  // affine, or a ggml block type: each row quantized by hearth's quantizer, the embedding table
  // too) made in memory, no file and no tokenizer (tokenizer() throws): for benchmarks and tests.
  static std::unique_ptr<LanguageModel> random(const DecoderConfig& config, WeightFormat weights,
                                               unsigned seed, const LlmOptions& options = {});
  ~LanguageModel();

  const DecoderConfig& config() const;
  // From tokenizer.json in the folder, or the GGUF vocabulary.
  const tokenize::Tokenizer& tokenizer() const;
  std::int32_t bos_id() const;  // -1 when the model has none
  // tokenizer_config.json add_bos_token / GGUF tokenizer.ggml.add_bos_token (default: whether
  // the tokenizer's post-processor adds it for HF folders, true for GGUF llama/phi3 vocabularies).
  bool add_bos() const;
  // End-of-generation ids: generation_config.json eos_token_id (int or list), config.json
  // eos_token_id, GGUF tokenizer.ggml.eos_token_id and eot_token_id; deduplicated, in that order.
  const std::vector<std::int32_t>& eos_ids() const;
  std::string bos_token() const;  // the tokens' text, for chat templates ("" when none)
  std::string eos_token() const;
  // The folder's name, or GGUF general.name (else the file's stem).
  const std::string& name() const;
  const std::filesystem::path& path() const;

  // The context a Session gets by default (options.context, else the model's, capped by memory).
  std::int64_t default_context() const;
  // A sentence saying the default context was capped and why; "" when it was not.
  const std::string& context_note() const;
  DType kv_dtype() const;
  // Bytes of weights one decode step streams (every projection and the output layer).
  std::uint64_t weight_bytes_per_token() const;
  std::string backend_name() const;

 private:
  friend class Session;
  friend std::vector<std::span<const float>> decode_step(std::span<Session* const> sessions,
                                                         std::span<const std::int32_t> tokens);
  explicit LanguageModel(std::unique_ptr<ModelImpl> impl);
  std::unique_ptr<ModelImpl> impl_;
};

struct Timings {
  std::int64_t prefill_tokens = 0;  // tokens fed in calls with more than one token
  std::int64_t decode_tokens = 0;   // tokens fed one at a time
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
};

// One conversation over a model: owns the KV cache. Not thread-safe. The model must outlive it.
class Session {
 public:
  // context: tokens the cache holds; 0 = model.default_context(). Larger than the model's own
  // context is allowed (RoPE extrapolates) but never larger than memory allows.
  explicit Session(const LanguageModel& model, std::int64_t context = 0);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  std::int64_t context() const;
  const LanguageModel& model() const { return model_; }
  // The tokens in the cache, in order.
  const std::vector<std::int32_t>& tokens() const;

  // Appends tokens and runs them (batched prefill when more than one); returns the logits of the
  // last new position (vocab floats, valid until the next call). If all_logits is non-null it
  // receives the logits of every new position, row-major [n, vocab]. Throws Error
  // (kInvalidArgument) when the tokens would overflow the context or an id is outside the
  // vocabulary (the cache is unchanged then), Error(kCancelled) on Ctrl+C.
  std::span<const float> feed(std::span<const std::int32_t> tokens,
                              std::vector<float>* all_logits = nullptr);
  // Keeps the first n_tokens cached tokens (prefix reuse); 0 = reset. n_tokens > tokens().size()
  // is an error.
  void truncate(std::size_t n_tokens);
  // Length of the common prefix of tokens() and ids.
  std::size_t common_prefix(std::span<const std::int32_t> ids) const;

  const Timings& timings() const;
  void reset_timings();

 private:
  friend std::vector<std::span<const float>> decode_step(std::span<Session* const> sessions,
                                                         std::span<const std::int32_t> tokens);
  struct State;
  const LanguageModel& model_;
  std::unique_ptr<State> state_;
};

// Batched decode: appends tokens[i] to sessions[i] for every i and runs them as one step, each
// projection (and the output layer) one matrix product of sessions.size() rows, so the weights
// stream from memory once for the whole batch; attention reads each session's own KV cache at
// its own position, RoPE rotates each row by its own position. The result for each session is
// what sessions[i]->feed(tokens[i]) alone would give, up to the kernels' rounding across rows
// (docs/llm.md states the tolerance). Returns each session's logits (vocab floats, in the given
// order), each valid until that session's next feed() or decode_step().
//
// Checked before anything runs, so that one bad entry changes no session: Error(kInvalidArgument)
// naming the entry when the batch is empty, the counts differ, a session is null, appears twice or
// belongs to another model, a session's context is full, or an id is outside the vocabulary.
// Error(kCancelled) on Ctrl+C (polled between layers): every session keeps the tokens it had.
// Each session counts one decode token and the step's whole time in its timings().
//
// Thread safety: one thread drives a batch, and none of its sessions may be used by another
// thread during the call; batches and feeds of other sessions of the same model may run from
// other threads (the model serialises them on its pool).
std::vector<std::span<const float>> decode_step(std::span<Session* const> sessions,
                                                std::span<const std::int32_t> tokens);

}  // namespace hearth::models
