// hearth-make-model: writes tiny random-weight models in the real formats, for tests, demos and
// benchmarks (no trained weights can be downloaded here). Llama-shaped for now: a GGUF file with
// llama.cpp's names and a SentencePiece-style byte vocabulary, or a Hugging Face folder
// (config.json + model.safetensors), optionally mlx-community quantized (U32-packed weights with
// .scales/.biases).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "hearth/cli/app.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/safetensors.hpp"
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
