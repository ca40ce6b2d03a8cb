#include "hearth/kernels/quant_mlx.hpp"

#include <cmath>

#include "hearth/core/error.hpp"

namespace hearth::kernels {

void AffineActs::reset(std::int64_t rows_, std::int64_t cols_, int bits_, int group_size_,
                       ActLayout layout_) {
  rows = rows_;
  cols = cols_;
  bits = bits_;
  group_size = group_size_;
  layout = layout_;
  group_sum.resize(static_cast<std::size_t>(rows * (cols / group_size)));
  if (layout == ActLayout::kF32) return;
  q.resize(static_cast<std::size_t>(rows * padded_cols()));
  d.resize(static_cast<std::size_t>(rows * blocks()));
  if (layout == ActLayout::kVnni) lanes.resize(static_cast<std::size_t>(rows * lane_floats()));
  qd.resize(static_cast<std::size_t>(rows * (cols / group_size)));
}

void AffineActs::fill(const float* x, std::int64_t ldx, std::int64_t r0, std::int64_t r1) {
  const std::int64_t groups = cols / group_size;
  for (std::int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    float* gs = group_sum.data() + r * groups;
    for (std::int64_t g = 0; g < groups; ++g) {
      float s = 0.0f;
      for (int i = 0; i < group_size; ++i) s += xr[g * group_size + i];
      gs[g] = s;
    }
    if (layout == ActLayout::kF32) continue;
    const bool quads = layout == ActLayout::kVnni && bits == 4;
    std::int8_t* qr = q.data() + r * padded_cols();
    if (quads) {  // padding blocks sit between real ones in a step's order
      for (std::int64_t i = 0; i < padded_cols(); ++i) qr[i] = 0;
    }
    float* dr = d.data() + r * blocks();
    float* qdr = qd.data() + r * groups;
    for (std::int64_t g = 0; g < groups; ++g) qdr[g] = 0.0f;
    for (std::int64_t b = 0; b < blocks(); ++b) {
      std::int8_t* qb = qr + b * 32;
      if (b * 32 >= cols) {
        if (!quads) {
          for (int i = 0; i < 32; ++i) qb[i] = 0;
        }
        dr[b] = 0.0f;
        continue;
      }
      const float* xb = xr + b * 32;
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
      const float scale = amax / 127.0f;
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      int sum = 0;
      for (int i = 0; i < 32; ++i) {
        const int v =
            static_cast<int>(std::nearbyint(std::fmin(std::fmax(xb[i] * inv, -127.0f), 127.0f)));
        sum += v;
        // 4 bits: byte j of a block holds inputs 2j (low nibble) and 2j + 1 (high nibble).
        if (quads) {
          qr[b / 4 * 128 + (i % 2) * 64 + b % 4 * 16 + i / 2] = static_cast<std::int8_t>(v);
        } else {
          qb[bits == 4 ? (i % 2) * 16 + i / 2 : i] = static_cast<std::int8_t>(v);
        }
      }
      dr[b] = scale;
      qdr[b * 32 / group_size] += scale * static_cast<float>(sum);
    }
    if (layout != ActLayout::kVnni) continue;
    // Lane l of a step's accumulator sums block 4 step + l / 4 (4 bits) or 2 step + l / 8.
    float* lr = lanes.data() + r * lane_floats();
    const int per_block = bits == 4 ? 4 : 8;
    for (std::int64_t l = 0; l < lane_floats(); ++l) lr[l] = dr[l / per_block];
  }
}

const AffineKernels& affine_kernels(SimdLevel level, int bits) {
  const CpuFeatures& f = cpu_features();
  const bool fast = bits == 4 || bits == 8;
  switch (level) {
    case SimdLevel::kAvx512:
      if (!f.avx512) break;
      if (fast && f.avx512_vnni) return detail::affine_int8_vnni512(bits);
      if (fast) return detail::affine_int8_avx2(bits);
      return detail::affine_f32_avx512();
    case SimdLevel::kAvx2:
      if (!f.avx2) break;
      if (fast) return detail::affine_int8_avx2(bits);
      return detail::affine_f32_avx2();
    case SimdLevel::kScalar:
      return detail::affine_f32_scalar();
  }
  throw Error(ErrorCode::kUnsupported,
              std::string("this CPU lacks the ") + to_string(level) + " instruction set");
}

const AffineDecode* affine_decode(SimdLevel level) {
  const CpuFeatures& f = cpu_features();
  if (level == SimdLevel::kAvx512 && f.avx512) {
    return f.avx512_vnni ? &detail::affine_decode_avx512() : &detail::affine_decode_avx2();
  }
  if (level == SimdLevel::kAvx2 && f.avx2) return &detail::affine_decode_avx2();
  return nullptr;
}

}  // namespace hearth::kernels
