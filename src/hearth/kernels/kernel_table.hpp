// The single-threaded CPU kernels, one table per instruction set (scalar, AVX2, AVX-512), all
// built from one source (kernels_impl.hpp) over a float vector type. CpuBackend splits work over
// the thread pool and calls these; tests call them directly to check every level against scalar
// references.
#pragma once

#include <cstdint>

#include "hearth/core/cpu.hpp"

namespace hearth::kernels {

// Element types of weights read in place (WeightView): index into the per-type kernel arrays.
enum WeightType : int {
  kWeightF32 = 0,
  kWeightF16 = 1,
  kWeightBF16 = 2,
  kWeightF8E4M3 = 3,  // float8 e4m3fn (tensor/float8.hpp)
  kWeightF8E5M2 = 4,
  kWeightTypes = 5
};

// The activation fused into channel_affine (group norm's output).
enum ChannelActivation : int { kChannelNone = 0, kChannelSilu = 1, kChannelRelu = 2 };

struct KernelTable {
  SimdLevel level;

  // GEMM micro-panel geometry: B (an [n, k] weight, PyTorch Linear layout) is packed into
  // ceil(n / nr) panels of k x nr floats (k-major, zero-padded past n) by pack_b().
  int gemm_nr;
  int gemm_mr;
  // C[m0:m1, panels p0:p1] = A[m0:m1, :k] * B^T + bias. A rows are lda apart, C rows ldc apart;
  // n is B's real row count (the last panel may be partial); bias is padded to whole panels or
  // null.
  void (*gemm_packed)(const float* a, std::int64_t lda, std::int64_t m0, std::int64_t m1,
                      const float* packed_b, const float* bias, std::int64_t n, std::int64_t k,
                      std::int64_t p0, std::int64_t p1, float* c, std::int64_t ldc);

  // Row-wise normalisations over rows x dim floats. out may equal x. residual (may be null) is
  // added to x first: out = LN(x + residual).
  void (*layer_norm)(const float* x, const float* residual, float* out, std::int64_t rows,
                     std::int64_t dim, const float* gamma, const float* beta, float eps);
  void (*rms_norm)(const float* x, float* out, std::int64_t rows, std::int64_t dim,
                   const float* gamma, float eps);

  // Elementwise over n floats; out may equal an input.
  void (*gelu_erf)(const float* x, float* out, std::int64_t n);
  void (*gelu_tanh)(const float* x, float* out, std::int64_t n);
  void (*silu)(const float* x, float* out, std::int64_t n);
  void (*tanh)(const float* x, float* out, std::int64_t n);
  void (*add)(const float* a, const float* b, float* out, std::int64_t n);
  void (*mul)(const float* a, const float* b, float* out, std::int64_t n);

  // In-place softmax of each of rows rows of dim floats.
  void (*softmax)(float* x, std::int64_t rows, std::int64_t dim);

  // One attention head of one sequence: q, k, v are len rows of head_dim floats, ld apart; keys
  // at positions >= valid are masked out (padding), query rows >= valid give zeros. out rows are
  // ld_out apart. scratch holds attention_scratch_floats(len, head_dim) floats.
  void (*attention_head)(const float* q, const float* k, const float* v, std::int64_t ld,
                         float* out, std::int64_t ld_out, std::int64_t len, std::int64_t valid,
                         std::int64_t head_dim, float scale, float* scratch);

  // y[r, n0:n1] = x[r, :k] W[n0:n1, :k]^T + bias for r < rows, W a row-major [n, k] matrix of
  // the WeightType's elements at any byte address (bias may be null; x rows ldx apart, y rows
  // ldy apart). Streams each weight row once per block of four and reuses it for every x row.
  void (*gemv[kWeightTypes])(const void* w, std::int64_t k, std::int64_t n0, std::int64_t n1,
                             const float* x, std::int64_t rows, std::int64_t ldx, const float* bias,
                             float* y, std::int64_t ldy);
  // C[0:m, panels p0:p1] = A[0:m, :k] W^T + bias with W as for gemv: each panel's depth slices
  // are converted to f32 (gemm_nr columns) on the fly and used for all m rows. bias is padded to
  // whole panels or null.
  void (*gemm_convert[kWeightTypes])(const float* a, std::int64_t lda, std::int64_t m,
                                     const void* w, const float* bias, std::int64_t n,
                                     std::int64_t k, std::int64_t p0, std::int64_t p1, float* c,
                                     std::int64_t ldc);
  // One query head over cached keys/values lo..hi-1 (rows of head_dim, f16 when half else f32,
  // starting at k/v): out = softmax(scale q.K^T) V. scores holds hi - lo floats.
  void (*attention_kv)(const float* q, const void* k, const void* v, bool half, std::int64_t lo,
                       std::int64_t hi, std::int64_t head_dim, float scale, float* out,
                       float* scores);
  // Rotary embedding of rows (see Backend::rope); cs holds rot_dims floats.
  void (*rope)(float* x, std::int64_t rows, std::int64_t ld, std::int64_t heads,
               std::int64_t head_dim, std::int64_t rot_dims, const std::int64_t* positions,
               const float* inv_freq, float mscale, bool neox, float* cs);
  // out[r, i] = silu(gate[r * ld + i]) * up[r * ld + i]; out rows dim apart.
  void (*silu_mul)(const float* gate, const float* up, std::int64_t ld, std::int64_t rows,
                   std::int64_t dim, float* out);
  // attention_head over all len keys with an additive score bias (bias[i * len + j] added to
  // query i's scaled score for key j; null: none) and, when causal, keys j > i masked.
  // scratch holds attention_scratch_floats(len, head_dim) floats.
  void (*attention_head_bias)(const float* q, const float* k, const float* v, std::int64_t ld,
                              float* out, std::int64_t ld_out, std::int64_t len,
                              std::int64_t head_dim, float scale, const float* bias, bool causal,
                              float* scratch);
  // out = x * sigmoid(1.702 x) over n floats (CLIP's quick-GELU); out may equal x.
  void (*quick_gelu)(const float* x, float* out, std::int64_t n);

  // ---- Image kernels over NHWC rows (one pixel's channels floats per row) ----
  // out[i] = max(x[i], 0) over n floats; out may equal x.
  void (*relu)(const float* x, float* out, std::int64_t n);
  // Per channel c over rows rows: s1[c] += sum (x[r, c] - center[c]) and s2[c] += sum (x[r, c] -
  // center[c])^2 (group norm's statistics; centring on a first-pass mean keeps them exact).
  void (*channel_moments)(const float* x, std::int64_t rows, std::int64_t channels,
                          const float* center, float* s1, float* s2);
  // out[r, c] = act(x[r, c] * scale[c] + shift[c]) (act a ChannelActivation); out may equal x.
  void (*channel_affine)(const float* x, float* out, std::int64_t rows, std::int64_t channels,
                         const float* scale, const float* shift, int act);
};

inline std::int64_t attention_scratch_floats(std::int64_t len, std::int64_t head_dim) {
  return (2 * head_dim + 1) * (len + 16);
}

// The table for a level this CPU supports (throws Error kUnsupported otherwise).
const KernelTable& kernel_table(SimdLevel level);
// The table for simd_level().
const KernelTable& kernel_table();

// Packs the [n, k] row-major matrix w into panels of nr columns for gemm_packed. out holds
// panels(n, nr) * k * nr floats.
void pack_b(const float* w, std::int64_t n, std::int64_t k, int nr, float* out);
inline std::int64_t gemm_panels(std::int64_t n, int nr) {
  return (n + nr - 1) / nr;
}

namespace detail {
const KernelTable& kernel_table_scalar();
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();
}  // namespace detail

}  // namespace hearth::kernels
