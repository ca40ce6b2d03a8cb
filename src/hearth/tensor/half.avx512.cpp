// Compiled with AVX-512 F/BW/VL/DQ; called only when cpu_features().avx512 holds.
#include <immintrin.h>

#include "hearth/tensor/half.hpp"

namespace hearth::detail {

void bf16_to_f32_avx512(const std::uint16_t* src, float* dst, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m512i wide = _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16);
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(wide));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

}  // namespace hearth::detail
