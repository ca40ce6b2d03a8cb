#include "hearth/kernels/peak.hpp"

#include <algorithm>
#include <atomic>

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

}  // namespace hearth::kernels
