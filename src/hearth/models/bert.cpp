#include "hearth/models/bert.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <optional>
#include <random>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/hash.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/models/gguf_names.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using formats::PoolingMode;
using i64 = std::int64_t;

struct BertModel::Layer {
  std::unique_ptr<kernels::LinearWeights> qkv, attn_out, ffn_up, ffn_down;
  std::vector<float> attn_gamma, attn_beta, out_gamma, out_beta;
};

BertModel::~BertModel() = default;

// Reads weights by Hugging Face name from either source and checks them against the config.
class BertLoader {
 public:
  using Find = std::function<std::optional<TensorView>(const std::string&)>;

  BertLoader(std::string source, Find find) : source_(std::move(source)), find_(std::move(find)) {}

  std::optional<TensorView> find(const std::string& name) const { return find_(name); }

  std::vector<float> tensor(const std::string& name, const Shape& want) const {
    const auto view = find_(name);
    if (!view) {
      throw Error(ErrorCode::kNotFound, "missing BERT weight", {.file = source_, .key = name});
    }
    if (view->shape != want) {
      throw Error(ErrorCode::kFormat,
                  "weight has shape " + shape_string(view->shape) + ", the config needs " +
                      shape_string(want),
                  {.file = source_, .key = name});
    }
    const auto n = static_cast<std::size_t>(view->numel());
    std::vector<float> out(n);
    const auto* src = reinterpret_cast<const std::uint16_t*>(view->data);
    switch (view->dtype) {
      case DType::kF32:
        std::memcpy(out.data(), view->data, n * sizeof(float));
        break;
      case DType::kF16:
        f16_to_f32(src, out.data(), n);
        break;
      case DType::kBF16:
        bf16_to_f32(src, out.data(), n);
        break;
      default:
        throw Error(
            ErrorCode::kUnsupported,
            "BERT weights must be f32, f16 or bf16, not " + std::string(dtype_name(view->dtype)),
            {.file = source_, .key = name});
    }
    return out;
  }

  static void check_config(const BertConfig& c, const std::string& source) {
    const auto bad = [&](const std::string& what) {
      throw Error(ErrorCode::kFormat, "BERT config: " + what, {.file = source});
    };
    constexpr i64 kMax = i64{1} << 24;
    for (const auto& [v, name] :
         {std::pair{c.hidden, "hidden size"}, std::pair{c.layers, "layer count"},
          std::pair{c.heads, "head count"}, std::pair{c.ffn, "intermediate size"},
          std::pair{c.max_positions, "max positions"}, std::pair{c.type_vocab, "type vocab"}}) {
      if (v <= 0 || v > kMax) bad(std::string(name) + " " + std::to_string(v) + " out of range");
    }
    if (c.layers > 1024) bad("more than 1024 layers");
    if (c.hidden % c.heads != 0) bad("hidden size is not a multiple of the head count");
    if (!(c.eps > 0.0f) || c.eps > 1.0f) bad("layer_norm_eps out of range");
  }

  // Builds the model from weights under Hugging Face names.
  void build(BertModel& m, const BertOptions& options) const {
    const BertConfig& c = m.config_;
    check_config(c, source_);
    const i64 h = c.hidden;
    m.pool_ = options.pool ? options.pool : std::make_shared<ThreadPool>(options.threads);
    m.backend_ = kernels::make_cpu_backend(*m.pool_, options.level, options.gemm);
    m.max_batch_ = std::max<std::size_t>(options.max_batch, 1);
    m.max_batch_tokens_ = std::max<std::size_t>(options.max_batch_tokens, 1);
    const auto word = find("embeddings.word_embeddings.weight");
    if (!word || word->rank() != 2 || word->shape[0] <= 0) {
      throw Error(ErrorCode::kNotFound, "missing or malformed word embeddings",
                  {.file = source_, .key = "embeddings.word_embeddings.weight"});
    }
    m.config_.vocab = word->shape[0];
    m.word_ = tensor("embeddings.word_embeddings.weight", {c.vocab, h});
    m.position_ = tensor("embeddings.position_embeddings.weight", {c.max_positions, h});
    m.token_type_ = tensor("embeddings.token_type_embeddings.weight", {c.type_vocab, h});
    m.emb_gamma_ = tensor("embeddings.LayerNorm.weight", {h});
    m.emb_beta_ = tensor("embeddings.LayerNorm.bias", {h});
    const auto linear = [&](const std::string& base, i64 out, i64 in) {
      const auto w = tensor(base + ".weight", {out, in});
      const auto b = tensor(base + ".bias", {out});
      return m.backend_->make_linear(w.data(), b.data(), out, in);
    };
    m.layers_.resize(static_cast<std::size_t>(c.layers));
    for (i64 l = 0; l < c.layers; ++l) {
      const std::string p = "encoder.layer." + std::to_string(l) + ".";
      BertModel::Layer& L = m.layers_[static_cast<std::size_t>(l)];
      std::vector<float> w, b;
      for (const char* part : {"query", "key", "value"}) {
        const auto pw = tensor(p + "attention.self." + part + ".weight", {h, h});
        const auto pb = tensor(p + "attention.self." + part + ".bias", {h});
        w.insert(w.end(), pw.begin(), pw.end());
        b.insert(b.end(), pb.begin(), pb.end());
      }
      L.qkv = m.backend_->make_linear(w.data(), b.data(), 3 * h, h);
      L.attn_out = linear(p + "attention.output.dense", h, h);
      L.attn_gamma = tensor(p + "attention.output.LayerNorm.weight", {h});
      L.attn_beta = tensor(p + "attention.output.LayerNorm.bias", {h});
      L.ffn_up = linear(p + "intermediate.dense", c.ffn, h);
      L.ffn_down = linear(p + "output.dense", h, c.ffn);
      L.out_gamma = tensor(p + "output.LayerNorm.weight", {h});
      L.out_beta = tensor(p + "output.LayerNorm.bias", {h});
    }
    if (c.num_labels > 0) {
      m.pooler_ = linear("pooler.dense", h, h);
      m.classifier_ = linear("classifier", c.num_labels, h);
    }
  }

 private:
  std::string source_;
  Find find_;
};

namespace {

// HF names may carry the "bert." prefix (BertForSequenceClassification) and old checkpoints call
// LayerNorm parameters gamma/beta.
std::optional<TensorView> find_hf(const formats::ModelFolder& folder, const std::string& name) {
  std::vector<std::string> candidates = {name, "bert." + name};
  const auto replace_suffix = [&](const std::string& from, const std::string& to) {
    if (name.find("LayerNorm") != std::string::npos && name.ends_with(from)) {
      const std::string alt = name.substr(0, name.size() - from.size()) + to;
      candidates.push_back(alt);
      candidates.push_back("bert." + alt);
    }
  };
  replace_suffix(".weight", ".gamma");
  replace_suffix(".bias", ".beta");
  for (const std::string& c : candidates) {
    if (c.starts_with("bert.classifier")) continue;
    if (const auto ref = folder.find_tensor(c)) return formats::ModelFolder::view(*ref);
  }
  return std::nullopt;
}

i64 json_int(const nlohmann::json& cfg, const char* key, std::optional<i64> fallback,
             const std::string& file) {
  const auto it = cfg.find(key);
  if (it == cfg.end()) {
    if (fallback) return *fallback;
    throw Error(ErrorCode::kNotFound, "config.json lacks a required key",
                {.file = file, .key = key});
  }
  if (!it->is_number_integer()) {
    throw Error(ErrorCode::kFormat, "config value must be an integer", {.file = file, .key = key});
  }
  return it->get<i64>();
}

kernels::Activation activation_from(const std::string& act, const std::string& file) {
  if (act == "gelu") return kernels::Activation::kGeluErf;
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return kernels::Activation::kGeluTanh;
  throw Error(ErrorCode::kUnsupported, "hidden_act " + act + " is not supported",
              {.file = file, .key = "hidden_act"});
}

}  // namespace

std::string bert_gguf_name(const std::string& hf) {
  static const NamePair kTop[] = {
      {"embeddings.word_embeddings.weight", "token_embd.weight"},
      {"embeddings.position_embeddings.weight", "position_embd.weight"},
      {"embeddings.token_type_embeddings.weight", "token_types.weight"},
      {"embeddings.LayerNorm.weight", "token_embd_norm.weight"},
      {"embeddings.LayerNorm.bias", "token_embd_norm.bias"},
      {"pooler.dense.weight", "cls.weight"},
      {"pooler.dense.bias", "cls.bias"},
      {"classifier.weight", "cls.output.weight"},
      {"classifier.bias", "cls.output.bias"},
  };
  static const NamePair kLayer[] = {
      {"attention.self.query", "attn_q"},
      {"attention.self.key", "attn_k"},
      {"attention.self.value", "attn_v"},
      {"attention.output.dense", "attn_output"},
      {"attention.output.LayerNorm", "attn_output_norm"},
      {"intermediate.dense", "ffn_up"},
      {"output.dense", "ffn_down"},
      {"output.LayerNorm", "layer_output_norm"},
  };
  return gguf_name(hf, {kTop, "encoder.layer.", kLayer});
}

std::unique_ptr<BertModel> BertModel::load(const fs::path& path, const BertOptions& options) {
  std::unique_ptr<BertModel> m(new BertModel());
  BertConfig& c = m->config_;
  if (fs::is_directory(path)) {
    const auto folder = std::make_shared<formats::ModelFolder>(formats::ModelFolder::open(path));
    const std::string file = (path / "config.json").string();
    if (!folder->has_config()) {
      throw Error(ErrorCode::kNotFound, "a BERT folder needs config.json", {.file = file});
    }
    const nlohmann::json& cfg = folder->config();
    const fs::path dir = path.lexically_normal();
    m->name_ = (dir.filename().empty() ? dir.parent_path() : dir).filename().string();
    const std::string type = folder->model_type();
    if (type != "bert") {
      throw Error(ErrorCode::kUnsupported, "model_type is \"" + type + "\", not bert",
                  {.file = file, .key = "model_type"});
    }
    c.hidden = json_int(cfg, "hidden_size", std::nullopt, file);
    c.layers = json_int(cfg, "num_hidden_layers", std::nullopt, file);
    c.heads = json_int(cfg, "num_attention_heads", std::nullopt, file);
    c.ffn = json_int(cfg, "intermediate_size", std::nullopt, file);
    c.max_positions = json_int(cfg, "max_position_embeddings", 512, file);
    c.type_vocab = json_int(cfg, "type_vocab_size", 2, file);
    const auto eps = cfg.find("layer_norm_eps");
    if (eps != cfg.end()) {
      if (!eps->is_number()) {
        throw Error(ErrorCode::kFormat, "layer_norm_eps must be a number",
                    {.file = file, .key = "layer_norm_eps"});
      }
      c.eps = eps->get<float>();
    }
    c.act = activation_from(cfg.value("hidden_act", std::string("gelu")), file);
    const std::string pos = cfg.value("position_embedding_type", std::string("absolute"));
    if (pos != "absolute") {
      throw Error(ErrorCode::kUnsupported, "position_embedding_type " + pos + " is not supported",
                  {.file = file, .key = "position_embedding_type"});
    }
    if (folder->architecture().ends_with("ForSequenceClassification")) {
      const auto labels = cfg.find("id2label");
      c.num_labels = labels != cfg.end() && labels->is_object()
                         ? static_cast<i64>(labels->size())
                         : json_int(cfg, "num_labels", 2, file);
      if (c.num_labels <= 0 || c.num_labels > 65536) {
        throw Error(ErrorCode::kFormat, "label count out of range", {.file = file});
      }
    }
    if (folder->pooling()) m->pooling_ = folder->pooling()->mode;
    m->normalize_ = folder->normalize();
    if (m->pooling_ != PoolingMode::kMean && m->pooling_ != PoolingMode::kCls &&
        m->pooling_ != PoolingMode::kMax) {
      throw Error(ErrorCode::kUnsupported,
                  std::string("pooling mode ") + formats::to_string(m->pooling_) +
                      " is not supported (mean, cls, max are)",
                  {.file = (path / "1_Pooling" / "config.json").string()});
    }
    m->max_length_ = c.max_positions;
    const fs::path st_config = path / "sentence_bert_config.json";
    if (fs::exists(st_config)) {
      const nlohmann::json st = formats::read_json_file(st_config);
      const auto it = st.is_object() ? st.find("max_seq_length") : st.end();
      if (it != st.end() && it->is_number_integer() && it->get<i64>() > 0) {
        m->max_length_ = std::min(c.max_positions, it->get<i64>());
      }
    }
    BertLoader loader(path.string(), [folder](const std::string& name) {
      if (name.starts_with("classifier.")) {
        const auto ref = folder->find_tensor(name);
        return ref ? std::optional<TensorView>(formats::ModelFolder::view(*ref)) : std::nullopt;
      }
      return find_hf(*folder, name);
    });
    loader.build(*m, options);
    return m;
  }
  const auto gguf = std::make_shared<formats::GGUFFile>(formats::GGUFFile::open(path));
  const std::string file = path.string();
  const formats::GGUFValue* general_name = gguf->find("general.name");
  const std::string* text = general_name != nullptr ? general_name->as_string() : nullptr;
  m->name_ = text != nullptr && !text->empty() ? *text : path.stem().string();
  if (gguf->architecture() != "bert") {
    throw Error(ErrorCode::kUnsupported,
                "general.architecture is \"" + gguf->architecture() + "\", not bert",
                {.file = file, .key = "general.architecture"});
  }
  c.hidden = gguf->get_int("bert.embedding_length");
  c.layers = gguf->get_int("bert.block_count");
  c.heads = gguf->get_int("bert.attention.head_count");
  c.ffn = gguf->get_int("bert.feed_forward_length");
  c.max_positions = gguf->get_int("bert.context_length");
  c.eps = static_cast<float>(gguf->get_number("bert.attention.layer_norm_epsilon"));
  const auto* types = gguf->find_tensor("token_types.weight");
  c.type_vocab = types != nullptr && types->shape.size() == 2 ? types->shape[0] : 2;
  const formats::GGUFValue* pooling = gguf->find("bert.pooling_type");
  const i64 pooling_type = pooling != nullptr ? pooling->as_int().value_or(-1) : 1;
  switch (pooling_type) {
    case 1:
      m->pooling_ = PoolingMode::kMean;
      break;
    case 2:
      m->pooling_ = PoolingMode::kCls;
      break;
    case 4: {
      const auto* cls = gguf->find_tensor("cls.output.weight");
      if (cls == nullptr || cls->shape.size() != 2) {
        throw Error(ErrorCode::kNotFound, "rank pooling without a classifier",
                    {.file = file, .key = "cls.output.weight"});
      }
      c.num_labels = cls->shape[0];
      m->pooling_ = PoolingMode::kCls;
      break;
    }
    default:
      throw Error(ErrorCode::kUnsupported,
                  "bert.pooling_type " + std::to_string(pooling_type) + " is not supported",
                  {.file = file, .key = "bert.pooling_type"});
  }
  m->normalize_ = c.num_labels == 0;  // llama.cpp's embedding default: L2-normalised
  m->max_length_ = c.max_positions;
  BertLoader loader(file, [gguf](const std::string& name) {
    const auto* info = gguf->find_tensor(bert_gguf_name(name));
    return info != nullptr ? std::optional<TensorView>(gguf->view(*info)) : std::nullopt;
  });
  loader.build(*m, options);
  return m;
}

std::unique_ptr<BertModel> BertModel::random(const BertConfig& config, unsigned seed,
                                             const BertOptions& options) {
  std::unique_ptr<BertModel> m(new BertModel());
  m->config_ = config;
  m->name_ = "random weights";
  BertLoader::check_config(config, "random weights");
  if (config.vocab <= 0 || config.vocab > (i64{1} << 24)) {
    throw Error(ErrorCode::kInvalidArgument, "random BERT: vocabulary size out of range");
  }
  m->max_length_ = config.max_positions;
  m->normalize_ = config.num_labels == 0;
  const i64 h = config.hidden;
  // Shapes follow from the names; tensors are made on request and kept until the build copies
  // them.
  auto store = std::make_shared<std::vector<std::vector<float>>>();
  auto rng = std::make_shared<std::mt19937>(seed);
  BertLoader loader("random weights", [=](const std::string& name) -> std::optional<TensorView> {
    const auto ends = [&](const char* suffix) { return name.ends_with(suffix); };
    Shape shape;
    float mean = 0.0f, scale = 0.04f;
    if (name == "embeddings.word_embeddings.weight") {
      shape = {config.vocab, h};
    } else if (name == "embeddings.position_embeddings.weight") {
      shape = {config.max_positions, h};
    } else if (name == "embeddings.token_type_embeddings.weight") {
      shape = {config.type_vocab, h};
    } else if (name.find("LayerNorm") != std::string::npos) {
      shape = {h};
      if (ends(".weight")) mean = 1.0f;
    } else if (name.starts_with("classifier.")) {
      shape = ends(".weight") ? Shape{config.num_labels, h} : Shape{config.num_labels};
    } else if (name.find("intermediate.dense") != std::string::npos) {
      shape = ends(".weight") ? Shape{config.ffn, h} : Shape{config.ffn};
    } else if (name.find(".output.dense") != std::string::npos &&
               name.find("attention") == std::string::npos) {
      shape = ends(".weight") ? Shape{h, config.ffn} : Shape{h};
    } else {
      shape = ends(".weight") ? Shape{h, h} : Shape{h};
    }
    std::normal_distribution<float> dist(mean, scale);
    std::vector<float>& v = store->emplace_back(static_cast<std::size_t>(numel(shape)));
    for (float& x : v) x = dist(*rng);
    return TensorView::contiguous(DType::kF32, shape, reinterpret_cast<const std::byte*>(v.data()),
                                  v.size() * sizeof(float));
  });
  loader.build(*m, options);
  return m;
}

std::string BertModel::backend_name() const {
  return backend_->name();
}

void BertModel::validate(std::span<const TokenIds> seqs) const {
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    const TokenIds& t = seqs[s];
    const auto where = " (sequence " + std::to_string(s) + ")";
    if (t.ids.empty()) throw Error(ErrorCode::kInvalidArgument, "empty token sequence" + where);
    if (static_cast<i64>(t.ids.size()) > max_length_) {
      throw Error(ErrorCode::kInvalidArgument, std::to_string(t.ids.size()) +
                                                   " tokens exceed the model's maximum of " +
                                                   std::to_string(max_length_) + where);
    }
    if (!t.type_ids.empty() && t.type_ids.size() != t.ids.size()) {
      throw Error(ErrorCode::kInvalidArgument, "type_ids and ids differ in length" + where);
    }
    for (const std::int32_t id : t.ids) {
      if (id < 0 || id >= config_.vocab) {
        throw Error(ErrorCode::kInvalidArgument,
                    "token id " + std::to_string(id) + " outside the vocabulary" + where);
      }
    }
    for (const std::int32_t id : t.type_ids) {
      if (id < 0 || id >= config_.type_vocab) {
        throw Error(ErrorCode::kInvalidArgument,
                    "token type id " + std::to_string(id) + " out of range" + where);
      }
    }
  }
}

void BertModel::forward(std::span<const TokenIds* const> batch, i64 len, std::vector<float>& x) {
  const BertConfig& c = config_;
  const i64 b = static_cast<i64>(batch.size());
  const i64 h = c.hidden;
  const i64 n = b * len;
  const i64 head_dim = h / c.heads;
  x.assign(static_cast<std::size_t>(n * h), 0.0f);
  std::vector<i64> valid(static_cast<std::size_t>(b));
  std::vector<float> tmp(x.size());
  for (i64 s = 0; s < b; ++s) {
    const TokenIds& t = *batch[static_cast<std::size_t>(s)];
    valid[static_cast<std::size_t>(s)] = static_cast<i64>(t.ids.size());
    for (i64 p = 0; p < len; ++p) {
      const bool real = p < static_cast<i64>(t.ids.size());
      const i64 id = real ? t.ids[static_cast<std::size_t>(p)] : 0;
      const i64 type = real && !t.type_ids.empty() ? t.type_ids[static_cast<std::size_t>(p)] : 0;
      const float* we = word_.data() + id * h;
      const float* pe = position_.data() + p * h;
      const float* te = token_type_.data() + type * h;
      float* row = tmp.data() + (s * len + p) * h;
      for (i64 i = 0; i < h; ++i) row[i] = we[i] + te[i] + pe[i];
    }
  }
  backend_->layer_norm(tmp.data(), nullptr, x.data(), n, h, emb_gamma_.data(), emb_beta_.data(),
                       c.eps);
  std::vector<float> qkv(static_cast<std::size_t>(n * 3 * h));
  std::vector<float> ctx(x.size());
  std::vector<float> up(static_cast<std::size_t>(n * c.ffn));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (const Layer& L : layers_) {
    backend_->linear(*L.qkv, x.data(), n, qkv.data());
    backend_->attention(qkv.data(), qkv.data() + h, qkv.data() + 2 * h, 3 * h, ctx.data(), h, b,
                        len, valid.data(), c.heads, head_dim, scale);
    backend_->linear(*L.attn_out, ctx.data(), n, tmp.data());
    backend_->layer_norm(tmp.data(), x.data(), x.data(), n, h, L.attn_gamma.data(),
                         L.attn_beta.data(), c.eps);
    backend_->linear(*L.ffn_up, x.data(), n, up.data(), c.act);
    backend_->linear(*L.ffn_down, up.data(), n, tmp.data());
    backend_->layer_norm(tmp.data(), x.data(), x.data(), n, h, L.out_gamma.data(),
                         L.out_beta.data(), c.eps);
  }
}

template <class Sink>
void BertModel::run_buckets(std::span<const TokenIds> seqs, Sink&& sink) {
  validate(seqs);
  std::vector<std::size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return seqs[a].ids.size() < seqs[b].ids.size();
  });
  std::lock_guard lock(mutex_);
  std::vector<float> x;
  std::size_t begin = 0;
  while (begin < order.size()) {
    // Sequences are sorted by length, so the last one in a bucket sets its padded length.
    std::size_t end = begin + 1;
    while (end < order.size() && end - begin < max_batch_ &&
           (end - begin + 1) * seqs[order[end]].ids.size() <= max_batch_tokens_) {
      ++end;
    }
    throw_if_cancelled();
    const i64 len = static_cast<i64>(seqs[order[end - 1]].ids.size());
    std::vector<const TokenIds*> batch;
    for (std::size_t i = begin; i < end; ++i) batch.push_back(&seqs[order[i]]);
    forward(batch, len, x);
    for (std::size_t i = begin; i < end; ++i) {
      sink(order[i], x, static_cast<i64>(i - begin), len, std::span(batch));
    }
    begin = end;
  }
}

std::vector<std::vector<float>> BertModel::hidden_states(std::span<const TokenIds> seqs) {
  std::vector<std::vector<float>> out(seqs.size());
  const i64 h = config_.hidden;
  run_buckets(seqs, [&](std::size_t index, const std::vector<float>& x, i64 row, i64 len, auto) {
    const float* base = x.data() + row * len * h;
    out[index].assign(base, base + static_cast<i64>(seqs[index].ids.size()) * h);
  });
  return out;
}

std::vector<std::vector<float>> BertModel::embed(std::span<const TokenIds> seqs) {
  std::vector<std::vector<float>> out(seqs.size());
  const i64 h = config_.hidden;
  run_buckets(seqs, [&](std::size_t index, const std::vector<float>& x, i64 row, i64 len, auto) {
    const float* base = x.data() + row * len * h;
    const i64 valid = static_cast<i64>(seqs[index].ids.size());
    std::vector<float>& e = out[index];
    e.assign(static_cast<std::size_t>(h), 0.0f);
    if (pooling_ == PoolingMode::kCls) {
      std::copy_n(base, h, e.begin());
    } else if (pooling_ == PoolingMode::kMax) {
      std::copy_n(base, h, e.begin());
      for (i64 t = 1; t < valid; ++t) {
        for (i64 i = 0; i < h; ++i) e[i] = std::max(e[i], base[t * h + i]);
      }
    } else {
      std::vector<double> sum(static_cast<std::size_t>(h), 0.0);
      for (i64 t = 0; t < valid; ++t) {
        for (i64 i = 0; i < h; ++i) sum[i] += base[t * h + i];
      }
      for (i64 i = 0; i < h; ++i) e[i] = static_cast<float>(sum[i] / static_cast<double>(valid));
    }
    if (normalize_) {
      double norm = 0.0;
      for (const float v : e) norm += static_cast<double>(v) * v;
      const double inv = 1.0 / std::max(std::sqrt(norm), 1e-12);
      for (float& v : e) v = static_cast<float>(v * inv);
    }
  });
  return out;
}

std::vector<std::vector<float>> BertModel::classify(std::span<const TokenIds> seqs) {
  if (!classifier_) {
    throw Error(ErrorCode::kInvalidArgument, "this BERT model has no classification head");
  }
  std::vector<std::vector<float>> out(seqs.size());
  const i64 h = config_.hidden;
  const i64 labels = config_.num_labels;
  // The head runs per bucket on the [CLS] rows gathered by the sink.
  std::vector<float> cls, pooled, logits;
  std::vector<std::size_t> indices;
  run_buckets(seqs, [&](std::size_t index, const std::vector<float>& x, i64 row, i64 len,
                        std::span<const TokenIds*> batch) {
    cls.insert(cls.end(), x.data() + row * len * h, x.data() + row * len * h + h);
    indices.push_back(index);
    if (row + 1 < static_cast<i64>(batch.size())) return;
    const i64 rows = static_cast<i64>(indices.size());
    pooled.resize(cls.size());
    logits.resize(static_cast<std::size_t>(rows * labels));
    backend_->linear(*pooler_, cls.data(), rows, pooled.data(), kernels::Activation::kTanh);
    backend_->linear(*classifier_, pooled.data(), rows, logits.data());
    for (i64 r = 0; r < rows; ++r) {
      out[indices[r]].assign(logits.begin() + r * labels, logits.begin() + (r + 1) * labels);
    }
    cls.clear();
    indices.clear();
  });
  return out;
}

namespace {

// The model's tokenizer, checked against its embedding table.
tokenize::Tokenizer load_tokenizer(const fs::path& path, const BertModel& model) {
  tokenize::Tokenizer t = tokenize::Tokenizer::load(path);
  if (t.vocab_size() > static_cast<std::size_t>(model.config().vocab)) {
    throw Error(ErrorCode::kFormat,
                "the tokenizer has " + std::to_string(t.vocab_size()) +
                    " tokens but the model's embedding table only " +
                    std::to_string(model.config().vocab),
                {.file = path.string()});
  }
  return t;
}

}  // namespace

std::string BertModel::fingerprint() const {
  const BertConfig& c = config_;
  std::string bytes;
  for (const i64 v :
       {c.vocab, c.hidden, c.layers, c.heads, c.ffn, c.max_positions, c.type_vocab, c.num_labels,
        static_cast<i64>(c.act), static_cast<i64>(pooling_), static_cast<i64>(normalize_)}) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  // Each table is hashed in place (no copy of the 47 MB MiniLM embedding table), then the hashes.
  for (const std::vector<float>* t : {&word_, &position_, &token_type_, &emb_gamma_, &emb_beta_}) {
    bytes += content_hash(
        std::string_view(reinterpret_cast<const char*>(t->data()), t->size() * sizeof(float)));
  }
  return content_hash(bytes);
}

Embedder Embedder::load(const fs::path& path, const BertOptions& options) {
  std::shared_ptr<BertModel> model = BertModel::load(path, options);
  if (model->config().num_labels > 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "this is a sequence-classification model (a cross-encoder), not an embedder",
                {.file = path.string()});
  }
  tokenize::Tokenizer tokenizer = load_tokenizer(path, *model);
  std::string name = model->name();
  Embedder e(std::move(model), std::move(tokenizer), std::move(name));
  e.fingerprint_ = e.model_->fingerprint();
  return e;
}

std::size_t Embedder::count_tokens(std::string_view text) const {
  return tokenizer_.encode(text, false).ids.size();
}

std::vector<TokenIds> Embedder::tokenize(std::span<const std::string> texts) const {
  const tokenize::Truncation truncation{static_cast<std::size_t>(model_->max_length())};
  std::vector<TokenIds> seqs;
  seqs.reserve(texts.size());
  for (const std::string& text : texts) {
    tokenize::Encoding e = tokenizer_.encode(text, true, truncation);
    seqs.push_back({std::move(e.ids), std::move(e.type_ids)});
  }
  return seqs;
}

CrossEncoder CrossEncoder::load(const fs::path& path, const BertOptions& options) {
  std::shared_ptr<BertModel> model = BertModel::load(path, options);
  if (model->config().num_labels != 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "a cross-encoder needs a classification head with one label (found " +
                    std::to_string(model->config().num_labels) + ")",
                {.file = path.string()});
  }
  tokenize::Tokenizer tokenizer = load_tokenizer(path, *model);
  std::string name = model->name();
  return CrossEncoder(std::move(model), std::move(tokenizer), std::move(name));
}

std::vector<float> CrossEncoder::score(std::string_view query,
                                       std::span<const std::string> passages, bool sigmoid) {
  const tokenize::Truncation truncation{static_cast<std::size_t>(model_->max_length()),
                                        tokenize::TruncationStrategy::kLongestFirst};
  std::vector<TokenIds> pairs;
  pairs.reserve(passages.size());
  for (const std::string& passage : passages) {
    tokenize::Encoding e = tokenizer_.encode_pair(query, passage, true, truncation);
    pairs.push_back({std::move(e.ids), std::move(e.type_ids)});
  }
  return score_ids(pairs, sigmoid);
}

std::vector<float> CrossEncoder::score_ids(std::span<const TokenIds> pairs, bool sigmoid) {
  const auto logits = model_->classify(pairs);
  std::vector<float> out;
  out.reserve(logits.size());
  for (const auto& l : logits) {
    out.push_back(sigmoid ? 1.0f / (1.0f + std::exp(-l[0])) : l[0]);
  }
  return out;
}

}  // namespace hearth::models
