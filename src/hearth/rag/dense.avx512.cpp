#include <immintrin.h>

#include "hearth/rag/dense.hpp"

namespace hearth::rag::detail {

void dot_rows_avx512(const float* rows, std::size_t n, std::size_t dim, const float* query,
                     float* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const float* r = rows + i * dim;
    __m512 acc0 = _mm512_setzero_ps();
    __m512 acc1 = _mm512_setzero_ps();
    std::size_t j = 0;
    for (; j + 32 <= dim; j += 32) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(r + j), _mm512_loadu_ps(query + j), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(r + j + 16), _mm512_loadu_ps(query + j + 16), acc1);
    }
    if (j < dim) {
      // The remaining 1..31 columns: full vector if possible, then a masked tail.
      if (j + 16 <= dim) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(r + j), _mm512_loadu_ps(query + j), acc0);
        j += 16;
      }
      if (j < dim) {
        const __mmask16 m = static_cast<__mmask16>((1u << (dim - j)) - 1);
        acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r + j), _mm512_maskz_loadu_ps(m, query + j),
                               acc1);
      }
    }
    out[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  }
}

}  // namespace hearth::rag::detail
