#include "hearth/kernels/quant_gemm.hpp"

namespace hearth::kernels {

const QuantGemm* quant_gemm(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  switch (level) {
    case SimdLevel::kAvx512:
      if (f.avx512 && f.avx512_vnni) return &detail::quant_gemm_vnni512();
      if (f.avx512) return &detail::quant_gemm_avx2();
      break;
    case SimdLevel::kAvx2:
      if (f.avx2) return &detail::quant_gemm_avx2();
      break;
    case SimdLevel::kScalar:
      break;
  }
  return nullptr;
}

void affine_block_sums(const float* x, std::int64_t rows, std::int64_t ldx, std::int64_t k,
                       Q8Block* xq) {
  const std::int64_t nb = k / 32;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < nb; ++b) {
      const float* xb = x + r * ldx + b * 32;
      float s = 0.0f;
      for (int i = 0; i < 32; ++i) s += xb[i];
      xq[r * nb + b].total = s;
    }
  }
}

}  // namespace hearth::kernels
