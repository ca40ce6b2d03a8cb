// Register-tiled int8 matrix-matrix products over quantized weights read in place, for many x rows
// (prefill, FLUX): ggml block types (tensor/ggml_quant.hpp) and 4- and 8-bit mlx affine codes
// (tensor/mlx_quant.hpp), against activations quantized to 8 bits per block of 32 (Q8Block, the
// same quantization as quant_ggml.hpp's GEMV).
//
// Every weight row is read as sub-blocks of 32 (or halves of 16) with w = scale * q - min, q an
// unsigned byte (the signed types Q8_0 and IQ4 offset by 128, the offset moved into the min; mlx:
// min = -bias). A tile of 32 weight rows is unpacked once into a thread-local buffer, its bytes
// interleaved four inputs per int32 lane, 16 rows per vector; then for every four x rows the
// products are vpdpbusd of that vector with the x row's four int8 inputs broadcast (AVX-512 VNNI),
// converted to f32 once per sub-block and accumulated with the weight scale times the x block
// scale; the min term is min * d * sum(q8) per sub-block (ggml) or min * sum(x) exactly (mlx, as
// its GEMV). So the error is the GEMV's: the activations' rounding only, at most d / 2 each.
//
// mlx exactly: for x row r and weight row n (group g of scale s_g and bias b_g, x block j of scale
// d_j and int8 codes xq, T_j the f32 sum of its 32 inputs),
//     y = bias_n + sum_j (s_g(j) d_j I_j + b_g(j) T_j),   I_j = sum_{i in j} q_i xq_i,
// I_j an exact integer at every level (|I_j| <= 32 * 255 * 127 < 2^24, exact as an f32). The mlx
// GEMV kernels (quant_mlx.hpp) compute the same sum with the same I_j and xq, the x sums per group
// instead of per block: the two differ by f32 rounding alone (bound: docs/llm.md). Against the
// product with the dequantized weights the error is sum_i s q_i (d xq_i - x_i), at most
// sum_i |s q_i| d_j / 2.
#pragma once

#include <cstdint>

#include "hearth/core/cpu.hpp"
#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/tensor/dtype.hpp"

namespace hearth::kernels {

struct QuantGemm {
  const char* name;
  // Weight rows per tile: the split over a pool should hand out whole tiles.
  std::int64_t tile_rows;
  // Fewest x rows (more than 8, the decode GEMV's range) for which these beat the GEMV kernels
  // (each tile is unpacked once per call).
  std::int64_t min_rows;
  // y[r * ldy + n] = W_n . x_r + bias[n] for n in [n0, n1), r in [m0, m1): W as QuantKernels::gemv
  // takes it (t one of ggml::supported, k a multiple of its block); xq holds k / 32 blocks per x
  // row (row r from r * k / 32), from QuantKernels::quantize_rows. bias may be null.
  void (*ggml)(DType t, const void* w, std::int64_t k, std::int64_t n0, std::int64_t n1,
               const Q8Block* xq, std::int64_t m0, std::int64_t m1, const float* bias, float* y,
               std::int64_t ldy);
  // The same for 4- and 8-bit mlx affine weights (cols a multiple of 32, f16, bf16 or f32
  // scales); xq from affine_quantize (the bias term wants the exact sums of x). The other
  // widths keep their exact f32 kernels (quant_mlx.hpp).
  void (*affine)(const AffineMatrix& w, std::int64_t n0, std::int64_t n1, const Q8Block* xq,
                 std::int64_t m0, std::int64_t m1, const float* bias, float* y, std::int64_t ldy);
  // x (rows x k floats, ldx apart; k a multiple of 32) into blocks for affine: q and d bit for
  // bit as AffineActs::fill rounds them for the mlx GEMV (so prefill and decode multiply the same
  // integers), total the f32 sum of the block's 32 inputs (in some order), and sum[0], sum[1] the
  // integer sums of q over inputs 0..15 and 16..31 (exact as floats; not scaled by d as the ggml
  // kernels' are).
  void (*affine_quantize)(const float* x, std::int64_t rows, std::int64_t ldx, std::int64_t k,
                          Q8Block* xq);
};

// The tiled kernels for a level (AVX-512 means AVX-512 VNNI; the AVX2 ones where the CPU lacks
// VNNI), or nullptr at the scalar level (the callers run the GEMV kernels a few x rows at a time).
const QuantGemm* quant_gemm(SimdLevel level);

namespace detail {
const QuantGemm& quant_gemm_avx2();
const QuantGemm& quant_gemm_vnni512();
}  // namespace detail

}  // namespace hearth::kernels
