#include "hearth/models/vae.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using kernels::Activation;
using kernels::ConvShape;
using i64 = std::int64_t;

const char* to_string(VaeLayout layout) {
  switch (layout) {
    case VaeLayout::kDiffusers:
      return "diffusers";
    case VaeLayout::kBfl:
      return "bfl";
    case VaeLayout::kMflux:
      return "mflux";
  }
  return "?";
}

namespace {

constexpr ConvShape k3x3{3, 1, 1, 1};
constexpr ConvShape k1x1{1, 1, 0, 0};
constexpr ConvShape kDown{3, 2, 0, 1};  // both layouts pad (0, 1, 0, 1), then convolve

// The tensor names of one layout for the parts of the graph.
struct Names {
  VaeLayout layout;
  i64 blocks;
  std::string down_resnet(i64 i, i64 j) const {
    return layout != VaeLayout::kBfl
               ? "encoder.down_blocks." + std::to_string(i) + ".resnets." + std::to_string(j)
               : "encoder.down." + std::to_string(i) + ".block." + std::to_string(j);
  }
  std::string downsample(i64 i) const {
    return layout != VaeLayout::kBfl
               ? "encoder.down_blocks." + std::to_string(i) + ".downsamplers.0.conv"
               : "encoder.down." + std::to_string(i) + ".downsample.conv";
  }
  // Up block i in the order the decoder runs them (BFL numbers them from the output end).
  std::string up_resnet(i64 i, i64 j) const {
    return layout != VaeLayout::kBfl
               ? "decoder.up_blocks." + std::to_string(i) + ".resnets." + std::to_string(j)
               : "decoder.up." + std::to_string(blocks - 1 - i) + ".block." + std::to_string(j);
  }
  std::string upsample(i64 i) const {
    return layout != VaeLayout::kBfl
               ? "decoder.up_blocks." + std::to_string(i) + ".upsamplers.0.conv"
               : "decoder.up." + std::to_string(blocks - 1 - i) + ".upsample.conv";
  }
  std::string mid_resnet(const std::string& part, int j) const {
    return layout != VaeLayout::kBfl ? part + ".mid_block.resnets." + std::to_string(j)
                                     : part + ".mid.block_" + std::to_string(j + 1);
  }
  std::string mid_attention(const std::string& part) const {
    return part + (layout != VaeLayout::kBfl ? ".mid_block.attentions.0" : ".mid.attn_1");
  }
  std::string norm_out(const std::string& part) const {
    if (layout == VaeLayout::kMflux) return part + ".conv_norm_out.norm";
    return part + (layout != VaeLayout::kBfl ? ".conv_norm_out" : ".norm_out");
  }
  // conv_in / conv_out of part (mflux wraps them: conv_in.conv2d).
  std::string conv_io(const std::string& part, const char* which) const {
    return part + "." + which + (layout == VaeLayout::kMflux ? ".conv2d" : "");
  }
  const char* shortcut() const {
    return layout != VaeLayout::kBfl ? ".conv_shortcut" : ".nin_shortcut";
  }
  // Attention: norm, q, k, v, out.
  std::string attn(const std::string& base, int which) const {
    static const char* diffusers[] = {".group_norm", ".to_q", ".to_k", ".to_v", ".to_out.0"};
    static const char* bfl[] = {".norm", ".q", ".k", ".v", ".proj_out"};
    return base + (layout != VaeLayout::kBfl ? diffusers[which] : bfl[which]);
  }
};

struct ResnetBlock {
  ImageNet::Norm norm1, norm2;
  ImageNet::Conv conv1, conv2, shortcut;  // shortcut.w null when in == out
};

struct AttentionBlock {
  ImageNet::Norm norm;
  std::unique_ptr<kernels::LinearWeights> qkv, out;
  i64 channels = 0;
};

struct Coder {
  ImageNet::Conv conv_in;
  std::vector<std::vector<ResnetBlock>> blocks;  // per level, in running order
  std::vector<ImageNet::Conv> resample;          // per level (null w where none)
  ResnetBlock mid1, mid2;
  std::unique_ptr<AttentionBlock> attention;
  ImageNet::Norm norm_out;
  ImageNet::Conv conv_out;
};

}  // namespace

struct Vae::Impl {
  VaeConfig config;
  VaeLayout layout = VaeLayout::kDiffusers;
  std::unique_ptr<ImageNet> net;
  Names names;
  std::unique_ptr<Coder> encoder, decoder;

  ResnetBlock resnet(const std::string& name, i64 in, i64 out) const {
    const i64 g = config.norm_groups;
    ResnetBlock r{net->norm(name + ".norm1", in, g, config.eps),
                  net->norm(name + ".norm2", out, g, config.eps),
                  net->conv(name + ".conv1", out, in, k3x3),
                  net->conv(name + ".conv2", out, out, k3x3),
                  {}};
    if (in != out) r.shortcut = net->conv(name + names.shortcut(), out, in, k1x1);
    return r;
  }

  // name.weight as f32 [c, c]: diffusers' [c, c], BFL's 1x1 conv [c, c, 1, 1], or mflux's
  // MLX affine codes (U32 [c, c * bits / 32], name.scales and name.biases [c, c / 64]) dequantized
  // exactly as MLX computes them (the attention is a small part of the VAE: 4 c^2 weights).
  std::vector<float> linear_weight(const std::string& name, i64 c) const {
    const std::string wname = name + ".weight";
    const Shape& s = net->shape(wname);
    if (layout != VaeLayout::kMflux || net->file().find_tensor(wname)->dtype != DType::kU32) {
      return net->f32(wname, s.size() == 4 ? Shape{c, c, 1, 1} : Shape{c, c});
    }
    constexpr i64 kGroup = 64;
    const std::string* level = net->file().find_metadata("quantization_level");
    const int bits = level != nullptr && (*level == "4" || *level == "8") ? std::stoi(*level) : 0;
    if (bits == 0) {
      throw Error(ErrorCode::kFormat,
                  "tensor " + wname + " is MLX-quantized but the quantization_level metadata is " +
                      (level ? "'" + *level + "'" : std::string("missing")) + " (4 or 8)",
                  {net->source(), {}, wname});
    }
    if (c % kGroup != 0) {
      throw Error(
          ErrorCode::kFormat,
          "tensor " + wname + ": " + std::to_string(c) + " channels are not whole MLX groups of 64",
          {net->source(), {}, wname});
    }
    if (s != Shape{c, c * bits / 32}) {
      throw Error(ErrorCode::kFormat,
                  "tensor " + wname + " has shape " + shape_string(s) + ", expected " +
                      shape_string({c, c * bits / 32}) + " for " + std::to_string(bits) +
                      "-bit codes",
                  {net->source(), {}, wname});
    }
    const auto* sc = net->file().find_tensor(name + ".scales");
    const auto* bi = net->file().find_tensor(name + ".biases");
    const Shape gs{c, c / kGroup};
    for (const auto& [t, n] : {std::pair{sc, name + ".scales"}, std::pair{bi, name + ".biases"}}) {
      if (t == nullptr || t->shape != gs || t->dtype != sc->dtype ||
          (t->dtype != DType::kF16 && t->dtype != DType::kBF16 && t->dtype != DType::kF32)) {
        throw Error(ErrorCode::kFormat,
                    "tensor " + n + " is missing or not " + shape_string(gs) +
                        " f16/bf16/f32 like the scales",
                    {net->source(), {}, n});
      }
    }
    const TensorView wv = net->file().view(*net->file().find_tensor(wname));
    const TensorView sv = net->file().view(*sc), bv = net->file().view(*bi);
    const std::size_t srow = *dtype_bytes(sc->dtype, static_cast<std::uint64_t>(c / kGroup));
    const i64 rb = mlx::packed_row_bytes(c, bits);
    std::vector<float> w(static_cast<std::size_t>(c * c));
    for (i64 r = 0; r < c; ++r) {
      mlx::dequantize_row(reinterpret_cast<const std::uint8_t*>(wv.data) + r * rb, c, bits,
                          static_cast<int>(kGroup), sc->dtype,
                          static_cast<const std::byte*>(sv.data) + r * srow,
                          static_cast<const std::byte*>(bv.data) + r * srow, w.data() + r * c);
    }
    return w;
  }

  std::unique_ptr<kernels::LinearWeights> linear(const std::string& name, i64 c) const {
    const std::vector<float> w = linear_weight(name, c);
    const std::vector<float> b = net->f32(name + ".bias", {c});
    return net->backend().make_linear(w.data(), b.data(), c, c);
  }

  std::unique_ptr<AttentionBlock> attention(const std::string& base, i64 c) const {
    auto a = std::make_unique<AttentionBlock>();
    a->channels = c;
    a->norm = net->norm(names.attn(base, 0), c, config.norm_groups, config.eps);
    std::vector<float> w, b;
    for (int which = 1; which <= 3; ++which) {
      const std::string name = names.attn(base, which);
      const std::vector<float> wi = linear_weight(name, c);
      const std::vector<float> bi = net->f32(name + ".bias", {c});
      w.insert(w.end(), wi.begin(), wi.end());
      b.insert(b.end(), bi.begin(), bi.end());
    }
    a->qkv = net->backend().make_linear(w.data(), b.data(), 3 * c, c);
    a->out = linear(names.attn(base, 4), c);
    return a;
  }

  void load_mid(Coder& coder, const std::string& part, i64 c) const {
    coder.mid1 = resnet(names.mid_resnet(part, 0), c, c);
    if (config.mid_attention) coder.attention = attention(names.mid_attention(part), c);
    coder.mid2 = resnet(names.mid_resnet(part, 1), c, c);
  }

  void load_encoder() {
    const auto& ch = config.block_out_channels;
    const i64 n = static_cast<i64>(ch.size());
    auto e = std::make_unique<Coder>();
    e->conv_in = net->conv(names.conv_io("encoder", "conv_in"), ch[0], config.in_channels, k3x3);
    i64 in = ch[0];
    for (i64 i = 0; i < n; ++i) {
      std::vector<ResnetBlock> level;
      for (i64 j = 0; j < config.layers_per_block; ++j) {
        level.push_back(resnet(names.down_resnet(i, j), in, ch[i]));
        in = ch[i];
      }
      e->blocks.push_back(std::move(level));
      e->resample.push_back(i + 1 < n ? net->conv(names.downsample(i), in, in, kDown)
                                      : ImageNet::Conv{});
    }
    load_mid(*e, "encoder", in);
    e->norm_out = net->norm(names.norm_out("encoder"), in, config.norm_groups, config.eps);
    e->conv_out =
        net->conv(names.conv_io("encoder", "conv_out"), 2 * config.latent_channels, in, k3x3);
    encoder = std::move(e);
  }

  void load_decoder() {
    const auto& ch = config.block_out_channels;
    const i64 n = static_cast<i64>(ch.size());
    auto d = std::make_unique<Coder>();
    i64 in = ch[n - 1];
    d->conv_in = net->conv(names.conv_io("decoder", "conv_in"), in, config.latent_channels, k3x3);
    load_mid(*d, "decoder", in);
    for (i64 i = 0; i < n; ++i) {
      const i64 out = ch[n - 1 - i];
      std::vector<ResnetBlock> level;
      for (i64 j = 0; j <= config.layers_per_block; ++j) {
        level.push_back(resnet(names.up_resnet(i, j), in, out));
        in = out;
      }
      d->blocks.push_back(std::move(level));
      d->resample.push_back(i + 1 < n ? net->conv(names.upsample(i), in, in, k3x3)
                                      : ImageNet::Conv{});
    }
    d->norm_out = net->norm(names.norm_out("decoder"), in, config.norm_groups, config.eps);
    d->conv_out = net->conv(names.conv_io("decoder", "conv_out"), config.out_channels, in, k3x3);
    decoder = std::move(d);
  }

  Activations run(const ResnetBlock& r, const Activations& x) const {
    throw_if_cancelled();
    Activations h = x;
    net->run(r.norm1, h, Activation::kSilu);
    h = net->run(r.conv1, h);
    net->run(r.norm2, h, Activation::kSilu);
    if (r.shortcut.w != nullptr) {
      const Activations s = net->run(r.shortcut, x);
      return net->run(r.conv2, h, &s);
    }
    return net->run(r.conv2, h, &x);
  }

  Activations run(const AttentionBlock& a, const Activations& x) const {
    throw_if_cancelled();
    kernels::Backend& be = net->backend();
    const i64 c = a.channels, len = x.pixels();
    Activations h = x;
    net->run(a.norm, h, Activation::kNone);
    std::vector<float> qkv(static_cast<std::size_t>(len * 3 * c));
    be.linear(*a.qkv, h.data.data(), len, qkv.data());
    const i64 valid = len;
    be.attention(qkv.data(), qkv.data() + c, qkv.data() + 2 * c, 3 * c, h.data.data(), c, 1, len,
                 &valid, 1, c, 1.0f / std::sqrt(static_cast<float>(c)));
    Activations y = x;
    std::vector<float> o(h.data.size());
    be.linear(*a.out, h.data.data(), len, o.data());
    be.add(o.data(), x.data.data(), y.data.data(), static_cast<i64>(o.size()));
    return y;
  }

  Activations run_mid(const Coder& coder, Activations h) const {
    h = run(coder.mid1, h);
    if (coder.attention != nullptr) h = run(*coder.attention, h);
    return run(coder.mid2, h);
  }
};

Vae::Vae(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Vae::Vae(Vae&&) noexcept = default;
Vae& Vae::operator=(Vae&&) noexcept = default;
Vae::~Vae() = default;

const VaeConfig& Vae::config() const {
  return impl_->config;
}
VaeLayout Vae::layout() const {
  return impl_->layout;
}
const std::string& Vae::source() const {
  return impl_->net->source();
}

namespace {

VaeConfig diffusers_config(const fs::path& config_path) {
  const std::string source = config_path.string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(formats::read_text_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("malformed JSON: ") + e.what(), {source});
  }
  if (!j.is_object()) throw Error(ErrorCode::kFormat, "config is not a JSON object", {source});
  const std::string cls = j.value("_class_name", "");
  if (cls != "AutoencoderKL") {
    throw Error(ErrorCode::kUnsupported, "not an AutoencoderKL config (_class_name '" + cls + "')",
                {source});
  }
  VaeConfig c;
  try {
    c.in_channels = j.value("in_channels", c.in_channels);
    c.out_channels = j.value("out_channels", c.out_channels);
    c.latent_channels = j.value("latent_channels", c.latent_channels);
    c.block_out_channels = j.value("block_out_channels", c.block_out_channels);
    c.layers_per_block = j.value("layers_per_block", c.layers_per_block);
    c.norm_groups = j.value("norm_num_groups", c.norm_groups);
    c.mid_attention = j.value("mid_block_add_attention", c.mid_attention);
    c.scaling_factor = j.value("scaling_factor", c.scaling_factor);
    c.shift_factor = j.contains("shift_factor") && j["shift_factor"].is_number()
                         ? j["shift_factor"].get<float>()
                         : 0.0f;
    if (j.value("use_quant_conv", false) || j.value("use_post_quant_conv", false)) {
      throw Error(
          ErrorCode::kUnsupported,
          "quant_conv / post_quant_conv (Stable Diffusion VAEs) are not supported; FLUX.1's "
          "VAE has neither",
          {source});
    }
    const std::string act = j.value("act_fn", "silu");
    if (act != "silu") {
      throw Error(ErrorCode::kUnsupported, "act_fn '" + act + "' (FLUX.1 uses silu)", {source});
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("bad config value: ") + e.what(), {source});
  }
  bool ok = !c.block_out_channels.empty() && c.block_out_channels.size() <= 8 &&
            c.layers_per_block > 0 && c.layers_per_block <= 16 && c.latent_channels > 0 &&
            c.in_channels > 0 && c.out_channels > 0 && c.norm_groups > 0;
  for (const i64 ch : c.block_out_channels) ok = ok && ch > 0 && ch % c.norm_groups == 0;
  if (!ok) {
    throw Error(ErrorCode::kFormat,
                "impossible AutoencoderKL configuration (block_out_channels, layers_per_block, "
                "latent_channels, norm_num_groups)",
                {source});
  }
  return c;
}

// BFL's ae.safetensors has no config: channels, levels and blocks come from the tensor shapes.
VaeConfig bfl_config(const ImageNet& net) {
  VaeConfig c;
  const Shape& conv_in = net.shape("encoder.conv_in.weight");
  const Shape& dec_in = net.shape("decoder.conv_in.weight");
  const Shape& dec_out = net.shape("decoder.conv_out.weight");
  if (conv_in.size() != 4 || dec_in.size() != 4 || dec_out.size() != 4) {
    throw Error(ErrorCode::kFormat, "conv_in / conv_out weights are not 4-D", {net.source()});
  }
  c.in_channels = conv_in[1];
  c.latent_channels = dec_in[1];
  c.out_channels = dec_out[0];
  c.block_out_channels.clear();
  for (i64 i = 0; net.has("encoder.down." + std::to_string(i) + ".block.0.conv1.weight"); ++i) {
    const Shape& s = net.shape("encoder.down." + std::to_string(i) + ".block.0.conv1.weight");
    if (s.empty()) throw Error(ErrorCode::kFormat, "empty conv weight", {net.source()});
    c.block_out_channels.push_back(s[0]);
  }
  c.layers_per_block = 0;
  while (net.has("encoder.down.0.block." + std::to_string(c.layers_per_block) + ".conv1.weight")) {
    ++c.layers_per_block;
  }
  if (c.block_out_channels.empty() || c.layers_per_block == 0) {
    throw Error(ErrorCode::kFormat, "no encoder.down.N.block.M tensors: not a BFL autoencoder",
                {net.source()});
  }
  c.mid_attention = net.has("decoder.mid.attn_1.q.weight");
  return c;
}

// mflux's saved vae/ has no config either: the shape from the tensors (diffusers' names, MLX's
// channels-last convolutions [out, kh, kw, in]); mflux's VAE fixes 32 groups and FLUX.1's scale
// and shift.
VaeConfig mflux_config(const ImageNet& net) {
  VaeConfig c;
  const Shape& conv_in = net.shape("encoder.conv_in.conv2d.weight");
  const Shape& dec_in = net.shape("decoder.conv_in.conv2d.weight");
  const Shape& dec_out = net.shape("decoder.conv_out.conv2d.weight");
  if (conv_in.size() != 4 || dec_in.size() != 4 || dec_out.size() != 4) {
    throw Error(ErrorCode::kFormat, "conv_in / conv_out weights are not 4-D", {net.source()});
  }
  c.in_channels = conv_in[3];
  c.latent_channels = dec_in[3];
  c.out_channels = dec_out[0];
  c.block_out_channels.clear();
  const auto first = [](i64 i) {
    return "encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight";
  };
  for (i64 i = 0; i < 8 && net.has(first(i)); ++i) {
    const Shape& s = net.shape(first(i));
    if (s.empty()) throw Error(ErrorCode::kFormat, "empty conv weight", {net.source()});
    c.block_out_channels.push_back(s[0]);
  }
  c.layers_per_block = 0;
  while (c.layers_per_block < 16 && net.has("encoder.down_blocks.0.resnets." +
                                            std::to_string(c.layers_per_block) + ".conv1.weight")) {
    ++c.layers_per_block;
  }
  if (c.block_out_channels.empty() || c.layers_per_block == 0) {
    throw Error(ErrorCode::kFormat,
                "no encoder.down_blocks.N.resnets.M tensors: not mflux's saved VAE",
                {net.source()});
  }
  c.mid_attention = net.has("decoder.mid_block.attentions.0.to_q.weight");
  return c;
}

}  // namespace

Vae Vae::load(const fs::path& path, kernels::Backend& backend) {
  auto impl = std::make_unique<Impl>();
  fs::path weights = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    fs::path dir = path;
    if (!fs::exists(dir / "config.json") && fs::is_directory(dir / "vae")) dir /= "vae";
    const fs::path config = dir / "config.json";
    if (!fs::exists(config) && is_mflux_folder(dir)) return load_mflux(dir, backend);
    if (!fs::exists(config)) {
      throw Error(ErrorCode::kNotFound, "no config.json (nor vae/config.json)", {path.string()});
    }
    impl->config = diffusers_config(config);
    weights = dir / "diffusion_pytorch_model.safetensors";
    if (!fs::exists(weights)) {
      throw Error(ErrorCode::kNotFound, "no diffusion_pytorch_model.safetensors beside config.json",
                  {dir.string()});
    }
    impl->layout = VaeLayout::kDiffusers;
    impl->net = std::make_unique<ImageNet>(backend, weights);
  } else {
    impl->net = std::make_unique<ImageNet>(backend, weights);
    if (!impl->net->has("encoder.conv_in.weight") && !impl->net->has("decoder.conv_in.weight")) {
      throw Error(ErrorCode::kFormat,
                  "neither encoder.conv_in nor decoder.conv_in: not an autoencoder",
                  {weights.string()});
    }
    if (impl->net->has("decoder.up_blocks.0.resnets.0.conv1.weight") ||
        impl->net->has("encoder.down_blocks.0.resnets.0.conv1.weight")) {
      throw Error(ErrorCode::kUnsupported,
                  "diffusers tensor names without the config.json of their folder",
                  {weights.string()});
    }
    impl->config = bfl_config(*impl->net);
    impl->layout = VaeLayout::kBfl;
  }
  impl->names = {impl->layout, static_cast<i64>(impl->config.block_out_channels.size())};
  impl->load_encoder();
  impl->load_decoder();
  return Vae(std::move(impl));
}

FloatImage Vae::decode(const Latent& latents) const {
  const Impl& m = *impl_;
  const VaeConfig& c = m.config;
  if (latents.channels != c.latent_channels || latents.height <= 0 || latents.width <= 0 ||
      latents.data.size() !=
          static_cast<std::size_t>(latents.channels * latents.height * latents.width)) {
    throw Error(ErrorCode::kInvalidArgument,
                "latents of " + std::to_string(latents.channels) + " x " +
                    std::to_string(latents.height) + " x " + std::to_string(latents.width) +
                    " for a VAE of " + std::to_string(c.latent_channels) + " latent channels");
  }
  Activations x = from_chw(latents);
  for (float& v : x.data) v = v / c.scaling_factor + c.shift_factor;
  const Coder& d = *m.decoder;
  Activations h = m.net->run(d.conv_in, x);
  h = m.run_mid(d, std::move(h));
  for (std::size_t i = 0; i < d.blocks.size(); ++i) {
    for (const ResnetBlock& r : d.blocks[i]) h = m.run(r, h);
    if (d.resample[i].w != nullptr) h = m.net->run(d.resample[i], m.net->upsample(h));
  }
  m.net->run(d.norm_out, h, Activation::kSilu);
  h = m.net->run(d.conv_out, h);
  return {h.height, h.width, std::move(h.data)};
}

Latent Vae::encode(const FloatImage& image) const {
  const Impl& m = *impl_;
  const VaeConfig& c = m.config;
  const i64 f = c.downscale();
  if (image.height <= 0 || image.width <= 0 || image.height % f != 0 || image.width % f != 0 ||
      image.data.size() != static_cast<std::size_t>(image.height * image.width * c.in_channels)) {
    throw Error(ErrorCode::kInvalidArgument, "an image of " + std::to_string(image.height) + " x " +
                                                 std::to_string(image.width) +
                                                 " pixels: the VAE encodes sides that are "
                                                 "multiples of " +
                                                 std::to_string(f));
  }
  const Coder& e = *m.encoder;
  const Activations x{image.height, image.width, c.in_channels, image.data};
  Activations h = m.net->run(e.conv_in, x);
  for (std::size_t i = 0; i < e.blocks.size(); ++i) {
    for (const ResnetBlock& r : e.blocks[i]) h = m.run(r, h);
    if (e.resample[i].w != nullptr) h = m.net->run(e.resample[i], h);
  }
  h = m.run_mid(e, std::move(h));
  m.net->run(e.norm_out, h, Activation::kSilu);
  const Activations moments = m.net->run(e.conv_out, h);
  Activations mean{moments.height, moments.width, c.latent_channels, {}};
  mean.data.resize(static_cast<std::size_t>(mean.pixels() * mean.channels));
  for (i64 p = 0; p < mean.pixels(); ++p) {
    for (i64 ch = 0; ch < c.latent_channels; ++ch) {
      mean.data[p * c.latent_channels + ch] =
          (moments.data[p * moments.channels + ch] - c.shift_factor) * c.scaling_factor;
    }
  }
  return to_chw(mean);
}

std::vector<float> pack_latents(const Latent& l) {
  if (l.height % 2 != 0 || l.width % 2 != 0 || l.height <= 0 || l.width <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "2x2 packing needs even latent sides, not " +
                                                 std::to_string(l.height) + " x " +
                                                 std::to_string(l.width));
  }
  const i64 w2 = l.width / 2, f = 4 * l.channels;
  std::vector<float> out(l.data.size());
  for (i64 c = 0; c < l.channels; ++c) {
    for (i64 y = 0; y < l.height; ++y) {
      for (i64 x = 0; x < l.width; ++x) {
        const i64 token = (y / 2) * w2 + x / 2;
        out[token * f + c * 4 + (y % 2) * 2 + x % 2] = l.data[(c * l.height + y) * l.width + x];
      }
    }
  }
  return out;
}

Latent unpack_latents(const float* tokens, i64 channels, i64 height, i64 width) {
  if (height % 2 != 0 || width % 2 != 0 || height <= 0 || width <= 0 || channels <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "2x2 unpacking needs even latent sides, not " +
                                                 std::to_string(height) + " x " +
                                                 std::to_string(width));
  }
  Latent l{channels, height, width,
           std::vector<float>(static_cast<std::size_t>(channels * height * width))};
  const i64 w2 = width / 2, f = 4 * channels;
  for (i64 c = 0; c < channels; ++c) {
    for (i64 y = 0; y < height; ++y) {
      for (i64 x = 0; x < width; ++x) {
        l.data[(c * height + y) * width + x] =
            tokens[((y / 2) * w2 + x / 2) * f + c * 4 + (y % 2) * 2 + x % 2];
      }
    }
  }
  return l;
}

}  // namespace hearth::models

namespace hearth::models {

// mflux's saved vae/ (mflux-save, ModelSaver): one shard 0.safetensors (mflux splits at 2 GB;
// FLUX.1's VAE is 160 MB of bf16) with quantization_level / mflux_version metadata.
Vae Vae::load_mflux(const fs::path& dir, kernels::Backend& backend) {
  if (fs::exists(dir / "1.safetensors")) {
    throw Error(ErrorCode::kUnsupported,
                "a VAE in more than one shard (mflux writes one below 2 GB)",
                {(dir / "1.safetensors").string()});
  }
  const fs::path weights = dir / "0.safetensors";
  if (!fs::exists(weights)) {
    throw Error(ErrorCode::kNotFound, "mflux's saved VAE without 0.safetensors", {dir.string()});
  }
  auto impl = std::make_unique<Impl>();
  impl->net = std::make_unique<ImageNet>(backend, weights);
  impl->net->set_channels_last(true);
  impl->config = mflux_config(*impl->net);
  impl->layout = VaeLayout::kMflux;
  impl->names = {impl->layout, static_cast<i64>(impl->config.block_out_channels.size())};
  impl->load_encoder();
  impl->load_decoder();
  return Vae(std::move(impl));
}

}  // namespace hearth::models
