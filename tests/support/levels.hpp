// What the kernel tests share: every instruction-set level this CPU runs, and seeded random data.
#pragma once

#include <cstddef>
#include <random>
#include <vector>

#include "hearth/core/cpu.hpp"

namespace hearth::testing {

// Scalar, then AVX2 and AVX-512 where the CPU has them.
inline std::vector<SimdLevel> simd_levels() {
  std::vector<SimdLevel> out = {SimdLevel::kScalar};
  if (cpu_features().avx2) out.push_back(SimdLevel::kAvx2);
  if (cpu_features().avx512) out.push_back(SimdLevel::kAvx512);
  return out;
}

// n values from N(0, scale^2), the same for the same seed.
inline std::vector<float> random_vector(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace hearth::testing
