// AVX-512 VNNI quantized-weight kernels: the AVX2 source with vpdpbusd (256-bit, AVX512-VL) for
// the int8 products. Chosen only where the CPU has VNNI (quant_kernels()).
#pragma GCC target("avx512vnni")
#define HEARTH_QG_AVX2 1
#define HEARTH_QG_VNNI 1
#include "hearth/kernels/quant_ggml_impl.hpp"

namespace hearth::kernels::detail {

const QuantKernels& quant_kernels_avx512() {
  static constexpr QuantKernels table = make_quant_table(SimdLevel::kAvx512, true);
  return table;
}

}  // namespace hearth::kernels::detail
