#include "hearth/kernels/peak.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"

namespace hearth::kernels {

double measure_fma_peak_gflops(ThreadPool& pool, double seconds, SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  const bool wide = level == SimdLevel::kAvx512 && f.avx512;
  if (!wide && !(level >= SimdLevel::kAvx2 && f.avx2)) {
    throw Error(ErrorCode::kUnsupported, "the FMA peak probe needs AVX2 or AVX-512");
  }
  const int lanes = wide ? 16 : 8;
  const auto run = [&](std::int64_t iterations) {
    std::atomic<float> sink{0.0f};
    pool.parallel_for(pool.size(), [&](std::size_t b, std::size_t e) {
      for (std::size_t i = b; i < e; ++i) {
        sink = sink +
               (wide ? detail::fma_chains_avx512(iterations) : detail::fma_chains_avx2(iterations));
      }
    });
    return sink.load();
  };
  run(100'000);  // wake the cores
  std::int64_t iterations = 1'000'000;
  for (;;) {
    Timer t;
    run(iterations);
    const double s = t.seconds();
    if (s >= seconds || iterations > (std::int64_t{1} << 40)) {
      const double flops =
          2.0 * 12.0 * lanes * static_cast<double>(iterations) * static_cast<double>(pool.size());
      return flops / s / 1e9;
    }
    iterations = static_cast<std::int64_t>(static_cast<double>(iterations) *
                                           std::clamp(seconds / std::max(s, 1e-6), 1.5, 100.0));
  }
}

double measure_read_bandwidth_gbs(ThreadPool& pool, std::size_t bytes, int repeats) {
  const std::size_t words = std::max<std::size_t>(bytes / 8, 1024) / 1024 * 1024;
  std::unique_ptr<std::uint64_t[]> buf(new std::uint64_t[words]);
  pool.parallel_for(words / 1024, [&](std::size_t b, std::size_t e) {
    std::memset(buf.get() + b * 1024, 1, (e - b) * 1024 * 8);  // each thread touches its share
  });
  std::vector<std::uint64_t> sinks(pool.size());
  double best = 1e30;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    const Timer t;
    std::atomic<std::size_t> slot{0};
    pool.parallel_for(words / 1024, [&](std::size_t b, std::size_t e) {
      // Eight independent sums (vectorised by the compiler): bound by memory, not by adds.
      std::uint64_t acc[8] = {};
      const std::uint64_t* p = buf.get() + b * 1024;
      const std::size_t n = (e - b) * 1024;
      for (std::size_t i = 0; i < n; i += 8) {
        for (int k = 0; k < 8; ++k) acc[k] += p[i + static_cast<std::size_t>(k)];
      }
      std::uint64_t s = 0;
      for (const std::uint64_t a : acc) s += a;
      sinks[slot++ % sinks.size()] = s;
    });
    best = std::min(best, t.seconds());
  }
  return static_cast<double>(words * 8) / best / 1e9;
}

}  // namespace hearth::kernels
