#include "hearth/models/clip_text.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/models/flux_transformer.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using i64 = std::int64_t;

struct ClipTextModel::Layer {
  std::unique_ptr<kernels::LinearWeights> q, k, v, out, fc1, fc2;
  std::vector<float> ln1_gamma, ln1_beta, ln2_gamma, ln2_beta;
};

ClipTextModel::~ClipTextModel() = default;

namespace {

constexpr const char* kEmbedding = "text_model.embeddings.token_embedding.weight";

void check_config(const ClipTextConfig& c, const std::string& source) {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kFormat, "CLIP text config: " + what, {.file = source});
  };
  constexpr i64 kMax = i64{1} << 20;
  for (const auto& [v, name] :
       {std::pair{c.vocab, "vocab size"}, std::pair{c.hidden, "hidden size"},
        std::pair{c.layers, "layer count"}, std::pair{c.heads, "head count"},
        std::pair{c.ffn, "intermediate size"}, std::pair{c.max_positions, "max positions"}}) {
    if (v <= 0 || v > kMax) bad(std::string(name) + " " + std::to_string(v) + " out of range");
  }
  if (c.layers > 256) bad("more than 256 layers");
  if (c.hidden % c.heads != 0) bad("hidden size is not a multiple of the head count");
  if (!(c.eps > 0.0f) || c.eps > 1.0f) bad("layer_norm_eps out of range");
}

}  // namespace

// mflux's saved text_encoder/ (is_mflux_folder): transformers' names unchanged, no config.json;
// when quantized, every linear and both embedding tables MLX affine. The shape from the tensors,
// as for a single file; CLIP-L's quick-GELU and eps, as mflux's CLIP fixes them.
std::unique_ptr<ClipTextModel> ClipTextModel::load_mflux(const fs::path& dir,
                                                         const TextEncoderOptions& options) {
  auto folder = std::make_shared<formats::ModelFolder>(formats::ModelFolder::open(dir));
  const auto w = detail::EncoderWeights::mflux(folder, [](const std::string& n) { return n; });
  const auto dims = [&](const std::string& base) {
    return detail::EncoderWeights::mflux_dims(*folder, base, "mflux CLIP text encoder");
  };
  std::unique_ptr<ClipTextModel> m(new ClipTextModel());
  ClipTextConfig& c = m->config_;
  std::tie(c.vocab, c.hidden) = dims("text_model.embeddings.token_embedding");
  c.max_positions = dims("text_model.embeddings.position_embedding").first;
  c.ffn = dims("text_model.encoder.layers.0.mlp.fc1").first;
  c.heads = std::max<i64>(c.hidden / 64, 1);
  c.layers = 0;
  while (c.layers < 256 && (folder->find_quantized("text_model.encoder.layers." +
                                                   std::to_string(c.layers) + ".mlp.fc1") ||
                            folder->find_tensor("text_model.encoder.layers." +
                                                std::to_string(c.layers) + ".mlp.fc1.weight"))) {
    ++c.layers;
  }
  check_config(c, w.source());
  m->build(w, options);
  return m;
}

std::unique_ptr<ClipTextModel> ClipTextModel::load(const fs::path& path,
                                                   const TextEncoderOptions& options) {
  if (is_mflux_folder(path)) return load_mflux(path, options);
  const auto w = detail::EncoderWeights::open(
      path, kEmbedding,
      {"", "transformer.", "clip_l.transformer.", "cond_stage_model.transformer."});
  std::unique_ptr<ClipTextModel> m(new ClipTextModel());
  ClipTextConfig& c = m->config_;
  if (fs::is_directory(path)) {
    const std::string file = (path / "config.json").string();
    if (!w.config()) {
      throw Error(ErrorCode::kNotFound, "a CLIP text encoder folder needs config.json",
                  {.file = file});
    }
    nlohmann::json cfg = *w.config();
    if (cfg.contains("text_config") && cfg.at("text_config").is_object())
      cfg = cfg.at("text_config");
    const std::string type = cfg.value("model_type", std::string());
    if (type != "clip_text_model" && type != "clip") {
      throw Error(ErrorCode::kUnsupported, "model_type is \"" + type + "\", not clip_text_model",
                  {.file = file, .key = "model_type"});
    }
    c.vocab = detail::config_int(cfg, "vocab_size", 49408, file);
    c.hidden = detail::config_int(cfg, "hidden_size", std::nullopt, file);
    c.layers = detail::config_int(cfg, "num_hidden_layers", std::nullopt, file);
    c.heads = detail::config_int(cfg, "num_attention_heads", std::nullopt, file);
    c.ffn = detail::config_int(cfg, "intermediate_size", std::nullopt, file);
    c.max_positions = detail::config_int(cfg, "max_position_embeddings", 77, file);
    c.eps = detail::config_float(cfg, "layer_norm_eps", 1e-5f, file);
    c.eos_token_id = detail::config_int(cfg, "eos_token_id", 2, file);
    const std::string act = cfg.value("hidden_act", std::string("quick_gelu"));
    if (act == "quick_gelu") {
      c.act = kernels::Activation::kQuickGelu;
    } else if (act == "gelu") {
      c.act = kernels::Activation::kGeluErf;
    } else {
      throw Error(ErrorCode::kUnsupported, "hidden_act " + act + " is not supported",
                  {.file = file, .key = "hidden_act"});
    }
  } else {
    const auto emb = w.find(kEmbedding);
    const auto pos = w.find("text_model.embeddings.position_embedding.weight");
    const auto fc1 = w.find("text_model.encoder.layers.0.mlp.fc1.weight");
    if (!emb || emb->rank() != 2 || !pos || pos->rank() != 2 || !fc1 || fc1->rank() != 2) {
      throw Error(ErrorCode::kFormat, "the embeddings or the first layer are missing or malformed",
                  {.file = path.string()});
    }
    c.vocab = emb->shape[0];
    c.hidden = emb->shape[1];
    c.max_positions = pos->shape[0];
    c.ffn = fc1->shape[0];
    c.heads = std::max<i64>(c.hidden / 64, 1);
    c.layers = 0;
    while (c.layers < 256 &&
           w.find("text_model.encoder.layers." + std::to_string(c.layers) + ".mlp.fc1.weight")) {
      ++c.layers;
    }
  }
  check_config(c, w.source());
  m->build(w, options);
  return m;
}

std::unique_ptr<ClipTextModel> ClipTextModel::random(const ClipTextConfig& config, DType dtype,
                                                     unsigned seed,
                                                     const TextEncoderOptions& options) {
  check_config(config, "random weights");
  std::unique_ptr<ClipTextModel> m(new ClipTextModel());
  m->config_ = config;
  TextEncoderOptions o = options;
  if (!o.pool) o.pool = std::make_shared<ThreadPool>(o.threads);
  m->build(detail::EncoderWeights::random(dtype, seed, *o.pool), o);
  return m;
}

void ClipTextModel::build(const detail::EncoderWeights& w, const TextEncoderOptions& options) {
  const ClipTextConfig& c = config_;
  const i64 h = c.hidden;
  source_ = w.source();
  keep_alive_ = w.keep_alive;
  pool_ = options.pool ? options.pool : std::make_shared<ThreadPool>(options.threads);
  backend_ = kernels::make_cpu_backend(*pool_, options.level);
  token_embedding_ = w.table(kEmbedding, c.vocab, h);
  {
    // The position table is small (max_positions x hidden): kept in f32.
    std::vector<std::int32_t> ids(static_cast<std::size_t>(c.max_positions));
    for (i64 i = 0; i < c.max_positions; ++i) ids[i] = static_cast<std::int32_t>(i);
    positions_.resize(static_cast<std::size_t>(c.max_positions * h));
    backend_->embedding(
        w.table("text_model.embeddings.position_embedding.weight", c.max_positions, h), ids.data(),
        c.max_positions, positions_.data());
  }
  layers_.resize(static_cast<std::size_t>(c.layers));
  for (i64 l = 0; l < c.layers; ++l) {
    const std::string p = "text_model.encoder.layers." + std::to_string(l) + ".";
    Layer& L = layers_[static_cast<std::size_t>(l)];
    L.q = w.linear(*backend_, p + "self_attn.q_proj", h, h, true);
    L.k = w.linear(*backend_, p + "self_attn.k_proj", h, h, true);
    L.v = w.linear(*backend_, p + "self_attn.v_proj", h, h, true);
    L.out = w.linear(*backend_, p + "self_attn.out_proj", h, h, true);
    L.fc1 = w.linear(*backend_, p + "mlp.fc1", c.ffn, h, true);
    L.fc2 = w.linear(*backend_, p + "mlp.fc2", h, c.ffn, true);
    L.ln1_gamma = w.vec(p + "layer_norm1.weight", h);
    L.ln1_beta = w.vec(p + "layer_norm1.bias", h);
    L.ln2_gamma = w.vec(p + "layer_norm2.weight", h);
    L.ln2_beta = w.vec(p + "layer_norm2.bias", h);
  }
  final_gamma_ = w.vec("text_model.final_layer_norm.weight", h);
  final_beta_ = w.vec("text_model.final_layer_norm.bias", h);
  parameters_ = w.parameters();
}

i64 ClipTextModel::pooled_position(std::span<const std::int32_t> ids) const {
  if (config_.eos_token_id == 2) {
    return std::max_element(ids.begin(), ids.end()) - ids.begin();
  }
  const auto it =
      std::find(ids.begin(), ids.end(), static_cast<std::int32_t>(config_.eos_token_id));
  // transformers takes the first match; without one its argmax over a boolean mask gives 0.
  return it == ids.end() ? 0 : it - ids.begin();
}

ClipTextOutput ClipTextModel::encode(std::span<const std::int32_t> ids) {
  const ClipTextConfig& c = config_;
  const i64 len = static_cast<i64>(ids.size());
  if (len < 1 || len > c.max_positions) {
    throw Error(ErrorCode::kInvalidArgument, "CLIP text input has " + std::to_string(len) +
                                                 " tokens; the model takes 1.." +
                                                 std::to_string(c.max_positions));
  }
  std::lock_guard lock(mutex_);
  const i64 h = c.hidden, d = h / c.heads;
  kernels::Backend& be = *backend_;
  const auto n = static_cast<std::size_t>(len * h);
  std::vector<float> x(n), y(n), q(n), k(n), v(n), a(n), f(static_cast<std::size_t>(len * c.ffn));
  be.embedding(token_embedding_, ids.data(), len, x.data());
  be.add(x.data(), positions_.data(), x.data(), len * h);
  for (const Layer& L : layers_) {
    throw_if_cancelled();
    be.layer_norm(x.data(), nullptr, y.data(), len, h, L.ln1_gamma.data(), L.ln1_beta.data(),
                  c.eps);
    be.linear(*L.q, y.data(), len, q.data());
    be.linear(*L.k, y.data(), len, k.data());
    be.linear(*L.v, y.data(), len, v.data());
    be.attention_biased(q.data(), k.data(), v.data(), h, a.data(), h, 1, len, c.heads, d,
                        1.0f / std::sqrt(static_cast<float>(d)), nullptr, true);
    be.linear(*L.out, a.data(), len, y.data());
    be.add(x.data(), y.data(), x.data(), len * h);
    be.layer_norm(x.data(), nullptr, y.data(), len, h, L.ln2_gamma.data(), L.ln2_beta.data(),
                  c.eps);
    be.linear(*L.fc1, y.data(), len, f.data(), c.act);
    be.linear(*L.fc2, f.data(), len, y.data());
    be.add(x.data(), y.data(), x.data(), len * h);
  }
  ClipTextOutput out;
  out.hidden.resize(n);
  be.layer_norm(x.data(), nullptr, out.hidden.data(), len, h, final_gamma_.data(),
                final_beta_.data(), c.eps);
  const i64 p = pooled_position(ids);
  out.pooled.assign(out.hidden.begin() + p * h, out.hidden.begin() + (p + 1) * h);
  return out;
}

}  // namespace hearth::models
