// Exact dense retrieval: dot products of a query against every row of an f32 matrix, with the
// top k kept per thread and merged. AVX-512 / AVX2 kernels are chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace hearth::rag {

// out[i] = dot(rows + i * dim, query) for i in [0, n).
void dot_rows(const float* rows, std::size_t n, std::size_t dim, const float* query, float* out);

// The k best (score, row) pairs, best first (ties: lower row first). keep, when not null, has n
// entries and rows with keep[row] == 0 are skipped. threads: 0 = every core.
std::vector<std::pair<float, std::size_t>> top_k_dense(const float* rows, std::size_t n,
                                                       std::size_t dim, const float* query,
                                                       std::size_t k,
                                                       const std::uint8_t* keep = nullptr,
                                                       std::size_t threads = 0);

// Reciprocal rank fusion: score(d) = sum over lists of 1 / (k + rank), rank starting at 1.
// Returns ids best first (ties: first seen first).
std::vector<std::pair<std::int64_t, double>> reciprocal_rank_fusion(
    const std::vector<std::vector<std::int64_t>>& lists, double k = 60.0);

namespace detail {
void dot_rows_avx2(const float* rows, std::size_t n, std::size_t dim, const float* query,
                   float* out);
void dot_rows_avx512(const float* rows, std::size_t n, std::size_t dim, const float* query,
                     float* out);
}  // namespace detail

}  // namespace hearth::rag
