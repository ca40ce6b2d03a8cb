#include "vae_weights.hpp"

#include <cmath>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>

#include "hearth/formats/file_io.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/tensor/mlx_quant.hpp"

#include "encode_values.hpp"

namespace fs = std::filesystem;
using hearth::DType;
using hearth::Shape;
using i64 = std::int64_t;

namespace {

struct Tensor {
  std::string diffusers, bfl;
  Shape shape;      // diffusers shape
  Shape bfl_shape;  // BFL shape (attention linears are 1x1 convs there)
  std::vector<float> values;
};

class Maker {
 public:
  Maker(std::vector<i64> channels, i64 layers, i64 latent, unsigned seed)
      : ch_(std::move(channels)), layers_(layers), latent_(latent), rng_(seed) {}

  std::vector<Tensor> make() {
    const i64 n = static_cast<i64>(ch_.size());
    conv("encoder.conv_in", "encoder.conv_in", ch_[0], 3, 3);
    i64 in = ch_[0];
    for (i64 i = 0; i < n; ++i) {
      for (i64 j = 0; j < layers_; ++j) {
        resnet("encoder.down_blocks." + s(i) + ".resnets." + s(j),
               "encoder.down." + s(i) + ".block." + s(j), in, ch_[i]);
        in = ch_[i];
      }
      if (i + 1 < n) {
        conv("encoder.down_blocks." + s(i) + ".downsamplers.0.conv",
             "encoder.down." + s(i) + ".downsample.conv", in, in, 3);
      }
    }
    mid("encoder", in);
    norm("encoder.conv_norm_out", "encoder.norm_out", in);
    conv("encoder.conv_out", "encoder.conv_out", 2 * latent_, in, 3);
    conv("decoder.conv_in", "decoder.conv_in", in, latent_, 3);
    mid("decoder", in);
    for (i64 i = 0; i < n; ++i) {
      const i64 out = ch_[n - 1 - i];
      const std::string bfl = "decoder.up." + s(n - 1 - i);
      for (i64 j = 0; j <= layers_; ++j) {
        resnet("decoder.up_blocks." + s(i) + ".resnets." + s(j), bfl + ".block." + s(j), in, out);
        in = out;
      }
      if (i + 1 < n) {
        conv("decoder.up_blocks." + s(i) + ".upsamplers.0.conv", bfl + ".upsample.conv", in, in, 3);
      }
    }
    norm("decoder.conv_norm_out", "decoder.norm_out", in);
    conv("decoder.conv_out", "decoder.conv_out", 3, in, 3);
    return std::move(out_);
  }

 private:
  static std::string s(i64 v) { return std::to_string(v); }

  std::vector<float> draw(i64 n, float mean, float stddev) {
    std::normal_distribution<float> d(mean, stddev);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = d(rng_);
    return v;
  }
  void add(const std::string& d, const std::string& b, Shape shape, Shape bfl_shape, float mean,
           float stddev) {
    const i64 n = hearth::numel(shape);
    out_.push_back({d, b, std::move(shape), std::move(bfl_shape), draw(n, mean, stddev)});
  }
  void conv(const std::string& d, const std::string& b, i64 out, i64 in, i64 k, bool bias = true) {
    const float sd = 1.0f / std::sqrt(static_cast<float>(in * k * k));
    add(d + ".weight", b + ".weight", {out, in, k, k}, {out, in, k, k}, 0.0f, sd);
    if (bias) add(d + ".bias", b + ".bias", {out}, {out}, 0.0f, 0.1f);
  }
  void linear(const std::string& d, const std::string& b, i64 c) {
    add(d + ".weight", b + ".weight", {c, c}, {c, c, 1, 1}, 0.0f,
        1.0f / std::sqrt(static_cast<float>(c)));
    add(d + ".bias", b + ".bias", {c}, {c}, 0.0f, 0.1f);
  }
  void norm(const std::string& d, const std::string& b, i64 c) {
    add(d + ".weight", b + ".weight", {c}, {c}, 1.0f, 0.1f);
    add(d + ".bias", b + ".bias", {c}, {c}, 0.0f, 0.1f);
  }
  void resnet(const std::string& d, const std::string& b, i64 in, i64 out) {
    norm(d + ".norm1", b + ".norm1", in);
    conv(d + ".conv1", b + ".conv1", out, in, 3);
    norm(d + ".norm2", b + ".norm2", out);
    conv(d + ".conv2", b + ".conv2", out, out, 3);
    if (in != out) conv(d + ".conv_shortcut", b + ".nin_shortcut", out, in, 1);
  }
  void mid(const std::string& part, i64 c) {
    resnet(part + ".mid_block.resnets.0", part + ".mid.block_1", c, c);
    const std::string d = part + ".mid_block.attentions.0", b = part + ".mid.attn_1";
    norm(d + ".group_norm", b + ".norm", c);
    linear(d + ".to_q", b + ".q", c);
    linear(d + ".to_k", b + ".k", c);
    linear(d + ".to_v", b + ".v", c);
    linear(d + ".to_out.0", b + ".proj_out", c);
    resnet(part + ".mid_block.resnets.1", part + ".mid.block_2", c, c);
  }

  std::vector<i64> ch_;
  i64 layers_, latent_;
  std::mt19937 rng_;
  std::vector<Tensor> out_;
};

void write_text(const fs::path& path, const std::string& text) {
  hearth::formats::AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

nlohmann::json diffusers_config(const VaeShape& shape) {
  return {
      {"_class_name", "AutoencoderKL"},
      {"_diffusers_version", "0.30.0"},
      {"act_fn", "silu"},
      {"block_out_channels", shape.channels},
      {"down_block_types", std::vector<std::string>(shape.channels.size(), "DownEncoderBlock2D")},
      {"up_block_types", std::vector<std::string>(shape.channels.size(), "UpDecoderBlock2D")},
      {"force_upcast", true},
      {"in_channels", 3},
      {"out_channels", 3},
      {"latent_channels", shape.latent},
      {"latents_mean", nullptr},
      {"latents_std", nullptr},
      {"layers_per_block", shape.layers},
      {"mid_block_add_attention", true},
      {"norm_num_groups", shape.groups},
      {"sample_size", 1024},
      {"scaling_factor", 0.3611},
      {"shift_factor", 0.1159},
      {"use_post_quant_conv", false},
      {"use_quant_conv", false}};
}

}  // namespace

void write_random_vae(const fs::path& vae_dir, const fs::path& ae_file, DType dtype,
                      const VaeShape& shape, unsigned seed) {
  const std::vector<Tensor> tensors =
      Maker(shape.channels, shape.layers, shape.latent, seed).make();
  std::vector<std::vector<std::byte>> bytes;
  for (const Tensor& t : tensors) bytes.push_back(encode(t.values, dtype));
  if (!vae_dir.empty()) {
    fs::create_directories(vae_dir);
    write_text(vae_dir / "config.json", diffusers_config(shape).dump(2) + "\n");
    hearth::formats::SafetensorsWriter w;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      w.add_tensor(tensors[i].diffusers, dtype, tensors[i].shape, bytes[i]);
    }
    w.write(vae_dir / "diffusion_pytorch_model.safetensors");
  }
  if (!ae_file.empty()) {
    hearth::formats::SafetensorsWriter w;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      w.add_tensor(tensors[i].bfl, dtype, tensors[i].bfl_shape, bytes[i]);
    }
    w.write(ae_file);
  }
}

void write_random_vae_mflux(const fs::path& dir, const fs::path& twin_vae_dir, DType dtype,
                            const VaeShape& shape, unsigned seed, int bits) {
  constexpr i64 kGroup = 64;
  const std::vector<Tensor> tensors =
      Maker(shape.channels, shape.layers, shape.latent, seed).make();
  hearth::formats::SafetensorsWriter w, twin;  // they hold spans: the bytes live in kept
  std::deque<std::vector<std::byte>> kept;
  const auto keep = [&](std::vector<std::byte> b) -> std::span<const std::byte> {
    return kept.emplace_back(std::move(b));
  };
  const DType st = dtype == DType::kF32 || dtype == DType::kF16 ? dtype : DType::kBF16;
  const std::string level = bits == 0 ? "None" : std::to_string(bits);
  w.set_metadata("quantization_level", level);
  w.set_metadata("mflux_version", "0.9.0");
  nlohmann::json map = nlohmann::json::object();
  const auto put = [&](const std::string& name, DType t, const Shape& sh,
                       std::span<const std::byte> b) {
    w.add_tensor(name, t, sh, b);
    map[name] = "0.safetensors";
  };
  for (const Tensor& t : tensors) {
    std::string name = t.diffusers;
    for (const auto& [from, to] :
         {std::pair{".conv_in.", ".conv_in.conv2d."}, std::pair{".conv_out.", ".conv_out.conv2d."},
          std::pair{".conv_norm_out.", ".conv_norm_out.norm."}}) {
      if (const std::size_t at = name.find(from); at != std::string::npos) {
        name.replace(at, std::strlen(from), to);
      }
    }
    const Shape& sh = t.shape;
    const bool linear = sh.size() == 2 && name.ends_with(".weight");
    if (bits != 0 && linear && sh[1] % kGroup == 0) {
      const i64 rows = sh[0], cols = sh[1], groups = cols / kGroup;
      const i64 rb = hearth::mlx::packed_row_bytes(cols, bits);
      std::vector<std::byte> packed(static_cast<std::size_t>(rows * rb));
      std::vector<float> sc(static_cast<std::size_t>(rows * groups)), bi(sc.size());
      for (i64 r = 0; r < rows; ++r) {
        hearth::mlx::quantize_row(t.values.data() + r * cols, cols, bits, static_cast<int>(kGroup),
                                  reinterpret_cast<std::uint8_t*>(packed.data()) + r * rb,
                                  sc.data() + r * groups, bi.data() + r * groups);
      }
      const auto sb = keep(encode(sc, dtype)), bb = keep(encode(bi, dtype));
      std::vector<float> deq(static_cast<std::size_t>(rows * cols));
      const std::size_t srow = sb.size() / static_cast<std::size_t>(rows);
      for (i64 r = 0; r < rows; ++r) {
        hearth::mlx::dequantize_row(reinterpret_cast<const std::uint8_t*>(packed.data()) + r * rb,
                                    cols, bits, static_cast<int>(kGroup), st, sb.data() + r * srow,
                                    bb.data() + r * srow, deq.data() + r * cols);
      }
      const std::string base = name.substr(0, name.size() - 7);
      put(name, DType::kU32, {rows, cols * bits / 32}, keep(std::move(packed)));
      put(base + ".scales", st, {rows, groups}, sb);
      put(base + ".biases", st, {rows, groups}, bb);
      twin.add_tensor(t.diffusers, DType::kF32, sh, keep(encode(deq, DType::kF32)));
      continue;
    }
    const std::span<const std::byte> bytes = keep(encode(t.values, dtype));
    twin.add_tensor(t.diffusers, st, sh, bytes);
    if (sh.size() == 4) {
      // PyTorch's [out, in, kh, kw] to MLX's [out, kh, kw, in], element by element.
      const i64 out = sh[0], in = sh[1], kk = sh[2] * sh[3];
      const std::size_t es = bytes.size() / static_cast<std::size_t>(hearth::numel(sh));
      std::vector<std::byte> cl(bytes.size());
      for (i64 o = 0; o < out; ++o) {
        for (i64 c = 0; c < in; ++c) {
          for (i64 p = 0; p < kk; ++p) {
            std::memcpy(cl.data() + ((o * kk + p) * in + c) * es,
                        bytes.data() + ((o * in + c) * kk + p) * es, es);
          }
        }
      }
      put(name, st, {out, sh[2], sh[3], in}, keep(std::move(cl)));
      continue;
    }
    put(name, st, sh, bytes);
  }
  fs::create_directories(dir);
  w.write(dir / "0.safetensors");
  const nlohmann::json index = {
      {"metadata", {{"quantization_level", level}, {"mflux_version", "0.9.0"}}},
      {"weight_map", map}};
  write_text(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  if (!twin_vae_dir.empty()) {
    fs::create_directories(twin_vae_dir);
    write_text(twin_vae_dir / "config.json", diffusers_config(shape).dump(2) + "\n");
    twin.write(twin_vae_dir / "diffusion_pytorch_model.safetensors");
  }
}
