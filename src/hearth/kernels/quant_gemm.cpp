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

}  // namespace hearth::kernels
