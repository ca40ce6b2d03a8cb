#include "hearth/kernels/quant_batch.hpp"

namespace hearth::kernels {

namespace {
bool vnni512(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  return level == SimdLevel::kAvx512 && f.avx512 && f.avx512_vnni;
}
}  // namespace

const DecodeKernels* batch_decode_kernels(SimdLevel level) {
  return vnni512(level) ? &detail::batch_decode_kernels_avx512() : nullptr;
}

const AffineDecode* batch_affine_decode(SimdLevel level) {
  return vnni512(level) ? &detail::batch_affine_decode_avx512() : nullptr;
}

}  // namespace hearth::kernels
