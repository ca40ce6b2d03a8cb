// The affine f32 kernels at the portable baseline (the scalar level's only family).
#include "hearth/kernels/quant_mlx_impl.hpp"

namespace hearth::kernels::detail {

const AffineKernels& affine_f32_scalar() {
  return kAffineF32;
}

}  // namespace hearth::kernels::detail
