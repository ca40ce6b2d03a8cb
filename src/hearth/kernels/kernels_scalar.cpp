// Portable kernels (one float per "vector"): 4 x 4 GEMM micro-tiles. The reference level that
// HEARTH_SIMD=scalar selects.
#define HEARTH_GEMM_MR 4
#define HEARTH_GEMM_NV 4
#include "hearth/kernels/kernels_impl.hpp"

namespace hearth::kernels::detail {

const KernelTable& kernel_table_scalar() {
  static constexpr KernelTable table = make_table(SimdLevel::kScalar);
  return table;
}

}  // namespace hearth::kernels::detail
