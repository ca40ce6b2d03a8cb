#include "hearth/models/taesd.hpp"

#include <cmath>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"

namespace hearth::models {

namespace fs = std::filesystem;
using kernels::Activation;
using kernels::ConvShape;
using i64 = std::int64_t;

namespace {

constexpr i64 kWidth = 64;  // every block's channels
constexpr ConvShape k3x3{3, 1, 1, 1};
constexpr ConvShape k1x1{1, 1, 0, 0};
constexpr ConvShape kDown{3, 2, 1, 1};

struct Block {
  ImageNet::Conv c0, c1, c2;
  // The pooled branch (TAEF2): 1x1 to 4 x 64, GroupNorm(4) + ReLU, 1x1 back.
  ImageNet::Conv pool_in, pool_out;
  ImageNet::Norm pool_norm;
};

// One nn.Sequential item: a plain convolution (with its activation) or a Block.
struct Layer {
  enum Kind { kConv, kBlock, kUpsample } kind = kConv;
  ImageNet::Conv conv;
  Activation act = Activation::kNone;
  Block block;
};

Block load_block(const ImageNet& net, const std::string& p) {
  Block b{net.conv(p + ".conv.0", kWidth, kWidth, k3x3),
          net.conv(p + ".conv.2", kWidth, kWidth, k3x3),
          net.conv(p + ".conv.4", kWidth, kWidth, k3x3),
          {},
          {},
          {}};
  if (net.has(p + ".pool.0.weight")) {
    b.pool_in = net.conv(p + ".pool.0", 4 * kWidth, kWidth, k1x1, false);
    b.pool_norm = net.norm(p + ".pool.1", 4 * kWidth, 4, 1e-5f);
    b.pool_out = net.conv(p + ".pool.3", kWidth, 4 * kWidth, k1x1, false);
  }
  return b;
}

Activations run_block(const ImageNet& net, const Block& b, const Activations& input) {
  throw_if_cancelled();
  const Activations* x = &input;
  Activations pooled;
  if (b.pool_in.w != nullptr) {
    Activations t = net.run(b.pool_in, input);
    net.run(b.pool_norm, t, Activation::kRelu);
    pooled = net.run(b.pool_out, t, &input);
    x = &pooled;
  }
  Activations h = net.run(b.c0, *x, nullptr, Activation::kRelu);
  h = net.run(b.c1, h, nullptr, Activation::kRelu);
  return net.run(b.c2, h, x, Activation::kRelu);  // fuse: relu(conv(x) + x)
}

Activations run_layers(const ImageNet& net, const std::vector<Layer>& layers, Activations h) {
  for (const Layer& l : layers) {
    switch (l.kind) {
      case Layer::kConv:
        h = net.run(l.conv, h, nullptr, l.act);
        break;
      case Layer::kBlock:
        h = run_block(net, l.block, h);
        break;
      case Layer::kUpsample:
        h = net.upsample(h);
        break;
    }
  }
  return h;
}

Layer conv_layer(const ImageNet& net, const std::string& name, i64 out, i64 in, ConvShape s,
                 Activation act = Activation::kNone) {
  Layer l;
  l.conv = net.conv(name, out, in, s, net.has(name + ".bias"));
  l.act = act;
  return l;
}

Layer block_layer(const ImageNet& net, int index) {
  Layer l;
  l.kind = Layer::kBlock;
  l.block = load_block(net, std::to_string(index));
  return l;
}

}  // namespace

struct TinyAutoencoder::Impl {
  std::unique_ptr<ImageNet> enc_net, dec_net;
  std::vector<Layer> encoder, decoder;
  i64 latent_channels = 0;

  // conv(3, 64), Block, then three times [stride-2 conv, 3 Blocks], conv(64, latent).
  void load_encoder(kernels::Backend& backend, const fs::path& file) {
    enc_net = std::make_unique<ImageNet>(backend, file);
    const ImageNet& n = *enc_net;
    const Shape& out = n.shape("14.weight");
    if (out.size() != 4) throw Error(ErrorCode::kFormat, "14.weight is not 4-D", {n.source()});
    const i64 lc = out[0];
    encoder.push_back(conv_layer(n, "0", kWidth, 3, k3x3));
    encoder.push_back(block_layer(n, 1));
    for (int i = 2; i <= 10; i += 4) {
      encoder.push_back(conv_layer(n, std::to_string(i), kWidth, kWidth, kDown));
      for (int j = 1; j <= 3; ++j) encoder.push_back(block_layer(n, i + j));
    }
    encoder.push_back(conv_layer(n, "14", lc, kWidth, k3x3));
    check_channels(lc, n.source());
  }

  // Clamp, conv(latent, 64) + ReLU, then three times [3 Blocks, upsample, conv], Block,
  // conv(64, 3).
  void load_decoder(kernels::Backend& backend, const fs::path& file) {
    dec_net = std::make_unique<ImageNet>(backend, file);
    const ImageNet& n = *dec_net;
    const Shape& in = n.shape("1.weight");
    if (in.size() != 4) throw Error(ErrorCode::kFormat, "1.weight is not 4-D", {n.source()});
    const i64 lc = in[1];
    decoder.push_back(conv_layer(n, "1", kWidth, lc, k3x3, Activation::kRelu));
    for (int i = 3; i <= 13; i += 5) {
      for (int j = 0; j < 3; ++j) decoder.push_back(block_layer(n, i + j));
      Layer up;
      up.kind = Layer::kUpsample;
      decoder.push_back(std::move(up));
      decoder.push_back(conv_layer(n, std::to_string(i + 4), kWidth, kWidth, k3x3));
    }
    decoder.push_back(block_layer(n, 18));
    decoder.push_back(conv_layer(n, "19", 3, kWidth, k3x3));
    check_channels(lc, n.source());
  }

  void check_channels(i64 lc, const std::string& source) {
    if (latent_channels != 0 && latent_channels != lc) {
      throw Error(ErrorCode::kFormat,
                  "latent channels " + std::to_string(lc) + " differ from the other file's " +
                      std::to_string(latent_channels),
                  {source});
    }
    latent_channels = lc;
  }
};

TinyAutoencoder::TinyAutoencoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TinyAutoencoder::TinyAutoencoder(TinyAutoencoder&&) noexcept = default;
TinyAutoencoder& TinyAutoencoder::operator=(TinyAutoencoder&&) noexcept = default;
TinyAutoencoder::~TinyAutoencoder() = default;

TinyAutoencoder TinyAutoencoder::load(const std::optional<fs::path>& encoder,
                                      const std::optional<fs::path>& decoder,
                                      kernels::Backend& backend) {
  if (!encoder && !decoder) {
    throw Error(ErrorCode::kInvalidArgument, "a tiny autoencoder needs an encoder or a decoder");
  }
  auto impl = std::make_unique<Impl>();
  if (encoder) impl->load_encoder(backend, *encoder);
  if (decoder) impl->load_decoder(backend, *decoder);
  return TinyAutoencoder(std::move(impl));
}

TinyAutoencoder TinyAutoencoder::load(const fs::path& folder, kernels::Backend& backend) {
  std::optional<fs::path> enc, dec;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    auto ends = [&](const std::string& tail) {
      return name.size() >= tail.size() &&
             name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    auto take = [&](std::optional<fs::path>& slot) {
      if (slot) {
        throw Error(ErrorCode::kInvalidArgument,
                    "two candidates: " + slot->filename().string() + " and " + name,
                    {folder.string()});
      }
      slot = entry.path();
    };
    if (ends("encoder.safetensors")) take(enc);
    if (ends("decoder.safetensors")) take(dec);
  }
  if (ec) throw Error(ErrorCode::kIo, "cannot list the folder: " + ec.message(), {folder.string()});
  if (!enc && !dec) {
    throw Error(ErrorCode::kNotFound, "no *encoder.safetensors or *decoder.safetensors",
                {folder.string()});
  }
  return load(enc, dec, backend);
}

i64 TinyAutoencoder::latent_channels() const {
  return impl_->latent_channels;
}

Latent TinyAutoencoder::encode(const FloatImage& image) const {
  if (impl_->enc_net == nullptr) {
    throw Error(ErrorCode::kUnsupported, "this tiny autoencoder has no encoder file");
  }
  if (image.height <= 0 || image.width <= 0 || image.height % kDownscale != 0 ||
      image.width % kDownscale != 0 ||
      image.data.size() != static_cast<std::size_t>(image.height * image.width * 3)) {
    throw Error(ErrorCode::kInvalidArgument, "an image of " + std::to_string(image.height) + " x " +
                                                 std::to_string(image.width) +
                                                 " pixels: sides must be multiples of 8");
  }
  return to_chw(run_layers(*impl_->enc_net, impl_->encoder,
                           Activations{image.height, image.width, 3, image.data}));
}

FloatImage TinyAutoencoder::decode(const Latent& latents) const {
  if (impl_->dec_net == nullptr) {
    throw Error(ErrorCode::kUnsupported, "this tiny autoencoder has no decoder file");
  }
  if (latents.channels != impl_->latent_channels || latents.height <= 0 || latents.width <= 0 ||
      latents.data.size() !=
          static_cast<std::size_t>(latents.channels * latents.height * latents.width)) {
    throw Error(ErrorCode::kInvalidArgument, "latents of " + std::to_string(latents.channels) +
                                                 " channels for a tiny autoencoder of " +
                                                 std::to_string(impl_->latent_channels));
  }
  Activations x = from_chw(latents);
  kernels::Backend& be = impl_->dec_net->backend();
  // Clamp: tanh(x / 3) * 3.
  for (float& v : x.data) v /= 3.0f;
  be.activation(Activation::kTanh, x.data.data(), x.data.data(), static_cast<i64>(x.data.size()));
  for (float& v : x.data) v *= 3.0f;
  Activations h = run_layers(*impl_->dec_net, impl_->decoder, std::move(x));
  return {h.height, h.width, std::move(h.data)};
}

}  // namespace hearth::models
