// The affine kernels of quant_mlx.hpp, compiled once per instruction set: quant_mlx_scalar.cpp,
// quant_mlx.avx2.cpp and quant_mlx.avx512.cpp include this (the f32 family, over Vec) and add their
// int8 family.
#pragma once

#include <cstdint>
#include <vector>

#include "hearth/kernels/quant_mlx.hpp"
#include "hearth/kernels/vec.hpp"
#include "hearth/tensor/mlx_quant.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

inline float dot_f(const float* a, const float* b, i64 n) {
  constexpr int kL = Vec::kLanes;
  Vec s0 = Vec::zero(), s1 = Vec::zero();
  i64 i = 0;
  for (; i + 2 * kL <= n; i += 2 * kL) {
    s0 = fmadd(Vec::load(a + i), Vec::load(b + i), s0);
    s1 = fmadd(Vec::load(a + i + kL), Vec::load(b + i + kL), s1);
  }
  float s = (s0 + s1).reduce_add();
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline i64 scale_bytes(DType t) {
  return t == DType::kF32 ? 4 : 2;
}

// n scales of type t at p (any alignment) as floats, a vector at a time.
inline void convert_scales(DType t, const unsigned char* p, i64 n, float* out) {
  constexpr int kL = Vec::kLanes;
  i64 i = 0;
  if (t == DType::kF16) {
    for (; i + kL <= n; i += kL) Vec::load_f16(p + 2 * i).store(out + i);
  } else if (t == DType::kBF16) {
    for (; i + kL <= n; i += kL) Vec::load_bf16(p + 2 * i).store(out + i);
  } else {
    for (; i + kL <= n; i += kL) Vec::load_f32u(p + 4 * i).store(out + i);
  }
  for (; i < n; ++i) out[i] = mlx::read_scale(t, p, i);
}

// The scales and biases of weight row n as floats (groups of each).
inline void scale_rows(const AffineMatrix& w, i64 n, float* s, float* b) {
  const i64 groups = w.groups();
  const i64 off = n * groups * scale_bytes(w.scale_dtype);
  convert_scales(w.scale_dtype, static_cast<const unsigned char*>(w.scales) + off, groups, s);
  convert_scales(w.scale_dtype, static_cast<const unsigned char*>(w.biases) + off, groups, b);
}

// Codes of one packed row as floats.
inline void unpack_row(const std::uint8_t* row, i64 k, int bits, float* out) {
  if (bits == 8) {
    for (i64 i = 0; i < k; ++i) out[i] = static_cast<float>(row[i]);
  } else if (bits == 4) {
    for (i64 j = 0; j < k / 2; ++j) {
      out[2 * j] = static_cast<float>(row[j] & 15);
      out[2 * j + 1] = static_cast<float>(row[j] >> 4);
    }
  } else {
    for (i64 i = 0; i < k; ++i) out[i] = static_cast<float>(mlx::unpack_code(row, i, bits));
  }
}

void run_f32(const AffineMatrix& w, const AffineActs& a, const float* x, i64 ldx, i64 n0, i64 n1,
             i64 r0, i64 r1, const float* bias, float* y, i64 ldy) {
  const i64 k = w.cols;
  const i64 gs = w.group_size;
  const i64 groups = w.groups();
  std::vector<float> codes(static_cast<std::size_t>(k));
  std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
  for (i64 n = n0; n < n1; ++n) {
    unpack_row(w.codes + n * w.row_bytes(), k, w.bits, codes.data());
    scale_rows(w, n, s.data(), b.data());
    for (i64 r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      const float* sums = a.group_sum.data() + r * groups;
      float acc = 0.0f;
      for (i64 g = 0; g < groups; ++g) {
        acc += s[g] * dot_f(codes.data() + g * gs, xr + g * gs, gs) + b[g] * sums[g];
      }
      y[r * ldy + n] = acc + (bias != nullptr ? bias[n] : 0.0f);
    }
  }
}

constexpr AffineKernels kAffineF32 = {ActLayout::kF32, run_f32, "f32"};

// The shared frame of the int8 kernels: x rows in chunks of 64 (their int8 blocks stay in L2),
// every weight row of [n0, n1) against each chunk in tiles of up to four x rows. Tile<R>::run
// (wrow, s, per_group, blocks, a, r, sums) returns sum_j s[j / per_group] d_j sum(q xq) for rows
// r..r+R (s: the row's group scales, padded with zeros); kOffset128 says whether the kernels
// offset the codes by 128 (then 128 * sum_g s_g qd_g is added back).
template <template <int> class Tile, bool kOffset128>
void run_int8(const AffineMatrix& w, const AffineActs& a, const float* /*x*/, i64 /*ldx*/, i64 n0,
              i64 n1, i64 r0, i64 r1, const float* bias, float* y, i64 ldy) {
  const i64 nb = w.cols / 32;
  const i64 groups = w.groups();
  const int per_group = w.group_size / 32;
  std::vector<float> s(static_cast<std::size_t>(groups + 4), 0.0f), b(s.size());
  for (i64 xc = r0; xc < r1; xc += 64) {
    const i64 xe = xc + 64 < r1 ? xc + 64 : r1;
    for (i64 n = n0; n < n1; ++n) {
      const std::uint8_t* wrow = w.codes + n * w.row_bytes();
      scale_rows(w, n, s.data(), b.data());
      const float out_bias = bias != nullptr ? bias[n] : 0.0f;
      for (i64 r = xc; r < xe; r += 4) {
        const i64 rows = xe - r < 4 ? xe - r : 4;
        float sums[4];
        switch (rows) {
          case 4:
            Tile<4>::run(wrow, s.data(), per_group, nb, a, r, sums);
            break;
          case 3:
            Tile<3>::run(wrow, s.data(), per_group, nb, a, r, sums);
            break;
          case 2:
            Tile<2>::run(wrow, s.data(), per_group, nb, a, r, sums);
            break;
          default:
            Tile<1>::run(wrow, s.data(), per_group, nb, a, r, sums);
            break;
        }
        for (i64 i = 0; i < rows; ++i) {
          float v = sums[i] + dot_f(b.data(), a.group_sum.data() + (r + i) * groups, groups);
          if constexpr (kOffset128) {
            v += 128.0f * dot_f(s.data(), a.qd.data() + (r + i) * groups, groups);
          }
          y[(r + i) * ldy + n] = v + out_bias;
        }
      }
    }
  }
}

}  // namespace
}  // namespace hearth::kernels
