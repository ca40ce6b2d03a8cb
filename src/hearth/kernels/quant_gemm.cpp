#include "hearth/kernels/quant_gemm.hpp"

#include <cmath>

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

void affine_quantize_rows(const float* x, std::int64_t rows, std::int64_t ldx, std::int64_t k,
                          Q8Block* xq) {
  const std::int64_t nb = k / 32;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < nb; ++b) {
      const float* xb = x + r * ldx + b * 32;
      Q8Block& o = xq[r * nb + b];
      float amax = 0.0f, total = 0.0f;
      for (int i = 0; i < 32; ++i) {
        amax = std::fmax(amax, std::fabs(xb[i]));
        total += xb[i];
      }
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int s0 = 0, s1 = 0;
      for (int i = 0; i < 32; ++i) {
        const int v =
            static_cast<int>(std::nearbyint(std::fmin(std::fmax(xb[i] * inv, -127.0f), 127.0f)));
        o.q[i] = static_cast<std::int8_t>(v);
        (i < 16 ? s0 : s1) += v;
      }
      o.d = amax / 127.0f;
      o.sum[0] = static_cast<float>(s0);
      o.sum[1] = static_cast<float>(s1);
      o.total = total;
    }
  }
}

}  // namespace hearth::kernels
