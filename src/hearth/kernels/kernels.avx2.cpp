// AVX2 + FMA kernels: 6 x 16 GEMM micro-tiles (12 ymm accumulators).
#define HEARTH_GEMM_MR 6
#define HEARTH_GEMM_NV 2
#include "hearth/kernels/kernels_impl.hpp"

namespace hearth::kernels::detail {

const KernelTable& kernel_table_avx2() {
  static constexpr KernelTable table = make_table(SimdLevel::kAvx2);
  return table;
}

}  // namespace hearth::kernels::detail
