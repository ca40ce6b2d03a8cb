// hearth-make-model: writes tiny random-weight models in the real formats, for tests, demos and
// benchmarks (no trained weights can be downloaded here).
//  --arch llama: a GGUF file with llama.cpp's names and a SentencePiece-style byte vocabulary, or a
//    Hugging Face folder (config.json + model.safetensors), optionally mlx-community quantized
//    (U32-packed weights with .scales/.biases).
//  --arch bert: a sentence-transformers folder (BertModel weights, modules.json, 1_Pooling,
//    2_Normalize) or, with --classifier, a BertForSequenceClassification cross-encoder (one
//    logit); or the same weights as a GGUF `bert` file with llama.cpp's names and keys. Shapes:
//    --shape tiny or minilm (hidden 384, 6 layers, 12 heads, FFN 1536). The vocabulary is the
//    WordPiece vocab.txt of --tokenizer-dir when given (its tokenizer files are copied), else a
//    small synthetic one.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hearth/cli/app.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/models/bert.hpp"
#include "hearth/tensor/half.hpp"

namespace fs = std::filesystem;
using hearth::DType;
using hearth::Shape;
namespace formats = hearth::formats;

namespace {

struct Config {
  int vocab = 320;
  int hidden = 64;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;
  int ffn = 172;
  int context = 256;
};

// Owns every tensor's bytes until the writer has written them.
struct Tensor {
  std::string name;
  Shape shape;
  DType dtype;
  std::vector<std::byte> bytes;
};

class Maker {
 public:
  Maker(Config c, unsigned seed) : c_(c), rng_(seed) {}

  std::vector<float> random(std::int64_t n, float scale) {
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = dist(rng_);
    return v;
  }

  static std::vector<std::byte> encode(const std::vector<float>& v, DType dtype) {
    std::vector<std::byte> out;
    if (dtype == DType::kF32) {
      out.resize(v.size() * 4);
      std::memcpy(out.data(), v.data(), out.size());
      return out;
    }
    std::vector<std::uint16_t> h(v.size());
    if (dtype == DType::kF16) {
      hearth::f32_to_f16(v.data(), h.data(), v.size());
    } else {
      hearth::f32_to_bf16(v.data(), h.data(), v.size());
    }
    out.resize(h.size() * 2);
    std::memcpy(out.data(), h.data(), out.size());
    return out;
  }

  // The llama tensors, under GGUF names (gguf=true) or Hugging Face names.
  std::vector<Tensor> llama(bool gguf, DType dtype) {
    const int head_dim = c_.hidden / c_.heads;
    std::vector<Tensor> out;
    const auto add = [&](std::string name, Shape shape, float scale) {
      auto v = scale > 0 ? random(hearth::numel(shape), scale)
                         : std::vector<float>(static_cast<std::size_t>(hearth::numel(shape)), 1.0f);
      const DType t = shape.size() == 1 ? DType::kF32 : dtype;  // norms stay f32
      out.push_back({std::move(name), std::move(shape), t, encode(v, t)});
    };
    const std::int64_t h = c_.hidden;
    const std::int64_t kv = static_cast<std::int64_t>(c_.kv_heads) * head_dim;
    add(gguf ? "token_embd.weight" : "model.embed_tokens.weight", {c_.vocab, h}, 0.02f);
    for (int l = 0; l < c_.layers; ++l) {
      const std::string b =
          gguf ? "blk." + std::to_string(l) + "." : "model.layers." + std::to_string(l) + ".";
      add(b + (gguf ? "attn_norm.weight" : "input_layernorm.weight"), {h}, 0);
      add(b + (gguf ? "attn_q.weight" : "self_attn.q_proj.weight"), {h, h}, 0.02f);
      add(b + (gguf ? "attn_k.weight" : "self_attn.k_proj.weight"), {kv, h}, 0.02f);
      add(b + (gguf ? "attn_v.weight" : "self_attn.v_proj.weight"), {kv, h}, 0.02f);
      add(b + (gguf ? "attn_output.weight" : "self_attn.o_proj.weight"), {h, h}, 0.02f);
      add(b + (gguf ? "ffn_norm.weight" : "post_attention_layernorm.weight"), {h}, 0);
      add(b + (gguf ? "ffn_gate.weight" : "mlp.gate_proj.weight"), {c_.ffn, h}, 0.02f);
      add(b + (gguf ? "ffn_up.weight" : "mlp.up_proj.weight"), {c_.ffn, h}, 0.02f);
      add(b + (gguf ? "ffn_down.weight" : "mlp.down_proj.weight"), {h, c_.ffn}, 0.02f);
    }
    add(gguf ? "output_norm.weight" : "model.norm.weight", {h}, 0);
    add(gguf ? "output.weight" : "lm_head.weight", {c_.vocab, h}, 0.02f);
    return out;
  }

  // mlx affine quantization of a 2-D f32 weight: per group, scale = (max - min) / (2^bits - 1),
  // bias = min, q = round((w - bias) / scale), packed little-end first into u32 words.
  static std::vector<Tensor> quantize_mlx(const Tensor& w, int bits, int group) {
    const std::int64_t rows = w.shape[0];
    const std::int64_t cols = w.shape[1];
    const auto* src = reinterpret_cast<const float*>(w.bytes.data());
    const std::int64_t groups = cols / group;
    const int per_word = 32 / bits;
    std::vector<std::uint32_t> packed(static_cast<std::size_t>(rows * cols / per_word), 0);
    std::vector<float> scales(static_cast<std::size_t>(rows * groups));
    std::vector<float> biases(scales.size());
    const float levels = static_cast<float>((1 << bits) - 1);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t g = 0; g < groups; ++g) {
        const float* x = src + r * cols + g * group;
        const auto [lo, hi] = std::minmax_element(x, x + group);
        const float scale = std::max((*hi - *lo) / levels, 1e-8f);
        scales[r * groups + g] = scale;
        biases[r * groups + g] = *lo;
        for (int k = 0; k < group; ++k) {
          const auto q = static_cast<std::uint32_t>(
              std::clamp(std::lround((x[k] - *lo) / scale), 0L, static_cast<long>(levels)));
          const std::int64_t idx = r * cols + g * group + k;
          packed[idx / per_word] |= q << ((idx % per_word) * bits);
        }
      }
    }
    const std::string base = w.name.substr(0, w.name.size() - 7);  // drop ".weight"
    std::vector<Tensor> out;
    std::vector<std::byte> pb(packed.size() * 4);
    std::memcpy(pb.data(), packed.data(), pb.size());
    out.push_back({w.name, {rows, cols * bits / 32}, DType::kU32, std::move(pb)});
    out.push_back({base + ".scales", {rows, groups}, DType::kF16, encode(scales, DType::kF16)});
    out.push_back({base + ".biases", {rows, groups}, DType::kF16, encode(biases, DType::kF16)});
    return out;
  }

  void write_gguf(const fs::path& path, DType dtype) {
    formats::GGUFWriter w;
    w.set("general.architecture", "llama");
    w.set("general.name", "hearth tiny random llama");
    w.set("llama.context_length", static_cast<std::uint32_t>(c_.context));
    w.set("llama.embedding_length", static_cast<std::uint32_t>(c_.hidden));
    w.set("llama.block_count", static_cast<std::uint32_t>(c_.layers));
    w.set("llama.feed_forward_length", static_cast<std::uint32_t>(c_.ffn));
    w.set("llama.rope.dimension_count", static_cast<std::uint32_t>(c_.hidden / c_.heads));
    w.set("llama.attention.head_count", static_cast<std::uint32_t>(c_.heads));
    w.set("llama.attention.head_count_kv", static_cast<std::uint32_t>(c_.kv_heads));
    w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set("tokenizer.ggml.model", "llama");
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<std::int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      tokens.emplace_back(buf);
      types.push_back(6);
    }
    for (int i = static_cast<int>(tokens.size()); i < c_.vocab; ++i) {
      tokens.push_back("\xe2\x96\x81w" + std::to_string(i));
      types.push_back(1);
    }
    std::vector<float> scores(tokens.size());
    for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
    w.set("tokenizer.ggml.tokens", formats::GGUFArray{std::move(tokens)});
    w.set("tokenizer.ggml.scores", formats::GGUFArray{std::move(scores)});
    w.set("tokenizer.ggml.token_type", formats::GGUFArray{std::move(types)});
    w.set("tokenizer.ggml.bos_token_id", std::uint32_t{1});
    w.set("tokenizer.ggml.eos_token_id", std::uint32_t{2});
    const auto tensors = llama(true, dtype);
    for (const Tensor& t : tensors) w.add_tensor(t.name, t.dtype, t.shape, t.bytes);
    w.write(path);
  }

  void write_hf(const fs::path& dir, DType dtype, int mlx_bits, int group) {
    fs::create_directories(dir);
    nlohmann::json config = {
        {"architectures", {"LlamaForCausalLM"}},
        {"model_type", "llama"},
        {"vocab_size", c_.vocab},
        {"hidden_size", c_.hidden},
        {"intermediate_size", c_.ffn},
        {"num_hidden_layers", c_.layers},
        {"num_attention_heads", c_.heads},
        {"num_key_value_heads", c_.kv_heads},
        {"max_position_embeddings", c_.context},
        {"rms_norm_eps", 1e-5},
        {"rope_theta", 10000.0},
        {"tie_word_embeddings", false},
        {"torch_dtype", std::string(hearth::dtype_name(dtype))},
        {"bos_token_id", 1},
        {"eos_token_id", 2},
    };
    auto tensors = llama(false, mlx_bits > 0 ? DType::kF32 : dtype);
    if (mlx_bits > 0) {
      config["quantization"] = {{"group_size", group}, {"bits", mlx_bits}};
      std::vector<Tensor> quantized;
      for (Tensor& t : tensors) {
        if (t.shape.size() == 2 && t.shape[1] % group == 0) {
          for (Tensor& q : quantize_mlx(t, mlx_bits, group)) quantized.push_back(std::move(q));
        } else {
          quantized.push_back(std::move(t));
        }
      }
      tensors = std::move(quantized);
    }
    std::ofstream(dir / "config.json") << config.dump(2) << "\n";
    std::ofstream(dir / "generation_config.json")
        << nlohmann::json{{"bos_token_id", 1}, {"eos_token_id", 2}}.dump(2) << "\n";
    formats::SafetensorsWriter w;
    w.set_metadata("format", "pt");
    for (const Tensor& t : tensors) w.add_tensor(t.name, t.dtype, t.shape, t.bytes);
    w.write(dir / "model.safetensors");
  }

 private:
  Config c_;
  std::mt19937 rng_;
};

struct BertConfig {
  int vocab = 0;  // from the vocabulary
  int hidden = 32;
  int layers = 2;
  int heads = 4;
  int ffn = 64;
  int max_positions = 128;
  int type_vocab = 2;
  float eps = 1e-12f;
};

BertConfig bert_shape(const std::string& shape) {
  BertConfig c;
  if (shape == "minilm") {
    c.hidden = 384;
    c.layers = 6;
    c.heads = 12;
    c.ffn = 1536;
    c.max_positions = 512;
  }
  return c;
}

// The WordPiece vocabulary: a real vocab.txt, or [PAD] [UNK] [CLS] [SEP] [MASK], letters, digits,
// punctuation, their ## continuations and made-up words.
std::vector<std::string> bert_vocab(const std::string& tokenizer_dir) {
  std::vector<std::string> vocab;
  if (!tokenizer_dir.empty()) {
    std::ifstream in(fs::path(tokenizer_dir) / "vocab.txt");
    if (!in) {
      throw hearth::Error(hearth::ErrorCode::kNotFound, "no vocab.txt in the tokenizer folder",
                          {.file = (fs::path(tokenizer_dir) / "vocab.txt").string()});
    }
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      vocab.push_back(line);
    }
    return vocab;
  }
  vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  const std::string chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()";
  for (const char ch : chars) vocab.emplace_back(1, ch);
  for (const char ch : chars) vocab.push_back(std::string("##") + ch);
  for (const char* w : {"the", "of", "and", "to", "in", "is", "hello", "world", "paris", "capital",
                        "france", "berlin", "germany", "what", "##s", "##ing", "##ed"}) {
    vocab.emplace_back(w);
  }
  while (vocab.size() < 1000) vocab.push_back("w" + std::to_string(vocab.size()));
  return vocab;
}

int vocab_id(const std::vector<std::string>& vocab, const std::string& token) {
  const auto it = std::find(vocab.begin(), vocab.end(), token);
  if (it == vocab.end()) {
    throw hearth::Error(hearth::ErrorCode::kFormat, "the vocabulary lacks " + token);
  }
  return static_cast<int>(it - vocab.begin());
}

class BertMaker {
 public:
  BertMaker(BertConfig c, bool classifier, unsigned seed)
      : c_(c), classifier_(classifier), rng_(seed) {}

  // Every weight in Hugging Face naming, f32, in a fixed order (weights: N(0, 0.02) like BERT's
  // initializer, except LayerNorm gains around 1 and biases small, so every term matters).
  void generate() {
    const std::int64_t h = c_.hidden;
    const auto add = [&](const std::string& name, Shape shape, float mean, float scale) {
      std::normal_distribution<float> dist(mean, scale);
      std::vector<float> v(static_cast<std::size_t>(hearth::numel(shape)));
      for (float& x : v) x = dist(rng_);
      tensors_.push_back({name, std::move(shape), DType::kF32, {}});
      values_.push_back(std::move(v));
    };
    const auto linear = [&](const std::string& base, std::int64_t out, std::int64_t in) {
      add(base + ".weight", {out, in}, 0.0f, 0.02f * 2.0f);
      add(base + ".bias", {out}, 0.0f, 0.02f);
    };
    const auto norm = [&](const std::string& base) {
      add(base + ".weight", {h}, 1.0f, 0.1f);
      add(base + ".bias", {h}, 0.0f, 0.05f);
    };
    add("embeddings.word_embeddings.weight", {c_.vocab, h}, 0.0f, 0.5f);
    add("embeddings.position_embeddings.weight", {c_.max_positions, h}, 0.0f, 0.5f);
    add("embeddings.token_type_embeddings.weight", {c_.type_vocab, h}, 0.0f, 0.5f);
    norm("embeddings.LayerNorm");
    for (int l = 0; l < c_.layers; ++l) {
      const std::string b = "encoder.layer." + std::to_string(l) + ".";
      linear(b + "attention.self.query", h, h);
      linear(b + "attention.self.key", h, h);
      linear(b + "attention.self.value", h, h);
      linear(b + "attention.output.dense", h, h);
      norm(b + "attention.output.LayerNorm");
      linear(b + "intermediate.dense", c_.ffn, h);
      linear(b + "output.dense", h, c_.ffn);
      norm(b + "output.LayerNorm");
    }
    linear("pooler.dense", h, h);
    if (classifier_) {
      add("classifier.weight", {1, h}, 0.0f, 0.5f);
      add("classifier.bias", {1}, 0.0f, 0.5f);
    }
  }

  void write_hf(const fs::path& dir, DType dtype, const std::vector<std::string>& vocab,
                const std::string& tokenizer_dir, const std::string& pooling, bool normalize) {
    fs::create_directories(dir);
    nlohmann::json config = {
        {"architectures", {classifier_ ? "BertForSequenceClassification" : "BertModel"}},
        {"model_type", "bert"},
        {"vocab_size", c_.vocab},
        {"hidden_size", c_.hidden},
        {"num_hidden_layers", c_.layers},
        {"num_attention_heads", c_.heads},
        {"intermediate_size", c_.ffn},
        {"hidden_act", "gelu"},
        {"max_position_embeddings", c_.max_positions},
        {"type_vocab_size", c_.type_vocab},
        {"layer_norm_eps", c_.eps},
        {"pad_token_id", 0},
        {"position_embedding_type", "absolute"},
        {"torch_dtype", dtype == DType::kF32   ? "float32"
                        : dtype == DType::kF16 ? "float16"
                                               : "bfloat16"},
    };
    if (classifier_) {
      config["id2label"] = {{"0", "LABEL_0"}};
      config["label2id"] = {{"LABEL_0", 0}};
    }
    std::ofstream(dir / "config.json") << config.dump(2) << "\n";
    if (!classifier_) {
      nlohmann::json modules = nlohmann::json::array();
      modules.push_back({{"idx", 0},
                         {"name", "0"},
                         {"path", ""},
                         {"type", "sentence_transformers.models.Transformer"}});
      modules.push_back({{"idx", 1},
                         {"name", "1"},
                         {"path", "1_Pooling"},
                         {"type", "sentence_transformers.models.Pooling"}});
      if (normalize) {
        modules.push_back({{"idx", 2},
                           {"name", "2"},
                           {"path", "2_Normalize"},
                           {"type", "sentence_transformers.models.Normalize"}});
        fs::create_directories(dir / "2_Normalize");
      }
      std::ofstream(dir / "modules.json") << modules.dump(2) << "\n";
      fs::create_directories(dir / "1_Pooling");
      const nlohmann::json pool = {
          {"word_embedding_dimension", c_.hidden},
          {"pooling_mode_cls_token", pooling == "cls"},
          {"pooling_mode_mean_tokens", pooling == "mean"},
          {"pooling_mode_max_tokens", pooling == "max"},
          {"pooling_mode_mean_sqrt_len_tokens", false},
      };
      std::ofstream(dir / "1_Pooling" / "config.json") << pool.dump(2) << "\n";
      std::ofstream(dir / "sentence_bert_config.json")
          << nlohmann::json{{"max_seq_length", std::min(256, c_.max_positions)},
                            {"do_lower_case", false}}
                 .dump(2)
          << "\n";
    }
    if (!tokenizer_dir.empty()) {
      for (const char* f :
           {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
        const fs::path src = fs::path(tokenizer_dir) / f;
        if (fs::exists(src)) fs::copy_file(src, dir / f, fs::copy_options::overwrite_existing);
      }
    } else {
      std::ofstream out(dir / "vocab.txt");
      for (const std::string& t : vocab) out << t << "\n";
      std::ofstream(dir / "tokenizer_config.json")
          << nlohmann::json{{"tokenizer_class", "BertTokenizer"},
                            {"do_lower_case", true},
                            {"model_max_length", c_.max_positions}}
                 .dump(2)
          << "\n";
    }
    formats::SafetensorsWriter w;
    w.set_metadata("format", "pt");
    std::vector<std::vector<std::byte>> bytes;
    bytes.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      const DType td = t.shape.size() == 2 ? dtype : DType::kF32;
      bytes.push_back(Maker::encode(values_[i], td));
      const std::string name =
          classifier_ && !t.name.starts_with("classifier.") ? "bert." + t.name : t.name;
      w.add_tensor(name, td, t.shape, bytes.back());
    }
    w.write(dir / "model.safetensors");
  }

  // llama.cpp's `bert` GGUF: its tensor names and keys; WordPiece pieces as llama.cpp stores them
  // (word starts prefixed with U+2581, "##" dropped from continuations).
  void write_gguf(const fs::path& path, DType dtype, const std::vector<std::string>& vocab,
                  const std::string& pooling) {
    formats::GGUFWriter w;
    w.set("general.architecture", "bert");
    w.set("general.name",
          classifier_ ? "hearth tiny random bert reranker" : "hearth tiny random bert");
    w.set("bert.context_length", static_cast<std::uint32_t>(c_.max_positions));
    w.set("bert.embedding_length", static_cast<std::uint32_t>(c_.hidden));
    w.set("bert.feed_forward_length", static_cast<std::uint32_t>(c_.ffn));
    w.set("bert.block_count", static_cast<std::uint32_t>(c_.layers));
    w.set("bert.attention.head_count", static_cast<std::uint32_t>(c_.heads));
    w.set("bert.attention.layer_norm_epsilon", c_.eps);
    w.set("bert.attention.causal", false);
    const std::uint32_t pooling_type = classifier_ ? 4 : pooling == "cls" ? 2 : 1;
    w.set("bert.pooling_type", pooling_type);
    w.set("tokenizer.ggml.model", "bert");
    std::vector<std::string> tokens;
    std::vector<std::int32_t> types;
    for (const std::string& t : vocab) {
      const bool control = t.size() > 2 && t.front() == '[' && t.back() == ']';
      tokens.push_back(control ? t : t.starts_with("##") ? t.substr(2) : "\xe2\x96\x81" + t);
      types.push_back(control ? 3 : 1);
    }
    w.set("tokenizer.ggml.tokens", formats::GGUFArray{std::move(tokens)});
    w.set("tokenizer.ggml.token_type", formats::GGUFArray{std::move(types)});
    w.set("tokenizer.ggml.token_type_count", static_cast<std::uint32_t>(c_.type_vocab));
    w.set("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[UNK]")));
    w.set("tokenizer.ggml.cls_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[CLS]")));
    w.set("tokenizer.ggml.seperator_token_id",
          static_cast<std::uint32_t>(vocab_id(vocab, "[SEP]")));
    w.set("tokenizer.ggml.padding_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[PAD]")));
    w.set("tokenizer.ggml.mask_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[MASK]")));
    std::vector<std::vector<std::byte>> bytes;
    bytes.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      const std::string name = gguf_name(t.name);
      const DType td = t.shape.size() == 2 ? dtype : DType::kF32;
      bytes.push_back(Maker::encode(values_[i], td));
      w.add_tensor(name, td, t.shape, bytes.back());
    }
    w.write(path);
  }

 private:
  static std::string gguf_name(const std::string& hf) {
    std::string name = hearth::models::bert_gguf_name(hf);
    if (name == hf) throw hearth::Error(hearth::ErrorCode::kInternal, "no GGUF name for " + hf);
    return name;
  }

  BertConfig c_;
  bool classifier_;
  std::mt19937 rng_;
  std::vector<Tensor> tensors_;  // names and shapes (bytes unused)
  std::vector<std::vector<float>> values_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a tiny random-weight model in a real format (for tests and demos)",
               "hearth-make-model"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  std::string out;
  std::string format = "gguf";
  std::string dtype_name = "f32";
  int mlx_bits = 0;
  int group = 32;
  unsigned seed = 1;
  Config c;
  std::string arch = "llama";
  std::string shape = "tiny";
  std::string tokenizer_dir;
  std::string pooling = "mean";
  bool classifier = false;
  bool no_normalize = false;
  app.add_option("--arch", arch, "llama or bert")->check(CLI::IsMember({"llama", "bert"}));
  app.add_option("--shape", shape, "bert: tiny (hidden 32, 2 layers) or minilm (384, 6 layers)")
      ->check(CLI::IsMember({"tiny", "minilm"}));
  app.add_option("--tokenizer-dir", tokenizer_dir,
                 "bert: folder with a WordPiece vocab.txt (tokenizer files are copied)");
  app.add_option("--pooling", pooling, "bert embeddings: mean, cls or max")
      ->check(CLI::IsMember({"mean", "cls", "max"}));
  app.add_flag("--classifier", classifier,
               "bert: BertForSequenceClassification with one label (a cross-encoder)");
  app.add_flag("--no-normalize", no_normalize, "bert embeddings: leave out 2_Normalize");
  app.add_option("--out", out, "Output file (gguf) or folder (hf)")->required();
  app.add_option("--format", format, "gguf or hf")->check(CLI::IsMember({"gguf", "hf"}));
  app.add_option("--dtype", dtype_name, "Weight dtype: f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  app.add_option("--mlx-bits", mlx_bits, "hf only: quantize linear weights mlx-style (4 or 8)")
      ->check(CLI::IsMember({0, 2, 4, 8}));
  app.add_option("--group-size", group, "mlx quantization group size")->check(CLI::Range(8, 1024));
  app.add_option("--seed", seed, "Random seed");
  app.add_option("--vocab", c.vocab, "Vocabulary size (>= 259)")->check(CLI::Range(259, 1 << 20));
  app.add_option("--hidden", c.hidden, "Hidden size")->check(CLI::Range(8, 1 << 16));
  app.add_option("--layers", c.layers, "Layers")->check(CLI::Range(1, 256));
  return hearth::cli::run(app, argc, argv, [&] {
    if (arch == "bert") {
      const DType dtype = *hearth::dtype_from_name(dtype_name);
      BertConfig bc = bert_shape(shape);
      const auto vocab = bert_vocab(tokenizer_dir);
      bc.vocab = static_cast<int>(vocab.size());
      BertMaker maker(bc, classifier, seed);
      maker.generate();
      if (format == "gguf") {
        if (pooling == "max") {
          throw hearth::Error(hearth::ErrorCode::kUnsupported,
                              "llama.cpp's bert GGUF has no max pooling");
        }
        maker.write_gguf(out, dtype, vocab, pooling);
      } else {
        maker.write_hf(out, dtype, vocab, tokenizer_dir, pooling, !no_normalize);
      }
      std::printf("wrote %s\n", out.c_str());
      return 0;
    }
    if (c.hidden % c.heads != 0 || c.hidden % group != 0) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "--hidden must be a multiple of 4 heads and of --group-size");
    }
    const DType dtype = *hearth::dtype_from_name(dtype_name);
    Maker maker(c, seed);
    if (format == "gguf") {
      maker.write_gguf(out, dtype);
    } else {
      maker.write_hf(out, dtype, mlx_bits, group);
    }
    std::printf("wrote %s\n", out.c_str());
    return 0;
  });
}
