#include "hearth/models/encoder_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "hearth/core/error.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/tensor/float8.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::models::detail {

namespace fs = std::filesystem;
using i64 = std::int64_t;

EncoderWeights EncoderWeights::open(const fs::path& path, const std::string& probe,
                                    const std::vector<std::string>& prefixes) {
  if (!fs::exists(path)) {
    throw Error(ErrorCode::kNotFound, "no such model file or folder", {.file = path.string()});
  }
  if (fs::is_directory(path)) {
    auto folder = std::make_shared<formats::ModelFolder>(formats::ModelFolder::open(path));
    std::optional<nlohmann::json> config;
    if (folder->has_config()) config = folder->config();
    EncoderWeights w(
        path.string(),
        [folder](const std::string& name, const Shape&) -> std::optional<TensorView> {
          if (const auto ref = folder->find_tensor(name)) return formats::ModelFolder::view(*ref);
          return std::nullopt;
        },
        std::move(config));
    w.keep_alive.push_back(folder);
    return w;
  }
  auto file = std::make_shared<formats::SafetensorsFile>(formats::SafetensorsFile::open(path));
  std::string prefix;
  bool found = false;
  for (const std::string& p : prefixes) {
    if (file->find_tensor(p + probe)) {
      prefix = p;
      found = true;
      break;
    }
  }
  if (!found) {
    throw Error(ErrorCode::kNotFound, "not a text encoder of this kind: no tensor " + probe,
                {.file = path.string(), .key = probe});
  }
  EncoderWeights w(
      path.string(),
      [file, prefix](const std::string& name, const Shape&) -> std::optional<TensorView> {
        if (const auto* info = file->find_tensor(prefix + name)) return file->view(*info);
        return std::nullopt;
      });
  w.keep_alive.push_back(file);
  return w;
}

EncoderWeights EncoderWeights::gguf(std::shared_ptr<const formats::GGUFFile> file,
                                    const std::string& probe,
                                    const std::vector<std::string>& prefixes) {
  const auto prefix = std::find_if(prefixes.begin(), prefixes.end(), [&](const std::string& p) {
    return file->find_tensor(p + probe) != nullptr;
  });
  if (prefix == prefixes.end()) {
    throw Error(ErrorCode::kNotFound, "no tensor " + probe, {.file = file->source(), .key = probe});
  }
  EncoderWeights w(
      file->source(),
      [file, p = *prefix](const std::string& name, const Shape&) -> std::optional<TensorView> {
        if (const auto* info = file->find_tensor(p + name)) return file->view(*info);
        return std::nullopt;
      });
  w.keep_alive.push_back(file);
  return w;
}

EncoderWeights EncoderWeights::random(DType dtype, unsigned seed, ThreadPool& pool) {
  const bool f8 = dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2;
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16 && !f8 &&
      !ggml::supported(dtype)) {
    throw Error(ErrorCode::kInvalidArgument,
                "random weights are f32, f16, bf16, f8_e4m3, f8_e5m2 or a ggml block type (q4_0 "
                "... iq4_xs)");
  }
  auto store = std::make_shared<std::vector<std::unique_ptr<std::byte[]>>>();
  auto index = std::make_shared<std::uint64_t>(0);
  ThreadPool* p = &pool;
  EncoderWeights w(
      "random weights",
      [store, index, dtype, f8, seed, p](const std::string& name,
                                         const Shape& shape) -> std::optional<TensorView> {
        if (shape.empty()) return std::nullopt;
        const bool vector = shape.size() == 1;
        // Block types: matrices of whole-block rows only (the others f32), a row per unit.
        const bool quant =
            !vector && ggml::supported(dtype) && shape.back() % dtype_info(dtype).block_size == 0;
        const DType dt = vector || (ggml::supported(dtype) && !quant) ? DType::kF32 : dtype;
        const auto n = static_cast<std::size_t>(numel(shape));
        const std::size_t es = dt == DType::kF32 ? 4 : f8 ? 1 : 2;
        const auto cols = static_cast<std::size_t>(shape.back());
        const std::size_t row_bytes =
            quant ? static_cast<std::size_t>(ggml::row_bytes(dt, shape.back())) : 0;
        const std::size_t nbytes = quant ? n / cols * row_bytes : n * es;
        auto& buf = store->emplace_back(new std::byte[nbytes]);
        const bool embedding = name.find("embed") != std::string::npos || name == "shared.weight";
        const float scale = vector      ? 0.1f
                            : embedding ? 1.7f
                                        : 1.7f / std::sqrt(static_cast<float>(shape.back()));
        const float mean = vector && name.find("norm") != std::string::npos ? 1.0f : 0.0f;
        const std::uint64_t base = (static_cast<std::uint64_t>(seed) << 40) ^ (++*index << 32);
        const std::size_t unit = quant ? cols : 4096;
        p->parallel_for((n + unit - 1) / unit, [&](std::size_t b, std::size_t e) {
          std::vector<float> block(unit);
          std::vector<std::uint16_t> half(unit);
          for (std::size_t blk = b; blk < e; ++blk) {
            const std::size_t i = blk * unit;
            const std::size_t len = std::min(unit, n - i);
            for (std::size_t j = 0; j < len; ++j) {
              std::uint64_t z = (base + i + j + 1) * 0x9E3779B97F4A7C15ull;
              z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
              z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
              z ^= z >> 31;
              block[j] = mean + scale * (static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
            }
            if (quant) {
              ggml::quantize_row(dt, block.data(), buf.get() + blk * row_bytes,
                                 static_cast<std::int64_t>(cols));
            } else if (dt == DType::kF32) {
              std::memcpy(buf.get() + i * 4, block.data(), len * 4);
            } else if (f8) {
              auto* out = reinterpret_cast<std::uint8_t*>(buf.get()) + i;
              for (std::size_t j = 0; j < len; ++j) {
                out[j] = dt == DType::kF8E4M3 ? f32_to_f8e4m3(block[j]) : f32_to_f8e5m2(block[j]);
              }
            } else {
              if (dt == DType::kF16) {
                f32_to_f16(block.data(), half.data(), len);
              } else {
                f32_to_bf16(block.data(), half.data(), len);
              }
              std::memcpy(buf.get() + i * 2, half.data(), len * 2);
            }
          }
        });
        return TensorView::contiguous(dt, shape, buf.get(), nbytes);
      });
  w.keep_alive.push_back(store);
  return w;
}

TensorView EncoderWeights::need(const std::string& name, const Shape& shape) const {
  const auto view = find_(name, shape);
  if (!view) throw Error(ErrorCode::kNotFound, "missing weight", {.file = source_, .key = name});
  if (view->shape != shape) {
    throw Error(ErrorCode::kFormat,
                "weight has shape " + shape_string(view->shape) + ", the config needs " +
                    shape_string(shape),
                {.file = source_, .key = name});
  }
  if (view->dtype != DType::kF32 && view->dtype != DType::kF16 && view->dtype != DType::kBF16 &&
      view->dtype != DType::kF8E4M3 && view->dtype != DType::kF8E5M2) {
    throw Error(ErrorCode::kUnsupported,
                "weights must be f32, f16, bf16, f8_e4m3 or f8_e5m2, not " +
                    std::string(dtype_name(view->dtype)),
                {.file = source_, .key = name});
  }
  if (!view->is_contiguous()) {
    throw Error(ErrorCode::kFormat, "tensor is not contiguous", {.file = source_, .key = name});
  }
  parameters_ += view->numel();
  return *view;
}

TensorView EncoderWeights::matrix(const std::string& name, i64 rows, i64 cols,
                                  bool scales_applied) const {
  const auto view = find_(name, {rows, cols});
  if (view && !scales_applied && (view->dtype == DType::kF8E4M3 || view->dtype == DType::kF8E5M2) &&
      name.ends_with(".weight")) {
    const std::string base = name.substr(0, name.size() - 7);
    for (const char* s : {".scale_weight", ".weight_scale"}) {
      if (find_(base + s, {})) {
        throw Error(ErrorCode::kUnsupported,
                    "scaled float8 weights (" + base + s +
                        "): only the FLUX transformer applies their scales",
                    {.file = source_, .key = name});
      }
    }
  }
  if (view && dtype_info(view->dtype).quantized && !ggml::supported(view->dtype)) {
    throw Error(ErrorCode::kUnsupported,
                "matrix type " + std::string(dtype_name(view->dtype)) +
                    " is not supported (f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, "
                    "q4_K, q5_K, q6_K, iq4_nl, iq4_xs are)",
                {.file = source_, .key = name});
  }
  if (!view || !ggml::supported(view->dtype)) return need(name, {rows, cols});
  if (view->shape != Shape{rows, cols}) {
    throw Error(ErrorCode::kFormat,
                "weight has shape " + shape_string(view->shape) + ", the config needs " +
                    shape_string({rows, cols}),
                {.file = source_, .key = name});
  }
  if (cols % dtype_info(view->dtype).block_size != 0) {
    throw Error(ErrorCode::kFormat,
                "rows of " + std::to_string(cols) + " elements are not whole " +
                    std::string(dtype_name(view->dtype)) + " blocks",
                {.file = source_, .key = name});
  }
  parameters_ += rows * cols;
  return *view;
}

std::vector<float> EncoderWeights::vec(const std::string& name, i64 n) const {
  const TensorView v = need(name, {n});
  std::vector<float> out(static_cast<std::size_t>(n));
  if (v.dtype == DType::kF32) {
    std::memcpy(out.data(), v.data, out.size() * 4);
  } else if (v.dtype == DType::kF8E4M3 || v.dtype == DType::kF8E5M2) {
    const auto* b = reinterpret_cast<const std::uint8_t*>(v.data);
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = v.dtype == DType::kF8E4M3 ? f8e4m3_to_f32(b[i]) : f8e5m2_to_f32(b[i]);
    }
  } else {
    std::vector<std::uint16_t> h(out.size());
    std::memcpy(h.data(), v.data, h.size() * 2);
    if (v.dtype == DType::kF16) {
      f16_to_f32(h.data(), out.data(), h.size());
    } else {
      bf16_to_f32(h.data(), out.data(), h.size());
    }
  }
  return out;
}

std::unique_ptr<kernels::LinearWeights> EncoderWeights::linear(kernels::Backend& be,
                                                               const std::string& base, i64 out,
                                                               i64 in, bool bias) const {
  std::vector<float> b;
  if (affine) {
    if (const auto a = affine(base, out, in)) {
      parameters_ += out * in;
      if (bias) b = vec(base + ".bias", out);
      return be.make_linear_view(*a, bias ? b.data() : nullptr);
    }
  }
  const TensorView w = matrix(base + ".weight", out, in);
  if (bias) b = vec(base + ".bias", out);
  return be.make_linear_view({w.dtype, w.data, out, in}, bias ? b.data() : nullptr);
}

kernels::WeightView EncoderWeights::table(const std::string& name, i64 rows, i64 cols) const {
  if (affine && name.ends_with(".weight")) {
    if (const auto a = affine(name.substr(0, name.size() - 7), rows, cols)) {
      parameters_ += rows * cols;
      return *a;
    }
  }
  const TensorView t = need(name, {rows, cols});
  return {t.dtype, t.data, rows, cols};
}

std::pair<i64, i64> EncoderWeights::mflux_dims(const formats::ModelFolder& folder,
                                               const std::string& name, const std::string& what) {
  if (const auto* q = folder.find_quantized(name)) return {q->out_features, q->in_features};
  const auto t = folder.find_tensor(name + ".weight");
  if (!t || t->info->shape.size() != 2) {
    throw Error(ErrorCode::kFormat, what + ": tensor missing or not a matrix",
                {.file = folder.path().string(), .key = name + ".weight"});
  }
  return {t->info->shape[0], t->info->shape[1]};
}

EncoderWeights EncoderWeights::mflux(std::shared_ptr<const formats::ModelFolder> folder,
                                     std::function<std::string(const std::string&)> rename) {
  EncoderWeights w(
      folder->path().string(),
      [folder, rename](const std::string& name, const Shape&) -> std::optional<TensorView> {
        if (const auto ref = folder->find_tensor(rename(name))) {
          return formats::ModelFolder::view(*ref);
        }
        return std::nullopt;
      });
  w.keep_alive.push_back(folder);
  w.affine = [folder, rename](const std::string& base, i64 out,
                              i64 in) -> std::optional<kernels::WeightView> {
    const formats::QuantizedWeight* q = folder->find_quantized(rename(base));
    if (q == nullptr) return std::nullopt;
    if (q->out_features != out || q->in_features != in) {
      throw Error(ErrorCode::kFormat,
                  "packed weight " + shape_string(q->weight.info->shape) + " holds [" +
                      std::to_string(q->out_features) + ", " + std::to_string(q->in_features) +
                      "] at " + std::to_string(q->spec.bits) + " bits, the model needs [" +
                      std::to_string(out) + ", " + std::to_string(in) + "]",
                  {.file = q->weight.file->source(), .key = q->weight.info->name});
    }
    const TensorView s = formats::ModelFolder::view(q->scales);
    kernels::WeightView v{DType::kU32, formats::ModelFolder::view(q->weight).data, out, in};
    v.affine = {q->spec.bits, q->spec.group_size, s.dtype, s.data,
                formats::ModelFolder::view(q->biases).data};
    return v;
  };
  return w;
}

i64 config_int(const nlohmann::json& cfg, const char* key, std::optional<i64> fallback,
               const std::string& file) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (fallback) return *fallback;
    throw Error(ErrorCode::kNotFound, "config.json lacks a required key",
                {.file = file, .key = key});
  }
  if (!it->is_number_integer()) {
    throw Error(ErrorCode::kFormat, "config value must be an integer", {.file = file, .key = key});
  }
  return it->get<i64>();
}

float config_float(const nlohmann::json& cfg, const char* key, float fallback,
                   const std::string& file) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return fallback;
  if (!it->is_number()) {
    throw Error(ErrorCode::kFormat, "config value must be a number", {.file = file, .key = key});
  }
  return it->get<float>();
}

}  // namespace hearth::models::detail
