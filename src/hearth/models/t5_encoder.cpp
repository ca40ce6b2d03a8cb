#include "hearth/models/t5_encoder.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <tuple>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/models/flux_transformer.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using i64 = std::int64_t;

struct T5Encoder::Layer {
  std::unique_ptr<kernels::LinearWeights> q, k, v, o, wi0, wi1, wo;
  std::vector<float> attn_norm, ffn_norm;
};

T5Encoder::~T5Encoder() = default;

namespace {

constexpr const char* kBias =
    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";

void check_config(const T5EncoderConfig& c, const std::string& source) {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kFormat, "T5 config: " + what, {.file = source});
  };
  constexpr i64 kMax = i64{1} << 20;
  for (const auto& [v, name] : {std::pair{c.vocab, "vocab_size"}, std::pair{c.d_model, "d_model"},
                                std::pair{c.d_kv, "d_kv"}, std::pair{c.heads, "num_heads"},
                                std::pair{c.d_ff, "d_ff"}, std::pair{c.layers, "num_layers"},
                                std::pair{c.num_buckets, "relative_attention_num_buckets"},
                                std::pair{c.max_distance, "relative_attention_max_distance"}}) {
    if (v <= 0 || v > kMax) bad(std::string(name) + " " + std::to_string(v) + " out of range");
  }
  if (c.layers > 256) bad("more than 256 layers");
  if (c.num_buckets < 4) bad("relative_attention_num_buckets must be at least 4");
  if (c.max_distance <= c.num_buckets / 4) {
    bad("relative_attention_max_distance must exceed num_buckets / 4");
  }
  if (!(c.eps > 0.0f) || c.eps > 1.0f) bad("layer_norm_epsilon out of range");
}

}  // namespace

i64 t5_relative_bucket(i64 relative_position, i64 num_buckets, i64 max_distance) {
  const i64 half = num_buckets / 2;
  i64 bucket = relative_position > 0 ? half : 0;
  const i64 n = std::abs(relative_position);
  const i64 max_exact = half / 2;
  if (n < max_exact) return bucket + n;
  const float scaled = std::log(static_cast<float>(n) / static_cast<float>(max_exact)) /
                       static_cast<float>(std::log(static_cast<double>(max_distance) /
                                                   static_cast<double>(max_exact))) *
                       static_cast<float>(half - max_exact);
  const i64 large = std::min<i64>(max_exact + static_cast<i64>(scaled), half - 1);
  return bucket + large;
}

namespace {

// mflux's name for a transformers T5EncoderModel one (its get_t5_encoder_mapping):
// encoder.block.N.layer.0 / .layer.1 are t5_blocks.N.attention / .ff, encoder.final_layer_norm
// is final_layer_norm; block 0's bias table is the one read (mflux copies it into every block).
std::string mflux_t5_name(const std::string& name) {
  constexpr std::string_view kBlock = "encoder.block.";
  if (name.starts_with(kBlock)) {
    const std::size_t dot = name.find('.', kBlock.size());
    if (dot != std::string::npos) {
      const std::string rest = name.substr(dot + 1);
      const std::string block = "t5_blocks." + name.substr(kBlock.size(), dot - kBlock.size());
      if (rest.starts_with("layer.0.")) return block + ".attention." + rest.substr(8);
      if (rest.starts_with("layer.1.")) return block + ".ff." + rest.substr(8);
    }
  }
  if (name.starts_with("encoder.")) return name.substr(8);
  return name;
}

}  // namespace

// mflux's saved text_encoder_2/ (is_mflux_folder): mflux's names (mflux_t5_name), no
// config.json; when quantized, every linear and both embedding tables (shared and the position
// bias, nn.Embedding) MLX affine. The shape from the tensors, as for a single file; mflux's T5
// fixes eps 1e-6, 32 buckets over a 128 distance and the gated GELU.
std::unique_ptr<T5Encoder> T5Encoder::load_mflux(const fs::path& dir,
                                                 const TextEncoderOptions& options) {
  auto folder = std::make_shared<formats::ModelFolder>(formats::ModelFolder::open(dir));
  const auto w = detail::EncoderWeights::mflux(folder, mflux_t5_name);
  const auto dims = [&](const std::string& base) {
    return detail::EncoderWeights::mflux_dims(*folder, mflux_t5_name(base), "mflux T5 encoder");
  };
  std::unique_ptr<T5Encoder> m(new T5Encoder());
  T5EncoderConfig& c = m->config_;
  std::tie(c.vocab, c.d_model) = dims("shared");
  std::tie(c.num_buckets, c.heads) =
      dims("encoder.block.0.layer.0.SelfAttention.relative_attention_bias");
  c.d_kv = dims("encoder.block.0.layer.0.SelfAttention.q").first / std::max<i64>(c.heads, 1);
  c.d_ff = dims("encoder.block.0.layer.1.DenseReluDense.wi_0").first;
  c.layers = 0;
  while (c.layers < 256) {
    const std::string q =
        mflux_t5_name("encoder.block." + std::to_string(c.layers) + ".layer.0.SelfAttention.q");
    if (!folder->find_quantized(q) && !folder->find_tensor(q + ".weight")) break;
    ++c.layers;
  }
  check_config(c, w.source());
  m->build(w, options);
  return m;
}

std::unique_ptr<T5Encoder> T5Encoder::load(const fs::path& path,
                                           const TextEncoderOptions& options) {
  if (is_mflux_folder(path)) return load_mflux(path, options);
  const auto w =
      detail::EncoderWeights::open(path, kBias, {"", "text_encoders.t5xxl.transformer."});
  std::unique_ptr<T5Encoder> m(new T5Encoder());
  T5EncoderConfig& c = m->config_;
  if (fs::is_directory(path)) {
    const std::string file = (path / "config.json").string();
    if (!w.config()) {
      throw Error(ErrorCode::kNotFound, "a T5 encoder folder needs config.json", {.file = file});
    }
    const nlohmann::json& cfg = *w.config();
    const std::string type = cfg.value("model_type", std::string());
    if (type != "t5" && type != "umt5") {
      throw Error(ErrorCode::kUnsupported, "model_type is \"" + type + "\", not t5",
                  {.file = file, .key = "model_type"});
    }
    if (type == "umt5") {
      throw Error(ErrorCode::kUnsupported, "UMT5 (a position bias per layer) is not supported",
                  {.file = file, .key = "model_type"});
    }
    c.vocab = detail::config_int(cfg, "vocab_size", 32128, file);
    c.d_model = detail::config_int(cfg, "d_model", std::nullopt, file);
    c.d_kv = detail::config_int(cfg, "d_kv", std::nullopt, file);
    c.heads = detail::config_int(cfg, "num_heads", std::nullopt, file);
    c.d_ff = detail::config_int(cfg, "d_ff", std::nullopt, file);
    c.layers = detail::config_int(cfg, "num_layers", std::nullopt, file);
    c.num_buckets = detail::config_int(cfg, "relative_attention_num_buckets", 32, file);
    c.max_distance = detail::config_int(cfg, "relative_attention_max_distance", 128, file);
    c.eps = detail::config_float(cfg, "layer_norm_epsilon", 1e-6f, file);
    const std::string ff = cfg.value("feed_forward_proj", std::string("relu"));
    if (ff == "gated-gelu") {
      c.gated = true;
    } else if (ff == "relu") {
      throw Error(ErrorCode::kUnsupported,
                  "feed_forward_proj relu (the original T5) is not supported; FLUX uses T5 v1.1 "
                  "(gated-gelu)",
                  {.file = file, .key = "feed_forward_proj"});
    } else {
      throw Error(ErrorCode::kUnsupported, "feed_forward_proj " + ff + " is not supported",
                  {.file = file, .key = "feed_forward_proj"});
    }
  } else {
    const auto emb =
        w.find("shared.weight") ? w.find("shared.weight") : w.find("encoder.embed_tokens.weight");
    const auto bias = w.find(kBias);
    const auto q = w.find("encoder.block.0.layer.0.SelfAttention.q.weight");
    const auto wi = w.find("encoder.block.0.layer.1.DenseReluDense.wi_0.weight");
    if (!emb || emb->rank() != 2 || !bias || bias->rank() != 2 || !q || q->rank() != 2 || !wi ||
        wi->rank() != 2) {
      throw Error(ErrorCode::kFormat,
                  "the embedding, the position bias or the first block is missing or malformed",
                  {.file = path.string()});
    }
    c.vocab = emb->shape[0];
    c.d_model = emb->shape[1];
    c.num_buckets = bias->shape[0];
    c.heads = bias->shape[1];
    c.d_kv = q->shape[0] / std::max<i64>(c.heads, 1);
    c.d_ff = wi->shape[0];
    c.layers = 0;
    while (c.layers < 256 && w.find("encoder.block." + std::to_string(c.layers) +
                                    ".layer.0.SelfAttention.q.weight")) {
      ++c.layers;
    }
  }
  check_config(c, w.source());
  m->build(w, options);
  return m;
}

std::unique_ptr<T5Encoder> T5Encoder::random(const T5EncoderConfig& config, DType dtype,
                                             unsigned seed, const TextEncoderOptions& options) {
  check_config(config, "random weights");
  std::unique_ptr<T5Encoder> m(new T5Encoder());
  m->config_ = config;
  TextEncoderOptions o = options;
  if (!o.pool) o.pool = std::make_shared<ThreadPool>(o.threads);
  m->build(detail::EncoderWeights::random(dtype, seed, *o.pool), o);
  return m;
}

void T5Encoder::build(const detail::EncoderWeights& w, const TextEncoderOptions& options) {
  const T5EncoderConfig& c = config_;
  const i64 dm = c.d_model, inner = c.heads * c.d_kv;
  source_ = w.source();
  keep_alive_ = w.keep_alive;
  pool_ = options.pool ? options.pool : std::make_shared<ThreadPool>(options.threads);
  backend_ = kernels::make_cpu_backend(*pool_, options.level);
  // T5EncoderModel stores the table as shared.weight (encoder.embed_tokens is tied to it; some
  // single files keep only the latter).
  const char* table = w.find("shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
  embedding_ = w.table(table, c.vocab, dm);
  {
    const kernels::WeightView table = w.table(kBias, c.num_buckets, c.heads);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(c.num_buckets));
    for (i64 i = 0; i < c.num_buckets; ++i) ids[i] = static_cast<std::int32_t>(i);
    bias_table_.resize(static_cast<std::size_t>(c.num_buckets * c.heads));
    backend_->embedding(table, ids.data(), c.num_buckets, bias_table_.data());
  }
  layers_.resize(static_cast<std::size_t>(c.layers));
  for (i64 l = 0; l < c.layers; ++l) {
    const std::string p = "encoder.block." + std::to_string(l) + ".layer.";
    Layer& L = layers_[static_cast<std::size_t>(l)];
    L.q = w.linear(*backend_, p + "0.SelfAttention.q", inner, dm, false);
    L.k = w.linear(*backend_, p + "0.SelfAttention.k", inner, dm, false);
    L.v = w.linear(*backend_, p + "0.SelfAttention.v", inner, dm, false);
    L.o = w.linear(*backend_, p + "0.SelfAttention.o", dm, inner, false);
    L.attn_norm = w.vec(p + "0.layer_norm.weight", dm);
    L.wi0 = w.linear(*backend_, p + "1.DenseReluDense.wi_0", c.d_ff, dm, false);
    L.wi1 = w.linear(*backend_, p + "1.DenseReluDense.wi_1", c.d_ff, dm, false);
    L.wo = w.linear(*backend_, p + "1.DenseReluDense.wo", dm, c.d_ff, false);
    L.ffn_norm = w.vec(p + "1.layer_norm.weight", dm);
  }
  final_gamma_ = w.vec("encoder.final_layer_norm.weight", dm);
  parameters_ = w.parameters();
}

std::vector<float> T5Encoder::encode(std::span<const std::int32_t> ids) {
  const T5EncoderConfig& c = config_;
  const i64 len = static_cast<i64>(ids.size());
  constexpr i64 kMaxLength = 1024;  // the bias is heads x len x len floats
  if (len < 1 || len > kMaxLength) {
    throw Error(ErrorCode::kInvalidArgument, "T5 input has " + std::to_string(len) +
                                                 " tokens; the encoder takes 1.." +
                                                 std::to_string(kMaxLength));
  }
  std::lock_guard lock(mutex_);
  const i64 dm = c.d_model, inner = c.heads * c.d_kv;
  kernels::Backend& be = *backend_;
  // The position bias of every head, [heads, len, len]: the same for every block. A bucket
  // depends only on j - i.
  std::vector<i64> bucket(static_cast<std::size_t>(2 * len - 1));
  for (i64 r = -(len - 1); r < len; ++r) {
    bucket[r + len - 1] = t5_relative_bucket(r, c.num_buckets, c.max_distance);
  }
  std::vector<float> bias(static_cast<std::size_t>(c.heads * len * len));
  for (i64 h = 0; h < c.heads; ++h) {
    for (i64 i = 0; i < len; ++i) {
      float* row = bias.data() + (h * len + i) * len;
      for (i64 j = 0; j < len; ++j) row[j] = bias_table_[bucket[j - i + len - 1] * c.heads + h];
    }
  }
  const auto n = static_cast<std::size_t>(len * dm), ni = static_cast<std::size_t>(len * inner),
             nf = static_cast<std::size_t>(len * c.d_ff);
  std::vector<float> x(n), y(n), q(ni), k(ni), v(ni), a(ni), g(nf), u(nf);
  be.embedding(embedding_, ids.data(), len, x.data());
  for (const Layer& L : layers_) {
    throw_if_cancelled();
    be.rms_norm(x.data(), y.data(), len, dm, L.attn_norm.data(), c.eps);
    be.linear(*L.q, y.data(), len, q.data());
    be.linear(*L.k, y.data(), len, k.data());
    be.linear(*L.v, y.data(), len, v.data());
    be.attention_biased(q.data(), k.data(), v.data(), inner, a.data(), inner, 1, len, c.heads,
                        c.d_kv, 1.0f, bias.data(), false);
    be.linear(*L.o, a.data(), len, y.data());
    be.add(x.data(), y.data(), x.data(), len * dm);
    be.rms_norm(x.data(), y.data(), len, dm, L.ffn_norm.data(), c.eps);
    be.linear(*L.wi0, y.data(), len, g.data(), kernels::Activation::kGeluTanh);
    be.linear(*L.wi1, y.data(), len, u.data());
    be.mul(g.data(), u.data(), g.data(), len * c.d_ff);
    be.linear(*L.wo, g.data(), len, y.data());
    be.add(x.data(), y.data(), x.data(), len * dm);
  }
  be.rms_norm(x.data(), y.data(), len, dm, final_gamma_.data(), c.eps);
  return y;
}

}  // namespace hearth::models
