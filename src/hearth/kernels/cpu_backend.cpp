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

class CpuLinear final : public LinearWeights {
 public:
  CpuLinear(i64 out, i64 in) : LinearWeights(out, in) {}
  std::vector<float> packed;  // own kernel: panels of nr columns
  std::vector<float> plain;   // OpenBLAS: W as given, [out, in]
  std::vector<float> bias;    // padded to whole panels; empty when the layer has none
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(ThreadPool& pool, SimdLevel level, GemmImpl gemm)
      : pool_(pool), k_(kernel_table(level)), gemm_(gemm) {}

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
  GemmImpl gemm_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(ThreadPool& pool, SimdLevel level, GemmImpl gemm) {
  return std::make_unique<CpuBackend>(pool, level, gemm);
}

}  // namespace hearth::kernels
