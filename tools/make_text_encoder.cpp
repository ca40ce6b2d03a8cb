#include "make_text_encoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/tensor/float8.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"
#include "hearth/tokenize/tokenizer.hpp"

#include "encode_values.hpp"

namespace fs = std::filesystem;
using hearth::DType;
using hearth::Shape;

namespace {

struct Tensor {
  std::string name;
  Shape shape;
  std::vector<std::byte> bytes;
  std::optional<DType> dtype;  // when not the maker's
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

  // The tensors renamed and fused for another layout: each output is the row-wise concatenation
  // of the named tensors (one name: a rename). Every tensor must be used.
  Maker fused(const std::vector<std::pair<std::string, std::vector<std::string>>>& layout) const {
    Maker out(dtype_, 0);
    std::size_t used = 0;
    for (const auto& [name, parts] : layout) {
      Tensor t{name, {}, {}};
      for (const std::string& part : parts) {
        const auto it = std::find_if(tensors_.begin(), tensors_.end(),
                                     [&](const Tensor& x) { return x.name == part; });
        if (it == tensors_.end()) {
          throw hearth::Error(hearth::ErrorCode::kInternal, "no tensor " + part);
        }
        if (t.shape.empty()) {
          t.shape = it->shape;
        } else {
          t.shape[0] += it->shape[0];
        }
        t.bytes.insert(t.bytes.end(), it->bytes.begin(), it->bytes.end());
        ++used;
      }
      out.tensors_.push_back(std::move(t));
    }
    if (used != tensors_.size()) {
      throw hearth::Error(hearth::ErrorCode::kInternal, "the layout leaves tensors out");
    }
    return out;
  }

  // The matrices (2-D ".weight" tensors) as float8 codes of their values (round to nearest even,
  // saturating at 448 for e4m3fn; e5m2 through the IEEE half), the other tensors as they are.
  // scaled: each matrix is divided by s = max|w| / 448 first and s stored beside it as
  // <base>.scale_weight (f32 [1]), with ComfyUI's "scaled_fp8" marker tensor (an empty f8 tensor),
  // as its scaled fp8 files have them.
  Maker to_float8(DType f8, bool scaled) const {
    Maker out(dtype_, 0);
    for (const Tensor& t : tensors_) {
      if (t.shape.size() != 2 || !t.name.ends_with(".weight")) {
        out.tensors_.push_back(t);
        continue;
      }
      std::vector<float> v = values(t);
      float s = 1.0f;
      if (scaled) {
        float m = 0.0f;
        for (const float x : v) m = std::max(m, std::fabs(x));
        s = m > 0.0f ? m / 448.0f : 1.0f;
        const std::vector<float> sv = {s};
        out.tensors_.push_back({t.name.substr(0, t.name.size() - 7) + ".scale_weight",
                                {1},
                                encode(sv, DType::kF32),
                                DType::kF32});
      }
      Tensor q{t.name, t.shape, std::vector<std::byte>(v.size()), f8};
      for (std::size_t i = 0; i < v.size(); ++i) {
        const float x = v[i] / s;
        q.bytes[i] = static_cast<std::byte>(f8 == DType::kF8E4M3 ? hearth::f32_to_f8e4m3(x)
                                                                 : hearth::f32_to_f8e5m2(x));
      }
      out.tensors_.push_back(std::move(q));
    }
    if (scaled) out.tensors_.push_back({"scaled_fp8", {0}, {}, f8});
    return out;
  }

  // mflux's saved transformer/ (what mflux-save writes, models/flux_mlx.hpp): diffusers' names but
  // the feed-forwards' (ff.linear1 / ff.linear2 for ff.net.0.proj / ff.net.2), every matrix
  // whose rows are whole groups of 64 MLX-affine quantized at bits by hearth's quantizer
  // (<base>.weight U32 [out, in * bits / 32], <base>.scales and <base>.biases [out, in / 64] in
  // the maker's dtype), the rest as it is; one shard 0.safetensors with mflux's metadata
  // (quantization_level, mflux_version) and model.safetensors.index.json.
  //
  // names, when given, gives mflux's names for a tensor (several where mflux keeps copies), in
  // place of the feed-forward renaming.
  void write_mflux(
      const fs::path& dir, int bits,
      const std::function<std::vector<std::string>(const std::string&)>& names = {}) const {
    constexpr std::int64_t kGroup = 64;
    hearth::formats::SafetensorsWriter w;
    const std::string level = bits == 0 ? "None" : std::to_string(bits);
    w.set_metadata("quantization_level", level);
    w.set_metadata("mflux_version", "0.9.0");
    std::vector<std::vector<std::byte>> stored;
    stored.reserve(3 * tensors_.size());
    nlohmann::json map = nlohmann::json::object();
    const auto each = [&](const Tensor& t) {
      if (names) return names(t.name);
      std::string name = t.name;
      for (const auto& [from, to] :
           {std::pair{".net.0.proj.", ".linear1."}, std::pair{".net.2.", ".linear2."}}) {
        if (const std::size_t at = name.find(from); at != std::string::npos) {
          name.replace(at, std::strlen(from), to);
        }
      }
      return std::vector<std::string>{name};
    };
    for (const Tensor& t : tensors_) {
      for (const std::string& name : each(t)) {
        add_mflux(w, stored, map, t, name, bits, kGroup);
      }
    }
    fs::create_directories(dir);
    w.write(dir / "0.safetensors");
    std::ofstream(dir / "model.safetensors.index.json")
        << nlohmann::json(
               {{"metadata", {{"quantization_level", level}, {"mflux_version", "0.9.0"}}},
                {"weight_map", map}})
               .dump(2)
        << "\n";
  }

  // One tensor of write_mflux as name: MLX-affine quantized at bits when its rows are whole
  // groups, else as it is.
  void add_mflux(hearth::formats::SafetensorsWriter& w, std::vector<std::vector<std::byte>>& stored,
                 nlohmann::json& map, const Tensor& t, const std::string& name, int bits,
                 std::int64_t kGroup) const {
    const std::int64_t cols = t.shape.back();
    if (bits == 0 || t.shape.size() != 2 || !name.ends_with(".weight") || cols % kGroup != 0) {
      w.add_tensor(name, t.dtype.value_or(dtype_), t.shape, t.bytes);
      map[name] = "0.safetensors";
      return;
    }
    const std::string base = name.substr(0, name.size() - 7);
    const std::vector<float> v = values(t);
    const std::int64_t rows = t.shape[0], groups = cols / kGroup;
    const std::int64_t rb = hearth::mlx::packed_row_bytes(cols, bits);
    std::vector<std::byte>& packed = stored.emplace_back(static_cast<std::size_t>(rows * rb));
    std::vector<float> sc(static_cast<std::size_t>(rows * groups)), bi(sc.size());
    for (std::int64_t r = 0; r < rows; ++r) {
      hearth::mlx::quantize_row(v.data() + r * cols, cols, bits, static_cast<int>(kGroup),
                                reinterpret_cast<std::uint8_t*>(packed.data()) + r * rb,
                                sc.data() + r * groups, bi.data() + r * groups);
    }
    w.add_tensor(base + ".weight", DType::kU32, {rows, rb / 4}, packed);
    w.add_tensor(base + ".scales", dtype_, {rows, groups}, stored.emplace_back(encode(sc, dtype_)));
    w.add_tensor(base + ".biases", dtype_, {rows, groups}, stored.emplace_back(encode(bi, dtype_)));
    for (const char* sfx : {".weight", ".scales", ".biases"}) map[base + sfx] = "0.safetensors";
  }

  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const Tensor& t : tensors_) n.push_back(t.name);
    return n;
  }

  void write(const fs::path& path) const {
    hearth::formats::SafetensorsWriter w;
    w.set_metadata("format", "pt");
    for (const Tensor& t : tensors_)
      w.add_tensor(t.name, t.dtype.value_or(dtype_), t.shape, t.bytes);
    w.write(path);
  }
  // A GGUF file of general.architecture arch as city96's convert.py writes FLUX transformers (the
  // maker's f32 values; shapes outermost first): vectors, the matrices whose names start with one
  // of keep_f32, and those whose rows are not whole blocks stay f32; the other matrices are
  // stored as dtype (f16, bf16 or a ggml block type, quantized row by row by hearth's quantizer).
  void write_gguf(const fs::path& path, const std::string& arch, DType dtype,
                  const std::vector<std::string>& keep_f32) const {
    if (dtype_ != DType::kF32) {
      throw hearth::Error(hearth::ErrorCode::kInternal, "GGUF files are made from f32 values");
    }
    hearth::formats::GGUFWriter w;
    w.set("general.architecture", arch);
    w.set("general.quantization_version", std::uint32_t{2});
    w.set("general.file_type", *hearth::ggml_type_of(dtype));
    std::vector<std::vector<std::byte>> stored;
    stored.reserve(tensors_.size());
    for (const Tensor& t : tensors_) {
      const std::int64_t cols = t.shape.back();
      const bool keep = t.shape.size() != 2 ||
                        std::any_of(keep_f32.begin(), keep_f32.end(),
                                    [&](const std::string& p) { return t.name.starts_with(p); }) ||
                        cols % hearth::dtype_info(dtype).block_size != 0;
      const DType dt = keep ? DType::kF32 : dtype;
      std::vector<float> v(t.bytes.size() / 4);
      std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
      std::vector<std::byte>& out = stored.emplace_back();
      if (hearth::ggml::supported(dt)) {
        const std::int64_t rb = hearth::ggml::row_bytes(dt, cols);
        out.resize(static_cast<std::size_t>(t.shape[0] * rb));
        for (std::int64_t r = 0; r < t.shape[0]; ++r) {
          hearth::ggml::quantize_row(dt, v.data() + r * cols, out.data() + r * rb, cols);
        }
      } else {
        out = encode(v, dt);
      }
      w.add_tensor(t.name, dt, t.shape, out);
    }
    w.write(path);
  }
  // Two shards <stem>-0000{1,2}-of-00002.safetensors (the tensors split in half, in order) and
  // <stem>.safetensors.index.json, as diffusers and transformers write sharded weights.
  void write_sharded(const fs::path& dir, const std::string& stem) const {
    nlohmann::json map = nlohmann::json::object();
    const std::size_t half = tensors_.size() / 2;
    for (int s = 0; s < 2; ++s) {
      const std::string name = stem + "-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
      hearth::formats::SafetensorsWriter w;
      w.set_metadata("format", "pt");
      for (std::size_t i = s == 0 ? 0 : half; i < (s == 0 ? half : tensors_.size()); ++i) {
        w.add_tensor(tensors_[i].name, tensors_[i].dtype.value_or(dtype_), tensors_[i].shape,
                     tensors_[i].bytes);
        map[tensors_[i].name] = name;
      }
      w.write(dir / name);
    }
    std::ofstream(dir / (stem + ".safetensors.index.json"))
        << nlohmann::json({{"metadata", nlohmann::json::object()}, {"weight_map", map}}).dump(2)
        << "\n";
  }

 private:
  // A tensor's values (f32, f16 or bf16) as f32.
  std::vector<float> values(const Tensor& t) const {
    const DType dt = t.dtype.value_or(dtype_);
    std::vector<float> v(static_cast<std::size_t>(hearth::numel(t.shape)));
    if (dt == DType::kF32) {
      std::memcpy(v.data(), t.bytes.data(), v.size() * 4);
      return v;
    }
    std::vector<std::uint16_t> h(v.size());
    std::memcpy(h.data(), t.bytes.data(), h.size() * 2);
    if (dt == DType::kF16) {
      hearth::f16_to_f32(h.data(), v.data(), v.size());
    } else {
      hearth::bf16_to_f32(h.data(), v.data(), v.size());
    }
    return v;
  }

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
  if (format != "hf" && format != "safetensors" && format != "mflux") {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "text encoders are written as --format hf, safetensors or mflux");
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
  if (format == "mflux" && arch == "t5-encoder") {
    // mflux's T5 names (get_t5_encoder_mapping), block 0's position bias copied to every block.
    const std::int64_t layers = shape.layers.value_or(2);
    m.write_mflux(out, shape.mlx_bits, [layers](const std::string& name) {
      constexpr std::string_view kBlock = "encoder.block.";
      if (name.ends_with("relative_attention_bias.weight")) {
        std::vector<std::string> all;
        for (std::int64_t l = 0; l < layers; ++l) {
          all.push_back("t5_blocks." + std::to_string(l) +
                        ".attention.SelfAttention.relative_attention_bias.weight");
        }
        return all;
      }
      if (name.starts_with(kBlock)) {
        const std::size_t dot = name.find('.', kBlock.size());
        const std::string block = "t5_blocks." + name.substr(kBlock.size(), dot - kBlock.size());
        const std::string rest = name.substr(dot + 1);  // layer.0.<...> or layer.1.<...>
        return std::vector<std::string>{block + (rest[6] == '0' ? ".attention." : ".ff.") +
                                        rest.substr(8)};
      }
      return std::vector<std::string>{name.starts_with("encoder.") ? name.substr(8) : name};
    });
    return;
  }
  if (format == "mflux") {  // no config.json: mflux-save writes none
    m.write_mflux(out, shape.mlx_bits);
    return;
  }
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

namespace {

// Black Forest Labs' names for the diffusers tensors (flux/model.py as flux1-schnell.safetensors
// stores them): q, k, v fused per stream, single blocks' q, k, v and MLP input fused as linear1,
// and the final modulation stored as (shift, scale) where diffusers has (scale, shift).
std::vector<std::pair<std::string, std::vector<std::string>>> bfl_layout(std::int64_t layers,
                                                                         std::int64_t singles,
                                                                         bool guidance) {
  std::vector<std::pair<std::string, std::vector<std::string>>> l;
  const auto both = [&](const std::string& to, const std::vector<std::string>& from) {
    for (const char* s : {".weight", ".bias"}) {
      std::vector<std::string> parts;
      for (const std::string& f : from) parts.push_back(f + s);
      l.emplace_back(to + s, parts);
    }
  };
  both("img_in", {"x_embedder"});
  both("txt_in", {"context_embedder"});
  const std::string t = "time_text_embed.";
  for (const auto& [to, from] :
       std::vector<std::pair<std::string, std::string>>{{"time_in", "timestep_embedder"},
                                                        {"vector_in", "text_embedder"},
                                                        {"guidance_in", "guidance_embedder"}}) {
    if (from == "guidance_embedder" && !guidance) continue;
    both(to + ".in_layer", {t + from + ".linear_1"});
    both(to + ".out_layer", {t + from + ".linear_2"});
  }
  for (std::int64_t i = 0; i < layers; ++i) {
    const std::string p = "transformer_blocks." + std::to_string(i) + ".";
    const std::string q = "double_blocks." + std::to_string(i) + ".";
    both(q + "img_mod.lin", {p + "norm1.linear"});
    both(q + "txt_mod.lin", {p + "norm1_context.linear"});
    both(q + "img_attn.qkv", {p + "attn.to_q", p + "attn.to_k", p + "attn.to_v"});
    both(q + "txt_attn.qkv", {p + "attn.add_q_proj", p + "attn.add_k_proj", p + "attn.add_v_proj"});
    l.push_back({q + "img_attn.norm.query_norm.scale", {p + "attn.norm_q.weight"}});
    l.push_back({q + "img_attn.norm.key_norm.scale", {p + "attn.norm_k.weight"}});
    l.push_back({q + "txt_attn.norm.query_norm.scale", {p + "attn.norm_added_q.weight"}});
    l.push_back({q + "txt_attn.norm.key_norm.scale", {p + "attn.norm_added_k.weight"}});
    both(q + "img_attn.proj", {p + "attn.to_out.0"});
    both(q + "txt_attn.proj", {p + "attn.to_add_out"});
    both(q + "img_mlp.0", {p + "ff.net.0.proj"});
    both(q + "img_mlp.2", {p + "ff.net.2"});
    both(q + "txt_mlp.0", {p + "ff_context.net.0.proj"});
    both(q + "txt_mlp.2", {p + "ff_context.net.2"});
  }
  for (std::int64_t i = 0; i < singles; ++i) {
    const std::string p = "single_transformer_blocks." + std::to_string(i) + ".";
    const std::string q = "single_blocks." + std::to_string(i) + ".";
    both(q + "modulation.lin", {p + "norm.linear"});
    both(q + "linear1", {p + "attn.to_q", p + "attn.to_k", p + "attn.to_v", p + "proj_mlp"});
    l.push_back({q + "norm.query_norm.scale", {p + "attn.norm_q.weight"}});
    l.push_back({q + "norm.key_norm.scale", {p + "attn.norm_k.weight"}});
    both(q + "linear2", {p + "proj_out"});
  }
  // "norm_out.linear.shift" / ".scale" are the halves make_flux_transformer stores separately.
  both("final_layer.adaLN_modulation.1", {"norm_out.linear.shift", "norm_out.linear.scale"});
  both("final_layer.linear", {"proj_out"});
  return l;
}

}  // namespace

void make_flux_transformer(const std::string& out, const std::string& format, DType dtype,
                           unsigned seed, const FluxTransformerShape& shape) {
  if (format != "hf" && format != "safetensors" && format != "gguf" && format != "mflux") {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "FLUX transformers are written as --format hf (diffusers), safetensors "
                        "(Black Forest Labs' single file), gguf (city96's layout) or mflux");
  }
  if (hearth::dtype_info(dtype).quantized && format != "gguf") {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "quantized FLUX transformers are written as --format gguf");
  }
  const bool f8 = dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2;
  if (f8 && format != "hf" && format != "safetensors") {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "float8 FLUX transformers are written as --format hf or safetensors");
  }
  if ((format != "mflux" && shape.mlx_bits != 0) || (shape.f8_scaled && !f8)) {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "--mlx-bits goes with --format mflux (none: quantization_level None), "
                        "--f8-scaled with a float8 --dtype");
  }
  const std::int64_t hd = shape.head_dim.value_or(16);
  if (hd != 16 && hd != 128) {
    throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                        "--head-dim is 16 (axes 4, 6, 6) or 128 (FLUX.1's 16, 56, 56)");
  }
  const std::int64_t heads = shape.heads.value_or(2), d = heads * hd,
                     layers = shape.layers.value_or(2), singles = shape.single_layers.value_or(2),
                     in = 64, joint = shape.joint_dim.value_or(32),
                     pooled = shape.pooled_dim.value_or(32);
  // float8 files are made from the bf16 values of the same seed (as people convert theirs).
  Maker m(format == "gguf" ? DType::kF32 : f8 ? DType::kBF16 : dtype, seed);
  const auto linear = [&](const std::string& name, std::int64_t o, std::int64_t i) {
    m.matrix(name + ".weight", o, i);
    m.add(name + ".bias", {o}, 0.0f, 0.1f);
  };
  const auto gain = [&](const std::string& name) { m.add(name + ".weight", {hd}, 1.0f, 0.1f); };
  linear("x_embedder", d, in);
  linear("context_embedder", d, joint);
  std::vector<std::pair<std::string, std::int64_t>> embedders = {{"timestep_embedder", 256},
                                                                 {"text_embedder", pooled}};
  if (shape.guidance) embedders.emplace_back("guidance_embedder", 256);
  for (const auto& [name, width] : embedders) {
    linear("time_text_embed." + name + ".linear_1", d, width);
    linear("time_text_embed." + name + ".linear_2", d, d);
  }
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::string p = "transformer_blocks." + std::to_string(l) + ".";
    linear(p + "norm1.linear", 6 * d, d);
    linear(p + "norm1_context.linear", 6 * d, d);
    for (const char* part : {"to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj",
                             "to_out.0", "to_add_out"}) {
      linear(p + "attn." + part, d, d);
    }
    for (const char* part : {"norm_q", "norm_k", "norm_added_q", "norm_added_k"}) {
      gain(p + "attn." + part);
    }
    for (const char* ff : {"ff.", "ff_context."}) {
      linear(p + ff + "net.0.proj", 4 * d, d);
      linear(p + ff + "net.2", d, 4 * d);
    }
  }
  for (std::int64_t l = 0; l < singles; ++l) {
    const std::string p = "single_transformer_blocks." + std::to_string(l) + ".";
    linear(p + "norm.linear", 3 * d, d);
    for (const char* part : {"to_q", "to_k", "to_v"}) linear(p + "attn." + part, d, d);
    gain(p + "attn.norm_q");
    gain(p + "attn.norm_k");
    linear(p + "proj_mlp", 4 * d, d);
    linear(p + "proj_out", d, 5 * d);
  }
  // norm_out.linear is [scale; shift]; the halves are made separately so that the BFL layout can
  // store them swapped.
  linear("norm_out.linear.scale", d, d);
  linear("norm_out.linear.shift", d, d);
  linear("proj_out", in, d);
  if (format == "safetensors") {
    const Maker bfl = m.fused(bfl_layout(layers, singles, shape.guidance));
    (f8 ? bfl.to_float8(dtype, shape.f8_scaled) : bfl).write(out);
    return;
  }
  if (format == "gguf") {
    // city96's convert.py keeps the embedders and the final layer at full precision.
    m.fused(bfl_layout(layers, singles, shape.guidance))
        .write_gguf(
            out, "flux", dtype,
            {"time_in.", "txt_in.", "vector_in.", "img_in.", "guidance_in.", "final_layer."});
    return;
  }
  // FLUX.1's transformer/config.json, with the tiny shape (axes_dims_rope sums to 16).
  const nlohmann::json config = {
      {"_class_name", "FluxTransformer2DModel"},
      {"_diffusers_version", "0.30.0"},
      {"attention_head_dim", hd},
      {"axes_dims_rope", hd == 16 ? nlohmann::json({4, 6, 6}) : nlohmann::json({16, 56, 56})},
      {"guidance_embeds", shape.guidance},
      {"in_channels", in},
      {"joint_attention_dim", joint},
      {"num_attention_heads", heads},
      {"num_layers", layers},
      {"num_single_layers", singles},
      {"patch_size", 1},
      {"pooled_projection_dim", pooled}};
  fs::create_directories(out);
  std::vector<std::pair<std::string, std::vector<std::string>>> same;
  bool halves = false;
  for (const std::string& name : m.names()) {
    if (name.starts_with("norm_out.linear.")) {
      if (!halves) {
        for (const char* s : {".weight", ".bias"}) {
          same.push_back({std::string("norm_out.linear") + s,
                          {std::string("norm_out.linear.scale") + s,
                           std::string("norm_out.linear.shift") + s}});
        }
      }
      halves = true;
      continue;
    }
    same.push_back({name, {name}});
  }
  const Maker folder = m.fused(same);
  if (format == "mflux") {  // no config.json: mflux-save writes none
    folder.write_mflux(out, shape.mlx_bits);
    return;
  }
  (f8 ? folder.to_float8(dtype, shape.f8_scaled) : folder)
      .write_sharded(out, "diffusion_pytorch_model");
  std::ofstream(fs::path(out) / "config.json") << config.dump(2) << "\n";
}
