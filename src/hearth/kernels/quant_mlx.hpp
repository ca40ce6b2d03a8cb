// Kernels over MLX affine-quantized weights (tensor/mlx_quant.hpp) read in place: y = x W^T with
// W's packed codes, per-group scales and biases, for decode (few x rows) and prefill (many).
//
// Two families, chosen per level and width by affine_kernels():
//  - int8 (4 and 8 bits on AVX2 and AVX-512; AVX-512 VNNI's vpdpbusd where the CPU has it, else
//    AVX2's vpmaddubsw): x is quantized per block of 32 inputs to int8 with d = max|x| / 127, and
//    per weight group g (bias b, scale s) and block j inside it
//        y += s * d_j * sum_i(q_i * xq_i)    (integer products)    + b * sum_i(x_i)    (exact f32)
//    The only error beyond f32 rounding is xq's rounding: |x_i - d xq_i| <= d / 2 (docs/llm.md).
//  - f32 (every width, every level; the only one at the scalar level): codes unpacked to floats
//    row by row, y += s * dot(q, x) + b * sum(x) with no activation rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "hearth/core/cpu.hpp"
#include "hearth/tensor/dtype.hpp"

namespace hearth::kernels {

struct AffineMatrix {
  const std::uint8_t* codes = nullptr;  // rows x row_bytes()
  std::int64_t rows = 0, cols = 0;
  int bits = 0, group_size = 0;
  DType scale_dtype = DType::kF16;
  const void* scales = nullptr;  // [rows, cols / group_size]
  const void* biases = nullptr;
  std::int64_t row_bytes() const { return cols * bits / 8; }
  std::int64_t groups() const { return cols / group_size; }
};

// How a family wants x prepared (AffineActs).
enum class ActLayout {
  kF32,     // group sums only: the kernels read x itself
  kBlocks,  // int8 per block of 32; 4 bits: the block's even inputs, then its odd ones (the low
            // and high nibbles of its 16 packed bytes)
  kVnni,    // int8; 4 bits: per 4 blocks (128 inputs, 64 packed bytes) the even inputs of the four
            // blocks, then their odd ones; 8 bits: in order. Plus lanes: the block scale of each
            // int32 lane of the kernels' accumulators (16 per step of 4 blocks at 4 bits, 2 at 8)
};

// x prepared for one layer: exact group sums always; for the int8 families also int8 blocks in
// the layout's order and per-block scales. Rows of q hold padded_cols() values (zeros past cols,
// to whole steps of 128 inputs).
struct AffineActs {
  std::int64_t rows = 0, cols = 0;
  int bits = 0, group_size = 0;
  ActLayout layout = ActLayout::kF32;
  std::vector<std::int8_t> q;    // rows x padded_cols()
  std::vector<float> d;          // rows x padded_cols() / 32: block scales (0 for padding)
  std::vector<float> lanes;      // kVnni: rows x lane_floats()
  std::vector<float> qd;         // rows x cols / group_size: sum of d * sum(q) over each group
  std::vector<float> group_sum;  // rows x cols / group_size: sum of x over each weight group
  std::int64_t padded_cols() const { return (cols + 127) / 128 * 128; }
  std::int64_t blocks() const { return padded_cols() / 32; }
  std::int64_t lane_floats() const { return padded_cols() / (bits == 4 ? 8 : 4); }
  // Sizes the buffers for rows x rows of cols inputs.
  void reset(std::int64_t rows, std::int64_t cols, int bits, int group_size, ActLayout layout);
  // Fills rows r0..r1 from x (rows ldx floats apart).
  void fill(const float* x, std::int64_t ldx, std::int64_t r0, std::int64_t r1);
};

struct AffineKernels {
  ActLayout layout = ActLayout::kF32;  // what run() reads: AffineActs::q in this layout, or x
  bool int8() const { return layout != ActLayout::kF32; }
  // y[r * ldy + n] = x_r . W_n + bias[n] for rows r0..r1 and weight rows n0..n1 (bias may be
  // null; x rows ldx apart).
  void (*run)(const AffineMatrix& w, const AffineActs& a, const float* x, std::int64_t ldx,
              std::int64_t n0, std::int64_t n1, std::int64_t r0, std::int64_t r1, const float* bias,
              float* y, std::int64_t ldy) = nullptr;
  const char* name = "";
};

// Decode (a few x rows) over 4- and 8-bit codes with f16/bf16 scales, on AVX-512 VNNI
// (quant_mlx_decode.avx512.cpp: steps of 64 packed bytes, vpdpbusd) and on AVX2
// (quant_mlx_decode.avx2.cpp: groups of 32, 64 or 128, steps of 64 inputs, vpmaddubsw): x
// prepared once per call into int8 blocks in the order the kernel reads them (rounded as
// AffineActs::fill rounds) plus the exact group sums, then per weight row steps each decoded once
// for up to four x rows.
struct AffineDecode {
  bool (*handles)(const AffineMatrix& w);
  // Bytes of one prepared x row (a multiple of 64).
  std::int64_t (*row_bytes)(const AffineMatrix& w);
  // rows x rows (w.cols floats each, ldx apart) into rows * row_bytes(w) bytes at out (64-byte
  // aligned).
  void (*prepare)(const AffineMatrix& w, const float* x, std::int64_t rows, std::int64_t ldx,
                  void* out);
  // y[r * ldy + n] = x_r . W_n + bias[n] for r < rows and n0 <= n < n1 (bias may be null).
  void (*gemv)(const AffineMatrix& w, const void* xp, std::int64_t rows, std::int64_t n0,
               std::int64_t n1, const float* bias, float* y, std::int64_t ldy);
};

// The decode kernels for level: the AVX-512 VNNI ones, the AVX2 ones (at the AVX2 level, and at
// the AVX-512 level on a CPU without VNNI), or null (the scalar level, or a level the CPU lacks).
const AffineDecode* affine_decode(SimdLevel level);

// The kernels for bits at level (at most what the CPU has; 4 and 8 bits get the int8 family on
// AVX2 and AVX-512).
const AffineKernels& affine_kernels(SimdLevel level, int bits);

namespace detail {
const AffineKernels& affine_f32_scalar();
const AffineKernels& affine_f32_avx2();
const AffineKernels& affine_f32_avx512();
const AffineKernels& affine_int8_avx2(int bits);     // bits 4 or 8
const AffineKernels& affine_int8_vnni512(int bits);  // bits 4 or 8; needs AVX-512 VNNI
const AffineDecode& affine_decode_avx2();
const AffineDecode& affine_decode_avx512();  // needs AVX-512 VNNI
}  // namespace detail

}  // namespace hearth::kernels
