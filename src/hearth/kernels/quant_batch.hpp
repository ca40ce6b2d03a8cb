// Batched decode (2 to 8 x rows, one per session decoding together) over Q4_0 and 4-bit MLX
// affine weights on AVX-512 VNNI (quant_ggml_batch.avx512.cpp, quant_mlx_batch.avx512.cpp), in
// the interfaces of the one-row decode kernels (DecodeKernels, AffineDecode) so that CpuBackend
// runs them the same way.
//
// What differs from the one-row kernels is the order of the work: the weights are read in
// groups of 16 blocks of 32 inputs (512 inputs), their 4-byte lanes transposed so that each of
// the 16 int32 lanes of an accumulator holds one whole block. Each x row then costs 8 vpdpbusd
// per group and a single conversion, scale product and fma for all 16 blocks, instead of one per
// 128 inputs; the weight unpacking is done once per group for every row. The activations are
// the same int8 blocks (d = max|x| / 127, rounded to nearest even) as the other kernels, prepared
// per call in that lane order; the integer block sums are exact, so only the f32 summation order
// differs from the other levels.
#pragma once

#include "hearth/kernels/quant_ggml.hpp"
#include "hearth/kernels/quant_mlx.hpp"

namespace hearth::kernels {

// Q4_0 (handles() says which types); null unless level is AVX-512 and the CPU has VNNI.
const DecodeKernels* batch_decode_kernels(SimdLevel level);
// 4-bit codes with f16 or bf16 scales, w.cols a multiple of 32; null as above.
const AffineDecode* batch_affine_decode(SimdLevel level);

namespace detail {
const DecodeKernels& batch_decode_kernels_avx512();  // needs AVX-512 VNNI
const AffineDecode& batch_affine_decode_avx512();    // needs AVX-512 VNNI
}  // namespace detail

}  // namespace hearth::kernels
