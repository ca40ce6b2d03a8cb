// BERT encoders on hearth's compute core: sentence embeddings (sentence-transformers semantics:
// pooling from 1_Pooling, then Normalize when modules.json lists it) and cross-encoder scores
// (BertForSequenceClassification logits). Weights come from a Hugging Face folder (BertModel or
// BertForSequenceClassification names, with or without the "bert." prefix; f32, f16 or bf16
// safetensors, converted to f32 at load) or from a GGUF `bert` file with llama.cpp's names.
//
// The API works on token ids; text entry points (tokenizer + truncation) sit on top. Every call is
// safe from several threads (calls are serialised on the model's thread pool).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/kernels/backend.hpp"

namespace hearth::models {

struct BertConfig {
  std::int64_t vocab = 0;
  std::int64_t hidden = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t ffn = 0;
  std::int64_t max_positions = 0;
  std::int64_t type_vocab = 0;
  float eps = 1e-12f;
  kernels::Activation act = kernels::Activation::kGeluErf;
  std::int64_t num_labels = 0;  // > 0 for a sequence-classification head
};

// One input sequence: token ids (with [CLS] ... [SEP] already added) and segment ids (empty means
// all zero).
struct TokenIds {
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> type_ids;
};

struct BertOptions {
  std::size_t threads = 0;           // pool size when no pool is given; 0 = every core
  std::shared_ptr<ThreadPool> pool;  // optional shared pool
  SimdLevel level = simd_level();
  kernels::GemmImpl gemm = kernels::GemmImpl::kAuto;
  std::size_t max_batch = 32;            // sequences per forward pass
  std::size_t max_batch_tokens = 16384;  // padded tokens per forward pass
};

class BertModel {
 public:
  // path: a Hugging Face folder or a .gguf file. Errors name the file and the tensor or key.
  static std::unique_ptr<BertModel> load(const std::filesystem::path& path,
                                         const BertOptions& options = {});
  // A model of the given shape (config.vocab included) with random N(0, 0.04) weights and
  // LayerNorm gains near 1: for benchmarks, no file needed. Mean pooling, normalised.
  static std::unique_ptr<BertModel> random(const BertConfig& config, unsigned seed,
                                           const BertOptions& options = {});
  ~BertModel();

  const BertConfig& config() const { return config_; }
  formats::PoolingMode pooling() const { return pooling_; }
  bool normalize() const { return normalize_; }
  // The longest sequence an input may have (sentence_bert_config max_seq_length, else the
  // position table). Longer inputs are rejected; text front ends truncate to it.
  std::int64_t max_length() const { return max_length_; }
  std::string backend_name() const;
  // The backend the model runs on (benchmarks read its linear-layer counters).
  kernels::Backend& backend() { return *backend_; }

  // Last hidden states of each sequence ([len, hidden] each), computed in length buckets.
  std::vector<std::vector<float>> hidden_states(std::span<const TokenIds> seqs);
  // Pooled (and, when the model says so, L2-normalised) sentence embeddings, in input order.
  std::vector<std::vector<float>> embed(std::span<const TokenIds> seqs);
  // Classification logits ([num_labels] per sequence); needs a classifier head.
  std::vector<std::vector<float>> classify(std::span<const TokenIds> seqs);

 private:
  struct Layer;
  BertModel() = default;
  void validate(std::span<const TokenIds> seqs) const;
  // Sorts seqs by length, runs them in padded batches and calls sink(index into seqs, batch
  // hidden states, row in the batch, padded length, the batch) for every sequence, in batch order.
  template <class Sink>
  void run_buckets(std::span<const TokenIds> seqs, Sink&& sink);
  // Last hidden states of one padded batch into x ([batch * len, hidden]).
  void forward(std::span<const TokenIds* const> batch, std::int64_t len, std::vector<float>& x);

  BertConfig config_;
  formats::PoolingMode pooling_ = formats::PoolingMode::kMean;
  bool normalize_ = false;
  std::int64_t max_length_ = 0;
  std::size_t max_batch_ = 32;
  std::size_t max_batch_tokens_ = 16384;
  std::shared_ptr<ThreadPool> pool_;
  std::unique_ptr<kernels::Backend> backend_;
  std::vector<float> word_, position_, token_type_, emb_gamma_, emb_beta_;
  std::vector<Layer> layers_;
  std::unique_ptr<kernels::LinearWeights> pooler_, classifier_;
  std::mutex mutex_;

  friend class BertLoader;
};

// Sentence embeddings (a sentence-transformers model).
class Embedder {
 public:
  static Embedder load(const std::filesystem::path& path, const BertOptions& options = {});
  std::int64_t dimension() const { return model_->config().hidden; }
  BertModel& model() { return *model_; }
  std::vector<std::vector<float>> embed_ids(std::span<const TokenIds> seqs) {
    return model_->embed(seqs);
  }

 private:
  std::shared_ptr<BertModel> model_;
};

// Cross-encoder reranking: one raw logit per (query, passage) pair, or its sigmoid.
class CrossEncoder {
 public:
  static CrossEncoder load(const std::filesystem::path& path, const BertOptions& options = {});
  BertModel& model() { return *model_; }
  std::vector<float> score_ids(std::span<const TokenIds> pairs, bool sigmoid = false);

 private:
  std::shared_ptr<BertModel> model_;
};

}  // namespace hearth::models
