// The compute backend seam: every model graph (BERT now; the LLM and FLUX next) runs its ops
// through a Backend. The CPU backend splits each op over a ThreadPool and calls the kernel table
// of the chosen instruction set; a CUDA backend implements the same interface over device
// buffers. Weights of linear layers are prepared once by the backend (make_linear) so that each
// can keep them in its own layout (packed GEMM panels here, device memory there).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/tensor/dtype.hpp"

namespace hearth::kernels {

// kQuickGelu: x * sigmoid(1.702 x) (CLIP).
enum class Activation { kNone, kGeluErf, kGeluTanh, kSilu, kTanh, kQuickGelu, kRelu };
const char* to_string(Activation a);

// Which f32 GEMM a CPU backend uses: hearth's own packed kernel, OpenBLAS, or per shape the one
// that measured faster on this machine (see docs/compute.md and bench-cli embed --gemm).
enum class GemmImpl { kAuto, kOwn, kOpenBlas };
const char* to_string(GemmImpl g);

// A linear layer's weight W [out, in] (PyTorch layout) and optional bias [out], in a backend's
// own layout.
class LinearWeights {
 public:
  LinearWeights(std::int64_t out_features, std::int64_t in_features)
      : out_(out_features), in_(in_features) {}
  virtual ~LinearWeights() = default;
  std::int64_t out_features() const { return out_; }
  std::int64_t in_features() const { return in_; }

 private:
  std::int64_t out_;
  std::int64_t in_;
};

// A weight matrix [rows, cols] (PyTorch Linear layout: out x in, row-major) in its stored element
// type over memory that someone else keeps alive, usually a file mapping. Any byte alignment.
// Backends read it in place (make_linear_view) instead of copying it. Element types: f32, f16,
// bf16 and the ggml block types of tensor/ggml_quant.hpp (each row cols / block_size blocks).
// MLX affine quantization (tensor/mlx_quant.hpp) is dtype kU32 with affine.bits > 0: data holds
// rows packed rows of cols * bits / 8 bytes, affine.scales and affine.biases [rows, cols /
// group_size] of affine.scale_dtype (f16, bf16 or f32).
struct WeightView {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  struct Affine {
    int bits = 0;
    int group_size = 0;
    DType scale_dtype = DType::kF16;
    const void* scales = nullptr;
    const void* biases = nullptr;
  } affine = {};
  bool is_affine() const { return dtype == DType::kU32 && affine.bits > 0; }
};

// The keys and values of a decoder's attention layers for up to capacity positions, kv_heads
// heads of head_dim each per layer, in the backend's memory (f16 or f32).
class KvCache {
 public:
  KvCache(std::int64_t layers, std::int64_t kv_heads, std::int64_t head_dim, std::int64_t capacity,
          DType dtype)
      : layers_(layers),
        kv_heads_(kv_heads),
        head_dim_(head_dim),
        capacity_(capacity),
        dtype_(dtype) {}
  virtual ~KvCache() = default;
  std::int64_t layers() const { return layers_; }
  std::int64_t kv_heads() const { return kv_heads_; }
  std::int64_t head_dim() const { return head_dim_; }
  std::int64_t capacity() const { return capacity_; }
  DType dtype() const { return dtype_; }
  std::uint64_t bytes() const {
    return 2ull * static_cast<std::uint64_t>(layers_ * kv_heads_ * head_dim_ * capacity_) *
           (dtype_ == DType::kF16 ? 2u : 4u);
  }

 private:
  std::int64_t layers_, kv_heads_, head_dim_, capacity_;
  DType dtype_;
};

// A 2-D convolution's shape: kernel x kernel taps, stride, and zero padding before (top, left)
// and after (bottom, right) the image. Output size: (size + pad_begin + pad_end - kernel) /
// stride + 1 per axis.
struct ConvShape {
  std::int64_t kernel = 3;
  std::int64_t stride = 1;
  std::int64_t pad_begin = 1;
  std::int64_t pad_end = 1;
  std::int64_t out_size(std::int64_t size) const {
    return (size + pad_begin + pad_end - kernel) / stride + 1;
  }
};

// A convolution's weight [out, in, kernel, kernel] (PyTorch Conv2d layout) and optional bias
// [out], in a backend's own layout.
class ConvWeights {
 public:
  ConvWeights(std::int64_t out_channels, std::int64_t in_channels, ConvShape shape)
      : out_(out_channels), in_(in_channels), shape_(shape) {}
  virtual ~ConvWeights() = default;
  std::int64_t out_channels() const { return out_; }
  std::int64_t in_channels() const { return in_; }
  const ConvShape& shape() const { return shape_; }

 private:
  std::int64_t out_;
  std::int64_t in_;
  ConvShape shape_;
};

// Time and work spent in linear() since the last reset (for benchmarks: achieved GEMM GFLOP/s).
struct LinearStats {
  double seconds = 0.0;
  double flops = 0.0;
  std::int64_t calls = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Counted only while enabled (off by default; the count costs two clock reads per call).
  void count_linear(bool on) { counting_ = on; }
  const LinearStats& linear_stats() const { return stats_; }
  void reset_linear_stats() { stats_ = {}; }

  // Copies W (and bias, may be null) into the backend's layout.
  virtual std::unique_ptr<LinearWeights> make_linear(const float* w, const float* bias,
                                                     std::int64_t out_features,
                                                     std::int64_t in_features) const = 0;
  // A linear layer over w in place (no copy: w's memory must outlive the result), f32 bias (may
  // be null, copied). Throws Error(kUnsupported) for element types other than f32/f16/bf16 and
  // mlx affine (is_affine(); cols a multiple of its group size), or the ggml block types (whose
  // layers quantize x to 8 bits per block of 32: see kernels/quant_ggml.hpp), kInvalidArgument
  // when cols is not whole blocks.
  virtual std::unique_ptr<LinearWeights> make_linear_view(const WeightView& w,
                                                          const float* bias) const = 0;
  // y[rows, out] = act(x[rows, in] W^T + b). x rows are contiguous (in floats apart). Layers made
  // by make_linear_view run as a GEMV streaming the weights for few rows (decode) and as a GEMM
  // converting weight panels on the fly for many (prefill).
  virtual void linear(const LinearWeights& w, const float* x, std::int64_t rows, float* y,
                      Activation act = Activation::kNone) = 0;

  // out = LN(x + residual) per row of dim (residual may be null; out may equal x).
  virtual void layer_norm(const float* x, const float* residual, float* out, std::int64_t rows,
                          std::int64_t dim, const float* gamma, const float* beta, float eps) = 0;
  virtual void rms_norm(const float* x, float* out, std::int64_t rows, std::int64_t dim,
                        const float* gamma, float eps) = 0;
  virtual void activation(Activation act, const float* x, float* out, std::int64_t n) = 0;
  virtual void add(const float* a, const float* b, float* out, std::int64_t n) = 0;
  virtual void mul(const float* a, const float* b, float* out, std::int64_t n) = 0;
  virtual void softmax(float* x, std::int64_t rows, std::int64_t dim) = 0;

  // Multi-head scaled-dot-product attention over a padded batch: batch sequences of len rows
  // each; head h of row r of Q/K/V starts at q/k/v + r * ld + h * head_dim. Keys at positions
  // >= valid[b] are masked; padded query rows come out zero. out rows are ld_out apart.
  virtual void attention(const float* q, const float* k, const float* v, std::int64_t ld,
                         float* out, std::int64_t ld_out, std::int64_t batch, std::int64_t len,
                         const std::int64_t* valid, std::int64_t heads, std::int64_t head_dim,
                         float scale) = 0;

  // Multi-head attention over batch unpadded sequences of len rows (layout as attention()) with
  // an additive score bias and/or a causal mask: the score of query i for key j in head h is
  // scale q.k + bias[(h * len + i) * len + j] (bias: heads x len x len floats shared by the
  // batch, or null), and keys j > i are masked when causal (CLIP's text encoder; T5's relative
  // position bias).
  virtual void attention_biased(const float* q, const float* k, const float* v, std::int64_t ld,
                                float* out, std::int64_t ld_out, std::int64_t batch,
                                std::int64_t len, std::int64_t heads, std::int64_t head_dim,
                                float scale, const float* bias, bool causal) = 0;

  // out[i] = table row ids[i] converted to f32 (cols floats each; f32, f16, bf16, mlx affine or a
  // ggml block type, dequantized exactly); ids checked (kInternal).
  virtual void embedding(const WeightView& table, const std::int32_t* ids, std::int64_t n,
                         float* out) = 0;

  // out[r, i] = silu(gate[r * ld + i]) * up[r * ld + i] for i < dim; out rows are dim apart.
  virtual void silu_mul(const float* gate, const float* up, std::int64_t ld, std::int64_t rows,
                        std::int64_t dim, float* out) = 0;

  // Rotary position embedding in place. Row r of x (rows ld floats apart) holds heads heads of
  // head_dim floats at position positions[r]; the first rot_dims of each head rotate by angles
  // positions[r] * inv_freq[i] (rot_dims / 2 frequencies), pairing (i, i + rot_dims / 2) when
  // neox, else (2i, 2i + 1). cos and sin are multiplied by mscale.
  virtual void rope(float* x, std::int64_t rows, std::int64_t ld, std::int64_t heads,
                    std::int64_t head_dim, std::int64_t rot_dims, const std::int64_t* positions,
                    const float* inv_freq, float mscale, bool neox) = 0;

  // A cache for layers x kv_heads x capacity positions (dtype kF16 or kF32), uninitialised.
  virtual std::unique_ptr<KvCache> make_kv_cache(std::int64_t layers, std::int64_t kv_heads,
                                                 std::int64_t head_dim, std::int64_t capacity,
                                                 DType dtype) const = 0;
  // Stores rows keys and values (row r: kv_heads x head_dim floats at k/v + r * ld) at positions
  // first_pos + r of layer's cache.
  virtual void kv_store(KvCache& cache, std::int64_t layer, std::int64_t first_pos,
                        std::int64_t rows, const float* k, const float* v, std::int64_t ld) = 0;
  // Causal attention over the cache: query row r (heads x head_dim floats at q + r * ld_q) sits
  // at position first_pos + r and attends to cached keys 0..first_pos + r, or only to the last
  // window of them (query - key < window) when window > 0. Query head h reads KV head
  // h / (heads / kv_heads). out rows are ld_out apart.
  virtual void attention_cached(const KvCache& cache, std::int64_t layer, const float* q,
                                std::int64_t ld_q, std::int64_t rows, std::int64_t first_pos,
                                std::int64_t heads, float scale, std::int64_t window, float* out,
                                std::int64_t ld_out) = 0;

  // out[i] = table[ids[i]] (rows of dim floats). ids must be < table_rows (checked: kInternal).
  virtual void embedding(const float* table, std::int64_t table_rows, std::int64_t dim,
                         const std::int32_t* ids, std::int64_t n, float* out) = 0;

  // ---- Image ops. Images are NHWC: pixel (y, x) of an h x w image with c channels is the row
  // y * w + x of c contiguous floats, so a 1x1 convolution is a linear layer over pixel rows and
  // a k x k one a GEMM over rows of k * k * c gathered floats (see docs/image.md). ----

  // Copies W [out, in, k, k] (and bias [out], may be null) into the backend's layout. Throws
  // kInvalidArgument for empty or impossible shapes.
  virtual std::unique_ptr<ConvWeights> make_conv2d(const float* w, const float* bias,
                                                   std::int64_t out_channels,
                                                   std::int64_t in_channels,
                                                   ConvShape shape) const = 0;
  // y [oh, ow, out] = act(conv(x [h, w, in]) + bias + residual); residual [oh, ow, out] may be
  // null. y must not overlap x or residual.
  virtual void conv2d(const ConvWeights& w, const float* x, std::int64_t h, std::int64_t w_px,
                      float* y, const float* residual = nullptr,
                      Activation act = Activation::kNone) = 0;
  // Group normalisation of pixels rows of channels floats: the channels split into groups
  // consecutive groups, each normalised over all its pixels and channels (mean, biased
  // variance, eps), then out = act(gamma * xhat + beta) per channel. act: kNone, kSilu or kRelu.
  // out may equal x.
  virtual void group_norm(const float* x, float* out, std::int64_t pixels, std::int64_t channels,
                          std::int64_t groups, const float* gamma, const float* beta, float eps,
                          Activation act = Activation::kNone) = 0;
  // Nearest-neighbour 2x upsampling: out [2h, 2w, c] from x [h, w, c].
  virtual void upsample_nearest2x(const float* x, std::int64_t h, std::int64_t w, std::int64_t c,
                                  float* out) = 0;

 protected:
  bool counting_ = false;
  LinearStats stats_;
};

// The CPU backend on pool at the given instruction-set level (at most what the CPU has).
std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, SimdLevel level = simd_level(),
                                          GemmImpl gemm = GemmImpl::kAuto);

}  // namespace hearth::kernels
