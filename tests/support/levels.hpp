// What the kernel tests share: every instruction-set level this CPU runs, seeded random data, and
// the int8 activation blocks the kernels should form.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
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

// x's blocks of 32 rounded to int8 (d per block, q per element), independently of the kernels.
struct Int8Blocks {
  std::vector<double> d;
  std::vector<int> q;
};

// As the ggml kernels round: d = max|x| / 127, q = lrint(x / d).
inline Int8Blocks ggml_blocks(const float* x, std::int64_t k) {
  Int8Blocks o;
  for (std::int64_t b = 0; b < k / 32; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < 32; ++i) o.q.push_back(static_cast<int>(std::lrintf(x[b * 32 + i] * id)));
    o.d.push_back(d);
  }
  return o;
}

// As AffineActs::fill rounds: d = max|x| / 127, q = nearbyint(clamp(x * (127 / max|x|), -127,
// 127)).
inline Int8Blocks mlx_blocks(const float* x, std::int64_t k) {
  Int8Blocks o;
  for (std::int64_t b = 0; b < k / 32; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < 32; ++i) {
      o.q.push_back(static_cast<int>(
          std::nearbyint(std::fmin(std::fmax(x[b * 32 + i] * inv, -127.0f), 127.0f))));
    }
    o.d.push_back(amax / 127.0f);
  }
  return o;
}

}  // namespace hearth::testing
