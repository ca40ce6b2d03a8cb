// Quantized matrix-matrix products on one thread, GFLOP/s (2 M N K per call) beside the f32 FMA
// peak measured in the same run: the tiled int8 kernels (quant_gemm.hpp) against the GEMV kernels
// run the way prefill ran them before (tasks of 16 weight rows, four x rows per decode), at a
// decoder shape (N = K = 3072) for M = 16, 128 and 512 x rows.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "hearth/kernels/peak.hpp"
#include "hearth/kernels/quant_gemm.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace {

using namespace hearth;
using namespace hearth::kernels;
using i64 = std::int64_t;

constexpr i64 kN = 3072, kK = 3072;

std::vector<float> random_vector(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Weights {
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint16_t> scales, biases;  // mlx, f16
  AffineMatrix affine;
};

Weights ggml_weights(DType t) {
  const auto w = random_vector(static_cast<std::size_t>(kN * kK), 1, 0.05f);
  const i64 rb = ggml::row_bytes(t, kK);
  Weights out;
  out.bytes.resize(static_cast<std::size_t>(kN * rb));
  for (i64 r = 0; r < kN; ++r)
    ggml::quantize_row(t, w.data() + r * kK, out.bytes.data() + r * rb, kK);
  return out;
}

Weights mlx_weights(int bits) {
  const auto w = random_vector(static_cast<std::size_t>(kN * kK), 1, 0.05f);
  constexpr int kGroup = 64;
  const i64 rb = mlx::packed_row_bytes(kK, bits), groups = kK / kGroup;
  Weights out;
  out.bytes.resize(static_cast<std::size_t>(kN * rb));
  out.scales.resize(static_cast<std::size_t>(kN * groups));
  out.biases.resize(out.scales.size());
  std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
  for (i64 r = 0; r < kN; ++r) {
    mlx::quantize_row(w.data() + r * kK, kK, bits, kGroup, out.bytes.data() + r * rb, s.data(),
                      b.data());
    for (i64 g = 0; g < groups; ++g) {
      out.scales[static_cast<std::size_t>(r * groups + g)] = f32_to_f16(s[g]);
      out.biases[static_cast<std::size_t>(r * groups + g)] = f32_to_f16(b[g]);
    }
  }
  out.affine = {out.bytes.data(), kN, kK, bits, kGroup, DType::kF16, out.scales.data(),
                out.biases.data()};
  return out;
}

// GFLOP per CPU second (the machine is shared: wall time counts other programs' turns).
void flops(benchmark::State& state, i64 m) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      2e-9 * static_cast<double>(m * kN * kK) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
}

// The f32 FMA peak of one thread (peak.hpp's chains: 12 independent FMAs on 16 or 8 lanes).
void BM_FmaPeak(benchmark::State& state) {
  const bool wide = simd_level() == SimdLevel::kAvx512;
  constexpr std::int64_t kIterations = 10'000'000;
  for (auto _ : state) {
    benchmark::DoNotOptimize(wide ? kernels::detail::fma_chains_avx512(kIterations)
                                  : kernels::detail::fma_chains_avx2(kIterations));
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * 12 * (wide ? 16 : 8) * static_cast<double>(kIterations) *
                             static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond);

void run_ggml(benchmark::State& state, DType t, bool tiled) {
  const i64 m = state.range(0);
  const Weights w = ggml_weights(t);
  const auto x = random_vector(static_cast<std::size_t>(m * kK), 2);
  const QuantKernels& q = quant_kernels(simd_level());
  const QuantGemm* g = quant_gemm(simd_level());
  if (tiled && g == nullptr) {
    state.SkipWithError("no tiled kernels at this level");
    return;
  }
  std::vector<Q8Block> xq(static_cast<std::size_t>(m * kK / 32));
  std::vector<float> y(static_cast<std::size_t>(m * kN));
  for (auto _ : state) {
    q.quantize_rows(x.data(), m, kK, kK, xq.data());
    if (tiled) {
      g->ggml(t, w.bytes.data(), kK, 0, kN, xq.data(), 0, m, nullptr, y.data(), kN);
    } else {
      for (i64 n0 = 0; n0 < kN; n0 += 16) {
        q.gemv(t, w.bytes.data(), kK, n0, n0 + 16, xq.data(), m, nullptr, y.data(), kN);
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  flops(state, m);
}

void run_mlx(benchmark::State& state, int bits, bool tiled) {
  const i64 m = state.range(0);
  const Weights w = mlx_weights(bits);
  const auto x = random_vector(static_cast<std::size_t>(m * kK), 2);
  const AffineKernels& kern = affine_kernels(simd_level(), bits);
  const QuantGemm* g = quant_gemm(simd_level());
  if (tiled && g == nullptr) {
    state.SkipWithError("no tiled kernels at this level");
    return;
  }
  std::vector<Q8Block> xq(static_cast<std::size_t>(m * kK / 32));
  AffineActs acts;
  std::vector<float> y(static_cast<std::size_t>(m * kN));
  for (auto _ : state) {
    if (tiled) {
      g->affine_quantize(x.data(), m, kK, kK, xq.data());
      g->affine(w.affine, 0, kN, xq.data(), 0, m, nullptr, y.data(), kN);
    } else {
      acts.reset(m, kK, bits, 64, kern.layout);
      acts.fill(x.data(), kK, 0, m);
      for (i64 n0 = 0; n0 < kN; n0 += 16) {
        kern.run(w.affine, acts, x.data(), kK, n0, n0 + 16, 0, m, nullptr, y.data(), kN);
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  flops(state, m);
}

#define HEARTH_QGEMM_BENCH(NAME, CALL)                                                     \
  void BM_##NAME##_Gemv(benchmark::State& s) {                                             \
    CALL(s, false);                                                                        \
  }                                                                                        \
  void BM_##NAME##_Tiled(benchmark::State& s) {                                            \
    CALL(s, true);                                                                         \
  }                                                                                        \
  BENCHMARK(BM_##NAME##_Gemv)->Arg(16)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond); \
  BENCHMARK(BM_##NAME##_Tiled)->Arg(16)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond);

void q4_0(benchmark::State& s, bool tiled) {
  run_ggml(s, DType::kQ4_0, tiled);
}
void q4_k(benchmark::State& s, bool tiled) {
  run_ggml(s, DType::kQ4_K, tiled);
}
void q5_k(benchmark::State& s, bool tiled) {
  run_ggml(s, DType::kQ5_K, tiled);
}
void q6_k(benchmark::State& s, bool tiled) {
  run_ggml(s, DType::kQ6_K, tiled);
}
void q8_0(benchmark::State& s, bool tiled) {
  run_ggml(s, DType::kQ8_0, tiled);
}
void mlx4(benchmark::State& s, bool tiled) {
  run_mlx(s, 4, tiled);
}
void mlx8(benchmark::State& s, bool tiled) {
  run_mlx(s, 8, tiled);
}

HEARTH_QGEMM_BENCH(Q4_0, q4_0)
HEARTH_QGEMM_BENCH(Q4_K, q4_k)
HEARTH_QGEMM_BENCH(Q5_K, q5_k)
HEARTH_QGEMM_BENCH(Q6_K, q6_k)
HEARTH_QGEMM_BENCH(Q8_0, q8_0)
HEARTH_QGEMM_BENCH(Mlx4, mlx4)
HEARTH_QGEMM_BENCH(Mlx8, mlx8)

}  // namespace

BENCHMARK_MAIN();
