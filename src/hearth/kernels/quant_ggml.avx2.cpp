// AVX2 quantized-weight kernels: 256-bit maddubs/madd products of 32 weights at a time.
#define HEARTH_QG_AVX2 1
#include "hearth/kernels/quant_ggml_impl.hpp"

namespace hearth::kernels::detail {

const QuantKernels& quant_kernels_avx2() {
  static constexpr QuantKernels table = make_quant_table(SimdLevel::kAvx2, false);
  return table;
}

}  // namespace hearth::kernels::detail
