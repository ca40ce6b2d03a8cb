// ggml's block-quantized weight formats (as GGUF files store them): the block layouts, a scalar
// dequantizer and hearth's own quantizer for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
// Q5_K, Q6_K, IQ4_NL and IQ4_XS. A row of n elements is n / block_size blocks laid end to end.
//
// Layouts (bit-exact to ggml's; halves are IEEE f16):
//   q4_0  (32)  d; qs[16]: element j < 16 is qs[j] & 15, element j + 16 is qs[j] >> 4; w = d (q -
//   8) q4_1  (32)  d, m; nibbles as q4_0; w = d q + m q5_0  (32)  d; qh (u32: bit j is element j's
//   fifth bit); qs as q4_0; w = d (q - 16) q5_1  (32)  d, m; qh; qs; w = d q + m q8_0  (32)  d;
//   int8 qs[32]; w = d q q2_K (256)  scales[16] (low nibble scale, high nibble min, per 16); qs[64]
//   (2 bits); d, dmin:
//               element e: byte 32 (e / 128) + e % 32, bits 2 ((e % 128) / 32);
//               w = d sc q - dmin mn
//   q3_K (256)  hmask[32]; qs[64] (low 2 bits as q2_K); scales[12] (sixteen 6-bit values, minus
//               32); d. High bit of element e: hmask[e % 32] bit e / 32; w = d sc (q - 4 + 4 h)
//   q4_K (256)  d, dmin; scales[12] (eight 6-bit scale/min pairs); qs[128]: element e: byte
//               32 (e / 64) + e % 32, low nibble when (e % 64) < 32; w = d sc q - dmin mn (per 32)
//   q5_K (256)  as q4_K plus qh[32]: fifth bit of element e is qh[e % 32] bit e / 32
//   q6_K (256)  ql[128], qh[64], int8 scales[16] (per 16), d; w = d sc (q - 32)
//   iq4_nl (32) d; qs[16] nibbles as q4_0 indexing a fixed 16-value table; w = d table[q]
//   iq4_xs (256) d; scales_h (u16), scales_l[4]: eight 6-bit scales (minus 32), per 32; qs[128]
//               nibbles as iq4_nl per 32-element sub-block
#pragma once

#include <cstdint>

#include "hearth/tensor/dtype.hpp"

namespace hearth::ggml {

constexpr int kQK = 32;    // elements per block of the simple types
constexpr int kQKK = 256;  // elements per K-quant super-block

struct BlockQ4_0 {
  std::uint16_t d;
  std::uint8_t qs[16];
};
struct BlockQ4_1 {
  std::uint16_t d, m;
  std::uint8_t qs[16];
};
struct BlockQ5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockQ5_1 {
  std::uint16_t d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockQ8_0 {
  std::uint16_t d;
  std::int8_t qs[32];
};
struct BlockQ2_K {
  std::uint8_t scales[16];
  std::uint8_t qs[64];
  std::uint16_t d, dmin;
};
struct BlockQ3_K {
  std::uint8_t hmask[32];
  std::uint8_t qs[64];
  std::uint8_t scales[12];
  std::uint16_t d;
};
struct BlockQ4_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qs[128];
};
struct BlockQ5_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[32];
  std::uint8_t qs[128];
};
struct BlockQ6_K {
  std::uint8_t ql[128];
  std::uint8_t qh[64];
  std::int8_t scales[16];
  std::uint16_t d;
};
struct BlockIQ4_NL {
  std::uint16_t d;
  std::uint8_t qs[16];
};
struct BlockIQ4_XS {
  std::uint16_t d;
  std::uint16_t scales_h;
  std::uint8_t scales_l[4];
  std::uint8_t qs[128];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ2_K) == 84 &&
              sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 &&
              sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136);

// The 16 values of IQ4_NL / IQ4_XS.
inline constexpr std::int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};

// Q4_K / Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& sc, std::uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q3_K: the 16 signed scales (already minus 32) from the 12 packed bytes.
void q3k_scales(const std::uint8_t* packed, std::int8_t* out);

// The block types this module (and the kernels) compute with.
bool supported(DType t);

// Bytes of a row of n elements (n a multiple of the block size).
std::int64_t row_bytes(DType t, std::int64_t n);

// dst[0:n] = the n elements of the blocks at src. n must be a multiple of the block size.
void dequantize_row(DType t, const void* src, float* dst, std::int64_t n);

// Quantizes src[0:n] into n / block_size blocks at dst (round to nearest with per-block scales;
// K-quants quantize their sub-block scales and mins too).
void quantize_row(DType t, const float* src, void* dst, std::int64_t n);

}  // namespace hearth::ggml
