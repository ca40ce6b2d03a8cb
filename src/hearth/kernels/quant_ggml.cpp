#include "hearth/kernels/quant_ggml.hpp"

#include <string>

#include "hearth/core/error.hpp"

namespace hearth::kernels {

const QuantKernels& quant_kernels(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  switch (level) {
    case SimdLevel::kAvx512:
      if (f.avx512 && f.avx512_vnni) return detail::quant_kernels_avx512();
      if (f.avx512) return detail::quant_kernels_avx2();
      break;
    case SimdLevel::kAvx2:
      if (f.avx2) return detail::quant_kernels_avx2();
      break;
    case SimdLevel::kScalar:
      return detail::quant_kernels_scalar();
  }
  throw Error(ErrorCode::kUnsupported,
              std::string("this CPU lacks the ") + to_string(level) + " instruction set");
}

const DecodeKernels* decode_kernels(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  if (level == SimdLevel::kAvx512 && f.avx512 && f.avx512_vnni) {
    return &detail::decode_kernels_avx512();
  }
  if (level != SimdLevel::kScalar && f.avx2) return &detail::decode_kernels_avx2();
  return nullptr;
}

}  // namespace hearth::kernels
