// BERT encoders on hearth's compute core: sentence embeddings (sentence-transformers semantics:
// pooling from 1_Pooling, then Normalize when modules.json lists it) and cross-encoder scores
// (BertForSequenceClassification logits). Weights come from a Hugging Face folder (BertModel or
// BertForSequenceClassification names, with or without the "bert." prefix; f32, f16 or bf16
// safetensors, converted to f32 at load) or from a GGUF `bert` file with llama.cpp's names.
//
// BertModel works on token ids; Embedder and CrossEncoder add the model's tokenizer and
// truncation. Every call is safe from several threads (calls are serialised on the model's pool).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/tokenize/tokenizer.hpp"

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
  // The folder's name ("all-MiniLM-L6-v2"), or the GGUF general.name (else the file's stem).
  const std::string& name() const { return name_; }
  // A hash of the configuration, pooling and embedding tables (see Embedder::fingerprint).
  std::string fingerprint() const;
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
  std::string name_;
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

// llama.cpp's GGUF name for a Hugging Face BERT tensor name ("encoder.layer.3.output.dense.weight"
// -> "blk.3.ffn_down.weight"); a name it does not know is returned unchanged.
std::string bert_gguf_name(const std::string& hf);

// Sentence embeddings (a sentence-transformers model) from text: the model's own tokenizer
// (tokenizer.json or vocab.txt in the folder, the GGUF vocabulary otherwise) adds [CLS]/[SEP] and
// truncates to max_length(), as sentence-transformers does. Copies share the model; every method
// is safe from several threads.
class Embedder {
 public:
  static Embedder load(const std::filesystem::path& path, const BertOptions& options = {});
  std::int64_t dimension() const { return model_->config().hidden; }
  std::int64_t model_max_length() const { return model_->max_length(); }
  BertModel& model() { return *model_; }
  const tokenize::Tokenizer& tokenizer() const { return tokenizer_; }
  // The folder's name, or the GGUF general.name (else the file's stem).
  const std::string& name() const { return name_; }
  // A hash of the configuration and embedding tables: equal for the HF and GGUF encodings of the
  // same weights, different for different models.
  const std::string& fingerprint() const { return fingerprint_; }
  // Tokens in text without the special tokens (what a chunk costs in this model's budget).
  std::size_t count_tokens(std::string_view text) const;

  std::vector<TokenIds> tokenize(std::span<const std::string> texts) const;
  std::vector<std::vector<float>> embed(std::span<const std::string> texts) {
    return model_->embed(tokenize(texts));
  }
  std::vector<std::vector<float>> embed_ids(std::span<const TokenIds> seqs) {
    return model_->embed(seqs);
  }

 private:
  Embedder(std::shared_ptr<BertModel> model, tokenize::Tokenizer tokenizer, std::string name)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), name_(std::move(name)) {}
  std::shared_ptr<BertModel> model_;
  tokenize::Tokenizer tokenizer_;
  std::string name_, fingerprint_;
};

// Cross-encoder reranking: one raw logit per (query, passage) pair, or its sigmoid. Pairs are
// encoded [CLS] query [SEP] passage [SEP] and truncated longest-first to max_length().
class CrossEncoder {
 public:
  static CrossEncoder load(const std::filesystem::path& path, const BertOptions& options = {});
  BertModel& model() { return *model_; }
  const tokenize::Tokenizer& tokenizer() const { return tokenizer_; }
  const std::string& name() const { return name_; }
  std::vector<float> score(std::string_view query, std::span<const std::string> passages,
                           bool sigmoid = false);
  std::vector<float> score_ids(std::span<const TokenIds> pairs, bool sigmoid = false);

 private:
  CrossEncoder(std::shared_ptr<BertModel> model, tokenize::Tokenizer tokenizer, std::string name)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)), name_(std::move(name)) {}
  std::shared_ptr<BertModel> model_;
  tokenize::Tokenizer tokenizer_;
  std::string name_;
};

}  // namespace hearth::models
