#include "make_text_encoder.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace fs = std::filesystem;
using hearth::DType;
using hearth::Shape;

namespace {

struct Tensor {
  std::string name;
  Shape shape;
  std::vector<std::byte> bytes;
};

class Maker {
 public:
  Maker(DType dtype, unsigned seed) : dtype_(dtype), rng_(seed) {}

  // Normal values, stored in the file's dtype like every tensor of the real files (norm gains
  // and biases included).
  void add(const std::string& name, Shape shape, float mean, float std) {
    std::normal_distribution<float> dist(mean, std);
    std::vector<float> v(static_cast<std::size_t>(hearth::numel(shape)));
    for (float& x : v) x = dist(rng_);
    Tensor t{name, std::move(shape), {}};
    if (dtype_ == DType::kF32) {
      t.bytes.resize(v.size() * 4);
      std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
    } else {
      std::vector<std::uint16_t> h(v.size());
      if (dtype_ == DType::kF16) {
        hearth::f32_to_f16(v.data(), h.data(), v.size());
      } else {
        hearth::f32_to_bf16(v.data(), h.data(), v.size());
      }
      t.bytes.resize(h.size() * 2);
      std::memcpy(t.bytes.data(), h.data(), t.bytes.size());
    }
    tensors_.push_back(std::move(t));
  }
  void matrix(const std::string& name, std::int64_t out, std::int64_t in) {
    add(name, {out, in}, 0.0f, 1.0f / std::sqrt(static_cast<float>(in)));
  }

  void write(const fs::path& path) const {
    hearth::formats::SafetensorsWriter w;
    w.set_metadata("format", "pt");
    for (const Tensor& t : tensors_) w.add_tensor(t.name, dtype_, t.shape, t.bytes);
    w.write(path);
  }

 private:
  DType dtype_;
  std::mt19937 rng_;
  std::vector<Tensor> tensors_;
};

const char* torch_dtype(DType d) {
  return d == DType::kF32 ? "float32" : d == DType::kF16 ? "float16" : "bfloat16";
}

}  // namespace

void make_text_encoder(const std::string& arch, const std::string& out, const std::string& format,
                       DType dtype, unsigned seed, const std::string& tokenizer_dir,
                       const TextEncoderShape& shape) {
  if (format != "hf" && format != "safetensors") {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "text encoders are written as --format hf or safetensors");
  }
  std::int64_t vocab = 1024;
  if (!tokenizer_dir.empty()) {
    const auto tok = hearth::tokenize::Tokenizer::load(tokenizer_dir);
    vocab = (static_cast<std::int64_t>(tok.vocab_size()) + 127) / 128 * 128;
  }
  Maker m(dtype, seed);
  nlohmann::json config;
  if (arch == "clip-text") {
    const std::int64_t h = shape.hidden.value_or(32), layers = shape.layers.value_or(2),
                       heads = shape.heads.value_or(4), ffn = shape.ffn.value_or(64), pos = 77;
    const std::string p = "text_model.";
    m.add(p + "embeddings.token_embedding.weight", {vocab, h}, 0.0f, 0.5f);
    m.add(p + "embeddings.position_embedding.weight", {pos, h}, 0.0f, 0.5f);
    for (std::int64_t l = 0; l < layers; ++l) {
      const std::string b = p + "encoder.layers." + std::to_string(l) + ".";
      for (const char* part : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        m.matrix(b + "self_attn." + part + ".weight", h, h);
        m.add(b + "self_attn." + part + ".bias", {h}, 0.0f, 0.1f);
      }
      m.add(b + "layer_norm1.weight", {h}, 1.0f, 0.1f);
      m.add(b + "layer_norm1.bias", {h}, 0.0f, 0.1f);
      m.matrix(b + "mlp.fc1.weight", ffn, h);
      m.add(b + "mlp.fc1.bias", {ffn}, 0.0f, 0.1f);
      m.matrix(b + "mlp.fc2.weight", h, ffn);
      m.add(b + "mlp.fc2.bias", {h}, 0.0f, 0.1f);
      m.add(b + "layer_norm2.weight", {h}, 1.0f, 0.1f);
      m.add(b + "layer_norm2.bias", {h}, 0.0f, 0.1f);
    }
    m.add(p + "final_layer_norm.weight", {h}, 1.0f, 0.1f);
    m.add(p + "final_layer_norm.bias", {h}, 0.0f, 0.1f);
    // FLUX.1's text_encoder/config.json, with the tiny shape.
    config = {{"architectures", {"CLIPTextModel"}},
              {"model_type", "clip_text_model"},
              {"vocab_size", vocab},
              {"hidden_size", h},
              {"intermediate_size", ffn},
              {"num_hidden_layers", layers},
              {"num_attention_heads", heads},
              {"max_position_embeddings", pos},
              {"hidden_act", "quick_gelu"},
              {"layer_norm_eps", 1e-5},
              {"projection_dim", h},
              {"bos_token_id", 0},
              {"eos_token_id", 2},
              {"pad_token_id", 1},
              {"torch_dtype", torch_dtype(dtype)}};
  } else if (arch == "t5-encoder") {
    const std::int64_t dm = shape.hidden.value_or(32), layers = shape.layers.value_or(2),
                       heads = shape.heads.value_or(4), ff = shape.ffn.value_or(48), dkv = 8,
                       buckets = 32;
    m.add("shared.weight", {vocab, dm}, 0.0f, 1.0f);
    m.add("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", {buckets, heads},
          0.0f, 1.0f);
    for (std::int64_t l = 0; l < layers; ++l) {
      const std::string b = "encoder.block." + std::to_string(l) + ".layer.";
      for (const char* part : {"q", "k", "v"}) {
        m.matrix(b + "0.SelfAttention." + part + ".weight", heads * dkv, dm);
      }
      m.matrix(b + "0.SelfAttention.o.weight", dm, heads * dkv);
      m.add(b + "0.layer_norm.weight", {dm}, 1.0f, 0.1f);
      m.matrix(b + "1.DenseReluDense.wi_0.weight", ff, dm);
      m.matrix(b + "1.DenseReluDense.wi_1.weight", ff, dm);
      m.matrix(b + "1.DenseReluDense.wo.weight", dm, ff);
      m.add(b + "1.layer_norm.weight", {dm}, 1.0f, 0.1f);
    }
    m.add("encoder.final_layer_norm.weight", {dm}, 1.0f, 0.1f);
    // FLUX.1's text_encoder_2/config.json (google/t5-v1_1-xxl), with the tiny shape.
    config = {{"architectures", {"T5EncoderModel"}},
              {"model_type", "t5"},
              {"vocab_size", vocab},
              {"d_model", dm},
              {"d_kv", dkv},
              {"d_ff", ff},
              {"num_layers", layers},
              {"num_heads", heads},
              {"relative_attention_num_buckets", buckets},
              {"relative_attention_max_distance", 128},
              {"layer_norm_epsilon", 1e-6},
              {"feed_forward_proj", "gated-gelu"},
              {"dense_act_fn", "gelu_new"},
              {"is_gated_act", true},
              {"tie_word_embeddings", false},
              {"pad_token_id", 0},
              {"eos_token_id", 1},
              {"decoder_start_token_id", 0},
              {"torch_dtype", torch_dtype(dtype)}};
  } else {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "unknown text encoder " + arch);
  }
  if (format == "safetensors") {
    m.write(out);
    return;
  }
  fs::create_directories(out);
  m.write(fs::path(out) / "model.safetensors");
  std::ofstream(fs::path(out) / "config.json") << config.dump(2) << "\n";
  if (!tokenizer_dir.empty()) {
    for (const auto& entry : fs::directory_iterator(tokenizer_dir)) {
      if (entry.is_regular_file()) {
        fs::copy_file(entry.path(), fs::path(out) / entry.path().filename(),
                      fs::copy_options::overwrite_existing);
      }
    }
  }
}
