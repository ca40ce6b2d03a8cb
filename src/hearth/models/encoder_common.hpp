// What the FLUX text encoders (CLIP text, T5 encoder) share: run options and the weight reader
// that finds tensors by Hugging Face name in a folder (config.json + safetensors, sharded or not),
// a single .safetensors file (ComfyUI's clip_l / t5xxl files, possibly under a prefix; fp8 ones
// too), or random in-memory weights, and hands matrices to the backend in their stored type
// (make_linear_view: no f32 copies of big matrices).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/tensor/tensor.hpp"

namespace hearth::models {

struct TextEncoderOptions {
  std::size_t threads = 0;           // pool size when no pool is given; 0 = every core
  std::shared_ptr<ThreadPool> pool;  // optional shared pool
  SimdLevel level = simd_level();
};

namespace detail {

// Tensors by name, with shape and type checks; errors name the file and the tensor.
class EncoderWeights {
 public:
  using Find = std::function<std::optional<TensorView>(const std::string& name, const Shape&)>;

  EncoderWeights(std::string source, Find find, std::optional<nlohmann::json> config = {})
      : source_(std::move(source)), find_(std::move(find)), config_(std::move(config)) {}
  // A folder (its config.json, if any, in config()) or a single .safetensors file. In a single
  // file, names are looked up under the first of prefixes whose probe tensor exists.
  static EncoderWeights open(const std::filesystem::path& path, const std::string& probe,
                             const std::vector<std::string>& prefixes);
  // The tensors of a GGUF file by their stored names (shapes outermost first, as PyTorch's), under
  // the first of prefixes whose probe tensor exists.
  static EncoderWeights gguf(std::shared_ptr<const formats::GGUFFile> file,
                             const std::string& probe, const std::vector<std::string>& prefixes);
  // Uniform random weights of the requested shapes (matrices 1/sqrt(cols) scaled, embeddings of
  // standard deviation 1, norm gains near 1) in dtype (f32, f16, bf16, f8_e4m3, f8_e5m2: every
  // matrix, float8 rounded to nearest even); vectors f32. dtype may be a ggml block
  // type (ggml::supported): every matrix whose rows are whole blocks is quantized row by row by
  // hearth's quantizer, the others stay f32. Made on pool.
  static EncoderWeights random(DType dtype, unsigned seed, ThreadPool& pool);
  // A component folder mflux saved (see is_mflux_folder): tensors by rename(name) (mflux's name
  // for a Hugging Face one), and affine set: matrices and embedding tables MLX quantized
  // (<base>.weight U32 + .scales + .biases, the folder's bits and group size) are found there.
  static EncoderWeights mflux(std::shared_ptr<const formats::ModelFolder> folder,
                              std::function<std::string(const std::string&)> rename);
  // The [out, in] of matrix or table `name` (its stored, renamed base) in such a folder, packed
  // or plain; kFormat naming the folder and the tensor (what: the model, for the message) when it
  // is missing or not a matrix.
  static std::pair<std::int64_t, std::int64_t> mflux_dims(const formats::ModelFolder& folder,
                                                          const std::string& name,
                                                          const std::string& what);

  // MLX affine weights: base's packed matrix as a WeightView of [rows, cols] (kFormat naming file
  // and tensor when it holds another shape), or nullopt where base is not quantized. linear() and
  // table() look here first when it is set.
  using FindAffine = std::function<std::optional<kernels::WeightView>(
      const std::string& base, std::int64_t rows, std::int64_t cols)>;
  FindAffine affine;

  const std::string& source() const { return source_; }
  const nlohmann::json* config() const { return config_ ? &*config_ : nullptr; }
  std::optional<TensorView> find(const std::string& name, const Shape& shape = {}) const {
    return find_(name, shape);
  }
  // The tensor, which must exist with this shape in f32, f16, bf16 or float8 (f8_e4m3 / f8_e5m2,
  // read in place like the others), contiguous.
  TensorView need(const std::string& name, const Shape& shape) const;
  // A matrix [rows, cols] as need() gives it, or in a ggml block type (ggml::supported) whose
  // rows are whole blocks. A float8 matrix with a scale beside it (<base>.scale_weight or
  // <base>.weight_scale: scaled fp8 files) is refused unless the caller applies the scale
  // (scales_applied).
  TensorView matrix(const std::string& name, std::int64_t rows, std::int64_t cols,
                    bool scales_applied = false) const;
  std::vector<float> vec(const std::string& name, std::int64_t n) const;
  std::unique_ptr<kernels::LinearWeights> linear(kernels::Backend& be, const std::string& base,
                                                 std::int64_t out, std::int64_t in,
                                                 bool bias) const;
  kernels::WeightView table(const std::string& name, std::int64_t rows, std::int64_t cols) const;
  std::int64_t parameters() const { return parameters_; }
  // What must stay alive while views from this reader are used.
  std::vector<std::shared_ptr<const void>> keep_alive;

 private:
  std::string source_;
  Find find_;
  std::optional<nlohmann::json> config_;
  mutable std::int64_t parameters_ = 0;
};

// An integer config value (fallback when absent, else an error naming the file and key).
std::int64_t config_int(const nlohmann::json& cfg, const char* key,
                        std::optional<std::int64_t> fallback, const std::string& file);
float config_float(const nlohmann::json& cfg, const char* key, float fallback,
                   const std::string& file);

}  // namespace detail
}  // namespace hearth::models
