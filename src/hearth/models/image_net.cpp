#include "hearth/models/image_net.hpp"

#include <cstring>

#include "hearth/core/error.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::models {

using kernels::Activation;

Activations from_chw(const Latent& latent) {
  Activations a{latent.height, latent.width, latent.channels,
                std::vector<float>(latent.data.size())};
  const std::int64_t hw = latent.height * latent.width;
  for (std::int64_t c = 0; c < latent.channels; ++c) {
    for (std::int64_t p = 0; p < hw; ++p) a.data[p * latent.channels + c] = latent.data[c * hw + p];
  }
  return a;
}

Latent to_chw(const Activations& a) {
  Latent l{a.channels, a.height, a.width, std::vector<float>(a.data.size())};
  const std::int64_t hw = a.pixels();
  for (std::int64_t c = 0; c < a.channels; ++c) {
    for (std::int64_t p = 0; p < hw; ++p) l.data[c * hw + p] = a.data[p * a.channels + c];
  }
  return l;
}

ImageNet::ImageNet(kernels::Backend& backend, const std::filesystem::path& file)
    : backend_(backend), file_(formats::SafetensorsFile::open(file)) {}

const Shape& ImageNet::shape(const std::string& name) const {
  const auto* info = file_.find_tensor(name);
  if (info == nullptr) {
    throw Error(ErrorCode::kNotFound, "missing tensor " + name, {file_.source(), {}, name});
  }
  return info->shape;
}

std::vector<float> ImageNet::f32(const std::string& name, const Shape& expect) const {
  const Shape& got = shape(name);
  if (got != expect) {
    throw Error(
        ErrorCode::kFormat,
        "tensor " + name + " has shape " + shape_string(got) + ", expected " + shape_string(expect),
        {file_.source(), {}, name});
  }
  const TensorView v = file_.view(*file_.find_tensor(name));
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  switch (v.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), v.data, out.size() * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16: {
      std::vector<std::uint16_t> half(out.size());
      std::memcpy(half.data(), v.data, half.size() * 2);
      if (v.dtype == DType::kF16) {
        f16_to_f32(half.data(), out.data(), out.size());
      } else {
        bf16_to_f32(half.data(), out.data(), out.size());
      }
      break;
    }
    default:
      throw Error(ErrorCode::kUnsupported,
                  "tensor " + name + " is " + std::string(dtype_name(v.dtype)) +
                      " (f32, f16, bf16 are read)",
                  {file_.source(), {}, name});
  }
  return out;
}

ImageNet::Conv ImageNet::conv(const std::string& name, std::int64_t out, std::int64_t in,
                              kernels::ConvShape shape, bool bias) const {
  const std::string wname = name + ".weight";
  const std::int64_t k = shape.kernel;
  Shape expect = channels_last_ ? Shape{out, k, k, in} : Shape{out, in, k, k};
  if (k == 1 && this->shape(wname).size() == 2) expect = {out, in};
  std::vector<float> w = f32(wname, expect);
  if (channels_last_ && expect.size() == 4) {
    // [out, kh, kw, in] to [out, in, kh, kw], one output channel at a time.
    std::vector<float> t(static_cast<std::size_t>(in * k * k));
    for (std::int64_t o = 0; o < out; ++o) {
      float* row = w.data() + o * in * k * k;
      for (std::int64_t p = 0; p < k * k; ++p) {
        for (std::int64_t c = 0; c < in; ++c) t[c * k * k + p] = row[p * in + c];
      }
      std::memcpy(row, t.data(), t.size() * sizeof(float));
    }
  }
  std::vector<float> b;
  if (bias) b = f32(name + ".bias", {out});
  return {backend_.make_conv2d(w.data(), bias ? b.data() : nullptr, out, in, shape)};
}

ImageNet::Norm ImageNet::norm(const std::string& name, std::int64_t channels, std::int64_t groups,
                              float eps) const {
  if (groups <= 0 || channels % groups != 0) {
    throw Error(ErrorCode::kFormat,
                "group norm " + name + " of " + std::to_string(channels) +
                    " channels cannot have " + std::to_string(groups) + " groups",
                {file_.source()});
  }
  return {f32(name + ".weight", {channels}), f32(name + ".bias", {channels}), groups, eps};
}

Activations ImageNet::run(const Conv& c, const Activations& x, const Activations* residual,
                          Activation act) const {
  const kernels::ConvShape& s = c.w->shape();
  if (x.channels != c.w->in_channels()) {
    throw Error(ErrorCode::kInternal, "convolution input of " + std::to_string(x.channels) +
                                          " channels, expected " +
                                          std::to_string(c.w->in_channels()));
  }
  Activations y{s.out_size(x.height), s.out_size(x.width), c.w->out_channels(), {}};
  y.data.resize(static_cast<std::size_t>(y.pixels() * y.channels));
  if (residual != nullptr && residual->data.size() != y.data.size()) {
    throw Error(ErrorCode::kInternal, "convolution residual of the wrong size");
  }
  backend_.conv2d(*c.w, x.data.data(), x.height, x.width, y.data.data(),
                  residual != nullptr ? residual->data.data() : nullptr, act);
  return y;
}

void ImageNet::run(const Norm& n, Activations& x, Activation act) const {
  backend_.group_norm(x.data.data(), x.data.data(), x.pixels(), x.channels, n.groups,
                      n.gamma.data(), n.beta.data(), n.eps, act);
}

Activations ImageNet::upsample(const Activations& x) const {
  Activations y{2 * x.height, 2 * x.width, x.channels, {}};
  y.data.resize(static_cast<std::size_t>(y.pixels() * y.channels));
  backend_.upsample_nearest2x(x.data.data(), x.height, x.width, x.channels, y.data.data());
  return y;
}

}  // namespace hearth::models
