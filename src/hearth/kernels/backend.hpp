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

namespace hearth::kernels {

enum class Activation { kNone, kGeluErf, kGeluTanh, kSilu, kTanh };
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
  // y[rows, out] = act(x[rows, in] W^T + b). x rows are contiguous (in floats apart).
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

  // out[i] = table[ids[i]] (rows of dim floats). ids must be < table_rows (checked: kInternal).
  virtual void embedding(const float* table, std::int64_t table_rows, std::int64_t dim,
                         const std::int32_t* ids, std::int64_t n, float* out) = 0;

 protected:
  bool counting_ = false;
  LinearStats stats_;
};

// The CPU backend on pool at the given instruction-set level (at most what the CPU has).
std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, SimdLevel level = simd_level(),
                                          GemmImpl gemm = GemmImpl::kAuto);

}  // namespace hearth::kernels
