// f16/bf16 -> f32 conversion throughput, side by side with memcpy of the same output bytes in
// the same run (the machine's copy bandwidth is the ceiling for a streaming conversion).
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/tensor/half.hpp"

namespace {

constexpr std::size_t kN = 16 << 20;  // 16 Mi elements: 32 MiB in, 64 MiB out (beyond caches)

void BM_Memcpy(benchmark::State& state) {
  std::vector<float> src(kN, 1.0f);
  std::vector<float> dst(kN);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), kN * sizeof(float));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kN * 8));
}
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond);

void BM_F16ToF32(benchmark::State& state) {
  std::vector<std::uint16_t> src(kN, 0x3C00);
  std::vector<float> dst(kN);
  for (auto _ : state) {
    hearth::f16_to_f32(src.data(), dst.data(), kN);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kN * 6));
  state.SetLabel(hearth::to_string(hearth::simd_level()));
}
BENCHMARK(BM_F16ToF32)->Unit(benchmark::kMillisecond);

void BM_BF16ToF32(benchmark::State& state) {
  std::vector<std::uint16_t> src(kN, 0x3F80);
  std::vector<float> dst(kN);
  for (auto _ : state) {
    hearth::bf16_to_f32(src.data(), dst.data(), kN);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kN * 6));
  state.SetLabel(hearth::to_string(hearth::simd_level()));
}
BENCHMARK(BM_BF16ToF32)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
