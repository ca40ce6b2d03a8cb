// The machine's measured f32 peak: every pool thread runs independent FMA chains (enough to cover
// the FMA latency) at the widest vector width of the given level. Benchmarks print achieved
// GFLOP/s beside it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"

namespace hearth::kernels {

// GFLOP/s of all pool threads together, over about seconds of wall time.
double measure_fma_peak_gflops(ThreadPool& pool, double seconds = 0.3,
                               SimdLevel level = simd_level());

// Read bandwidth of all pool threads together in GB/s (1e9 bytes): the best of repeats passes
// over a buffer of bytes (far larger than the caches), each thread summing its contiguous share.
// The ceiling for anything that streams weights once per token.
double measure_read_bandwidth_gbs(ThreadPool& pool, std::size_t bytes = std::size_t{1} << 30,
                                  int repeats = 5);

namespace detail {
// iterations x 12 independent FMAs on 16 (avx512) or 8 (avx2) lanes; returns a value that
// depends on every result so the work cannot be dropped.
float fma_chains_avx512(std::int64_t iterations);
float fma_chains_avx2(std::int64_t iterations);
}  // namespace detail

}  // namespace hearth::kernels
