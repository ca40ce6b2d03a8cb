#include "hearth/kernels/kernel_table.hpp"

#include <algorithm>

#include "hearth/core/error.hpp"

namespace hearth::kernels {

const KernelTable& kernel_table(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  switch (level) {
    case SimdLevel::kAvx512:
      if (f.avx512) return detail::kernel_table_avx512();
      break;
    case SimdLevel::kAvx2:
      if (f.avx2) return detail::kernel_table_avx2();
      break;
    case SimdLevel::kScalar:
      return detail::kernel_table_scalar();
  }
  throw Error(ErrorCode::kUnsupported,
              std::string("this CPU lacks the ") + to_string(level) + " instruction set");
}

const KernelTable& kernel_table() {
  return kernel_table(simd_level());
}

void pack_b(const float* w, std::int64_t n, std::int64_t k, int nr, float* out) {
  const std::int64_t panels = gemm_panels(n, nr);
  for (std::int64_t p = 0; p < panels; ++p) {
    float* panel = out + p * k * nr;
    const std::int64_t cols = std::min<std::int64_t>(nr, n - p * nr);
    for (std::int64_t j = 0; j < nr; ++j) {
      if (j >= cols) {
        for (std::int64_t kk = 0; kk < k; ++kk) panel[kk * nr + j] = 0.0f;
        continue;
      }
      const float* row = w + (p * nr + j) * k;
      for (std::int64_t kk = 0; kk < k; ++kk) panel[kk * nr + j] = row[kk];
    }
  }
}

}  // namespace hearth::kernels
