// Batched decode GEMV: 1 to 8 x rows against Phi-3-mini's fused gate/up projection (3072 inputs,
// 16384 outputs: 28 MB of Q4_0 or 4-bit MLX weights, far beyond the caches), weight bytes per
// second (and the first 256 rows alone, 0.4 MB: from L2 after the first pass, the kernels' compute
// rate), run by the one-row decode kernels (quant_ggml.hpp DecodeKernels / quant_mlx.hpp
// AffineDecode, which take several rows in tiles of four) and by the batched kernels
// (quant_batch.hpp) side by side, the weight rows split over the pool in blocks of four as
// CpuBackend splits them. Needs AVX-512 VNNI.
//   hearth-bench-batch-gemv [--benchmark_filter=...]   (arguments: threads, x rows, weight rows)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "hearth/core/thread_pool.hpp"
#include "hearth/kernels/quant_batch.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace {

using i64 = std::int64_t;
using hearth::DType;
using hearth::SimdLevel;
namespace k = hearth::kernels;

constexpr i64 kIn = 3072;
constexpr i64 kOut = 16384;

std::vector<float> random_row(i64 n, unsigned seed) {
  std::vector<float> v(static_cast<std::size_t>(n));
  unsigned s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int>(s >> 8) % 2001 - 1000) / 10000.0f;
  }
  return v;
}

// Q4_0 blocks (rows repeat 16 distinct ones: quantizing is slow).
struct Q4Weights {
  std::vector<unsigned char> bytes;
  Q4Weights() {
    const i64 rb = hearth::ggml::row_bytes(DType::kQ4_0, kIn);
    bytes.resize(static_cast<std::size_t>(kOut * rb));
    for (i64 r = 0; r < 16; ++r) {
      const std::vector<float> w = random_row(kIn, static_cast<unsigned>(r));
      hearth::ggml::quantize_row(DType::kQ4_0, w.data(), bytes.data() + r * rb, kIn);
    }
    for (i64 r = 16; r < kOut; ++r) std::memcpy(&bytes[r * rb], &bytes[(r % 16) * rb], rb);
  }
};

// 4-bit mlx affine codes, f16 scales and biases (group 64).
struct Mlx4Weights {
  std::vector<unsigned char> codes;
  std::vector<std::uint16_t> scales, biases;
  k::AffineMatrix m;
  Mlx4Weights() {
    const int group = 64;
    const i64 rb = kIn / 2, groups = kIn / group;
    codes.resize(static_cast<std::size_t>(kOut * rb));
    scales.resize(static_cast<std::size_t>(kOut * groups));
    biases.resize(scales.size());
    std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
    for (i64 r = 0; r < 16; ++r) {
      const std::vector<float> w = random_row(kIn, static_cast<unsigned>(r));
      hearth::mlx::quantize_row(w.data(), kIn, 4, group, codes.data() + r * rb, s.data(), b.data());
      for (i64 g = 0; g < groups; ++g) {
        scales[r * groups + g] = hearth::f32_to_f16(s[g]);
        biases[r * groups + g] = hearth::f32_to_f16(b[g]);
      }
    }
    for (i64 r = 16; r < kOut; ++r) {
      std::memcpy(&codes[r * rb], &codes[(r % 16) * rb], rb);
      std::memcpy(&scales[r * groups], &scales[(r % 16) * groups], groups * 2);
      std::memcpy(&biases[r * groups], &biases[(r % 16) * groups], groups * 2);
    }
    m = {codes.data(), kOut, kIn, 4, group, DType::kF16, scales.data(), biases.data()};
  }
  std::size_t bytes() const { return codes.size() + 2 * scales.size() * 2; }
};

struct alignas(64) Line {
  unsigned char b[64];
};

// kind 0: the one-row decode kernels, 1: the batched kernels.
void BM_Q4_0(benchmark::State& state, int kind) {
  static const Q4Weights w;
  const k::DecodeKernels* kern = kind == 0 ? k::decode_kernels(SimdLevel::kAvx512)
                                           : k::batch_decode_kernels(SimdLevel::kAvx512);
  if (kern == nullptr) return state.SkipWithError("needs AVX-512 VNNI");
  hearth::ThreadPool pool(static_cast<std::size_t>(state.range(0)));
  const i64 rows = state.range(1);
  const i64 out = state.range(2);
  const std::vector<float> x = random_row(rows * kIn, 7);
  std::vector<Line> xp(static_cast<std::size_t>(rows * kern->row_bytes(DType::kQ4_0, kIn) / 64));
  std::vector<float> y(static_cast<std::size_t>(rows * kOut));
  for (auto _ : state) {
    kern->prepare(DType::kQ4_0, x.data(), rows, kIn, kIn, xp.data());
    pool.parallel_for(static_cast<std::size_t>(out / 4), [&](std::size_t b, std::size_t e) {
      kern->gemv(DType::kQ4_0, w.bytes.data(), kIn, static_cast<i64>(b) * 4,
                 static_cast<i64>(e) * 4, xp.data(), rows, nullptr, y.data(), kOut);
    });
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * w.bytes.size() / (kOut / out)));
}

void BM_Mlx4(benchmark::State& state, int kind) {
  static const Mlx4Weights w;
  const k::AffineDecode* kern =
      kind == 0 ? k::affine_decode(SimdLevel::kAvx512) : k::batch_affine_decode(SimdLevel::kAvx512);
  if (kern == nullptr) return state.SkipWithError("needs AVX-512 VNNI");
  hearth::ThreadPool pool(static_cast<std::size_t>(state.range(0)));
  const i64 rows = state.range(1);
  const i64 out = state.range(2);
  const std::vector<float> x = random_row(rows * kIn, 7);
  std::vector<Line> xp(static_cast<std::size_t>(rows * kern->row_bytes(w.m) / 64));
  std::vector<float> y(static_cast<std::size_t>(rows * kOut));
  for (auto _ : state) {
    kern->prepare(w.m, x.data(), rows, kIn, xp.data());
    pool.parallel_for(static_cast<std::size_t>(out / 4), [&](std::size_t b, std::size_t e) {
      kern->gemv(w.m, xp.data(), rows, static_cast<i64>(b) * 4, static_cast<i64>(e) * 4, nullptr,
                 y.data(), kOut);
    });
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * w.bytes() / (kOut / out)));
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{1, 2}, {1, 2, 4, 8}, {kOut, 256}})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK_CAPTURE(BM_Q4_0, one_row_kernels, 0)->Apply(args);
BENCHMARK_CAPTURE(BM_Q4_0, batched, 1)->Apply(args);
BENCHMARK_CAPTURE(BM_Mlx4, one_row_kernels, 0)->Apply(args);
BENCHMARK_CAPTURE(BM_Mlx4, batched, 1)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
