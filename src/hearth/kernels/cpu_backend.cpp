// The CPU backend: ops split over the thread pool, each chunk running the kernel table of the
// chosen instruction set; f32 GEMM by hearth's packed kernel or by OpenBLAS.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/kernel_table.hpp"
#include "hearth/kernels/quant_batch.hpp"
#include "hearth/kernels/quant_gemm.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/tensor/float8.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"

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
    case Activation::kQuickGelu:
      return "quick_gelu";
    case Activation::kRelu:
      return "relu";
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
constexpr i64 kStatRows = 256;  // pixels per block of group-norm statistics
// Up to this many rows a layer over weights read in place runs as a GEMV (each block of weight
// rows streamed once, reused from cache for every row); more rows go through the converting GEMM.
constexpr i64 kGemvMaxRows = 8;
// Prefill over block-quantized weights: weight rows per task, each decoded once per four x rows
// while the task's rows stay in L1/L2.
constexpr i64 kQuantRowChunk = 16;
// Prefill through the tiled kernels (quant_gemm.hpp): tasks of one weight tile by up to this many
// x rows (each tile unpacked once per task; the x blocks stream from L2/L3).
constexpr i64 kQuantGemmRows = 256;

WeightType weight_type(DType t) {
  switch (t) {
    case DType::kF32:
      return kWeightF32;
    case DType::kF16:
      return kWeightF16;
    case DType::kBF16:
      return kWeightBF16;
    case DType::kF8E4M3:
      return kWeightF8E4M3;
    case DType::kF8E5M2:
      return kWeightF8E5M2;
    default:
      throw Error(ErrorCode::kUnsupported,
                  "weights of type " + std::string(dtype_name(t)) +
                      " cannot be read in place (f32, f16, bf16, f8_e4m3, f8_e5m2 can)");
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
  AffineMatrix affine;  // make_linear_view of mlx affine weights (affine_kernels set)
  const AffineKernels* affine_kernels = nullptr;
  DType quant = DType::kF32;  // a ggml block type when the view holds quantized blocks
};

// A convolution as a GEMM: W reordered to [out, ky, kx, in] (the NHWC gather order) and packed
// into GEMM panels of k * k * in depth.
class CpuConv final : public ConvWeights {
 public:
  CpuConv(i64 out, i64 in, ConvShape shape) : ConvWeights(out, in, shape) {}
  std::vector<float> packed;
  std::vector<float> bias;  // padded to whole panels; empty when the layer has none
};

// An mlx affine WeightView checked and turned into the kernels' matrix.
AffineMatrix affine_matrix(const WeightView& w) {
  const WeightView::Affine& a = w.affine;
  if (!mlx::valid_bits(a.bits) || !mlx::valid_group_size(a.group_size) ||
      w.cols % a.group_size != 0 || a.scales == nullptr || a.biases == nullptr ||
      (a.scale_dtype != DType::kF16 && a.scale_dtype != DType::kBF16 &&
       a.scale_dtype != DType::kF32)) {
    throw Error(ErrorCode::kInvalidArgument,
                "mlx affine weights need bits 2-6 or 8, group size 32/64/128 dividing the " +
                    std::to_string(w.cols) + " inputs, and f16/bf16/f32 scales and biases");
  }
  return {static_cast<const std::uint8_t*>(w.data),
          w.rows,
          w.cols,
          a.bits,
          a.group_size,
          a.scale_dtype,
          a.scales,
          a.biases};
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(ThreadPool& pool, SimdLevel level, GemmImpl gemm)
      : pool_(pool),
        k_(kernel_table(level)),
        q_(quant_kernels(level)),
        qgemm_(quant_gemm(level)),
        gemm_(gemm),
        dq_(decode_kernels(level)),
        ad_(affine_decode(level)),
        batch_dq_(batch_decode_kernels(level)),
        batch_ad_(batch_affine_decode(level)) {}

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
    if (w.is_affine()) {
      lin->affine = affine_matrix(w);
      lin->affine_kernels = &affine_kernels(k_.level, w.affine.bits);
    } else if (ggml::supported(w.dtype)) {
      check_quant_cols(w);
      lin->view = w.data;
      lin->quant = w.dtype;
    } else {
      lin->view = w.data;
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
    if (w.affine_kernels != nullptr) {
      run_affine(w, x, rows, y, bias);
      if (act != Activation::kNone) activation(act, y, y, rows * n);
      return;
    }
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

  // x quantized (or summed) once per call, then weight rows split over the pool: blocks of 4 for
  // decode, 16 for prefill (each task runs every x row against its weight rows); 4- and 8-bit
  // prefill from QuantGemm::min_rows rows through the tiles (the same integer products).
  void run_affine(const CpuLinear& w, const float* x, i64 rows, float* y, const float* bias) {
    const AffineMatrix& m = w.affine;
    const AffineKernels& kern = *w.affine_kernels;
    if (rows >= 2 && rows <= kGemvMaxRows && batch_ad_ != nullptr && batch_ad_->handles(m)) {
      return run_affine_decode(*batch_ad_, m, x, rows, y, bias);
    }
    if (rows <= kGemvMaxRows && ad_ != nullptr && ad_->handles(m)) {
      return run_affine_decode(*ad_, m, x, rows, y, bias);
    }
    if (qgemm_ != nullptr && rows >= qgemm_->min_rows && (m.bits == 4 || m.bits == 8)) {
      return run_affine_tiled(m, x, rows, y, bias);
    }
    acts_.reset(rows, m.cols, m.bits, m.group_size, kern.layout);
    if (rows <= kGemvMaxRows) {
      acts_.fill(x, m.cols, 0, rows);
    } else {
      pool_.parallel_for(static_cast<std::size_t>(rows), [&](std::size_t b, std::size_t e) {
        acts_.fill(x, m.cols, static_cast<i64>(b), static_cast<i64>(e));
      });
    }
    const i64 n = m.rows;
    const i64 step = rows <= kGemvMaxRows ? 4 : 16;
    pool_.parallel_for(static_cast<std::size_t>((n + step - 1) / step),
                       [&](std::size_t b, std::size_t e) {
                         kern.run(m, acts_, x, m.cols, static_cast<i64>(b) * step,
                                  std::min(n, static_cast<i64>(e) * step), 0, rows, bias, y, n);
                       });
  }

  // Block-quantized weights: x rows quantized to 8 bits per block of 32, then the integer GEMV
  // (a few rows: each thread streams its share of W once) or, for prefill, chunks of weight rows
  // reused from cache for every four x rows.
  void run_quant(const CpuLinear& w, const float* x, i64 rows, float* y, const float* bias) {
    const i64 n = w.out_features();
    const i64 k = w.in_features();
    if (rows >= 2 && rows <= kGemvMaxRows && batch_dq_ != nullptr && batch_dq_->handles(w.quant)) {
      return run_decode(*batch_dq_, w, x, rows, y, bias);
    }
    if (rows <= kGemvMaxRows && dq_ != nullptr && dq_->handles(w.quant)) {
      return run_decode(*dq_, w, x, rows, y, bias);
    }
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
    if (qgemm_ != nullptr && rows >= qgemm_->min_rows) {
      run_tiled(n, rows, [&](i64 n0, i64 n1, i64 m0, i64 m1) {
        qgemm_->ggml(w.quant, w.view, k, n0, n1, xq, m0, m1, bias, y, n);
      });
      return;
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

  // The tiled product split over the pool: tasks of one weight tile by kQuantGemmRows x rows,
  // the row chunk outermost (threads share its x blocks); run(n0, n1, m0, m1) per run of tasks.
  template <class Run>
  void run_tiled(i64 n, i64 rows, const Run& run) {
    const i64 tile = qgemm_->tile_rows;
    const i64 tiles = (n + tile - 1) / tile;
    const i64 chunks = (rows + kQuantGemmRows - 1) / kQuantGemmRows;
    pool_.parallel_for(static_cast<std::size_t>(tiles * chunks), [&](std::size_t b, std::size_t e) {
      for (i64 t = static_cast<i64>(b); t < static_cast<i64>(e);) {
        const i64 c = t / tiles;
        const i64 last = std::min(static_cast<i64>(e), (c + 1) * tiles);  // same row chunk
        run((t % tiles) * tile, std::min(n, (last - c * tiles) * tile), c * kQuantGemmRows,
            std::min(rows, (c + 1) * kQuantGemmRows));
        t = last;
      }
    });
  }

  // x rows into QuantGemm::affine_quantize's blocks over the pool, then the affine tiles.
  void run_affine_tiled(const AffineMatrix& m, const float* x, i64 rows, float* y,
                        const float* bias) {
    const i64 nb = m.cols / 32;
    if (static_cast<i64>(xq_.size()) < rows * nb) xq_.resize(static_cast<std::size_t>(rows * nb));
    Q8Block* xq = xq_.data();
    pool_.parallel_for(static_cast<std::size_t>(rows), [&](std::size_t b, std::size_t e) {
      const i64 r = static_cast<i64>(b);
      qgemm_->affine_quantize(x + r * m.cols, static_cast<i64>(e - b), m.cols, m.cols, xq + r * nb);
    });
    run_tiled(m.rows, rows, [&](i64 n0, i64 n1, i64 m0, i64 m1) {
      qgemm_->affine(m, n0, n1, xq, m0, m1, bias, y, m.rows);
    });
  }

  // The affine decode kernels (ad_ or batch_ad_): as run_decode.
  void run_affine_decode(const AffineDecode& ad, const AffineMatrix& m, const float* x, i64 rows,
                         float* y, const float* bias) {
    const i64 n = m.rows;
    const auto lines = static_cast<std::size_t>((rows * ad.row_bytes(m) + 63) / 64);
    if (decode_acts_.size() < lines) decode_acts_.resize(lines);
    ad.prepare(m, x, rows, m.cols, decode_acts_.data());
    pool_.parallel_for(static_cast<std::size_t>((n + 3) / 4), [&](std::size_t b, std::size_t e) {
      ad.gemv(m, decode_acts_.data(), rows, static_cast<i64>(b) * 4,
              std::min(n, static_cast<i64>(e) * 4), bias, y, n);
    });
  }

  // The decode kernels (dq_ or batch_dq_): x prepared in their layout on the calling thread, then
  // the weight rows split over the pool in blocks of 4.
  void run_decode(const DecodeKernels& dq, const CpuLinear& w, const float* x, i64 rows, float* y,
                  const float* bias) {
    const i64 n = w.out_features();
    const i64 k = w.in_features();
    const auto lines = static_cast<std::size_t>((rows * dq.row_bytes(w.quant, k) + 63) / 64);
    if (decode_acts_.size() < lines) decode_acts_.resize(lines);
    dq.prepare(w.quant, x, rows, k, k, decode_acts_.data());
    pool_.parallel_for(static_cast<std::size_t>((n + 3) / 4), [&](std::size_t b, std::size_t e) {
      dq.gemv(w.quant, w.view, k, static_cast<i64>(b) * 4, std::min(n, static_cast<i64>(e) * 4),
              decode_acts_.data(), rows, bias, y, n);
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
      if (table.is_affine()) {
        const AffineMatrix m = affine_matrix(table);
        const i64 sb = m.groups() * (m.scale_dtype == DType::kF32 ? 4 : 2);
        mlx::dequantize_row(m.codes + ids[i] * m.row_bytes(), dim, m.bits, m.group_size,
                            m.scale_dtype,
                            static_cast<const unsigned char*>(m.scales) + ids[i] * sb,
                            static_cast<const unsigned char*>(m.biases) + ids[i] * sb, o);
        continue;
      }
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
        case kWeightF8E4M3:
        case kWeightF8E5M2:
          for (i64 c = 0; c < dim; ++c) {
            const auto b = static_cast<std::uint8_t>(base[row + static_cast<std::size_t>(c)]);
            o[c] = table.dtype == DType::kF8E4M3 ? f8e4m3_to_f32(b) : f8e5m2_to_f32(b);
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
    // One decoded row is a few KB to convert: on this thread, without a dispatch.
    const auto tasks = static_cast<std::size_t>(2 * cache.kv_heads());
    pool_.parallel_for(
        tasks,
        [&](std::size_t b, std::size_t e) {
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
        },
        rows == 1 ? tasks : 1);
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

  void attention_biased(const float* q, const float* k, const float* v, i64 ld, float* out,
                        i64 ld_out, i64 batch, i64 len, i64 heads, i64 head_dim, float scale,
                        const float* bias, bool causal) override {
    pool_.parallel_for(static_cast<std::size_t>(batch * heads), [&](std::size_t b, std::size_t e) {
      std::vector<float> scratch(static_cast<std::size_t>(attention_scratch_floats(len, head_dim)));
      for (std::size_t t = b; t < e; ++t) {
        const i64 s = static_cast<i64>(t) / heads;
        const i64 h = static_cast<i64>(t) % heads;
        const i64 row = s * len * ld + h * head_dim;
        k_.attention_head_bias(q + row, k + row, v + row, ld, out + s * len * ld_out + h * head_dim,
                               ld_out, len, head_dim, scale, bias ? bias + h * len * len : nullptr,
                               causal, scratch.data());
      }
    });
  }

  std::unique_ptr<ConvWeights> make_conv2d(const float* w, const float* bias, i64 out, i64 in,
                                           ConvShape shape) const override {
    if (out <= 0 || in <= 0 || shape.kernel <= 0 || shape.stride <= 0 || shape.pad_begin < 0 ||
        shape.pad_end < 0 || shape.pad_begin >= shape.kernel || shape.pad_end >= shape.kernel) {
      throw Error(ErrorCode::kInvalidArgument,
                  "convolution with an impossible shape (" + std::to_string(out) + " x " +
                      std::to_string(in) + ", kernel " + std::to_string(shape.kernel) +
                      ", stride " + std::to_string(shape.stride) + ")");
    }
    auto conv = std::make_unique<CpuConv>(out, in, shape);
    const i64 taps = shape.kernel * shape.kernel;
    const i64 depth = taps * in;
    std::vector<float> reordered(static_cast<std::size_t>(out * depth));
    for (i64 o = 0; o < out; ++o) {
      for (i64 i = 0; i < in; ++i) {
        for (i64 t = 0; t < taps; ++t)
          reordered[(o * taps + t) * in + i] = w[(o * in + i) * taps + t];
      }
    }
    const i64 panels = gemm_panels(out, k_.gemm_nr);
    conv->packed.resize(static_cast<std::size_t>(panels * depth * k_.gemm_nr));
    pack_b(reordered.data(), out, depth, k_.gemm_nr, conv->packed.data());
    if (bias != nullptr) {
      conv->bias.assign(static_cast<std::size_t>(panels * k_.gemm_nr), 0.0f);
      std::copy_n(bias, out, conv->bias.begin());
    }
    return conv;
  }

  // Implicit GEMM: each task gathers kRowBlock output pixels' k x k x in input floats (zeros
  // outside the image) into a scratch block and multiplies it by every panel, then adds the
  // residual and applies the activation while the block is still in cache. A 1x1 stride-1
  // convolution reads x in place.
  void conv2d(const ConvWeights& weights, const float* x, i64 h, i64 w_px, float* y,
              const float* residual, Activation act) override {
    const auto& cw = static_cast<const CpuConv&>(weights);
    const ConvShape& s = cw.shape();
    const i64 in = cw.in_channels();
    const i64 out = cw.out_channels();
    const i64 oh = s.out_size(h);
    const i64 ow = s.out_size(w_px);
    if (h <= 0 || w_px <= 0 || oh <= 0 || ow <= 0) {
      throw Error(ErrorCode::kInvalidArgument, "convolution over an empty or too small image (" +
                                                   std::to_string(h) + " x " +
                                                   std::to_string(w_px) + ")");
    }
    const i64 depth = s.kernel * s.kernel * in;
    const i64 pixels = oh * ow;
    const bool direct = s.kernel == 1 && s.stride == 1 && s.pad_begin == 0 && s.pad_end == 0;
    const float* bias = cw.bias.empty() ? nullptr : cw.bias.data();
    const i64 panels = gemm_panels(out, k_.gemm_nr);
    const i64 blocks = (pixels + kRowBlock - 1) / kRowBlock;
    pool_.parallel_for(static_cast<std::size_t>(blocks), [&](std::size_t b, std::size_t e) {
      std::vector<float> gathered(direct ? 0 : static_cast<std::size_t>(kRowBlock * depth));
      for (std::size_t t = b; t < e; ++t) {
        const i64 p0 = static_cast<i64>(t) * kRowBlock;
        const i64 p1 = std::min(pixels, p0 + kRowBlock);
        const float* a = x + p0 * in;
        if (!direct) {
          for (i64 p = p0; p < p1; ++p) {
            gather(x, h, w_px, in, s, p / ow, p % ow, gathered.data() + (p - p0) * depth);
          }
          a = gathered.data();
        }
        float* yb = y + p0 * out;
        k_.gemm_packed(a, depth, 0, p1 - p0, cw.packed.data(), bias, out, depth, 0, panels, yb,
                       out);
        if (residual != nullptr) k_.add(yb, residual + p0 * out, yb, (p1 - p0) * out);
        if (act != Activation::kNone) apply(act, yb, yb, (p1 - p0) * out);
      }
    });
  }

  void group_norm(const float* x, float* out, i64 pixels, i64 channels, i64 groups,
                  const float* gamma, const float* beta, float eps, Activation act) override {
    if (pixels <= 0 || channels <= 0 || groups <= 0 || channels % groups != 0) {
      throw Error(ErrorCode::kInvalidArgument, "group norm of " + std::to_string(channels) +
                                                   " channels in " + std::to_string(groups) +
                                                   " groups");
    }
    int cact = kChannelNone;
    if (act == Activation::kSilu) cact = kChannelSilu;
    if (act == Activation::kRelu) cact = kChannelRelu;
    if (act != Activation::kNone && cact == kChannelNone) {
      throw Error(ErrorCode::kUnsupported,
                  std::string("group norm fuses silu or relu, not ") + to_string(act));
    }
    const auto c = static_cast<std::size_t>(channels);
    const i64 per_group = channels / groups;
    const double count = static_cast<double>(pixels) * static_cast<double>(per_group);
    // Pass 1: the group means; pass 2: moments about them (exact variance, no cancellation).
    std::vector<float> center(c, 0.0f);
    std::vector<double> mean(static_cast<std::size_t>(groups)), var(mean.size());
    for (int pass = 0; pass < 2; ++pass) {
      const std::vector<double> sums = channel_sums(x, pixels, channels, center.data());
      for (i64 g = 0; g < groups; ++g) {
        double s1 = 0.0, s2 = 0.0;
        for (i64 i = g * per_group; i < (g + 1) * per_group; ++i) {
          s1 += sums[static_cast<std::size_t>(i)];
          s2 += sums[c + static_cast<std::size_t>(i)];
        }
        const double m = s1 / count;
        if (pass == 0) {
          mean[static_cast<std::size_t>(g)] = m;
        } else {
          mean[static_cast<std::size_t>(g)] += m;
          var[static_cast<std::size_t>(g)] = std::max(0.0, s2 / count - m * m);
        }
      }
      for (i64 i = 0; i < channels; ++i) {
        center[static_cast<std::size_t>(i)] =
            static_cast<float>(mean[static_cast<std::size_t>(i / per_group)]);
      }
    }
    std::vector<float> scale(c), shift(c);
    for (i64 i = 0; i < channels; ++i) {
      const auto g = static_cast<std::size_t>(i / per_group);
      const double a = gamma[i] / std::sqrt(var[g] + static_cast<double>(eps));
      scale[static_cast<std::size_t>(i)] = static_cast<float>(a);
      shift[static_cast<std::size_t>(i)] = static_cast<float>(beta[i] - mean[g] * a);
    }
    pool_.parallel_for(
        static_cast<std::size_t>(pixels),
        [&](std::size_t b, std::size_t e) {
          const i64 off = static_cast<i64>(b) * channels;
          k_.channel_affine(x + off, out + off, static_cast<i64>(e - b), channels, scale.data(),
                            shift.data(), cact);
        },
        kStatRows);
  }

  void upsample_nearest2x(const float* x, i64 h, i64 w, i64 c, float* out) override {
    const auto row = static_cast<std::size_t>(c) * sizeof(float);
    pool_.parallel_for(static_cast<std::size_t>(h), [&](std::size_t b, std::size_t e) {
      for (auto yy = static_cast<i64>(b); yy < static_cast<i64>(e); ++yy) {
        float* o = out + (2 * yy) * (2 * w) * c;
        for (i64 xx = 0; xx < w; ++xx) {
          const float* src = x + (yy * w + xx) * c;
          std::memcpy(o + (2 * xx) * c, src, row);
          std::memcpy(o + (2 * xx + 1) * c, src, row);
        }
        std::memcpy(o + 2 * w * c, o, row * static_cast<std::size_t>(2 * w));
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
      case Activation::kQuickGelu:
        return k_.quick_gelu(x, out, n);
      case Activation::kRelu:
        return k_.relu(x, out, n);
    }
  }

  // The k x k x in input floats of output pixel (oy, ox), in [ky, kx, in] order; zeros where a
  // tap falls in the padding.
  static void gather(const float* x, i64 h, i64 w, i64 in, const ConvShape& s, i64 oy, i64 ox,
                     float* dst) {
    const auto row = static_cast<std::size_t>(in) * sizeof(float);
    for (i64 ky = 0; ky < s.kernel; ++ky) {
      const i64 iy = oy * s.stride + ky - s.pad_begin;
      for (i64 kx = 0; kx < s.kernel; ++kx, dst += in) {
        const i64 ix = ox * s.stride + kx - s.pad_begin;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
          std::memset(dst, 0, row);
        } else {
          std::memcpy(dst, x + (iy * w + ix) * in, row);
        }
      }
    }
  }

  // Per-channel sums of (x - center) and of its square over all pixels: [channels] then
  // [channels], f32 within blocks of kStatRows pixels, f64 across them.
  std::vector<double> channel_sums(const float* x, i64 pixels, i64 channels, const float* center) {
    const i64 blocks = (pixels + kStatRows - 1) / kStatRows;
    const auto c = static_cast<std::size_t>(channels);
    std::vector<float> partial(static_cast<std::size_t>(blocks) * 2 * c, 0.0f);
    pool_.parallel_for(static_cast<std::size_t>(blocks), [&](std::size_t b, std::size_t e) {
      for (std::size_t t = b; t < e; ++t) {
        const i64 r0 = static_cast<i64>(t) * kStatRows;
        const i64 r1 = std::min(pixels, r0 + kStatRows);
        float* s1 = partial.data() + t * 2 * c;
        k_.channel_moments(x + r0 * channels, r1 - r0, channels, center, s1, s1 + c);
      }
    });
    std::vector<double> sums(2 * c, 0.0);
    for (std::size_t t = 0; t < static_cast<std::size_t>(blocks); ++t) {
      for (std::size_t i = 0; i < 2 * c; ++i) sums[i] += partial[t * 2 * c + i];
    }
    return sums;
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
  const QuantGemm* qgemm_;  // null: prefill runs the GEMV kernels a few rows at a time
  GemmImpl gemm_;
  AffineActs acts_;          // run_affine's prepared x, reused between calls
  std::vector<Q8Block> xq_;  // run_quant's quantized activations
  struct alignas(64) CacheLine {
    unsigned char bytes[64];
  };
  const DecodeKernels* dq_;             // null where the level has no decode kernels
  const AffineDecode* ad_;              // likewise for mlx affine weights
  const DecodeKernels* batch_dq_;       // 2 to kGemvMaxRows rows (quant_batch.hpp); may be null
  const AffineDecode* batch_ad_;        // likewise for mlx affine weights
  std::vector<CacheLine> decode_acts_;  // run_decode's / run_affine_decode's prepared x
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, SimdLevel level, GemmImpl gemm) {
  return std::make_unique<CpuBackend>(pool, level, gemm);
}

}  // namespace hearth::kernels
