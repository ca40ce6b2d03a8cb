#include <immintrin.h>

#include "hearth/rag/dense.hpp"

namespace hearth::rag::detail {

void dot_rows_avx2(const float* rows, std::size_t n, std::size_t dim, const float* query,
                   float* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const float* r = rows + i * dim;
    __m256 acc0 = _mm256_setzero_ps();
    __m256 acc1 = _mm256_setzero_ps();
    std::size_t j = 0;
    for (; j + 16 <= dim; j += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + j), _mm256_loadu_ps(query + j), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + j + 8), _mm256_loadu_ps(query + j + 8), acc1);
    }
    for (; j + 8 <= dim; j += 8) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + j), _mm256_loadu_ps(query + j), acc0);
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    float total = _mm_cvtss_f32(s);
    for (; j < dim; ++j) total += r[j] * query[j];
    out[i] = total;
  }
}

}  // namespace hearth::rag::detail
