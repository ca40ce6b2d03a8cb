// Exact dense retrieval: dot products of a query against every row of an f32 matrix, with the
// top k kept per thread and merged. AVX-512 / AVX2 kernels are chosen at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hearth::rag {

// How vector rows are stored: f32; f16; int8 with a per-row f32 scale in front of the dim bytes
// (value = scale * q, q in [-127, 127]).
enum class VectorType { kF32, kF16, kInt8 };

const char* to_string(VectorType type);
VectorType parse_vector_type(const std::string& name);  // "f32", "f16", "int8"
std::size_t row_bytes(VectorType type, std::size_t dim);
// Encodes n rows of dim floats into out (n * row_bytes bytes).
void encode_rows(VectorType type, const float* rows, std::size_t n, std::size_t dim,
                 std::byte* out);
// Decodes n stored rows back to floats.
void decode_rows(VectorType type, const std::byte* rows, std::size_t n, std::size_t dim,
                 float* out);

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

// The same over stored rows of any VectorType (decoded block by block).
std::vector<std::pair<float, std::size_t>> top_k_dense(VectorType type, const std::byte* rows,
                                                       std::size_t n, std::size_t dim,
                                                       const float* query, std::size_t k,
                                                       const std::uint8_t* keep = nullptr,
                                                       std::size_t threads = 0);

namespace detail {
void dot_rows_avx2(const float* rows, std::size_t n, std::size_t dim, const float* query,
                   float* out);
void dot_rows_avx512(const float* rows, std::size_t n, std::size_t dim, const float* query,
                     float* out);
}  // namespace detail

}  // namespace hearth::rag
