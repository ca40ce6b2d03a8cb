// Decode matrix-vector products over quantized weights (CpuBackend::linear with 1 or 4 input
// rows on weights read in place), at a Phi-3-mini layer's shape: 3072 inputs, 16384 outputs
// (the fused gate/up projection, 27-54 MB of blocks, far beyond the caches), each format's
// bytes per second of weights streamed; and the first 256 rows alone (0.4-1 MB: from L2 after the
// first pass, the kernels' compute rate). Beside them in the same run: a plain read of a buffer of
// the same size (the memory bandwidth the kernels are bound by).
//   hearth-bench-quant-gemv [--benchmark_filter=...]   (arguments: threads, x rows, weight rows)
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "hearth/core/thread_pool.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/peak.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace {

using i64 = std::int64_t;
using hearth::DType;

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

// ggml blocks of type t for kOut x kIn (rows repeat a few distinct ones: quantizing is slow).
struct GgmlWeights {
  std::vector<unsigned char> bytes;
  hearth::kernels::WeightView view;
  explicit GgmlWeights(DType t) {
    const i64 rb = hearth::ggml::row_bytes(t, kIn);
    bytes.resize(static_cast<std::size_t>(kOut * rb));
    for (i64 r = 0; r < 16; ++r) {
      const std::vector<float> w = random_row(kIn, static_cast<unsigned>(r));
      hearth::ggml::quantize_row(t, w.data(), bytes.data() + r * rb, kIn);
    }
    for (i64 r = 16; r < kOut; ++r) std::memcpy(&bytes[r * rb], &bytes[(r % 16) * rb], rb);
    view = {t, bytes.data(), kOut, kIn};
  }
};

// mlx affine codes, f16 scales and biases (group 64).
struct MlxWeights {
  std::vector<unsigned char> codes;
  std::vector<std::uint16_t> scales, biases;
  hearth::kernels::WeightView view;
  explicit MlxWeights(int bits) {
    const int group = 64;
    const i64 rb = kIn * bits / 8, groups = kIn / group;
    codes.resize(static_cast<std::size_t>(kOut * rb));
    scales.resize(static_cast<std::size_t>(kOut * groups));
    biases.resize(scales.size());
    std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
    for (i64 r = 0; r < kOut; ++r) {
      if (r < 16) {
        const std::vector<float> w = random_row(kIn, static_cast<unsigned>(r));
        hearth::mlx::quantize_row(w.data(), kIn, bits, group, codes.data() + r * rb, s.data(),
                                  b.data());
        for (i64 g = 0; g < groups; ++g) {
          scales[r * groups + g] = hearth::f32_to_f16(s[g]);
          biases[r * groups + g] = hearth::f32_to_f16(b[g]);
        }
        continue;
      }
      std::memcpy(&codes[r * rb], &codes[(r % 16) * rb], rb);
      std::memcpy(&scales[r * groups], &scales[(r % 16) * groups], groups * 2);
      std::memcpy(&biases[r * groups], &biases[(r % 16) * groups], groups * 2);
    }
    view = {DType::kU32, codes.data(), kOut, kIn};
    view.affine = {bits, group, DType::kF16, scales.data(), biases.data()};
  }
  std::size_t bytes() const { return codes.size() + 2 * scales.size() * 2; }
};

template <class W>
void run(benchmark::State& state, const W& w, std::size_t bytes) {
  const auto threads = static_cast<std::size_t>(state.range(0));
  const i64 rows = state.range(1);
  const i64 out = state.range(2);  // the first out rows of the weights: all, or a part in L2
  hearth::ThreadPool pool(threads);
  auto be = hearth::kernels::make_cpu_backend(pool);
  hearth::kernels::WeightView view = w.view;
  view.rows = out;
  const auto lin = be->make_linear_view(view, nullptr);
  const std::vector<float> x = random_row(rows * kIn, 7);
  std::vector<float> y(static_cast<std::size_t>(rows * out));
  for (auto _ : state) {
    be->linear(*lin, x.data(), rows, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes / (kOut / out)));
}

void BM_Ggml(benchmark::State& state, DType t) {
  static std::vector<std::unique_ptr<GgmlWeights>> cache;
  GgmlWeights* w = nullptr;
  for (auto& c : cache) {
    if (c->view.dtype == t) w = c.get();
  }
  if (w == nullptr) w = cache.emplace_back(std::make_unique<GgmlWeights>(t)).get();
  run(state, *w, w->bytes.size());
}

void BM_Mlx(benchmark::State& state, int bits) {
  static std::unique_ptr<MlxWeights> w4, w8;
  auto& w = bits == 4 ? w4 : w8;
  if (!w) w = std::make_unique<MlxWeights>(bits);
  run(state, *w, w->bytes());
}

void BM_ReadBandwidth(benchmark::State& state) {
  hearth::ThreadPool pool(static_cast<std::size_t>(state.range(0)));
  double gbs = 0.0;
  for (auto _ : state) gbs = hearth::kernels::measure_read_bandwidth_gbs(pool, 64ull << 20);
  state.counters["GB/s"] = gbs;
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{1, 2}, {1, 4}, {kOut, 256}})->Unit(benchmark::kMillisecond)->UseRealTime();
}

BENCHMARK(BM_ReadBandwidth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Ggml, q4_0, DType::kQ4_0)->Apply(args);
BENCHMARK_CAPTURE(BM_Ggml, q8_0, DType::kQ8_0)->Apply(args);
BENCHMARK_CAPTURE(BM_Ggml, q4_K, DType::kQ4_K)->Apply(args);
BENCHMARK_CAPTURE(BM_Ggml, q5_K, DType::kQ5_K)->Apply(args);
BENCHMARK_CAPTURE(BM_Ggml, q6_K, DType::kQ6_K)->Apply(args);
BENCHMARK_CAPTURE(BM_Mlx, mlx4, 4)->Apply(args);
BENCHMARK_CAPTURE(BM_Mlx, mlx8, 8)->Apply(args);

}  // namespace

BENCHMARK_MAIN();
