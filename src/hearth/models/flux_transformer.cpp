#include "hearth/models/flux_transformer.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/tensor/float8.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using i64 = std::int64_t;
using kernels::Activation;
using Linear = std::unique_ptr<kernels::LinearWeights>;

// The attention of one stream: projections and the per-head RMS-norm gains of q and k.
struct StreamAttention {
  Linear q, k, v;
  std::vector<float> q_norm, k_norm;
};

struct FluxTransformer::Double {
  Linear img_mod, txt_mod;  // AdaLayerNormZero: 6 x inner
  StreamAttention img, txt;
  Linear img_out, txt_out;
  Mlp img_ff, txt_ff;
};

struct FluxTransformer::Single {
  Linear mod;  // AdaLayerNormZeroSingle: 3 x inner
  StreamAttention attn;
  Linear mlp, out;  // proj_mlp (inner -> 4 inner), proj_out (5 inner -> inner)
};

FluxTransformer::~FluxTransformer() = default;

namespace {

constexpr float kEps = 1e-6f;  // every norm of FLUX.1

void check_config(const FluxTransformerConfig& c, const std::string& source) {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kFormat, "FLUX transformer config: " + what, {.file = source});
  };
  constexpr i64 kMax = i64{1} << 20;
  for (const auto& [v, name] :
       {std::pair{c.in_channels, "in_channels"}, std::pair{c.out_channels, "out_channels"},
        std::pair{c.heads, "num_attention_heads"}, std::pair{c.head_dim, "attention_head_dim"},
        std::pair{c.joint_dim, "joint_attention_dim"},
        std::pair{c.pooled_dim, "pooled_projection_dim"}}) {
    if (v <= 0 || v > kMax) bad(std::string(name) + " " + std::to_string(v) + " out of range");
  }
  if (c.layers < 0 || c.layers > 256 || c.single_layers < 0 || c.single_layers > 256) {
    bad("block counts must be 0..256");
  }
  if (c.inner() > kMax) bad("inner width out of range");
  i64 sum = 0;
  for (const i64 a : c.axes_dims) {
    if (a <= 0 || a % 2 != 0) bad("axes_dims_rope entries must be positive and even");
    sum += a;
  }
  if (sum != c.head_dim) bad("axes_dims_rope must sum to attention_head_dim");
  if (!(c.theta > 1.0f)) bad("rope theta out of range");
}

i64 config_i64(const nlohmann::json& cfg, const char* key, i64 fallback, const std::string& file) {
  return detail::config_int(cfg, key, fallback, file);
}

// Where a diffusers weight (a linear layer's base name, or a norm gain's full name) lives in
// Black Forest Labs' single file: the tensor (base) name and, for the fused projections
// (double blocks' qkv; single blocks' linear1 = [q; k; v; mlp]), the first of its rows and the
// fused row count (0: the layer's own).
struct BflRows {
  std::string name;
  i64 first = 0;
  i64 total = 0;
};

BflRows bfl_rows(const std::string& n, i64 d) {
  static const std::vector<std::pair<std::string, std::string>> kTop = {
      {"x_embedder", "img_in"},
      {"context_embedder", "txt_in"},
      {"time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"},
      {"time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"},
      {"time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"},
      {"time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"},
      {"time_text_embed.text_embedder.linear_1", "vector_in.in_layer"},
      {"time_text_embed.text_embedder.linear_2", "vector_in.out_layer"},
      {"norm_out.linear", "final_layer.adaLN_modulation.1"},
      {"proj_out", "final_layer.linear"}};
  for (const auto& [from, to] : kTop) {
    if (n == from) return {to};
  }
  const bool dbl = n.starts_with("transformer_blocks.");
  const std::size_t dot = n.find('.', dbl ? 19 : 26);
  const std::string index = n.substr(dbl ? 19 : 26, dot - (dbl ? 19 : 26));
  const std::string rest = n.substr(dot + 1);
  const std::string p = (dbl ? "double_blocks." : "single_blocks.") + index + ".";
  struct Entry {
    const char* from;
    const char* to;
    i64 first, total;  // in units of d
  };
  static const Entry kDouble[] = {
      {"norm1.linear", "img_mod.lin", 0, 0},
      {"norm1_context.linear", "txt_mod.lin", 0, 0},
      {"attn.to_q", "img_attn.qkv", 0, 3},
      {"attn.to_k", "img_attn.qkv", 1, 3},
      {"attn.to_v", "img_attn.qkv", 2, 3},
      {"attn.add_q_proj", "txt_attn.qkv", 0, 3},
      {"attn.add_k_proj", "txt_attn.qkv", 1, 3},
      {"attn.add_v_proj", "txt_attn.qkv", 2, 3},
      {"attn.norm_q.weight", "img_attn.norm.query_norm.scale", 0, 0},
      {"attn.norm_k.weight", "img_attn.norm.key_norm.scale", 0, 0},
      {"attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale", 0, 0},
      {"attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale", 0, 0},
      {"attn.to_out.0", "img_attn.proj", 0, 0},
      {"attn.to_add_out", "txt_attn.proj", 0, 0},
      {"ff.net.0.proj", "img_mlp.0", 0, 0},
      {"ff.net.2", "img_mlp.2", 0, 0},
      {"ff_context.net.0.proj", "txt_mlp.0", 0, 0},
      {"ff_context.net.2", "txt_mlp.2", 0, 0}};
  static const Entry kSingle[] = {{"norm.linear", "modulation.lin", 0, 0},
                                  {"attn.to_q", "linear1", 0, 7},
                                  {"attn.to_k", "linear1", 1, 7},
                                  {"attn.to_v", "linear1", 2, 7},
                                  {"proj_mlp", "linear1", 3, 7},
                                  {"attn.norm_q.weight", "norm.query_norm.scale", 0, 0},
                                  {"attn.norm_k.weight", "norm.key_norm.scale", 0, 0},
                                  {"proj_out", "linear2", 0, 0}};
  for (const Entry& e : dbl ? std::span<const Entry>(kDouble) : std::span<const Entry>(kSingle)) {
    if (rest == e.from) return {p + e.to, e.first * d, e.total * d};
  }
  throw Error(ErrorCode::kInternal, "no Black Forest Labs name for " + n);
}

// Drops the resident pages wholly inside [p, p + n) of a read-only file mapping (they would be
// read again from the file if touched).
void release_pages(const void* p, std::size_t n) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto first = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) / page * page;
  if (end > first) ::madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
}

// n elements of a plain type (f32, f16, bf16, f8_e4m3, f8_e5m2) at any address as f32.
void to_f32(DType t, const std::byte* src, std::size_t n, float* out) {
  if (t == DType::kF32) {
    std::memcpy(out, src, n * 4);
    return;
  }
  if (t == DType::kF8E4M3 || t == DType::kF8E5M2) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto b = static_cast<std::uint8_t>(src[i]);
      out[i] = t == DType::kF8E4M3 ? f8e4m3_to_f32(b) : f8e5m2_to_f32(b);
    }
    return;
  }
  std::vector<std::uint16_t> half(n);
  std::memcpy(half.data(), src, n * 2);
  if (t == DType::kF16) {
    f16_to_f32(half.data(), out, n);
  } else {
    bf16_to_f32(half.data(), out, n);
  }
}

// v (f32, f16, bf16 or float8 over a file mapping; times scale, one value or one per row, when
// given) quantized row by row to q into a buffer kept in store; v's pages are released.
kernels::WeightView quantize_at_load(const kernels::WeightView& v, std::span<const float> scale,
                                     DType q, ThreadPool& pool,
                                     std::vector<std::unique_ptr<std::byte[]>>& store) {
  const i64 rb = ggml::row_bytes(q, v.cols);
  const std::size_t src_row = *dtype_bytes(v.dtype, static_cast<std::uint64_t>(v.cols));
  std::unique_ptr<std::byte[]> buf(new std::byte[static_cast<std::size_t>(v.rows * rb)]);
  const auto* src = static_cast<const std::byte*>(v.data);
  pool.parallel_for(static_cast<std::size_t>(v.rows), [&](std::size_t b, std::size_t e) {
    const auto cols = static_cast<std::size_t>(v.cols);
    std::vector<float> row(cols);
    for (std::size_t r = b; r < e; ++r) {
      to_f32(v.dtype, src + r * src_row, cols, row.data());
      if (!scale.empty()) {
        const float s = scale[scale.size() == 1 ? 0 : r];
        for (float& x : row) x *= s;
      }
      ggml::quantize_row(q, row.data(), buf.get() + static_cast<i64>(r) * rb, v.cols);
    }
  });
  release_pages(v.data, static_cast<std::size_t>(v.rows) * src_row);
  store.push_back(std::move(buf));
  return {q, store.back().get(), v.rows, v.cols};
}

// The scale of a float8 matrix (base + ".weight") of rows rows in a scaled fp8 file: ComfyUI's
// "scaled_fp8" files store <base>.scale_weight, later converters <base>.weight_scale; one value
// (shape [] or [1]) or one per row ([rows] or [rows, 1]), f32, f16 or bf16. Empty when the
// matrix is not float8 or has none. (Input scales, scale_input / input_scale, matter only to
// float8 arithmetic, which hearth does not do: they are ignored.)
std::vector<float> f8_scale(const detail::EncoderWeights& w, const std::string& base,
                            const TensorView& m, i64 rows) {
  if (m.dtype != DType::kF8E4M3 && m.dtype != DType::kF8E5M2) return {};
  for (const char* suffix : {".scale_weight", ".weight_scale"}) {
    const std::string name = base + suffix;
    const auto t = w.find(name);
    if (!t) continue;
    const i64 n = t->numel();
    const bool per_row = n == rows && (t->shape == Shape{rows} || t->shape == Shape{rows, 1});
    if ((n != 1 && !per_row) ||
        (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16)) {
      throw Error(ErrorCode::kFormat,
                  "a float8 weight scale is one f32/f16/bf16 value or one per row (" +
                      std::to_string(rows) + "), not " + std::string(dtype_name(t->dtype)) + " " +
                      shape_string(t->shape),
                  {.file = w.source(), .key = name});
    }
    std::vector<float> s(static_cast<std::size_t>(n));
    to_f32(t->dtype, static_cast<const std::byte*>(t->data), s.size(), s.data());
    for (const float v : s) {
      if (!std::isfinite(v)) {
        throw Error(ErrorCode::kFormat, "a float8 weight scale is not finite",
                    {.file = w.source(), .key = name});
      }
    }
    return s;
  }
  return {};
}

}  // namespace

std::vector<float> flux_timestep_embedding(double t, i64 dim) {
  // In double: the arguments reach 1000, where float's rounding would be 6e-5.
  const i64 half = dim / 2;
  std::vector<float> out(static_cast<std::size_t>(dim), 0.0f);
  for (i64 i = 0; i < half; ++i) {
    const double a =
        t * std::exp(-std::log(10000.0) * static_cast<double>(i) / static_cast<double>(half));
    out[static_cast<std::size_t>(i)] = static_cast<float>(std::cos(a));
    out[static_cast<std::size_t>(half + i)] = static_cast<float>(std::sin(a));
  }
  return out;
}

std::unique_ptr<FluxTransformer> FluxTransformer::load(const fs::path& path,
                                                       const TextEncoderOptions& options) {
  FluxTransformerOptions o;
  static_cast<TextEncoderOptions&>(o) = options;
  return load(path, o);
}

std::unique_ptr<FluxTransformer> FluxTransformer::load(const fs::path& path,
                                                       const FluxTransformerOptions& options) {
  if (options.quantize_bits != 0 && options.quantize_bits != 4 && options.quantize_bits != 8) {
    throw Error(ErrorCode::kInvalidArgument, "quantize_bits is 4 or 8 (or 0: as stored), not " +
                                                 std::to_string(options.quantize_bits));
  }
  if (fs::exists(path) && !fs::is_directory(path)) return load_single(path, options);
  if (is_mflux_folder(path)) return load_mflux(path, options);
  const auto w = detail::EncoderWeights::open(path, "x_embedder.weight", {""});
  const std::string file = (path / "config.json").string();
  if (!w.config()) {
    throw Error(ErrorCode::kNotFound, "a FLUX transformer folder needs config.json",
                {.file = file});
  }
  const nlohmann::json& cfg = *w.config();
  if (!cfg.is_object()) throw Error(ErrorCode::kFormat, "config is not an object", {.file = file});
  const std::string cls = cfg.value("_class_name", std::string());
  if (cls != "FluxTransformer2DModel") {
    throw Error(ErrorCode::kUnsupported,
                "_class_name is \"" + cls + "\", not FluxTransformer2DModel",
                {.file = file, .key = "_class_name"});
  }
  std::unique_ptr<FluxTransformer> m(new FluxTransformer());
  FluxTransformerConfig& c = m->config_;
  if (config_i64(cfg, "patch_size", 1, file) != 1) {
    throw Error(ErrorCode::kUnsupported, "patch_size must be 1",
                {.file = file, .key = "patch_size"});
  }
  c.in_channels = config_i64(cfg, "in_channels", 64, file);
  c.out_channels = config_i64(cfg, "out_channels", c.in_channels, file);
  c.layers = config_i64(cfg, "num_layers", 19, file);
  c.single_layers = config_i64(cfg, "num_single_layers", 38, file);
  c.heads = config_i64(cfg, "num_attention_heads", 24, file);
  c.head_dim = config_i64(cfg, "attention_head_dim", 128, file);
  c.joint_dim = config_i64(cfg, "joint_attention_dim", 4096, file);
  c.pooled_dim = config_i64(cfg, "pooled_projection_dim", 768, file);
  if (const auto g = cfg.find("guidance_embeds"); g != cfg.end()) {
    if (!g->is_boolean()) {
      throw Error(ErrorCode::kFormat, "guidance_embeds must be true or false",
                  {.file = file, .key = "guidance_embeds"});
    }
    c.guidance_embeds = g->get<bool>();
  }
  if (const auto a = cfg.find("axes_dims_rope"); a != cfg.end()) {
    if (!a->is_array() || a->size() != 3 || !(*a)[0].is_number_integer() ||
        !(*a)[1].is_number_integer() || !(*a)[2].is_number_integer()) {
      throw Error(ErrorCode::kFormat, "axes_dims_rope must be three integers",
                  {.file = file, .key = "axes_dims_rope"});
    }
    for (std::size_t i = 0; i < 3; ++i) c.axes_dims[i] = (*a)[i].get<i64>();
  }
  check_config(c, file);
  m->build(w, options);
  return m;
}

std::unique_ptr<FluxTransformer> FluxTransformer::load_single(
    const fs::path& path, const FluxTransformerOptions& options) {
  constexpr const char* kProbe = "double_blocks.0.img_attn.qkv.weight";
  const std::vector<std::string> prefixes = {"", "model.diffusion_model."};
  const bool gguf = [&] {
    char magic[4] = {};
    std::ifstream in(path, std::ios::binary);
    return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
  }();
  const auto w = [&] {
    try {
      if (!gguf) return detail::EncoderWeights::open(path, kProbe, prefixes);
      auto f = std::make_shared<const formats::GGUFFile>(formats::GGUFFile::open(path));
      if (const std::string arch = f->architecture(); arch != "flux") {
        throw Error(ErrorCode::kUnsupported,
                    "general.architecture is \"" + arch + "\", not a FLUX transformer (flux)",
                    {.file = path.string(), .key = "general.architecture"});
      }
      return detail::EncoderWeights::gguf(std::move(f), kProbe, prefixes);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound || e.where().key != kProbe) throw;
      throw Error(ErrorCode::kNotFound,
                  std::string("not a FLUX transformer in Black Forest Labs' layout: no tensor ") +
                      kProbe + " (a diffusers transformer is a folder)",
                  {.file = path.string(), .key = kProbe});
    }
  }();
  const std::string& file = w.source();
  const auto shape = [&](const std::string& name, std::size_t rank) {
    const auto v = w.find(name);
    if (!v || v->rank() != rank) {
      throw Error(ErrorCode::kFormat, "tensor missing or of the wrong rank",
                  {.file = file, .key = name});
    }
    return v->shape;
  };
  std::unique_ptr<FluxTransformer> m(new FluxTransformer());
  m->bfl_ = true;
  FluxTransformerConfig& c = m->config_;
  const Shape img_in = shape("img_in.weight", 2);
  const i64 d = img_in[0];
  c.in_channels = img_in[1];
  c.out_channels = shape("final_layer.linear.weight", 2)[0];
  c.joint_dim = shape("txt_in.weight", 2)[1];
  c.pooled_dim = shape("vector_in.in_layer.weight", 2)[1];
  c.head_dim = shape("double_blocks.0.img_attn.norm.query_norm.scale", 1)[0];
  if (c.head_dim <= 0 || d % c.head_dim != 0) {
    throw Error(ErrorCode::kFormat, "img_in width is not a multiple of the head width",
                {.file = file, .key = "img_in.weight"});
  }
  c.heads = d / c.head_dim;
  // A single file has no config: FLUX.1's rotary axes (16, 56, 56) need 128-wide heads.
  if (c.head_dim != 128) {
    throw Error(ErrorCode::kUnsupported,
                "heads of " + std::to_string(c.head_dim) +
                    " values: a single file's rotary axes are FLUX.1's (16, 56, 56), for 128",
                {.file = file, .key = "double_blocks.0.img_attn.norm.query_norm.scale"});
  }
  c.axes_dims = {16, 56, 56};
  c.guidance_embeds = w.find("guidance_in.in_layer.weight").has_value();
  c.layers = 0;
  while (c.layers < 256 &&
         w.find("double_blocks." + std::to_string(c.layers) + ".img_mod.lin.weight")) {
    ++c.layers;
  }
  c.single_layers = 0;
  while (c.single_layers < 256 &&
         w.find("single_blocks." + std::to_string(c.single_layers) + ".linear1.weight")) {
    ++c.single_layers;
  }
  check_config(c, file);
  m->build(w, options);
  return m;
}

bool is_mflux_folder(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".safetensors" &&
        !e.path().filename().string().starts_with("._")) {
      shards.push_back(e.path());
    }
  }
  if (shards.empty()) return false;
  const auto f = formats::SafetensorsFile::open(*std::min_element(shards.begin(), shards.end()));
  return f.find_metadata("quantization_level") != nullptr ||
         f.find_metadata("mflux_version") != nullptr;
}

namespace {

// A diffusers name as mflux's transformer names it.
std::string mflux_name(std::string n) {
  for (const auto& [from, to] :
       {std::pair{".ff.net.0.proj", ".ff.linear1"}, std::pair{".ff.net.2", ".ff.linear2"},
        std::pair{".ff_context.net.0.proj", ".ff_context.linear1"},
        std::pair{".ff_context.net.2", ".ff_context.linear2"}}) {
    if (const std::size_t at = n.find(from); at != std::string::npos) {
      n.replace(at, std::strlen(from), to);
    }
  }
  return n;
}

// mflux's transformer shape from the tensors of its folder (headers only): [out, in] of each
// layer, quantized or not.
FluxTransformerConfig mflux_config(const formats::ModelFolder& folder, const std::string& file) {
  const auto find = [&](const std::string& name) -> const formats::SafetensorsTensorInfo* {
    const auto ref = folder.find_tensor(mflux_name(name));
    return ref ? ref->info : nullptr;
  };
  const auto dims = [&](const std::string& base) -> std::pair<i64, i64> {
    if (const auto* q = folder.find_quantized(mflux_name(base))) {
      return {q->out_features, q->in_features};
    }
    const auto* t = find(base + ".weight");
    if (t == nullptr || t->shape.size() != 2) {
      throw Error(ErrorCode::kFormat, "mflux transformer: tensor missing or not a matrix",
                  {.file = file, .key = mflux_name(base) + ".weight"});
    }
    return {t->shape[0], t->shape[1]};
  };
  FluxTransformerConfig c;
  const auto [d, in_ch] = dims("x_embedder");
  c.in_channels = in_ch;
  c.out_channels = dims("proj_out").first;
  c.joint_dim = dims("context_embedder").second;
  c.pooled_dim = dims("time_text_embed.text_embedder.linear_1").second;
  const char* norm = "transformer_blocks.0.attn.norm_q.weight";
  const auto* q_norm = find(norm);
  if (q_norm == nullptr || q_norm->shape.size() != 1 || q_norm->shape[0] <= 0 ||
      d % q_norm->shape[0] != 0) {
    throw Error(ErrorCode::kFormat,
                "mflux transformer: the first block's q norm is missing or does not divide the "
                "width",
                {.file = file, .key = norm});
  }
  c.head_dim = q_norm->shape[0];
  c.heads = d / c.head_dim;
  // mflux implements FLUX.1, whose rotary axes (16, 56, 56) need 128-wide heads.
  if (c.head_dim != 128) {
    throw Error(ErrorCode::kUnsupported,
                "heads of " + std::to_string(c.head_dim) +
                    " values: mflux's FLUX.1 has rotary axes (16, 56, 56), for 128",
                {.file = file, .key = norm});
  }
  c.axes_dims = {16, 56, 56};
  const auto has = [&](const std::string& base) {
    return folder.find_quantized(mflux_name(base)) != nullptr || find(base + ".weight") != nullptr;
  };
  c.guidance_embeds = has("time_text_embed.guidance_embedder.linear_1");
  c.layers = 0;
  while (c.layers < 256 &&
         has("transformer_blocks." + std::to_string(c.layers) + ".norm1.linear")) {
    ++c.layers;
  }
  c.single_layers = 0;
  while (c.single_layers < 256 &&
         has("single_transformer_blocks." + std::to_string(c.single_layers) + ".norm.linear")) {
    ++c.single_layers;
  }
  check_config(c, file);
  return c;
}

}  // namespace

FluxTransformerConfig mflux_transformer_config(const fs::path& dir) {
  return mflux_config(formats::ModelFolder::open(dir), dir.string());
}

std::unique_ptr<FluxTransformer> FluxTransformer::load_mflux(
    const fs::path& path, const FluxTransformerOptions& options) {
  auto folder = std::make_shared<formats::ModelFolder>(formats::ModelFolder::open(path));
  const auto w = detail::EncoderWeights::mflux(folder, mflux_name);
  std::unique_ptr<FluxTransformer> m(new FluxTransformer());
  m->config_ = mflux_config(*folder, w.source());
  m->build(w, options, w.affine);
  return m;
}

std::unique_ptr<FluxTransformer> FluxTransformer::random(const FluxTransformerConfig& config,
                                                         DType dtype, unsigned seed,
                                                         const TextEncoderOptions& options) {
  check_config(config, "random weights");
  std::unique_ptr<FluxTransformer> m(new FluxTransformer());
  m->config_ = config;
  FluxTransformerOptions o;
  static_cast<TextEncoderOptions&>(o) = options;
  if (!o.pool) o.pool = std::make_shared<ThreadPool>(o.threads);
  m->build(detail::EncoderWeights::random(dtype, seed, *o.pool), o);
  return m;
}

void FluxTransformer::build(const detail::EncoderWeights& w, const FluxTransformerOptions& options,
                            const FindAffine& affine) {
  const FluxTransformerConfig& c = config_;
  const i64 d = c.inner(), hd = c.head_dim;
  source_ = w.source();
  keep_alive_ = w.keep_alive;
  pool_ = options.pool ? options.pool : std::make_shared<ThreadPool>(options.threads);
  backend_ = kernels::make_cpu_backend(*pool_, options.level);
  kernels::Backend& be = *backend_;
  // quantize_bits: f32/f16/bf16 matrices of whole 32-blocks become q4_0 / q8_0 copies.
  const DType qtype = options.quantize_bits == 4 ? DType::kQ4_0 : DType::kQ8_0;
  // A float8 matrix's scale (one value, or one per row of v) is applied by run() to the outputs,
  // or folded into the quantized copy.
  const auto make = [&](kernels::WeightView v, const float* bias,
                        std::span<const float> scale) -> Linear {
    if (options.quantize_bits != 0 && !v.is_affine() && !ggml::supported(v.dtype) &&
        v.cols % ggml::kQK == 0) {
      v = quantize_at_load(v, scale, qtype, *pool_, quantized_);
      scale = {};
    }
    if (scale.empty()) return be.make_linear_view(v, bias);
    Linear l = be.make_linear_view(v, nullptr);
    scaled_[l.get()] = {std::vector<float>(scale.begin(), scale.end()),
                        std::vector<float>(bias, bias + v.rows)};
    return l;
  };
  // Fused BFL tensors are checked once and sliced by rows.
  struct Fused {
    TensorView t;
    std::vector<float> bias, scale;
  };
  std::map<std::string, Fused> fused;
  i64 affine_parameters = 0;
  const auto lin_base = [&](const std::string& name, i64 out, i64 in) -> Linear {
    if (affine) {
      if (const auto a = affine(name, out, in)) {
        affine_parameters += out * in;
        return make(*a, w.vec(name + ".bias", out).data(), {});
      }
    }
    if (!bfl_) {
      const TensorView t = w.matrix(name + ".weight", out, in, true);
      const std::vector<float> bias = w.vec(name + ".bias", out);
      const std::vector<float> scale = f8_scale(w, name, t, out);
      return make({t.dtype, t.data, out, in}, bias.data(), scale);
    }
    const BflRows r = bfl_rows(name, d);
    const i64 total = r.total != 0 ? r.total : out;
    auto it = fused.find(r.name);
    if (it == fused.end()) {
      const TensorView t = w.matrix(r.name + ".weight", total, in, true);
      it = fused
               .emplace(r.name,
                        Fused{t, w.vec(r.name + ".bias", total), f8_scale(w, r.name, t, total)})
               .first;
    }
    const Fused& f = it->second;
    const std::size_t row_bytes = *dtype_bytes(f.t.dtype, static_cast<std::uint64_t>(in));
    std::span<const float> scale = f.scale;
    if (scale.size() > 1)
      scale = scale.subspan(static_cast<std::size_t>(r.first), static_cast<std::size_t>(out));
    return make(
        {f.t.dtype,
         static_cast<const std::byte*>(f.t.data) + static_cast<std::size_t>(r.first) * row_bytes,
         out, in},
        f.bias.data() + r.first, scale);
  };
  // LoRA module names (diffusers' and BFL's) -> the layers they reach.
  std::map<std::string, std::vector<LoraTarget>> targets;
  const auto lin = [&](const std::string& name, i64 out, i64 in) -> Linear {
    Linear l = lin_base(name, out, in);
    const BflRows r = bfl_rows(name, d);
    const bool final_mod = name == "norm_out.linear";
    targets[name].push_back({l.get(), 0, final_mod && bfl_});
    targets[r.name].push_back({l.get(), r.first, final_mod && !bfl_});
    return l;
  };
  const auto gain = [&](const std::string& name) {
    return w.vec(bfl_ ? bfl_rows(name, d).name : name, hd);
  };
  const auto mlp = [&](const std::string& base, const char* a, const char* b, i64 in, i64 hidden,
                       i64 out) {
    return Mlp{lin(base + a, hidden, in), lin(base + b, out, hidden)};
  };
  const auto attention = [&](const std::string& p, const char* q, const char* k, const char* v,
                             const char* qn, const char* kn) {
    return StreamAttention{lin(p + q, d, d), lin(p + k, d, d), lin(p + v, d, d),
                           gain(p + qn + ".weight"), gain(p + kn + ".weight")};
  };
  x_embedder_ = lin("x_embedder", d, c.in_channels);
  context_embedder_ = lin("context_embedder", d, c.joint_dim);
  time_ = mlp("time_text_embed.timestep_embedder.", "linear_1", "linear_2", 256, d, d);
  text_ = mlp("time_text_embed.text_embedder.", "linear_1", "linear_2", c.pooled_dim, d, d);
  if (c.guidance_embeds) {
    guidance_ = mlp("time_text_embed.guidance_embedder.", "linear_1", "linear_2", 256, d, d);
  }
  doubles_.resize(static_cast<std::size_t>(c.layers));
  for (i64 l = 0; l < c.layers; ++l) {
    const std::string p = "transformer_blocks." + std::to_string(l) + ".";
    Double& B = doubles_[static_cast<std::size_t>(l)];
    B.img_mod = lin(p + "norm1.linear", 6 * d, d);
    B.txt_mod = lin(p + "norm1_context.linear", 6 * d, d);
    B.img = attention(p + "attn.", "to_q", "to_k", "to_v", "norm_q", "norm_k");
    B.txt = attention(p + "attn.", "add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q",
                      "norm_added_k");
    B.img_out = lin(p + "attn.to_out.0", d, d);
    B.txt_out = lin(p + "attn.to_add_out", d, d);
    B.img_ff = mlp(p + "ff.", "net.0.proj", "net.2", d, 4 * d, d);
    B.txt_ff = mlp(p + "ff_context.", "net.0.proj", "net.2", d, 4 * d, d);
  }
  singles_.resize(static_cast<std::size_t>(c.single_layers));
  for (i64 l = 0; l < c.single_layers; ++l) {
    const std::string p = "single_transformer_blocks." + std::to_string(l) + ".";
    Single& S = singles_[static_cast<std::size_t>(l)];
    S.mod = lin(p + "norm.linear", 3 * d, d);
    S.attn = attention(p + "attn.", "to_q", "to_k", "to_v", "norm_q", "norm_k");
    S.mlp = lin(p + "proj_mlp", 4 * d, d);
    S.out = lin(p + "proj_out", d, 5 * d);
  }
  norm_out_ = lin("norm_out.linear", 2 * d, d);
  proj_out_ = lin("proj_out", c.out_channels, d);
  for (std::size_t a = 0; a < 3; ++a) {
    const i64 n = c.axes_dims[a];
    inv_freq_[a].resize(static_cast<std::size_t>(n / 2));
    for (i64 i = 0; i < n / 2; ++i) {
      inv_freq_[a][static_cast<std::size_t>(i)] = static_cast<float>(
          1.0 / std::pow(static_cast<double>(c.theta), static_cast<double>(2 * i) / n));
    }
  }
  parameters_ = w.parameters() + affine_parameters;
  for (const FluxLora& l : options.loras) add_lora(l, targets);
}

FluxLora parse_flux_lora(const std::string& arg) {
  FluxLora l{arg, 1.0f};
  const std::size_t colon = arg.rfind(':');
  if (colon != std::string::npos && colon > 0 && colon + 1 < arg.size()) {
    const std::string tail = arg.substr(colon + 1);
    char* end = nullptr;
    const float v = std::strtof(tail.c_str(), &end);
    if (end == tail.c_str() + tail.size() && std::isfinite(v)) l = {arg.substr(0, colon), v};
  }
  if (l.path.empty()) throw Error(ErrorCode::kInvalidArgument, "--lora needs PATH[:SCALE]");
  return l;
}

namespace {

// A LoRA tensor (f32, f16 or bf16, any alignment) as f32 rows [first, first + rows) of cols.
std::vector<float> lora_rows(const TensorView& t, i64 first, i64 rows, i64 cols) {
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  const std::size_t es = t.dtype == DType::kF32 ? 4 : 2;
  const auto* src =
      static_cast<const std::byte*>(t.data) + static_cast<std::size_t>(first * cols) * es;
  if (t.dtype == DType::kF32) {
    std::memcpy(out.data(), src, out.size() * 4);
    return out;
  }
  std::vector<std::uint16_t> h(out.size());
  std::memcpy(h.data(), src, h.size() * 2);
  if (t.dtype == DType::kF16) {
    f16_to_f32(h.data(), out.data(), h.size());
  } else {
    bf16_to_f32(h.data(), out.data(), h.size());
  }
  return out;
}

}  // namespace

void FluxTransformer::add_lora(const FluxLora& lora,
                               const std::map<std::string, std::vector<LoraTarget>>& targets) {
  const auto file = formats::SafetensorsFile::open(lora.path);
  const std::string& src = file.source();
  // kohya's names are the module paths with '_' for '.': look those up too.
  std::map<std::string, const std::vector<LoraTarget>*> underscored;
  for (const auto& [name, t] : targets) {
    std::string u = name;
    std::replace(u.begin(), u.end(), '.', '_');
    underscored.emplace(u, &t);
  }
  struct Parts {
    const formats::SafetensorsTensorInfo *down = nullptr, *up = nullptr, *alpha = nullptr;
  };
  std::map<std::string, Parts> modules;
  for (const auto& info : file.tensors()) {
    const std::string& n = info.name;
    static const std::pair<const char*, int> kSuffixes[] = {{".lora_A.weight", 0},
                                                            {".lora_B.weight", 1},
                                                            {".lora_down.weight", 0},
                                                            {".lora_up.weight", 1},
                                                            {".alpha", 2}};
    const auto* hit = std::find_if(std::begin(kSuffixes), std::end(kSuffixes),
                                   [&](const auto& sfx) { return n.ends_with(sfx.first); });
    if (hit == std::end(kSuffixes)) {
      throw Error(ErrorCode::kFormat,
                  "not a LoRA tensor (.lora_A/.lora_B, .lora_down/.lora_up .weight or .alpha)",
                  {.file = src, .key = n});
    }
    Parts& p = modules[n.substr(0, n.size() - std::strlen(hit->first))];
    (hit->second == 0 ? p.down : hit->second == 1 ? p.up : p.alpha) = &info;
  }
  std::size_t applied = 0;
  for (const auto& [module, parts] : modules) {
    if (module.starts_with("lora_te") || module.starts_with("text_encoder")) continue;
    const std::string key = (parts.down ? parts.down : parts.up ? parts.up : parts.alpha)->name;
    if (parts.down == nullptr || parts.up == nullptr) {
      throw Error(ErrorCode::kFormat, "a LoRA module needs both its down (A) and up (B) matrices",
                  {.file = src, .key = key});
    }
    const std::vector<LoraTarget>* found = nullptr;
    std::string m = module;
    for (const char* p :
         {"base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer."}) {
      if (m.starts_with(p)) m = m.substr(std::strlen(p));
    }
    if (const auto it = targets.find(m); it != targets.end()) found = &it->second;
    for (const char* p : {"lora_unet_", "lora_transformer_"}) {
      if (found == nullptr && module.starts_with(p)) {
        if (const auto it = underscored.find(module.substr(std::strlen(p)));
            it != underscored.end()) {
          found = it->second;
        }
      }
    }
    if (found == nullptr) {
      throw Error(ErrorCode::kNotFound, "the LoRA names a layer this FLUX transformer lacks",
                  {.file = src, .key = key});
    }
    const TensorView down = file.view(*parts.down), up = file.view(*parts.up);
    const i64 in = found->front().layer->in_features();
    i64 rows = 0;
    for (const LoraTarget& t : *found) rows = std::max(rows, t.first + t.layer->out_features());
    const auto plain = [](DType t) {
      return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
    };
    if (down.rank() != 2 || up.rank() != 2 || down.shape[1] != in || up.shape[0] != rows ||
        up.shape[1] != down.shape[0] || down.shape[0] < 1 || !plain(down.dtype) ||
        !plain(up.dtype)) {
      throw Error(ErrorCode::kFormat,
                  "LoRA matrices " + shape_string(down.shape) + " / " + shape_string(up.shape) +
                      " do not fit the layer [" + std::to_string(rows) + ", " + std::to_string(in) +
                      "] (f32, f16 or bf16, [rank, in] and [out, rank])",
                  {.file = src, .key = key});
    }
    const i64 rank = down.shape[0];
    float scale = lora.scale;
    if (parts.alpha != nullptr) {
      const TensorView a = file.view(*parts.alpha);
      if (a.numel() != 1 || !plain(a.dtype)) {
        throw Error(ErrorCode::kFormat, "alpha must be one number",
                    {.file = src, .key = parts.alpha->name});
      }
      scale *= lora_rows(a, 0, 1, 1)[0] / static_cast<float>(rank);
    }
    const std::vector<float> a = lora_rows(down, 0, rank, in);
    for (const LoraTarget& t : *found) {
      const i64 out = t.layer->out_features();
      std::vector<float> b = lora_rows(up, t.first, out, rank);
      if (t.swap_halves) {
        std::rotate(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(b.size() / 2), b.end());
      }
      lora_[t.layer].push_back({backend_->make_linear(a.data(), nullptr, rank, in),
                                backend_->make_linear(b.data(), nullptr, out, rank), scale});
    }
    ++applied;
  }
  if (applied == 0) {
    throw Error(ErrorCode::kNotFound, "the LoRA file has no tensors for the FLUX transformer",
                {.file = src});
  }
}

void FluxTransformer::run(const kernels::LinearWeights& w, const float* x, i64 rows, float* y,
                          Activation act) {
  const auto it = lora_.find(&w);
  const auto sc = scaled_.find(&w);
  if (it == lora_.end() && sc == scaled_.end()) {
    backend_->linear(w, x, rows, y, act);
    return;
  }
  backend_->linear(w, x, rows, y);
  const i64 out = w.out_features();
  if (sc != scaled_.end()) {  // y = scale * (W x) + bias
    const std::vector<float>& s = sc->second.scale;
    const std::vector<float>& b = sc->second.bias;
    pool_->parallel_for(
        static_cast<std::size_t>(rows),
        [&](std::size_t r0, std::size_t r1) {
          for (std::size_t r = r0; r < r1; ++r) {
            float* yr = y + r * static_cast<std::size_t>(out);
            for (std::size_t j = 0; j < static_cast<std::size_t>(out); ++j) {
              yr[j] = yr[j] * s[s.size() == 1 ? 0 : j] + b[j];
            }
          }
        },
        16);
  }
  static const std::vector<LoraPath> kNone;
  const std::vector<LoraPath>& paths = it == lora_.end() ? kNone : it->second;
  std::vector<float> h, z(paths.empty() ? 0 : static_cast<std::size_t>(rows * out));
  for (const LoraPath& l : paths) {
    h.resize(static_cast<std::size_t>(rows * l.down->out_features()));
    backend_->linear(*l.down, x, rows, h.data());
    backend_->linear(*l.up, h.data(), rows, z.data());
    const float s = l.scale;
    pool_->parallel_for(
        static_cast<std::size_t>(rows),
        [&](std::size_t b, std::size_t e) {
          for (std::size_t i = b * static_cast<std::size_t>(out);
               i < e * static_cast<std::size_t>(out); ++i) {
            y[i] += s * z[i];
          }
        },
        16);
  }
  if (act != Activation::kNone) backend_->activation(act, y, y, rows * out);
}

void FluxTransformer::embed_mlp(const Mlp& m, const float* x, float* out, Activation act) {
  std::vector<float> h(static_cast<std::size_t>(m.fc1->out_features()));
  run(*m.fc1, x, 1, h.data(), act);
  run(*m.fc2, h.data(), 1, out);
}

namespace {

// Everything one call needs besides the weights: the joint sequence x = [text; image] and the
// scratch of the blocks.
struct Work {
  i64 txt, img, n, d;
  std::vector<float> x, y, q, k, v, a, f, cat;
};

// out = LN(x) * (1 + scale) + shift per row (LayerNorm without affine, eps 1e-6).
void modulated_norm(kernels::Backend& be, const float* x, float* out, i64 rows, i64 d,
                    const float* shift, const float* scale, std::vector<float>& gain) {
  gain.resize(static_cast<std::size_t>(d));
  for (i64 i = 0; i < d; ++i) gain[static_cast<std::size_t>(i)] = 1.0f + scale[i];
  be.layer_norm(x, nullptr, out, rows, d, gain.data(), shift, kEps);
}

// x[r] += gate * y[r] per row of d.
void gated_add(ThreadPool& pool, float* x, const float* y, const float* gate, i64 rows, i64 d) {
  pool.parallel_for(
      static_cast<std::size_t>(rows),
      [&](std::size_t b, std::size_t e) {
        for (std::size_t r = b; r < e; ++r) {
          float* xr = x + static_cast<i64>(r) * d;
          const float* yr = y + static_cast<i64>(r) * d;
          for (i64 i = 0; i < d; ++i) xr[i] += gate[i] * yr[i];
        }
      },
      16);
}

}  // namespace

std::vector<float> FluxTransformer::forward(const FluxTransformerInput& in) {
  const FluxTransformerConfig& c = config_;
  const i64 d = c.inner(), hd = c.head_dim;
  const i64 img = static_cast<i64>(in.image.size()) / c.in_channels;
  const i64 txt = static_cast<i64>(in.context.size()) / c.joint_dim;
  const auto bad = [](const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, "FLUX transformer input: " + what);
  };
  if (img < 1 || img * c.in_channels != static_cast<i64>(in.image.size())) {
    bad("image is not a positive number of " + std::to_string(c.in_channels) + "-wide tokens");
  }
  if (txt < 1 || txt * c.joint_dim != static_cast<i64>(in.context.size())) {
    bad("context is not a positive number of " + std::to_string(c.joint_dim) + "-wide tokens");
  }
  if (static_cast<i64>(in.img_ids.size()) != 3 * img) bad("img_ids must be [image_tokens, 3]");
  if (static_cast<i64>(in.txt_ids.size()) != 3 * txt) bad("txt_ids must be [text_tokens, 3]");
  if (static_cast<i64>(in.pooled.size()) != c.pooled_dim) {
    bad("pooled must have " + std::to_string(c.pooled_dim) + " values");
  }
  if (c.guidance_embeds != in.guidance.has_value()) {
    bad(c.guidance_embeds ? "this model (guidance_embeds) needs a guidance value"
                          : "this model has no guidance embedding");
  }
  std::lock_guard lock(mutex_);
  kernels::Backend& be = *backend_;
  const i64 n = txt + img;
  const auto sz = [](i64 v) { return static_cast<std::size_t>(v); };
  Work w{txt, img, n, d};
  w.x.resize(sz(n * d));
  w.y.resize(sz(n * d));
  w.q.resize(sz(n * d));
  w.k.resize(sz(n * d));
  w.v.resize(sz(n * d));
  w.a.resize(sz(n * d));
  std::vector<float> gain;

  // Conditioning: temb = time(sin(1000 t)) [+ guidance(sin(1000 g))] + text(pooled); blocks read
  // silu(temb).
  std::vector<float> temb(sz(d)), e(sz(d));
  {
    const auto ts = flux_timestep_embedding(1000.0 * in.timestep, 256);
    embed_mlp(time_, ts.data(), temb.data(), Activation::kSilu);
    if (c.guidance_embeds) {
      const auto gs = flux_timestep_embedding(1000.0 * *in.guidance, 256);
      embed_mlp(guidance_, gs.data(), e.data(), Activation::kSilu);
      be.add(temb.data(), e.data(), temb.data(), d);
    }
    embed_mlp(text_, in.pooled.data(), e.data(), Activation::kSilu);
    be.add(temb.data(), e.data(), temb.data(), d);
    be.activation(Activation::kSilu, temb.data(), temb.data(), d);
  }
  run(*context_embedder_, in.context.data(), txt, w.x.data());
  run(*x_embedder_, in.image.data(), img, w.x.data() + txt * d);

  // Per-axis positions of the joint sequence, text first.
  std::array<std::vector<i64>, 3> pos;
  for (std::size_t a = 0; a < 3; ++a) {
    pos[a].resize(sz(n));
    for (i64 r = 0; r < txt; ++r) pos[a][sz(r)] = in.txt_ids[sz(r * 3) + a];
    for (i64 r = 0; r < img; ++r) pos[a][sz(txt + r)] = in.img_ids[sz(r * 3) + a];
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // q/k RMS norms per head, the rotary embedding on each axis's slice of every head, attention
  // over the whole joint sequence into w.a (rows ld_out apart).
  const auto attend = [&](float* out, i64 ld_out) {
    i64 off = 0;
    for (std::size_t a = 0; a < 3; ++a) {
      for (float* t : {w.q.data(), w.k.data()}) {
        be.rope(t + off, n, d, c.heads, hd, c.axes_dims[a], pos[a].data(), inv_freq_[a].data(),
                1.0f, false);
      }
      off += c.axes_dims[a];
    }
    be.attention_biased(w.q.data(), w.k.data(), w.v.data(), d, out, ld_out, 1, n, c.heads, hd,
                        scale, nullptr, false);
  };
  const auto project = [&](const StreamAttention& s, const float* src, i64 first, i64 rows) {
    const i64 o = first * d;
    run(*s.q, src, rows, w.q.data() + o);
    run(*s.k, src, rows, w.k.data() + o);
    run(*s.v, src, rows, w.v.data() + o);
    be.rms_norm(w.q.data() + o, w.q.data() + o, rows * c.heads, hd, s.q_norm.data(), kEps);
    be.rms_norm(w.k.data() + o, w.k.data() + o, rows * c.heads, hd, s.k_norm.data(), kEps);
  };

  std::vector<float> mod_img(sz(6 * d)), mod_txt(sz(6 * d));
  w.f.resize(sz(std::max(txt, img) * 4 * d));
  for (const Double& B : doubles_) {
    throw_if_cancelled();
    // AdaLayerNormZero chunks: shift, scale, gate (attention); shift, scale, gate (MLP).
    run(*B.img_mod, temb.data(), 1, mod_img.data());
    run(*B.txt_mod, temb.data(), 1, mod_txt.data());
    struct Stream {
      i64 first, rows;
      const float* mod;
      const StreamAttention* attn;
      const kernels::LinearWeights* out;
      const Mlp* ff;
    };
    const Stream streams[2] = {{0, txt, mod_txt.data(), &B.txt, B.txt_out.get(), &B.txt_ff},
                               {txt, img, mod_img.data(), &B.img, B.img_out.get(), &B.img_ff}};
    for (const Stream& s : streams) {
      float* ys = w.y.data() + s.first * d;
      modulated_norm(be, w.x.data() + s.first * d, ys, s.rows, d, s.mod, s.mod + d, gain);
      project(*s.attn, ys, s.first, s.rows);
    }
    attend(w.a.data(), d);
    for (const Stream& s : streams) {
      float* xs = w.x.data() + s.first * d;
      float* ys = w.y.data() + s.first * d;
      run(*s.out, w.a.data() + s.first * d, s.rows, ys);
      gated_add(*pool_, xs, ys, s.mod + 2 * d, s.rows, d);
      modulated_norm(be, xs, ys, s.rows, d, s.mod + 3 * d, s.mod + 4 * d, gain);
      run(*s.ff->fc1, ys, s.rows, w.f.data(), Activation::kGeluTanh);
      run(*s.ff->fc2, w.f.data(), s.rows, ys);
      gated_add(*pool_, xs, ys, s.mod + 5 * d, s.rows, d);
    }
  }

  if (!singles_.empty()) {
    w.f.resize(sz(n * 4 * d));
    w.cat.resize(sz(n * 5 * d));
  }
  std::vector<float> mod(sz(3 * d));
  for (const Single& S : singles_) {
    throw_if_cancelled();
    // AdaLayerNormZeroSingle chunks: shift, scale, gate.
    run(*S.mod, temb.data(), 1, mod.data());
    modulated_norm(be, w.x.data(), w.y.data(), n, d, mod.data(), mod.data() + d, gain);
    run(*S.mlp, w.y.data(), n, w.f.data(), Activation::kGeluTanh);
    project(S.attn, w.y.data(), 0, n);
    // proj_out reads [attention (d) | MLP (4 d)] per row.
    attend(w.cat.data(), 5 * d);
    pool_->parallel_for(
        sz(n),
        [&](std::size_t b, std::size_t e2) {
          for (std::size_t r = b; r < e2; ++r) {
            std::memcpy(w.cat.data() + r * sz(5 * d) + sz(d), w.f.data() + r * sz(4 * d),
                        sz(4 * d) * sizeof(float));
          }
        },
        16);
    run(*S.out, w.cat.data(), n, w.y.data());
    gated_add(*pool_, w.x.data(), w.y.data(), mod.data() + 2 * d, n, d);
  }

  // AdaLayerNormContinuous: scale first, then shift (BFL's final layer: shift, then scale).
  std::vector<float> fin(sz(2 * d));
  run(*norm_out_, temb.data(), 1, fin.data());
  const float* shift = bfl_ ? fin.data() : fin.data() + d;
  const float* scale_out = bfl_ ? fin.data() + d : fin.data();
  modulated_norm(be, w.x.data() + txt * d, w.y.data(), img, d, shift, scale_out, gain);
  std::vector<float> out(sz(img * c.out_channels));
  run(*proj_out_, w.y.data(), img, out.data());
  return out;
}

}  // namespace hearth::models
