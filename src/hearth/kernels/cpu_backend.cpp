// The CPU backend: ops split over the thread pool, each chunk running the kernel table of the
// chosen instruction set; f32 GEMM by hearth's packed kernel or by OpenBLAS.
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/kernel_table.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::kernels {

const char* to_string(Activation a) {
  switch (a) {
    case Activation::kNone:
      return "none";
    case Activation::kGeluErf:
      return "gelu";
    case Activation::kGeluTanh:
      return "gelu_tanh";
    case Activation::kSilu:
      return "silu";
    case Activation::kTanh:
      return "tanh";
  }
  return "?";
}

const char* to_string(GemmImpl g) {
  switch (g) {
    case GemmImpl::kAuto:
      return "auto";
    case GemmImpl::kOwn:
      return "hearth";
    case GemmImpl::kOpenBlas:
      return "openblas";
  }
  return "?";
}

namespace {

using i64 = std::int64_t;

constexpr i64 kRowBlock = 64;  // rows of A per GEMM task
constexpr i64 kElementwiseChunk = 1 << 14;
// Up to this many rows a layer over weights read in place runs as a GEMV (each block of weight
// rows streamed once, reused from cache for every row); more rows go through the converting GEMM.
constexpr i64 kGemvMaxRows = 8;
// Prefill over block-quantized weights: weight rows per task, each decoded once per four x rows
// while the task's rows stay in L1/L2.
constexpr i64 kQuantRowChunk = 16;

WeightType weight_type(DType t) {
  switch (t) {
    case DType::kF32:
      return kWeightF32;
    case DType::kF16:
      return kWeightF16;
    case DType::kBF16:
      return kWeightBF16;
    default:
      throw Error(ErrorCode::kUnsupported, "weights of type " + std::string(dtype_name(t)) +
                                               " cannot be read in place (f32, f16, bf16 can)");
  }
}

class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(i64 layers, i64 kv_heads, i64 head_dim, i64 capacity, DType dtype)
      : KvCache(layers, kv_heads, head_dim, capacity, dtype) {
    try {
      data.reset(new unsigned char[bytes()]);  // untouched pages cost no memory until written
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::kInvalidArgument,
                  "cannot allocate a KV cache of " + std::to_string(bytes()) + " bytes");
    }
  }
  // Start of (layer, keys 0 / values 1, kv head) as [capacity][head_dim] elements.
  unsigned char* at(i64 layer, int kind, i64 head) const {
    const i64 es = dtype() == DType::kF16 ? 2 : 4;
    return data.get() + (((layer * 2 + kind) * kv_heads() + head) * capacity()) * head_dim() * es;
  }
  std::unique_ptr<unsigned char[]> data;
};

class CpuLinear final : public LinearWeights {
 public:
  CpuLinear(i64 out, i64 in) : LinearWeights(out, in) {}
  std::vector<float> packed;   // own kernel: panels of nr columns
  std::vector<float> plain;    // OpenBLAS: W as given, [out, in]
  std::vector<float> bias;     // padded to whole panels; empty when the layer has none
  const void* view = nullptr;  // make_linear_view: the weights in place, of view_type
  WeightType view_type = kWeightF32;
  DType quant = DType::kF32;  // a ggml block type when the view holds quantized blocks
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(ThreadPool& pool, SimdLevel level, GemmImpl gemm)
      : pool_(pool), k_(kernel_table(level)), q_(quant_kernels(level)), gemm_(gemm) {}

  std::string name() const override {
    return std::string("cpu-") + to_string(k_.level) + "-gemm-" + to_string(gemm_);
  }

  std::unique_ptr<LinearWeights> make_linear(const float* w, const float* bias, i64 out,
                                             i64 in) const override {
    if (out <= 0 || in <= 0) {
      throw Error(ErrorCode::kInvalidArgument, "linear layer with an empty weight");
    }
    auto lin = std::make_unique<CpuLinear>(out, in);
    const i64 panels = gemm_panels(out, k_.gemm_nr);
    if (uses_own(out, in)) {
      lin->packed.resize(static_cast<std::size_t>(panels * in * k_.gemm_nr));
      pack_b(w, out, in, k_.gemm_nr, lin->packed.data());
    }
    if (uses_openblas(out, in)) lin->plain.assign(w, w + out * in);
    if (bias != nullptr) {
      lin->bias.assign(static_cast<std::size_t>(panels * k_.gemm_nr), 0.0f);
      std::copy_n(bias, out, lin->bias.begin());
    }
    return lin;
  }

  std::unique_ptr<LinearWeights> make_linear_view(const WeightView& w,
                                                  const float* bias) const override {
    if (w.rows <= 0 || w.cols <= 0 || w.data == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "linear layer with an empty weight");
    }
    auto lin = std::make_unique<CpuLinear>(w.rows, w.cols);
    lin->view = w.data;
    if (ggml::supported(w.dtype)) {
      check_quant_cols(w);
      lin->quant = w.dtype;
    } else {
      lin->view_type = weight_type(w.dtype);
    }
    if (bias != nullptr) {
      lin->bias.assign(static_cast<std::size_t>(gemm_panels(w.rows, k_.gemm_nr) * k_.gemm_nr),
                       0.0f);
      std::copy_n(bias, w.rows, lin->bias.begin());
    }
    return lin;
  }

  void linear(const LinearWeights& weights, const float* x, i64 rows, float* y,
              Activation act) override {
    const auto& w = static_cast<const CpuLinear&>(weights);
    const i64 n = w.out_features();
    const i64 k = w.in_features();
    if (rows <= 0) return;
    if (counting_) {
      const Timer timer;
      run_linear(w, x, rows, y, act);
      stats_.seconds += timer.seconds();
      stats_.flops +=
          2.0 * static_cast<double>(rows) * static_cast<double>(n) * static_cast<double>(k);
      ++stats_.calls;
      return;
    }
    run_linear(w, x, rows, y, act);
  }

  void run_linear(const CpuLinear& w, const float* x, i64 rows, float* y, Activation act) {
    const i64 n = w.out_features();
    const i64 k = w.in_features();
    const float* bias = w.bias.empty() ? nullptr : w.bias.data();
    if (w.view != nullptr) {
      run_view(w, x, rows, y, bias);
      if (act != Activation::kNone) activation(act, y, y, rows * n);
      return;
    }
    if (!w.packed.empty()) {
      const i64 panels = gemm_panels(n, k_.gemm_nr);
      const i64 row_blocks = (rows + kRowBlock - 1) / kRowBlock;
      pool_.parallel_for(
          static_cast<std::size_t>(row_blocks * panels), [&](std::size_t begin, std::size_t end) {
            for (std::size_t t = begin; t < end; ++t) {
              const i64 mb = static_cast<i64>(t) / panels;
              const i64 p = static_cast<i64>(t) % panels;
              const i64 m0 = mb * kRowBlock;
              const i64 m1 = std::min(rows, m0 + kRowBlock);
              k_.gemm_packed(x, k, m0, m1, w.packed.data(), bias, n, k, p, p + 1, y, n);
              if (act == Activation::kNone) continue;
              const i64 col = p * k_.gemm_nr;
              const i64 cols = std::min<i64>(k_.gemm_nr, n - col);
              for (i64 r = m0; r < m1; ++r) {
                apply(act, y + r * n + col, y + r * n + col, cols);
              }
            }
          });
      return;
    }
    if (bias != nullptr) {
      for (i64 r = 0; r < rows; ++r) std::copy_n(bias, n, y + r * n);
    }
    openblas_set_num_threads(static_cast<int>(pool_.size()));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                static_cast<int>(n), static_cast<int>(k), 1.0f, x, static_cast<int>(k),
                w.plain.data(), static_cast<int>(k), bias != nullptr ? 1.0f : 0.0f, y,
                static_cast<int>(n));
    if (act != Activation::kNone) activation(act, y, y, rows * n);
  }

  void run_view(const CpuLinear& w, const float* x, i64 rows, float* y, const float* bias) {
    const i64 n = w.out_features();
    const i64 k = w.in_features();
    if (w.quant != DType::kF32) return run_quant(w, x, rows, y, bias);
    if (rows <= kGemvMaxRows) {
      const auto gemv = k_.gemv[w.view_type];
      const i64 blocks = (n + 3) / 4;
      pool_.parallel_for(static_cast<std::size_t>(blocks), [&](std::size_t b, std::size_t e) {
        const i64 n0 = static_cast<i64>(b) * 4;
        const i64 n1 = std::min(n, static_cast<i64>(e) * 4);
        gemv(w.view, k, n0, n1, x, rows, k, bias, y, n);
      });
      return;
    }
    const auto gemm = k_.gemm_convert[w.view_type];
    pool_.parallel_for(
        static_cast<std::size_t>(gemm_panels(n, k_.gemm_nr)), [&](std::size_t b, std::size_t e) {
          gemm(x, k, rows, w.view, bias, n, k, static_cast<i64>(b), static_cast<i64>(e), y, n);
        });
  }

  // Block-quantized weights: x rows quantized to 8 bits per block of 32, then the integer GEMV
  // (a few rows: each thread streams its share of W once) or, for prefill, chunks of weight rows
  // reused from cache for every four x rows.
  void run_quant(const CpuLinear& w, const float* x, i64 rows, float* y, const float* bias) {
    const i64 n = w.out_features();
    const i64 k = w.in_features();
    const i64 nb = k / 32;
    if (static_cast<i64>(xq_.size()) < rows * nb) xq_.resize(static_cast<std::size_t>(rows * nb));
    Q8Block* xq = xq_.data();
    if (rows <= kGemvMaxRows) {  // a few microseconds: not worth waking the pool
      q_.quantize_rows(x, rows, k, k, xq);
    } else {
      pool_.parallel_for(static_cast<std::size_t>(rows), [&](std::size_t b, std::size_t e) {
        const i64 r = static_cast<i64>(b);
        q_.quantize_rows(x + r * k, static_cast<i64>(e - b), k, k, xq + r * nb);
      });
    }
    const i64 chunk = rows <= kGemvMaxRows ? 4 : kQuantRowChunk;
    const i64 chunks = (n + chunk - 1) / chunk;
    pool_.parallel_for(static_cast<std::size_t>(chunks), [&](std::size_t b, std::size_t e) {
      if (rows <= kGemvMaxRows) {
        q_.gemv(w.quant, w.view, k, static_cast<i64>(b) * chunk,
                std::min(n, static_cast<i64>(e) * chunk), xq, rows, bias, y, n);
        return;
      }
      for (i64 c = static_cast<i64>(b); c < static_cast<i64>(e); ++c) {
        q_.gemv(w.quant, w.view, k, c * chunk, std::min(n, (c + 1) * chunk), xq, rows, bias, y, n);
      }
    });
  }

  static void check_quant_cols(const WeightView& w) {
    // The 8-bit activation blocks are 32 wide; every ggml type's block is a multiple of that.
    const auto block = static_cast<i64>(dtype_info(w.dtype).block_size);
    if (w.cols % block != 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  "a " + std::string(dtype_name(w.dtype)) + " weight of " + std::to_string(w.cols) +
                      " columns is not whole blocks of " + std::to_string(block));
    }
  }

  void embedding(const WeightView& table, const std::int32_t* ids, i64 n, float* out) override {
    const i64 dim = table.cols;
    const auto* base = static_cast<const unsigned char*>(table.data);
    if (ggml::supported(table.dtype)) {
      check_quant_cols(table);
      const i64 row_bytes = ggml::row_bytes(table.dtype, dim);
      for (i64 i = 0; i < n; ++i) {
        if (ids[i] < 0 || ids[i] >= table.rows) {
          throw Error(ErrorCode::kInternal, "embedding id " + std::to_string(ids[i]) +
                                                " outside a table of " +
                                                std::to_string(table.rows) + " rows");
        }
        ggml::dequantize_row(table.dtype, base + static_cast<i64>(ids[i]) * row_bytes,
                             out + i * dim, dim);
      }
      return;
    }
    std::vector<std::uint16_t> half;
    for (i64 i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= table.rows) {
        throw Error(ErrorCode::kInternal, "embedding id " + std::to_string(ids[i]) +
                                              " outside a table of " + std::to_string(table.rows) +
                                              " rows");
      }
      const auto row = static_cast<std::size_t>(ids[i]) * static_cast<std::size_t>(dim);
      float* o = out + i * dim;
      switch (weight_type(table.dtype)) {
        case kWeightF32:
          std::memcpy(o, base + row * 4, static_cast<std::size_t>(dim) * 4);
          break;
        case kWeightF16:
        case kWeightBF16:
          half.resize(static_cast<std::size_t>(dim));
          std::memcpy(half.data(), base + row * 2, half.size() * 2);
          if (table.dtype == DType::kF16) {
            f16_to_f32(half.data(), o, half.size());
          } else {
            bf16_to_f32(half.data(), o, half.size());
          }
          break;
        default:
          break;
      }
    }
  }

  void silu_mul(const float* gate, const float* up, i64 ld, i64 rows, i64 dim,
                float* out) override {
    if (rows == 1) {  // decode: split the row
      elementwise(dim, [&](i64 b, i64 e) { k_.silu_mul(gate + b, up + b, ld, 1, e - b, out + b); });
      return;
    }
    pool_.parallel_for(static_cast<std::size_t>(rows), [&](std::size_t b, std::size_t e) {
      const i64 r = static_cast<i64>(b);
      k_.silu_mul(gate + r * ld, up + r * ld, ld, static_cast<i64>(e - b), dim, out + r * dim);
    });
  }

  void rope(float* x, i64 rows, i64 ld, i64 heads, i64 head_dim, i64 rot_dims, const i64* positions,
            const float* inv_freq, float mscale, bool neox) override {
    if (rot_dims <= 0) return;
    pool_.parallel_for(static_cast<std::size_t>(rows), [&](std::size_t b, std::size_t e) {
      std::vector<float> cs(static_cast<std::size_t>(rot_dims));
      const i64 r = static_cast<i64>(b);
      k_.rope(x + r * ld, static_cast<i64>(e - b), ld, heads, head_dim, rot_dims, positions + r,
              inv_freq, mscale, neox, cs.data());
    });
  }

  std::unique_ptr<KvCache> make_kv_cache(i64 layers, i64 kv_heads, i64 head_dim, i64 capacity,
                                         DType dtype) const override {
    if (dtype != DType::kF16 && dtype != DType::kF32) {
      throw Error(ErrorCode::kUnsupported,
                  "a KV cache holds f16 or f32, not " + std::string(dtype_name(dtype)));
    }
    if (layers <= 0 || kv_heads <= 0 || head_dim <= 0 || capacity <= 0) {
      throw Error(ErrorCode::kInvalidArgument, "empty KV cache");
    }
    return std::make_unique<CpuKvCache>(layers, kv_heads, head_dim, capacity, dtype);
  }

  void kv_store(KvCache& kv, i64 layer, i64 first_pos, i64 rows, const float* k, const float* v,
                i64 ld) override {
    auto& cache = static_cast<CpuKvCache&>(kv);
    const i64 d = cache.head_dim();
    if (layer < 0 || layer >= cache.layers() || first_pos < 0 ||
        first_pos + rows > cache.capacity()) {
      throw Error(ErrorCode::kInternal, "KV cache store out of range");
    }
    const bool half = cache.dtype() == DType::kF16;
    pool_.parallel_for(
        static_cast<std::size_t>(2 * cache.kv_heads()), [&](std::size_t b, std::size_t e) {
          for (std::size_t t = b; t < e; ++t) {
            const int kind = static_cast<int>(t % 2);
            const i64 g = static_cast<i64>(t / 2);
            const float* src = (kind == 0 ? k : v) + g * d;
            unsigned char* dst = cache.at(layer, kind, g);
            for (i64 r = 0; r < rows; ++r) {
              const i64 pos = first_pos + r;
              if (half) {
                f32_to_f16(src + r * ld, reinterpret_cast<std::uint16_t*>(dst) + pos * d,
                           static_cast<std::size_t>(d));
              } else {
                std::memcpy(reinterpret_cast<float*>(dst) + pos * d, src + r * ld,
                            static_cast<std::size_t>(d) * sizeof(float));
              }
            }
          }
        });
  }

  void attention_cached(const KvCache& kv, i64 layer, const float* q, i64 ld_q, i64 rows,
                        i64 first_pos, i64 heads, float scale, i64 window, float* out,
                        i64 ld_out) override {
    const auto& cache = static_cast<const CpuKvCache&>(kv);
    const i64 d = cache.head_dim();
    const i64 group = heads / cache.kv_heads();
    if (group <= 0 || heads % cache.kv_heads() != 0 || first_pos < 0 ||
        first_pos + rows > cache.capacity()) {
      throw Error(ErrorCode::kInternal, "attention over the KV cache out of range");
    }
    const bool half = cache.dtype() == DType::kF16;
    pool_.parallel_for(static_cast<std::size_t>(rows * heads), [&](std::size_t b, std::size_t e) {
      std::vector<float> scores(static_cast<std::size_t>(first_pos + rows));
      for (std::size_t t = b; t < e; ++t) {
        const i64 r = static_cast<i64>(t) / heads;
        const i64 h = static_cast<i64>(t) % heads;
        const i64 pos = first_pos + r;
        const i64 lo = window > 0 ? std::max<i64>(0, pos - window + 1) : 0;
        const i64 g = h / group;
        k_.attention_kv(q + r * ld_q + h * d, cache.at(layer, 0, g), cache.at(layer, 1, g), half,
                        lo, pos + 1, d, scale, out + r * ld_out + h * d, scores.data());
      }
    });
  }

  void layer_norm(const float* x, const float* residual, float* out, i64 rows, i64 dim,
                  const float* gamma, const float* beta, float eps) override {
    pool_.parallel_for(
        static_cast<std::size_t>(rows),
        [&](std::size_t b, std::size_t e) {
          const i64 off = static_cast<i64>(b) * dim;
          k_.layer_norm(x + off, residual != nullptr ? residual + off : nullptr, out + off,
                        static_cast<i64>(e - b), dim, gamma, beta, eps);
        },
        16);
  }

  void rms_norm(const float* x, float* out, i64 rows, i64 dim, const float* gamma,
                float eps) override {
    pool_.parallel_for(
        static_cast<std::size_t>(rows),
        [&](std::size_t b, std::size_t e) {
          const i64 off = static_cast<i64>(b) * dim;
          k_.rms_norm(x + off, out + off, static_cast<i64>(e - b), dim, gamma, eps);
        },
        16);
  }

  void activation(Activation act, const float* x, float* out, i64 n) override {
    elementwise(n, [&](i64 b, i64 e) { apply(act, x + b, out + b, e - b); });
  }

  void add(const float* a, const float* b, float* out, i64 n) override {
    elementwise(n, [&](i64 s, i64 e) { k_.add(a + s, b + s, out + s, e - s); });
  }

  void mul(const float* a, const float* b, float* out, i64 n) override {
    elementwise(n, [&](i64 s, i64 e) { k_.mul(a + s, b + s, out + s, e - s); });
  }

  void softmax(float* x, i64 rows, i64 dim) override {
    pool_.parallel_for(
        static_cast<std::size_t>(rows),
        [&](std::size_t b, std::size_t e) {
          k_.softmax(x + static_cast<i64>(b) * dim, static_cast<i64>(e - b), dim);
        },
        16);
  }

  void attention(const float* q, const float* k, const float* v, i64 ld, float* out, i64 ld_out,
                 i64 batch, i64 len, const i64* valid, i64 heads, i64 head_dim,
                 float scale) override {
    pool_.parallel_for(static_cast<std::size_t>(batch * heads), [&](std::size_t b, std::size_t e) {
      std::vector<float> scratch(static_cast<std::size_t>(attention_scratch_floats(len, head_dim)));
      for (std::size_t t = b; t < e; ++t) {
        const i64 s = static_cast<i64>(t) / heads;
        const i64 h = static_cast<i64>(t) % heads;
        const i64 row = s * len * ld + h * head_dim;
        k_.attention_head(q + row, k + row, v + row, ld, out + s * len * ld_out + h * head_dim,
                          ld_out, len, std::clamp<i64>(valid[s], 0, len), head_dim, scale,
                          scratch.data());
      }
    });
  }

  void embedding(const float* table, i64 table_rows, i64 dim, const std::int32_t* ids, i64 n,
                 float* out) override {
    for (i64 i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= table_rows) {
        throw Error(ErrorCode::kInternal, "embedding id " + std::to_string(ids[i]) +
                                              " outside a table of " + std::to_string(table_rows) +
                                              " rows");
      }
      std::memcpy(out + i * dim, table + static_cast<i64>(ids[i]) * dim,
                  static_cast<std::size_t>(dim) * sizeof(float));
    }
  }

 private:
  // kAuto's rule, from `bench-cli embed` at BERT's shapes on this machine (AMD Zen 4, 2 threads):
  // hearth's kernel is faster at every shape but small square ones (64 rows x a 384 x 384
  // weight), where OpenBLAS alone is about 10% faster. Inside the model, though, OpenBLAS's
  // spinning threads then compete with the pool for the next ops: routing those shapes to it made
  // batch-1 embedding 10-25% slower (A/B in one process). So auto uses hearth's kernel everywhere.
  bool uses_own(i64 /*out*/, i64 /*in*/) const { return gemm_ != GemmImpl::kOpenBlas; }
  bool uses_openblas(i64 out, i64 in) const { return !uses_own(out, in); }

  void apply(Activation act, const float* x, float* out, i64 n) const {
    switch (act) {
      case Activation::kNone:
        if (out != x) std::copy_n(x, n, out);
        return;
      case Activation::kGeluErf:
        return k_.gelu_erf(x, out, n);
      case Activation::kGeluTanh:
        return k_.gelu_tanh(x, out, n);
      case Activation::kSilu:
        return k_.silu(x, out, n);
      case Activation::kTanh:
        return k_.tanh(x, out, n);
    }
  }

  template <class F>
  void elementwise(i64 n, const F& f) {
    pool_.parallel_for(
        static_cast<std::size_t>(n),
        [&](std::size_t b, std::size_t e) { f(static_cast<i64>(b), static_cast<i64>(e)); },
        kElementwiseChunk);
  }

  ThreadPool& pool_;
  const KernelTable& k_;
  const QuantKernels& q_;
  GemmImpl gemm_;
  std::vector<Q8Block> xq_;  // run_quant's quantized activations
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, SimdLevel level, GemmImpl gemm) {
  return std::make_unique<CpuBackend>(pool, level, gemm);
}

}  // namespace hearth::kernels
