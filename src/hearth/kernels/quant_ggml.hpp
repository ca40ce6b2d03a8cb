// Matrix products over ggml block-quantized weights read in place (tensor/ggml_quant.hpp) with
// activations quantized to 8 bits per block of 32 (like ggml's q8_0, plus the two half-block
// sums that the types with a min need). One source (quant_ggml_impl.hpp) compiled as scalar, AVX2
// and AVX-512 VNNI; CpuBackend picks the table and splits the weight rows over its pool.
//
// Every weight sub-block of 32 is decoded to 32 small integers q and a scale and min per half
// (16 elements): w = scale * q - min. The dot with an activation block (d, q8) is then
// d * (scale0 * sum0(q q8) + scale1 * sum1(q q8)) - (min0 * s0 + min1 * s1), s = d * sum(q8) of
// each half, in int8/int32 arithmetic for the products. The only error beyond the f32 sums is
// the activations' rounding to 8 bits: at most d / 2 per element with d = max|x| / 127 of its
// block.
#pragma once

#include <cstdint>

#include "hearth/core/cpu.hpp"
#include "hearth/tensor/dtype.hpp"

namespace hearth::kernels {

struct Q8Block {
  float d;       // scale: x ~ d * q
  float sum[2];  // d * sum(q) over elements 0..15 and 16..31
  float total;   // d * sum(q) over all 32
  std::int8_t q[32];
};

struct QuantKernels {
  SimdLevel level;
  bool vnni;
  // Rows rows of x (k floats each, ldx apart; k a multiple of 32) into rows * k / 32 blocks.
  void (*quantize_rows)(const float* x, std::int64_t rows, std::int64_t ldx, std::int64_t k,
                        Q8Block* out);
  // y[r, n0:n1] = W[n0:n1] . x_r + bias for r < rows: W rows of k elements of type t, each
  // ggml::row_bytes(t, k) bytes; xq holds rows * k / 32 blocks (row r from r * k / 32); y rows are
  // ldy apart; bias may be null. Weight rows are taken one after another (one stream per thread),
  // each decoded once for up to four x rows. Throws nothing: t must be ggml::supported.
  void (*gemv)(DType t, const void* w, std::int64_t k, std::int64_t n0, std::int64_t n1,
               const Q8Block* xq, std::int64_t rows, const float* bias, float* y, std::int64_t ldy);
};

// Decode (a few x rows) in steps over several stored blocks at once (quant_ggml_decode.avx512.cpp
// with 512-bit VNNI steps, quant_ggml_decode.avx2.cpp with 256-bit ones): x rows are prepared once
// per call in the order each weight type's steps read them (the same int8 blocks as
// quantize_rows, with block scales and offset sums), every weight block decoded once for up to
// four x rows.
struct DecodeKernels {
  // Whether type t has a kernel here (Q4_0, Q8_0, Q4_K, Q5_K, Q6_K).
  bool (*handles)(DType t);
  // Bytes of one prepared row of k inputs for weights of type t (a multiple of 64).
  std::int64_t (*row_bytes)(DType t, std::int64_t k);
  // rows x rows (k floats each, ldx apart) into rows * row_bytes(t, k) bytes at out, which must be
  // 64-byte aligned.
  void (*prepare)(DType t, const float* x, std::int64_t rows, std::int64_t ldx, std::int64_t k,
                  void* out);
  // As QuantKernels::gemv, with x prepared by prepare(t, ...).
  void (*gemv)(DType t, const void* w, std::int64_t k, std::int64_t n0, std::int64_t n1,
               const void* xp, std::int64_t rows, const float* bias, float* y, std::int64_t ldy);
};

// The decode kernels for level: the VNNI ones for AVX-512 on a CPU with VNNI, else the AVX2 ones
// for AVX2 and AVX-512; null for scalar.
const DecodeKernels* decode_kernels(SimdLevel level);

// The table for a level this CPU supports: AVX-512 means AVX-512 VNNI (the AVX2 table where the
// CPU lacks VNNI). Throws Error(kUnsupported) for a level the CPU lacks.
const QuantKernels& quant_kernels(SimdLevel level);

namespace detail {
const QuantKernels& quant_kernels_scalar();
const QuantKernels& quant_kernels_avx2();
const QuantKernels& quant_kernels_avx512();
const DecodeKernels& decode_kernels_avx2();
const DecodeKernels& decode_kernels_avx512();
}  // namespace detail

}  // namespace hearth::kernels
