// AVX-512 kernels: 8 x 32 GEMM micro-tiles (16 zmm accumulators).
#define HEARTH_GEMM_MR 8
#define HEARTH_GEMM_NV 2
#include "hearth/kernels/kernels_impl.hpp"

namespace hearth::kernels::detail {

const KernelTable& kernel_table_avx512() {
  static constexpr KernelTable table = make_table(SimdLevel::kAvx512);
  return table;
}

}  // namespace hearth::kernels::detail
