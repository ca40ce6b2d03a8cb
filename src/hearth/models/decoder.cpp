#include "hearth/models/decoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/models/decoder_impl.hpp"
#include "hearth/models/gguf_names.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using i64 = std::int64_t;

const char* to_string(RopeStyle s) {
  return s == RopeStyle::kNeox ? "neox" : "normal";
}

const char* to_string(RopeScaling s) {
  switch (s) {
    case RopeScaling::kNone:
      return "none";
    case RopeScaling::kLinear:
      return "linear";
    case RopeScaling::kLlama3:
      return "llama3";
    case RopeScaling::kLongRope:
      return "longrope";
  }
  return "?";
}

// ---- config.json ----

bool HfConfig::has(const char* key) const {
  const auto it = json_.find(key);
  return it != json_.end() && !it->is_null();
}

void HfConfig::fail(const char* key, const std::string& what) const {
  throw Error(ErrorCode::kFormat, what, {.file = file_, .key = key});
}

i64 HfConfig::integer(const char* key, std::optional<i64> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    throw Error(ErrorCode::kNotFound, "config.json lacks a required key",
                {.file = file_, .key = key});
  }
  const auto& v = json_.at(key);
  if (!v.is_number_integer()) fail(key, "config value must be an integer");
  return v.get<i64>();
}

double HfConfig::number(const char* key, std::optional<double> fallback) const {
  if (!has(key)) {
    if (fallback) return *fallback;
    throw Error(ErrorCode::kNotFound, "config.json lacks a required key",
                {.file = file_, .key = key});
  }
  const auto& v = json_.at(key);
  if (!v.is_number()) fail(key, "config value must be a number");
  return v.get<double>();
}

bool HfConfig::boolean(const char* key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = json_.at(key);
  if (!v.is_boolean()) fail(key, "config value must be true or false");
  return v.get<bool>();
}

namespace {

std::vector<float> float_list(const nlohmann::json& v, const HfConfig& cfg, const char* key,
                              std::size_t want) {
  if (!v.is_array() || v.size() != want) {
    cfg.fail(key, "rope_scaling." + std::string(key) + " must be a list of " +
                      std::to_string(want) + " numbers (rotary dimensions / 2)");
  }
  std::vector<float> out;
  for (const auto& x : v) {
    if (!x.is_number() || !(x.get<double>() > 0.0)) {
      cfg.fail(key, "rope_scaling." + std::string(key) + " holds a value that is not positive");
    }
    out.push_back(x.get<float>());
  }
  return out;
}

}  // namespace

void read_hf_rope_scaling(const HfConfig& cfg, DecoderConfig& c) {
  if (!cfg.has("rope_scaling")) return;
  const nlohmann::json& rs = cfg.json().at("rope_scaling");
  if (!rs.is_object()) cfg.fail("rope_scaling", "rope_scaling must be an object or null");
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    const auto it = rs.find(key);
    if (it != rs.end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  const auto num = [&](const char* key, std::optional<double> fallback) {
    const auto it = rs.find(key);
    if (it == rs.end() || it->is_null()) {
      if (fallback) return *fallback;
      cfg.fail("rope_scaling", "rope_scaling " + type + " needs " + key);
    }
    if (!it->is_number())
      cfg.fail("rope_scaling", std::string("rope_scaling.") + key + " must be a number");
    return it->get<double>();
  };
  // A context length given as a number: positive and below 2^31 before it becomes an integer.
  const auto length = [&](double v) {
    if (!(v >= 1.0 && v < 2147483648.0)) {
      cfg.fail("rope_scaling", "original_max_position_embeddings out of range");
    }
    return static_cast<i64>(v);
  };
  if (type.empty() || type == "default") return;
  if (type == "linear") {
    c.rope.scaling = RopeScaling::kLinear;
    c.rope.factor = num("factor", std::nullopt);
    if (!(c.rope.factor >= 1.0) || c.rope.factor > 1e6)
      cfg.fail("rope_scaling", "linear factor out of range");
    return;
  }
  if (type == "llama3") {
    c.rope.scaling = RopeScaling::kLlama3;
    c.rope.factor = num("factor", std::nullopt);
    c.rope.low_freq_factor = num("low_freq_factor", 1.0);
    c.rope.high_freq_factor = num("high_freq_factor", 4.0);
    c.rope.original_context = length(num("original_max_position_embeddings", 8192.0));
    if (!(c.rope.factor >= 1.0) || !(c.rope.high_freq_factor > c.rope.low_freq_factor) ||
        !(c.rope.low_freq_factor > 0.0) || c.rope.original_context <= 0) {
      cfg.fail("rope_scaling", "llama3 rope scaling parameters out of range");
    }
    return;
  }
  if (type == "longrope" || type == "su") {
    c.rope.scaling = RopeScaling::kLongRope;
    const auto half = static_cast<std::size_t>(c.rope.dims / 2);
    const auto sf = rs.find("short_factor");
    const auto lf = rs.find("long_factor");
    if (sf == rs.end() || lf == rs.end())
      cfg.fail("rope_scaling", "longrope needs short_factor and long_factor");
    c.rope.short_factors = float_list(*sf, cfg, "short_factor", half);
    c.rope.long_factors = float_list(*lf, cfg, "long_factor", half);
    const double orig =
        rs.contains("original_max_position_embeddings")
            ? num("original_max_position_embeddings", std::nullopt)
            : static_cast<double>(cfg.integer("original_max_position_embeddings", c.context));
    c.rope.original_context = length(orig);
    const double factor = static_cast<double>(c.context) / orig;
    const auto af = rs.find("attention_factor");
    if (af != rs.end() && !af->is_null()) {
      c.rope.attention_factor = num("attention_factor", std::nullopt);
    } else {
      c.rope.attention_factor =
          factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(orig));
    }
    return;
  }
  throw Error(ErrorCode::kUnsupported,
              "rope_scaling type \"" + type + "\" is not supported (linear, llama3, longrope are)",
              {.file = cfg.file(), .key = "rope_scaling"});
}

namespace {

// Common keys of Llama-family configs.
DecoderConfig read_hf_common(const HfConfig& cfg) {
  DecoderConfig c;
  c.vocab = cfg.integer("vocab_size");
  c.hidden = cfg.integer("hidden_size");
  c.layers = cfg.integer("num_hidden_layers");
  c.heads = cfg.integer("num_attention_heads");
  c.kv_heads = cfg.integer("num_key_value_heads", c.heads);
  c.head_dim = cfg.integer("head_dim", c.heads > 0 ? c.hidden / c.heads : 0);
  c.ffn = cfg.integer("intermediate_size");
  c.context = cfg.integer("max_position_embeddings", 2048);
  c.rms_eps = cfg.number("rms_norm_eps", 1e-6);
  c.rope.base = cfg.number("rope_theta", 10000.0);
  c.tied_embeddings = cfg.boolean("tie_word_embeddings", false);
  const double partial = cfg.number("partial_rotary_factor", 1.0);
  if (!(partial > 0.0 && partial <= 1.0)) cfg.fail("partial_rotary_factor", "out of range");
  c.rope.dims = c.head_dim > 0 && c.head_dim <= (i64{1} << 20)
                    ? static_cast<i64>(static_cast<double>(c.head_dim) * partial) / 2 * 2
                    : c.head_dim;  // refused by the config check
  if (cfg.has("hidden_act")) {
    const auto& act = cfg.json().at("hidden_act");
    if (!act.is_string() || act.get<std::string>() != "silu") {
      throw Error(ErrorCode::kUnsupported, "hidden_act must be silu",
                  {.file = cfg.file(), .key = "hidden_act"});
    }
  }
  if (cfg.boolean("mlp_bias", false)) {
    throw Error(ErrorCode::kUnsupported, "MLP biases are not supported",
                {.file = cfg.file(), .key = "mlp_bias"});
  }
  return c;
}

i64 gguf_int(const formats::GGUFFile& f, const std::string& key, std::optional<i64> fallback) {
  const formats::GGUFValue* v = f.find(key);
  if (v == nullptr) {
    if (fallback) return *fallback;
    return f.get_int(key);  // throws, naming the key
  }
  if (v->as_array() != nullptr) {
    throw Error(ErrorCode::kUnsupported, "per-layer values are not supported",
                {.file = f.source(), .key = key});
  }
  return f.get_int(key);
}

double gguf_number(const formats::GGUFFile& f, const std::string& key, double fallback) {
  return f.find(key) != nullptr ? f.get_number(key) : fallback;
}

DecoderConfig read_gguf_common(const formats::GGUFFile& f, const std::string& a) {
  DecoderConfig c;
  c.hidden = gguf_int(f, a + ".embedding_length", std::nullopt);
  c.layers = gguf_int(f, a + ".block_count", std::nullopt);
  c.heads = gguf_int(f, a + ".attention.head_count", std::nullopt);
  c.kv_heads = gguf_int(f, a + ".attention.head_count_kv", c.heads);
  c.head_dim = gguf_int(f, a + ".attention.key_length", c.heads > 0 ? c.hidden / c.heads : 0);
  const i64 value_length = gguf_int(f, a + ".attention.value_length", c.head_dim);
  if (value_length != c.head_dim) {
    throw Error(ErrorCode::kUnsupported, "key and value heads of different sizes",
                {.file = f.source(), .key = a + ".attention.value_length"});
  }
  c.ffn = gguf_int(f, a + ".feed_forward_length", std::nullopt);
  c.context = gguf_int(f, a + ".context_length", 2048);
  c.rms_eps = gguf_number(f, a + ".attention.layer_norm_rms_epsilon", 1e-5);
  c.rope.base = gguf_number(f, a + ".rope.freq_base", 10000.0);
  c.rope.dims = gguf_int(f, a + ".rope.dimension_count", c.head_dim);
  const formats::GGUFValue* type = f.find(a + ".rope.scaling.type");
  const std::string scaling =
      type != nullptr && type->as_string() != nullptr ? *type->as_string() : "none";
  if (scaling == "linear") {
    c.rope.scaling = RopeScaling::kLinear;
    c.rope.factor = gguf_number(f, a + ".rope.scaling.factor", 1.0);
    if (!(c.rope.factor >= 1.0) || c.rope.factor > 1e6) {
      throw Error(ErrorCode::kFormat, "rope scaling factor out of range",
                  {.file = f.source(), .key = a + ".rope.scaling.factor"});
    }
  } else if (scaling != "none") {
    throw Error(ErrorCode::kUnsupported, "rope scaling \"" + scaling + "\" is not supported",
                {.file = f.source(), .key = a + ".rope.scaling.type"});
  }
  c.rope.attention_factor = gguf_number(f, a + ".rope.scaling.attn_factor", 1.0);
  c.rope.original_context = gguf_int(f, a + ".rope.scaling.original_context_length", 0);
  return c;
}

std::string layer_prefix(i64 l) {
  return "model.layers." + std::to_string(l) + ".";
}

}  // namespace

std::string decoder_gguf_name(const std::string& hf) {
  static const NamePair kTop[] = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
  };
  static const NamePair kLayer[] = {
      {"input_layernorm", "attn_norm"},    {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},      {"self_attn.o_proj", "attn_output"},
      {"self_attn.qkv_proj", "attn_qkv"},  {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"}, {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},           {"mlp.down_proj", "ffn_down"},
      {"mlp.gate_up_proj", "ffn_up"},
  };
  return gguf_name(hf, {kTop, "model.layers.", kLayer});
}

void check_decoder_config(const DecoderConfig& c, const std::string& source) {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kFormat, "decoder config: " + what, {.file = source});
  };
  constexpr i64 kMax = i64{1} << 20;
  for (const auto& [v, name] :
       {std::pair{c.hidden, "hidden size"}, std::pair{c.heads, "head count"},
        std::pair{c.kv_heads, "KV head count"}, std::pair{c.head_dim, "head size"},
        std::pair{c.ffn, "intermediate size"}, std::pair{c.vocab, "vocabulary size"}}) {
    if (v <= 0 || v > (name == std::string("vocabulary size") ? kMax * 4 : kMax)) {
      bad(std::string(name) + " " + std::to_string(v) + " out of range");
    }
  }
  if (c.layers <= 0 || c.layers > 4096)
    bad("layer count " + std::to_string(c.layers) + " out of range");
  if (c.heads > 4096 || c.head_dim > 4096) bad("more than 4096 heads or head size over 4096");
  if (c.heads % c.kv_heads != 0) bad("the head count is not a multiple of the KV head count");
  if (c.rope.dims < 0 || c.rope.dims > c.head_dim || c.rope.dims % 2 != 0) {
    bad("rotary dimensions " + std::to_string(c.rope.dims) + " out of range");
  }
  if (c.context <= 0) bad("context length " + std::to_string(c.context) + " out of range");
  if (!(c.rms_eps > 0.0) || c.rms_eps > 1.0) bad("rms_norm_eps out of range");
  if (!(c.rope.base > 1.0) || c.rope.base > 1e12) bad("rope base out of range");
  if (!(c.rope.attention_factor > 0.0) || c.rope.attention_factor > 100.0) {
    bad("rope attention factor out of range");
  }
  if (c.sliding_window < 0) bad("negative sliding window");
}

namespace {

// Inverse frequencies of the rotary pairs, with the scaling's per-frequency divisors.
std::vector<float> inverse_frequencies(const RopeConfig& r, const std::vector<float>& factors) {
  const i64 half = r.dims / 2;
  std::vector<float> out(static_cast<std::size_t>(half));
  for (i64 i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(r.base, static_cast<double>(2 * i) / static_cast<double>(r.dims));
    switch (r.scaling) {
      case RopeScaling::kNone:
        break;
      case RopeScaling::kLinear:
        f /= r.factor;
        break;
      case RopeScaling::kLlama3: {
        if (!factors.empty()) break;  // GGUF: rope_freqs.weight already holds the divisors
        const double orig = static_cast<double>(r.original_context);
        const double low_wavelen = orig / r.low_freq_factor;
        const double high_wavelen = orig / r.high_freq_factor;
        const double wavelen = 2.0 * std::numbers::pi / f;
        if (wavelen > low_wavelen) {
          f /= r.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth =
              (orig / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
          f = (1.0 - smooth) * f / r.factor + smooth * f;
        }
        break;
      }
      case RopeScaling::kLongRope:
        break;
    }
    if (!factors.empty()) f /= factors[static_cast<std::size_t>(i)];
    out[static_cast<std::size_t>(i)] = static_cast<float>(f);
  }
  return out;
}

std::uint64_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit) {
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

std::vector<float> to_f32(const TensorView& v) {
  const auto n = static_cast<std::size_t>(v.numel());
  std::vector<float> out(n);
  std::vector<std::uint16_t> half;
  switch (v.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), v.data, n * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16:
      half.resize(n);
      std::memcpy(half.data(), v.data, n * 2);
      if (v.dtype == DType::kF16) {
        f16_to_f32(half.data(), out.data(), n);
      } else {
        bf16_to_f32(half.data(), out.data(), n);
      }
      break;
    default:
      if (ggml::supported(v.dtype)) ggml::dequantize_row(v.dtype, v.data, out.data(), v.numel());
      break;
  }
  return out;
}

}  // namespace

std::uint64_t ModelImpl::kv_bytes(i64 context) const {
  const double per_token = 2.0 *
                           static_cast<double>(config.layers * config.kv_heads * config.head_dim) *
                           (kv_dtype == DType::kF16 ? 2.0 : 4.0);
  const double total = per_token * static_cast<double>(context);
  return total > 1.8e19 ? UINT64_MAX : static_cast<std::uint64_t>(total);
}

std::int64_t ModelImpl::session_context(i64 requested) const {
  if (requested == 0) return default_context;
  if (requested < 0 || requested > (i64{1} << 24)) {
    throw Error(ErrorCode::kInvalidArgument,
                "context of " + std::to_string(requested) + " tokens out of range");
  }
  const std::uint64_t avail = available_memory();
  if (avail > 0 && kv_bytes(requested) > avail) {
    throw Error(ErrorCode::kInvalidArgument,
                "a context of " + std::to_string(requested) + " tokens needs a KV cache of " +
                    format_bytes(kv_bytes(requested)) + ", more than the " + format_bytes(avail) +
                    " of memory available");
  }
  return requested;
}

// Bytes an affine view reads: packed codes, scales and biases.
std::uint64_t affine_bytes(const kernels::WeightView& w) {
  const auto groups = static_cast<std::uint64_t>(w.rows * (w.cols / w.affine.group_size));
  return static_cast<std::uint64_t>(w.rows * w.cols * w.affine.bits / 8) +
         2 * groups * (w.affine.scale_dtype == DType::kF32 ? 4u : 2u);
}

void ModelImpl::build(const FindTensor& find, const LlmOptions& options,
                      const FindAffine& find_affine) {
  DecoderConfig& c = config;
  check_decoder_config(c, source);
  const auto file_name = [&](const std::string& hf) {
    return gguf_names ? decoder_gguf_name(hf) : hf;
  };
  const auto need = [&](const std::string& name, const Shape& want) {
    const auto view = find(name, want);
    if (!view) {
      throw Error(ErrorCode::kNotFound,
                  "missing tensor (expected shape " + shape_string(want) + ")",
                  {.file = source, .key = file_name(name)});
    }
    if (view->shape != want) {
      throw Error(ErrorCode::kFormat,
                  "tensor has shape " + shape_string(view->shape) + ", the config needs " +
                      shape_string(want),
                  {.file = source, .key = file_name(name)});
    }
    if (view->dtype != DType::kF32 && view->dtype != DType::kF16 && view->dtype != DType::kBF16 &&
        !ggml::supported(view->dtype)) {
      throw Error(ErrorCode::kUnsupported,
                  "tensor type " + std::string(dtype_name(view->dtype)) +
                      " is not supported (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, "
                      "q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs are)",
                  {.file = source, .key = file_name(name)});
    }
    if (ggml::supported(view->dtype) && want.back() % dtype_info(view->dtype).block_size != 0) {
      throw Error(ErrorCode::kFormat,
                  "rows of " + std::to_string(want.back()) + " elements are not whole " +
                      std::string(dtype_name(view->dtype)) + " blocks",
                  {.file = source, .key = file_name(name)});
    }
    if (!view->is_contiguous()) {
      throw Error(ErrorCode::kFormat, "tensor is not contiguous",
                  {.file = source, .key = file_name(name)});
    }
    c.parameters += view->numel();
    return *view;
  };
  const auto vec = [&](const std::string& name, i64 n) { return to_f32(need(name, {n})); };
  pool = options.pool ? options.pool : std::make_shared<ThreadPool>(options.threads);
  backend = kernels::make_cpu_backend(*pool, options.level);
  kv_dtype = options.kv_dtype;
  if (kv_dtype != DType::kF16 && kv_dtype != DType::kF32) {
    throw Error(ErrorCode::kInvalidArgument, "the KV cache holds f16 or f32");
  }
  c.parameters = 0;
  c.weight_bits = 0;
  c.weight_group_size = 0;
  const auto affine = [&](const std::string& base, i64 out,
                          i64 in) -> std::optional<kernels::WeightView> {
    if (!find_affine) return std::nullopt;
    auto w = find_affine(base, out, in);
    if (w) c.parameters += out * in;
    return w;
  };
  std::vector<std::pair<DType, std::uint64_t>> type_bytes;  // the projections' bytes by type
  const auto add_type_bytes = [&](DType t, std::uint64_t bytes) {
    for (auto& [type, b] : type_bytes) {
      if (type == t) {
        b += bytes;
        return;
      }
    }
    type_bytes.emplace_back(t, bytes);
  };
  const auto linear = [&](const std::string& base, i64 out, i64 in, bool bias) {
    if (const auto q = affine(base, out, in)) {
      if (c.weight_bits == 0) {
        c.weight_dtype = DType::kU32;
        c.weight_bits = q->affine.bits;
        c.weight_group_size = q->affine.group_size;
      }
      weight_bytes_per_token += affine_bytes(*q);
      std::vector<float> b;
      if (bias) b = vec(base + ".bias", out);
      return backend->make_linear_view(*q, bias ? b.data() : nullptr);
    }
    const TensorView w = need(base + ".weight", {out, in});
    add_type_bytes(w.dtype, w.nbytes);
    weight_bytes_per_token += w.nbytes;
    std::vector<float> b;
    if (bias) b = vec(base + ".bias", out);
    return backend->make_linear_view({w.dtype, w.data, out, in}, bias ? b.data() : nullptr);
  };
  const i64 h = c.hidden;
  const i64 qdim = c.heads * c.head_dim;
  const i64 kvdim = c.kv_heads * c.head_dim;
  std::uint64_t embedding_bytes = 0;
  if (const auto q = affine("model.embed_tokens", c.vocab, h)) {
    embedding = *q;
    embedding_bytes = affine_bytes(*q);
  } else {
    const TensorView emb = need("model.embed_tokens.weight", {c.vocab, h});
    embedding = {emb.dtype, emb.data, c.vocab, h};
    embedding_bytes = emb.nbytes;
  }
  c.weight_dtype = DType::kF32;
  layers.resize(static_cast<std::size_t>(c.layers));
  for (i64 l = 0; l < c.layers; ++l) {
    const std::string p = layer_prefix(l);
    DecoderLayer& L = layers[static_cast<std::size_t>(l)];
    L.attn_norm = vec(p + "input_layernorm.weight", h);
    L.ffn_norm = vec(p + "post_attention_layernorm.weight", h);
    if (c.fused_qkv) {
      L.qkv = linear(p + "self_attn.qkv_proj", qdim + 2 * kvdim, h, c.qkv_bias);
    } else {
      L.q = linear(p + "self_attn.q_proj", qdim, h, c.qkv_bias);
      L.k = linear(p + "self_attn.k_proj", kvdim, h, c.qkv_bias);
      L.v = linear(p + "self_attn.v_proj", kvdim, h, c.qkv_bias);
    }
    L.o = linear(p + "self_attn.o_proj", h, qdim, false);
    if (c.qk_norm) {
      L.q_norm = vec(p + "self_attn.q_norm.weight", c.head_dim);
      L.k_norm = vec(p + "self_attn.k_norm.weight", c.head_dim);
    }
    if (c.fused_gate_up) {
      L.gate_up = linear(p + "mlp.gate_up_proj", 2 * c.ffn, h, false);
    } else {
      L.gate = linear(p + "mlp.gate_proj", c.ffn, h, false);
      L.up = linear(p + "mlp.up_proj", c.ffn, h, false);
    }
    L.down = linear(p + "mlp.down_proj", h, c.ffn, false);
    const bool sliding = c.sliding_layers.empty() || c.sliding_layers[static_cast<std::size_t>(l)];
    L.window = sliding ? c.sliding_window : 0;
  }
  final_norm = vec("model.norm.weight", h);
  if (c.tied_embeddings) {
    output = backend->make_linear_view(embedding, nullptr);
    weight_bytes_per_token += embedding_bytes;
  } else {
    output = linear("lm_head", c.vocab, h, false);
  }
  std::stable_sort(type_bytes.begin(), type_bytes.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  c.weight_types.clear();
  for (const auto& [type, bytes] : type_bytes) {
    if (!c.weight_types.empty()) c.weight_types.push_back('+');
    c.weight_types.append(dtype_name(type));
  }
  if (!type_bytes.empty() && c.weight_bits == 0) c.weight_dtype = type_bytes.front().first;
  if (c.rope.scaling == RopeScaling::kLongRope) {
    inv_freq_short = inverse_frequencies(c.rope, c.rope.short_factors);
    inv_freq_long = inverse_frequencies(c.rope, c.rope.long_factors);
  } else {
    inv_freq_short = inverse_frequencies(c.rope, c.rope.short_factors);
  }
  // Default context: the model's, capped so that the cache takes at most half the memory that is
  // available now.
  default_context = options.context > 0 ? options.context : c.context;
  const std::uint64_t avail = available_memory();
  if (options.context == 0 && avail > 0 && kv_bytes(default_context) > avail / 2) {
    const i64 capped = std::max<i64>(
        256, static_cast<i64>(static_cast<double>(avail / 2) /
                              static_cast<double>(std::max<std::uint64_t>(1, kv_bytes(1)))) /
                 256 * 256);
    context_note = "context capped at " + std::to_string(capped) + " tokens: the model's " +
                   std::to_string(default_context) + " would need a KV cache of " +
                   format_bytes(kv_bytes(default_context)) + ", more than half of the " +
                   format_bytes(avail) + " available";
    default_context = std::min(default_context, capped);
  }
}

// ---- LanguageModel ----

LanguageModel::LanguageModel(std::unique_ptr<ModelImpl> impl) : impl_(std::move(impl)) {}
LanguageModel::~LanguageModel() = default;

const DecoderConfig& LanguageModel::config() const {
  return impl_->config;
}
const tokenize::Tokenizer& LanguageModel::tokenizer() const {
  if (!impl_->tokenizer) {
    throw Error(ErrorCode::kNotFound, "this model has no tokenizer", {.file = impl_->source});
  }
  return *impl_->tokenizer;
}
std::int32_t LanguageModel::bos_id() const {
  return impl_->bos_id;
}
bool LanguageModel::add_bos() const {
  return impl_->add_bos;
}
const std::vector<std::int32_t>& LanguageModel::eos_ids() const {
  return impl_->eos_ids;
}
std::string LanguageModel::bos_token() const {
  return impl_->bos_token;
}
std::string LanguageModel::eos_token() const {
  return impl_->eos_token;
}
const std::string& LanguageModel::name() const {
  return impl_->name;
}
const fs::path& LanguageModel::path() const {
  return impl_->path;
}
std::int64_t LanguageModel::default_context() const {
  return impl_->default_context;
}
const std::string& LanguageModel::context_note() const {
  return impl_->context_note;
}
DType LanguageModel::kv_dtype() const {
  return impl_->kv_dtype;
}
std::uint64_t LanguageModel::weight_bytes_per_token() const {
  return impl_->weight_bytes_per_token;
}
std::string LanguageModel::backend_name() const {
  return impl_->backend->name();
}

namespace {

const std::vector<const ArchSpec*>& arch_table() {
  static const std::vector<const ArchSpec*> table = {&llama_arch(), &mistral_arch(), &phi3_arch(),
                                                     &qwen2_arch(), &qwen3_arch()};
  return table;
}

std::string known_architectures() {
  std::string s;
  for (const ArchSpec* a : arch_table()) {
    for (const std::string& n : a->hf_architectures) s += (s.empty() ? "" : ", ") + n;
  }
  return s;
}

void add_unique(std::vector<std::int32_t>& ids, i64 id) {
  if (id < 0 || id > INT32_MAX) return;
  if (std::find(ids.begin(), ids.end(), static_cast<std::int32_t>(id)) == ids.end()) {
    ids.push_back(static_cast<std::int32_t>(id));
  }
}

void add_json_ids(std::vector<std::int32_t>& ids, const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return;
  const auto it = j.find(key);
  if (it == j.end()) return;
  if (it->is_number_integer()) add_unique(ids, it->get<i64>());
  if (it->is_array()) {
    for (const auto& v : *it) {
      if (v.is_number_integer()) add_unique(ids, v.get<i64>());
    }
  }
}

// tokenizer_config.json's bos_token / eos_token: a string or {"content": ...}.
std::string token_text(const nlohmann::json& tc, const char* key) {
  if (!tc.is_object()) return "";
  const auto it = tc.find(key);
  if (it == tc.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string()) {
    return it->at("content").get<std::string>();
  }
  return "";
}

void finish_tokens(ModelImpl& m) {
  if (!m.tokenizer) return;
  const tokenize::Tokenizer& t = *m.tokenizer;
  if (t.vocab_size() > static_cast<std::size_t>(m.config.vocab)) {
    throw Error(ErrorCode::kFormat,
                "the tokenizer has " + std::to_string(t.vocab_size()) +
                    " tokens but the model's embedding table only " +
                    std::to_string(m.config.vocab),
                {.file = m.source});
  }
  if (m.bos_id >= 0 && m.bos_token.empty()) m.bos_token = t.id_to_token(m.bos_id);
  if (!m.eos_ids.empty() && m.eos_token.empty()) m.eos_token = t.id_to_token(m.eos_ids.front());
}

void load_hf_tokens(ModelImpl& m, const formats::ModelFolder& folder) {
  const nlohmann::json& cfg = folder.config();
  nlohmann::json tc = nlohmann::json::object();
  if (folder.tokenizer_files().tokenizer_config) {
    tc = formats::read_json_file(*folder.tokenizer_files().tokenizer_config);
  }
  if (folder.tokenizer_files().tokenizer_json)
    m.tokenizer = tokenize::Tokenizer::load(folder.path());
  m.bos_token = token_text(tc, "bos_token");
  m.eos_token = token_text(tc, "eos_token");
  if (cfg.contains("bos_token_id") && cfg.at("bos_token_id").is_number_integer()) {
    m.bos_id = cfg.at("bos_token_id").get<std::int32_t>();
  } else if (m.tokenizer && !m.bos_token.empty()) {
    m.bos_id = m.tokenizer->token_to_id(m.bos_token).value_or(-1);
  }
  if (folder.generation_config())
    add_json_ids(m.eos_ids, *folder.generation_config(), "eos_token_id");
  add_json_ids(m.eos_ids, cfg, "eos_token_id");
  if (m.tokenizer && !m.eos_token.empty()) {
    if (const auto id = m.tokenizer->token_to_id(m.eos_token)) add_unique(m.eos_ids, *id);
  }
  if (tc.is_object() && tc.contains("add_bos_token") && tc.at("add_bos_token").is_boolean()) {
    m.add_bos = tc.at("add_bos_token").get<bool>();
  } else if (m.tokenizer && m.bos_id >= 0) {
    const auto ids = m.tokenizer->encode("a", true).ids;
    m.add_bos = !ids.empty() && ids.front() == m.bos_id;
  }
}

void load_gguf_tokens(ModelImpl& m, const formats::GGUFFile& f) {
  if (f.find("tokenizer.ggml.model") != nullptr) m.tokenizer = tokenize::Tokenizer::from_gguf(f);
  const auto int_key = [&](const char* key) -> i64 {
    const formats::GGUFValue* v = f.find(key);
    return v != nullptr ? v->as_int().value_or(-1) : -1;
  };
  m.bos_id = static_cast<std::int32_t>(
      std::clamp<i64>(int_key("tokenizer.ggml.bos_token_id"), -1, INT32_MAX));
  add_unique(m.eos_ids, int_key("tokenizer.ggml.eos_token_id"));
  add_unique(m.eos_ids, int_key("tokenizer.ggml.eot_token_id"));
  const formats::GGUFValue* add = f.find("tokenizer.ggml.add_bos_token");
  if (add != nullptr && add->get_if<bool>() != nullptr) {
    m.add_bos = *add->get_if<bool>();
  } else {
    const formats::GGUFValue* model = f.find("tokenizer.ggml.model");
    m.add_bos = model != nullptr && model->as_string() != nullptr && *model->as_string() == "llama";
  }
}

std::unique_ptr<ModelImpl> load_hf(const fs::path& dir, const LlmOptions& options) {
  auto m = std::make_unique<ModelImpl>();
  auto folder = std::make_shared<formats::ModelFolder>(formats::ModelFolder::open(dir));
  const std::string file = (dir / "config.json").string();
  if (!folder->has_config()) {
    throw Error(ErrorCode::kNotFound, "a model folder needs config.json", {.file = file});
  }
  const std::string arch = folder->architecture();
  const std::string type = folder->model_type();
  const ArchSpec* spec = nullptr;
  for (const ArchSpec* a : arch_table()) {
    const bool by_arch = std::find(a->hf_architectures.begin(), a->hf_architectures.end(), arch) !=
                         a->hf_architectures.end();
    const bool by_type =
        arch.empty() && std::find(a->hf_model_types.begin(), a->hf_model_types.end(), type) !=
                            a->hf_model_types.end();
    if (by_arch || by_type) spec = a;
  }
  if (spec == nullptr) {
    throw Error(ErrorCode::kUnsupported,
                "architecture \"" + (arch.empty() ? type : arch) +
                    "\" is not supported (supported: " + known_architectures() + ")",
                {.file = file, .key = "architectures"});
  }
  const HfConfig cfg(folder->config(), file);
  m->config = read_hf_common(cfg);
  m->config.architecture = spec->name;
  m->config.rope.style = RopeStyle::kNeox;
  spec->from_hf(cfg, m->config);
  const fs::path norm = dir.lexically_normal();
  m->name = (norm.filename().empty() ? norm.parent_path() : norm).filename().string();
  m->path = dir;
  m->source = dir.string();
  m->keep_alive.push_back(folder);
  const auto find_affine = [folder](const std::string& module, i64 rows,
                                    i64 cols) -> std::optional<kernels::WeightView> {
    const formats::QuantizedWeight* q = folder->find_quantized(module);
    if (q == nullptr) return std::nullopt;
    if (q->out_features != rows || q->in_features != cols) {
      throw Error(ErrorCode::kFormat,
                  "packed weight " + shape_string(q->weight.info->shape) + " holds [" +
                      std::to_string(q->out_features) + ", " + std::to_string(q->in_features) +
                      "] at " + std::to_string(q->spec.bits) + " bits, the config needs [" +
                      std::to_string(rows) + ", " + std::to_string(cols) + "]",
                  {.file = q->weight.file->source(), .key = q->weight.info->name});
    }
    const TensorView w = formats::ModelFolder::view(q->weight);
    const TensorView s = formats::ModelFolder::view(q->scales);
    const TensorView b = formats::ModelFolder::view(q->biases);
    kernels::WeightView v{DType::kU32, w.data, rows, cols};
    v.affine = {q->spec.bits, q->spec.group_size, s.dtype, s.data, b.data};
    return v;
  };
  m->build(
      [folder](const std::string& name, const Shape&) -> std::optional<TensorView> {
        const auto ref = folder->find_tensor(name);
        if (!ref) return std::nullopt;
        return formats::ModelFolder::view(*ref);
      },
      options, folder->quantization() ? FindAffine(find_affine) : FindAffine());
  load_hf_tokens(*m, *folder);
  finish_tokens(*m);
  return m;
}

std::unique_ptr<ModelImpl> load_gguf(const fs::path& path, const LlmOptions& options) {
  auto m = std::make_unique<ModelImpl>();
  auto f = std::make_shared<formats::GGUFFile>(formats::GGUFFile::open(path));
  const std::string arch = f->architecture();
  const ArchSpec* spec = nullptr;
  for (const ArchSpec* a : arch_table()) {
    if (std::find(a->gguf_archs.begin(), a->gguf_archs.end(), arch) != a->gguf_archs.end()) {
      spec = a;
    }
  }
  if (spec == nullptr) {
    throw Error(ErrorCode::kUnsupported,
                "general.architecture \"" + arch +
                    "\" is not a supported decoder (llama, mistral, phi3, qwen2, qwen3)",
                {.file = path.string(), .key = "general.architecture"});
  }
  m->config = read_gguf_common(*f, arch);
  m->config.architecture = spec->name;
  const formats::GGUFTensorInfo* emb = f->find_tensor("token_embd.weight");
  if (emb == nullptr || emb->shape.size() != 2) {
    throw Error(ErrorCode::kNotFound, "missing or malformed token embedding table",
                {.file = path.string(), .key = "token_embd.weight"});
  }
  m->config.vocab = emb->shape[0];
  m->config.tied_embeddings = f->find_tensor("output.weight") == nullptr;
  spec->from_gguf(*f, m->config);
  const formats::GGUFValue* general_name = f->find("general.name");
  const std::string* text = general_name != nullptr ? general_name->as_string() : nullptr;
  m->name = text != nullptr && !text->empty() ? *text : path.stem().string();
  m->path = path;
  m->source = path.string();
  m->gguf_names = true;
  m->keep_alive.push_back(f);
  m->build(
      [f](const std::string& name, const Shape&) -> std::optional<TensorView> {
        const auto* info = f->find_tensor(decoder_gguf_name(name));
        if (info == nullptr) return std::nullopt;
        return f->view(*info);
      },
      options);
  load_gguf_tokens(*m, *f);
  finish_tokens(*m);
  return m;
}

}  // namespace

// Per-frequency factors stored as GGUF tensors (rope_freqs, rope_factors_short/long): f32
// vectors of rope.dims / 2.
std::vector<float> gguf_rope_factors(const formats::GGUFFile& f, const char* name, i64 dims) {
  const auto* info = f.find_tensor(name);
  if (info == nullptr) return {};
  const Shape want = {dims / 2};
  if (info->shape != want || info->dtype != DType::kF32) {
    throw Error(ErrorCode::kFormat,
                "rope factors must be f32 of shape " + shape_string(want) + ", not " +
                    std::string(dtype_name(info->dtype)) + " " + shape_string(info->shape),
                {.file = f.source(), .key = name});
  }
  return to_f32(f.view(*info));
}

std::unique_ptr<LanguageModel> LanguageModel::load(const fs::path& path,
                                                   const LlmOptions& options) {
  if (!fs::exists(path)) {
    throw Error(ErrorCode::kNotFound, "no such model file or folder", {.file = path.string()});
  }
  std::unique_ptr<ModelImpl> m =
      fs::is_directory(path) ? load_hf(path, options) : load_gguf(path, options);
  return std::unique_ptr<LanguageModel>(new LanguageModel(std::move(m)));
}

std::unique_ptr<LanguageModel> LanguageModel::random(const DecoderConfig& config,
                                                     WeightFormat weights, unsigned seed,
                                                     const LlmOptions& options) {
  const DType weight_dtype = weights.dtype;
  const bool affine = weights.mlx_bits > 0;
  if (affine &&
      (!mlx::valid_bits(weights.mlx_bits) || !mlx::valid_group_size(weights.mlx_group_size))) {
    throw Error(ErrorCode::kInvalidArgument,
                "random mlx weights take bits 2-6 or 8 and group size 32, 64 or 128");
  }
  if (weight_dtype != DType::kF32 && weight_dtype != DType::kF16 && weight_dtype != DType::kBF16 &&
      !ggml::supported(weight_dtype)) {
    throw Error(ErrorCode::kInvalidArgument,
                "random weights are f32, f16, bf16, mlx affine or a ggml block type (q4_0 ... "
                "iq4_xs), not " +
                    std::string(dtype_name(weight_dtype)));
  }
  auto m = std::make_unique<ModelImpl>();
  m->config = config;
  if (m->config.rope.dims == 0) m->config.rope.dims = config.head_dim;
  m->name = "random " + config.architecture;
  m->source = "random weights";
  auto store = std::make_shared<std::vector<std::unique_ptr<std::byte[]>>>();
  m->keep_alive.push_back(store);
  // The pool that will run the model also makes the weights (7.6 GB at the Phi-3-mini shape).
  m->pool = options.pool ? options.pool : std::make_shared<ThreadPool>(options.threads);
  LlmOptions build_options = options;
  build_options.pool = m->pool;
  std::uint64_t tensor_index = 0;
  // Uniform values of standard deviation 1/sqrt(in) for matrices (1 for the embedding table),
  // norm gains near 1: splitmix64 of (seed, tensor, element). Fills out[0:len] with elements
  // first..first+len of the tensor.
  struct Values {
    std::uint64_t base;
    float scale, mean;
    void fill(std::size_t first, std::size_t len, float* out) const {
      for (std::size_t j = 0; j < len; ++j) {
        std::uint64_t z = (base + first + j + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
        out[j] = mean + scale * u;
      }
    }
  };
  const auto values_of = [&](const std::string& name, const Shape& shape) {
    const bool vector = shape.size() == 1;
    const float scale = vector ? 0.1f
                               : (name == "model.embed_tokens.weight"
                                      ? 1.7f
                                      : 1.7f / std::sqrt(static_cast<float>(shape[1])));
    const float mean = vector && name.ends_with("norm.weight") ? 1.0f : 0.0f;
    return Values{(static_cast<std::uint64_t>(seed) << 40) ^ (++tensor_index << 32), scale, mean};
  };
  const auto find = [&, weight_dtype](const std::string& name,
                                      const Shape& shape) -> std::optional<TensorView> {
    const bool vector = shape.size() == 1;
    const DType dt = vector ? DType::kF32 : weight_dtype;
    const auto n = static_cast<std::size_t>(numel(shape));
    const bool quant = ggml::supported(dt);
    if (quant && shape[1] % dtype_info(dt).block_size != 0) {
      throw Error(ErrorCode::kInvalidArgument, name + ": rows of " + std::to_string(shape[1]) +
                                                   " are not whole " + std::string(dtype_name(dt)) +
                                                   " blocks");
    }
    const std::size_t es = dt == DType::kF32 ? 4 : 2;
    const std::size_t nbytes =
        quant ? static_cast<std::size_t>(shape[0] * ggml::row_bytes(dt, shape[1])) : n * es;
    auto& buf = store->emplace_back(new std::byte[nbytes]);
    const Values values = values_of(name, shape);
    if (quant) {  // each row quantized by hearth's quantizer, as a GGUF file would hold it
      const i64 cols = shape[1];
      const i64 rb = ggml::row_bytes(dt, cols);
      m->pool->parallel_for(static_cast<std::size_t>(shape[0]), [&](std::size_t b, std::size_t e) {
        std::vector<float> row(static_cast<std::size_t>(cols));
        for (std::size_t r = b; r < e; ++r) {
          values.fill(r * static_cast<std::size_t>(cols), row.size(), row.data());
          ggml::quantize_row(dt, row.data(), buf.get() + static_cast<i64>(r) * rb, cols);
        }
      });
      return TensorView::contiguous(dt, shape, buf.get(), nbytes);
    }
    constexpr std::size_t kBlock = 4096;
    m->pool->parallel_for((n + kBlock - 1) / kBlock, [&](std::size_t b, std::size_t e) {
      std::vector<float> block(kBlock);
      std::vector<std::uint16_t> half(kBlock);
      for (std::size_t blk = b; blk < e; ++blk) {
        const std::size_t i = blk * kBlock;
        const std::size_t len = std::min(kBlock, n - i);
        values.fill(i, len, block.data());
        if (dt == DType::kF32) {
          std::memcpy(buf.get() + i * 4, block.data(), len * 4);
          continue;
        }
        if (dt == DType::kF16) {
          f32_to_f16(block.data(), half.data(), len);
        } else {
          f32_to_bf16(block.data(), half.data(), len);
        }
        std::memcpy(buf.get() + i * 2, half.data(), len * 2);
      }
    });
    return TensorView::contiguous(dt, shape, buf.get(), nbytes);
  };
  // mlx: the same values quantized row by row by hearth's quantizer, f16 scales and biases.
  const int bits = weights.mlx_bits;
  const int group = weights.mlx_group_size;
  const auto find_affine = [&](const std::string& module, i64 rows,
                               i64 cols) -> std::optional<kernels::WeightView> {
    if (cols % group != 0) return std::nullopt;
    const Values values = values_of(module + ".weight", {rows, cols});
    const i64 row_bytes = mlx::packed_row_bytes(cols, bits);
    const i64 groups = cols / group;
    // Pointers, not references into store: the second emplace_back may move the first.
    auto* codes = reinterpret_cast<std::uint8_t*>(
        store->emplace_back(new std::byte[static_cast<std::size_t>(rows * row_bytes)]).get());
    auto* scales = reinterpret_cast<std::uint16_t*>(
        store->emplace_back(new std::byte[static_cast<std::size_t>(2 * rows * groups * 2)]).get());
    std::uint16_t* biases = scales + rows * groups;
    m->pool->parallel_for(static_cast<std::size_t>(rows), [&](std::size_t b, std::size_t e) {
      std::vector<float> row(static_cast<std::size_t>(cols));
      std::vector<float> s(static_cast<std::size_t>(groups)), bias(s.size());
      for (std::size_t r = b; r < e; ++r) {
        values.fill(r * static_cast<std::size_t>(cols), row.size(), row.data());
        mlx::quantize_row(row.data(), cols, bits, group, codes + r * row_bytes, s.data(),
                          bias.data());
        f32_to_f16(s.data(), scales + r * groups, s.size());
        f32_to_f16(bias.data(), biases + r * groups, s.size());
      }
    });
    kernels::WeightView v{DType::kU32, codes, rows, cols};
    v.affine = {bits, group, DType::kF16, scales, biases};
    return v;
  };
  m->build(find, build_options, affine ? FindAffine(find_affine) : FindAffine());
  return std::unique_ptr<LanguageModel>(new LanguageModel(std::move(m)));
}

// ---- Session ----

struct Session::State {
  std::unique_ptr<kernels::KvCache> cache;
  std::int64_t context = 0;
  std::vector<std::int32_t> tokens;
  std::vector<float> logits;
  Timings timings;
  const std::vector<float>* inv_freq = nullptr;
  DecoderScratch scratch;
};

Session::Session(const LanguageModel& model, std::int64_t context)
    : model_(model), state_(std::make_unique<State>()) {
  ModelImpl& m = *model.impl_;
  state_->context = m.session_context(context);
  const DecoderConfig& c = m.config;
  state_->cache =
      m.backend->make_kv_cache(c.layers, c.kv_heads, c.head_dim, state_->context, m.kv_dtype);
  // LongRoPE: the long factors when the session may run past the original context (as
  // llama.cpp decides from its context size).
  state_->inv_freq = &m.inv_freq_short;
  if (c.rope.scaling == RopeScaling::kLongRope && state_->context > c.rope.original_context) {
    state_->inv_freq = &m.inv_freq_long;
  }
}

Session::~Session() = default;

std::int64_t Session::context() const {
  return state_->context;
}
const std::vector<std::int32_t>& Session::tokens() const {
  return state_->tokens;
}
const Timings& Session::timings() const {
  return state_->timings;
}
void Session::reset_timings() {
  state_->timings = {};
}

void Session::truncate(std::size_t n_tokens) {
  if (n_tokens > state_->tokens.size()) {
    throw Error(ErrorCode::kInvalidArgument, "cannot truncate a session of " +
                                                 std::to_string(state_->tokens.size()) +
                                                 " tokens to " + std::to_string(n_tokens));
  }
  state_->tokens.resize(n_tokens);
}

std::size_t Session::common_prefix(std::span<const std::int32_t> ids) const {
  const auto& t = state_->tokens;
  std::size_t n = 0;
  while (n < t.size() && n < ids.size() && t[n] == ids[n]) ++n;
  return n;
}

namespace {

constexpr i64 kPrefillChunk = 256;

void grow(std::vector<float>& v, i64 n) {
  if (static_cast<i64>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
}

// Consecutive rows of one sequence in a forward pass: rows new tokens at positions first_pos ..
// first_pos + rows - 1 over its own cache, rotated by its own frequencies.
struct SeqRows {
  kernels::KvCache* cache;
  const float* inv_freq;
  i64 first_pos;
  i64 rows;
};

// Runs ids (one per row of seqs, in order) through every layer, the caller holding m.mutex: the
// projections over all rows at once, RoPE, the cache and attention per sequence. Leaves the last
// layer's output rows in s.x. Polls cancellation between layers.
void run_layers(ModelImpl& m, DecoderScratch& s, std::span<const SeqRows> seqs,
                const std::int32_t* ids) {
  const DecoderConfig& c = m.config;
  kernels::Backend& be = *m.backend;
  i64 n = 0;
  for (const SeqRows& q : seqs) n += q.rows;
  const i64 h = c.hidden;
  const i64 d = c.head_dim;
  const i64 qdim = c.heads * d;
  const i64 kvdim = c.kv_heads * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const auto mscale = static_cast<float>(c.rope.attention_factor);
  const bool neox = c.rope.style == RopeStyle::kNeox;
  grow(s.x, n * h);
  grow(s.xn, n * h);
  grow(s.tmp, n * h);
  grow(s.attn, n * qdim);
  s.positions.clear();
  for (const SeqRows& q : seqs) {
    for (i64 i = 0; i < q.rows; ++i) s.positions.push_back(q.first_pos + i);
  }
  be.embedding(m.embedding, ids, n, s.x.data());
  for (i64 l = 0; l < c.layers; ++l) {
    throw_if_cancelled();
    const DecoderLayer& L = m.layers[static_cast<std::size_t>(l)];
    be.rms_norm(s.x.data(), s.xn.data(), n, h, L.attn_norm.data(), static_cast<float>(c.rms_eps));
    float *q, *k, *v;
    i64 ld_q, ld_kv;
    if (L.qkv) {
      grow(s.qkv, n * (qdim + 2 * kvdim));
      be.linear(*L.qkv, s.xn.data(), n, s.qkv.data());
      q = s.qkv.data();
      k = q + qdim;
      v = k + kvdim;
      ld_q = ld_kv = qdim + 2 * kvdim;
    } else {
      grow(s.q, n * qdim);
      grow(s.k, n * kvdim);
      grow(s.v, n * kvdim);
      be.linear(*L.q, s.xn.data(), n, s.q.data());
      be.linear(*L.k, s.xn.data(), n, s.k.data());
      be.linear(*L.v, s.xn.data(), n, s.v.data());
      q = s.q.data();
      k = s.k.data();
      v = s.v.data();
      ld_q = qdim;
      ld_kv = kvdim;
    }
    if (!L.q_norm.empty()) {  // contiguous heads: the q/k projections are separate here
      const auto eps = static_cast<float>(c.rms_eps);
      be.rms_norm(q, q, n * c.heads, d, L.q_norm.data(), eps);
      be.rms_norm(k, k, n * c.kv_heads, d, L.k_norm.data(), eps);
    }
    // Per sequence: RoPE at its positions with its frequencies, its cache, its attention.
    i64 r = 0;
    for (const SeqRows& seq : seqs) {
      float* qr = q + r * ld_q;
      float* kr = k + r * ld_kv;
      const i64* pos = s.positions.data() + r;
      be.rope(qr, seq.rows, ld_q, c.heads, d, c.rope.dims, pos, seq.inv_freq, mscale, neox);
      be.rope(kr, seq.rows, ld_kv, c.kv_heads, d, c.rope.dims, pos, seq.inv_freq, mscale, neox);
      be.kv_store(*seq.cache, l, seq.first_pos, seq.rows, kr, v + r * ld_kv, ld_kv);
      be.attention_cached(*seq.cache, l, qr, ld_q, seq.rows, seq.first_pos, c.heads, scale,
                          L.window, s.attn.data() + r * qdim, qdim);
      r += seq.rows;
    }
    be.linear(*L.o, s.attn.data(), n, s.tmp.data());
    be.add(s.x.data(), s.tmp.data(), s.x.data(), n * h);
    be.rms_norm(s.x.data(), s.xn.data(), n, h, L.ffn_norm.data(), static_cast<float>(c.rms_eps));
    grow(s.act, n * c.ffn);
    if (L.gate_up) {
      grow(s.gate, n * 2 * c.ffn);
      be.linear(*L.gate_up, s.xn.data(), n, s.gate.data());
      be.silu_mul(s.gate.data(), s.gate.data() + c.ffn, 2 * c.ffn, n, c.ffn, s.act.data());
    } else {
      grow(s.gate, n * c.ffn);
      grow(s.up, n * c.ffn);
      be.linear(*L.gate, s.xn.data(), n, s.gate.data());
      be.linear(*L.up, s.xn.data(), n, s.up.data());
      be.silu_mul(s.gate.data(), s.up.data(), c.ffn, n, c.ffn, s.act.data());
    }
    be.linear(*L.down, s.act.data(), n, s.tmp.data());
    be.add(s.x.data(), s.tmp.data(), s.x.data(), n * h);
  }
  throw_if_cancelled();
}

void check_id(std::int32_t id, i64 vocab, const std::string& where) {
  if (id < 0 || id >= vocab) {
    throw Error(ErrorCode::kInvalidArgument, where + "token id " + std::to_string(id) +
                                                 " outside the vocabulary of " +
                                                 std::to_string(vocab));
  }
}

}  // namespace

std::span<const float> Session::feed(std::span<const std::int32_t> ids,
                                     std::vector<float>* all_logits) {
  ModelImpl& m = *model_.impl_;
  const DecoderConfig& c = m.config;
  State& s = *state_;
  if (ids.empty()) throw Error(ErrorCode::kInvalidArgument, "feed() needs at least one token");
  const i64 n_total = static_cast<i64>(ids.size());
  const i64 start = static_cast<i64>(s.tokens.size());
  if (start + n_total > s.context) {
    throw Error(ErrorCode::kInvalidArgument,
                std::to_string(start) + " cached + " + std::to_string(n_total) +
                    " new tokens exceed the context of " + std::to_string(s.context) + " tokens");
  }
  for (const std::int32_t id : ids) check_id(id, c.vocab, "");
  std::lock_guard lock(m.mutex);
  kernels::Backend& be = *m.backend;
  DecoderScratch& sc = s.scratch;
  const Timer timer;
  const i64 h = c.hidden;
  const auto eps = static_cast<float>(c.rms_eps);
  if (all_logits != nullptr) all_logits->resize(static_cast<std::size_t>(n_total * c.vocab));
  s.logits.resize(static_cast<std::size_t>(c.vocab));
  for (i64 done = 0; done < n_total; done += kPrefillChunk) {
    const i64 n = std::min(kPrefillChunk, n_total - done);
    const SeqRows seq{s.cache.get(), s.inv_freq->data(), start + done, n};
    run_layers(m, sc, std::span(&seq, 1), ids.data() + done);
    if (all_logits != nullptr) {
      be.rms_norm(sc.x.data(), sc.xn.data(), n, h, m.final_norm.data(), eps);
      be.linear(*m.output, sc.xn.data(), n, all_logits->data() + done * c.vocab);
      if (done + n == n_total) {
        std::copy_n(all_logits->data() + (n_total - 1) * c.vocab, c.vocab, s.logits.begin());
      }
    } else if (done + n == n_total) {
      be.rms_norm(sc.x.data() + (n - 1) * h, sc.xn.data(), 1, h, m.final_norm.data(), eps);
      be.linear(*m.output, sc.xn.data(), 1, s.logits.data());
    }
  }
  s.tokens.insert(s.tokens.end(), ids.begin(), ids.end());
  const double seconds = timer.seconds();
  if (n_total == 1) {
    ++s.timings.decode_tokens;
    s.timings.decode_seconds += seconds;
  } else {
    s.timings.prefill_tokens += n_total;
    s.timings.prefill_seconds += seconds;
  }
  return s.logits;
}

std::vector<std::span<const float>> decode_step(std::span<Session* const> sessions,
                                                std::span<const std::int32_t> tokens) {
  if (sessions.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "decode_step() needs at least one session");
  }
  if (sessions.size() != tokens.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "decode_step() got " + std::to_string(sessions.size()) + " sessions and " +
                    std::to_string(tokens.size()) + " tokens; it takes one token per session");
  }
  const std::size_t n = sessions.size();
  if (sessions[0] == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "decode_step(): batch entry 0 is a null session");
  }
  const LanguageModel& model = sessions[0]->model();
  ModelImpl& m = *model.impl_;
  const DecoderConfig& c = m.config;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string where = "decode_step(): batch entry " + std::to_string(i) + ": ";
    const Session* session = sessions[i];
    if (session == nullptr) throw Error(ErrorCode::kInvalidArgument, where + "a null session");
    if (&session->model() != &model) {
      throw Error(ErrorCode::kInvalidArgument,
                  where + "the session belongs to another model than entry 0's");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (sessions[j] == session) {
        throw Error(ErrorCode::kInvalidArgument,
                    where + "the same session as entry " + std::to_string(j));
      }
    }
    const Session::State& s = *session->state_;
    if (static_cast<i64>(s.tokens.size()) >= s.context) {
      throw Error(ErrorCode::kInvalidArgument, where + "the session's context of " +
                                                   std::to_string(s.context) + " tokens is full");
    }
    check_id(tokens[i], c.vocab, where);
  }
  std::lock_guard lock(m.mutex);
  kernels::Backend& be = *m.backend;
  DecoderScratch& sc = m.batch_scratch;
  const Timer timer;
  std::vector<SeqRows> seqs;
  seqs.reserve(n);
  for (Session* session : sessions) {
    Session::State& s = *session->state_;
    seqs.push_back({s.cache.get(), s.inv_freq->data(), static_cast<i64>(s.tokens.size()), 1});
  }
  run_layers(m, sc, seqs, tokens.data());
  const auto rows = static_cast<i64>(n);
  grow(sc.logits, rows * c.vocab);
  be.rms_norm(sc.x.data(), sc.xn.data(), rows, c.hidden, m.final_norm.data(),
              static_cast<float>(c.rms_eps));
  be.linear(*m.output, sc.xn.data(), rows, sc.logits.data());
  const double seconds = timer.seconds();
  std::vector<std::span<const float>> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    Session::State& s = *sessions[i]->state_;
    s.logits.assign(sc.logits.begin() + static_cast<i64>(i) * c.vocab,
                    sc.logits.begin() + static_cast<i64>(i + 1) * c.vocab);
    s.tokens.push_back(tokens[i]);
    ++s.timings.decode_tokens;
    s.timings.decode_seconds += seconds;
    out.emplace_back(s.logits);
  }
  return out;
}

}  // namespace hearth::models
