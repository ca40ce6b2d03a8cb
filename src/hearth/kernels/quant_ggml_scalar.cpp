// Portable quantized-weight kernels: plain integer loops, the reference the SIMD levels match.
#include "hearth/kernels/quant_ggml_impl.hpp"

namespace hearth::kernels::detail {

const QuantKernels& quant_kernels_scalar() {
  static constexpr QuantKernels table = make_quant_table(SimdLevel::kScalar, false);
  return table;
}

}  // namespace hearth::kernels::detail
