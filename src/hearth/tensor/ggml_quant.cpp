#include "hearth/tensor/ggml_quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "hearth/core/error.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::ggml {

namespace {

using i64 = std::int64_t;

float h2f(std::uint16_t h) {
  return f16_to_f32(h);
}

// x stored as f16, and the value that f16 holds.
std::uint16_t f2h(float x, float& rounded) {
  const std::uint16_t h = f32_to_f16(x);
  rounded = f16_to_f32(h);
  return h;
}

int nearest_int(float x) {
  return static_cast<int>(std::lrintf(x));
}

// The element of x[0:n] with the largest magnitude (its sign kept).
float signed_absmax(const float* x, int n) {
  float best = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(best)) best = x[i];
  }
  return best;
}

void min_max(const float* x, int n, float& lo, float& hi) {
  lo = x[0];
  hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

int iq4_index(float v) {
  int best = 0;
  float err = std::fabs(v - kIq4Values[0]);
  for (int i = 1; i < 16; ++i) {
    const float e = std::fabs(v - kIq4Values[i]);
    if (e < err) {
      err = e;
      best = i;
    }
  }
  return best;
}

// IQ4 scale of 32 values: a few candidate scales around max / -127, each refined by least
// squares on its table assignment; the one with the least squared error wins.
float iq4_block_scale(const float* x) {
  const float vmax = signed_absmax(x, 32);
  if (vmax == 0.0f) return 0.0f;
  float best_d = vmax / -127.0f;
  float best_err = INFINITY;
  for (int step = -4; step <= 4; ++step) {
    const float d0 = vmax / (-127.0f + 6.0f * static_cast<float>(step));
    float sxv = 0.0f, svv = 0.0f;
    for (int i = 0; i < 32; ++i) {
      const float v = kIq4Values[iq4_index(x[i] / d0)];
      sxv += x[i] * v;
      svv += v * v;
    }
    const float d = svv > 0.0f ? sxv / svv : d0;
    float err = 0.0f;
    for (int i = 0; i < 32; ++i) {
      const float e = x[i] - d * kIq4Values[iq4_index(x[i] / d)];
      err += e * e;
    }
    if (err < best_err) {
      best_err = err;
      best_d = d;
    }
  }
  return best_d;
}

// Nibble j < 16 low, j + 16 high: the simple types' order.
void pack_nibbles(const std::uint8_t* q, std::uint8_t* qs) {
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<std::uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
}

// ---- dequantizers ----

void deq_q4_0(const BlockQ4_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((b.qs[j] & 15) - 8);
    y[j + 16] = d * static_cast<float>((b.qs[j] >> 4) - 8);
  }
}

void deq_q4_1(const BlockQ4_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(b.qs[j] & 15) + m;
    y[j + 16] = d * static_cast<float>(b.qs[j] >> 4) + m;
  }
}

template <class B>
void q5_values(const B& b, int* q) {
  std::uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = (b.qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
    q[j + 16] = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
  }
}

void deq_q5_0(const BlockQ5_0& b, float* y) {
  const float d = h2f(b.d);
  int q[32];
  q5_values(b, q);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j] - 16);
}

void deq_q5_1(const BlockQ5_1& b, float* y) {
  const float d = h2f(b.d), m = h2f(b.m);
  int q[32];
  q5_values(b, q);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(q[j]) + m;
}

void deq_q8_0(const BlockQ8_0& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(b.qs[j]);
}

// Low two bits of element e of a Q2_K / Q3_K super-block.
int q2_bits(const std::uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

void deq_q2_k(const BlockQ2_K& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int e = 0; e < 256; ++e) {
    const std::uint8_t sc = b.scales[e / 16];
    y[e] = d * static_cast<float>(sc & 15) * static_cast<float>(q2_bits(b.qs, e)) -
           dmin * static_cast<float>(sc >> 4);
  }
}

void deq_q3_k(const BlockQ3_K& b, float* y) {
  const float d = h2f(b.d);
  std::int8_t sc[16];
  q3k_scales(b.scales, sc);
  for (int e = 0; e < 256; ++e) {
    const int high = (b.hmask[e % 32] >> (e / 32)) & 1;
    const int q = q2_bits(b.qs, e) - (high != 0 ? 0 : 4);
    y[e] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(q);
  }
}

template <class B>
void deq_q45_k(const B& b, float* y) {
  const float d = h2f(b.d), dmin = h2f(b.dmin);
  for (int s = 0; s < 8; ++s) {
    std::uint8_t sc, mn;
    scale_min_k4(s, b.scales, sc, mn);
    const float dl = d * sc, ml = dmin * mn;
    const std::uint8_t* qs = b.qs + 32 * (s / 2);
    for (int r = 0; r < 32; ++r) {
      int q = (s % 2) == 0 ? (qs[r] & 15) : (qs[r] >> 4);
      if constexpr (sizeof(B) == sizeof(BlockQ5_K)) {
        q |= ((b.qh[r] >> s) & 1) << 4;
      }
      y[32 * s + r] = dl * static_cast<float>(q) - ml;
    }
  }
}

int q6_value(const BlockQ6_K& b, int e) {
  const int n = e / 128, g = (e % 128) / 32, l = e % 32;
  const std::uint8_t lo = b.ql[64 * n + l + 32 * (g & 1)];
  const int low = g >= 2 ? lo >> 4 : lo & 15;
  const int high = (b.qh[32 * n + l] >> (2 * g)) & 3;
  return (low | (high << 4)) - 32;
}

void deq_q6_k(const BlockQ6_K& b, float* y) {
  const float d = h2f(b.d);
  for (int e = 0; e < 256; ++e) {
    y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>(q6_value(b, e));
  }
}

void deq_iq4_nl(const BlockIQ4_NL& b, float* y) {
  const float d = h2f(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * kIq4Values[b.qs[j] & 15];
    y[j + 16] = d * kIq4Values[b.qs[j] >> 4];
  }
}

int iq4xs_scale(const BlockIQ4_XS& b, int ib) {
  return (((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((b.scales_h >> (2 * ib)) & 3) << 4)) -
         32;
}

void deq_iq4_xs(const BlockIQ4_XS& b, float* y) {
  const float d = h2f(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const float dl = d * static_cast<float>(iq4xs_scale(b, ib));
    const std::uint8_t* qs = b.qs + 16 * ib;
    for (int j = 0; j < 16; ++j) {
      y[32 * ib + j] = dl * kIq4Values[qs[j] & 15];
      y[32 * ib + j + 16] = dl * kIq4Values[qs[j] >> 4];
    }
  }
}

// ---- quantizers ----

// q4_0, q5_0 and q8_0 as ggml's reference quantizers (what llama-quantize writes without an
// importance matrix): the inverse scale from the unrounded d, halves rounded up (q4_0 / q5_0:
// trunc(x / d + offset + 0.5)) or away from zero (q8_0: roundf), so ties, common in bf16 weights,
// land where ggml puts them.
void qz_q4_0(const float* x, BlockQ4_0& b) {
  const float vmax = signed_absmax(x, 32);
  const float d = vmax / -8.0f;
  float rounded;
  b.d = f2h(d, rounded);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  std::uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = static_cast<std::uint8_t>(std::min(15, static_cast<int>(x[j] * id + 8.5f)));
  pack_nibbles(q, b.qs);
}

// Min/max blocks (q4_1, q5_1): w = d q + m with q in [0, levels].
template <class B>
void minmax_block(const float* x, B& b, int levels, std::uint8_t* q) {
  float lo, hi;
  min_max(x, 32, lo, hi);
  float d, m;
  b.d = f2h((hi - lo) / static_cast<float>(levels), d);
  b.m = f2h(lo, m);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) {
    q[j] = static_cast<std::uint8_t>(std::clamp(nearest_int((x[j] - m) * id), 0, levels));
  }
}

template <class B>
void store_q5(const std::uint8_t* q, B& b) {
  std::uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
  std::memcpy(b.qh, &qh, 4);
  pack_nibbles(q, b.qs);
}

void qz_q4_1(const float* x, BlockQ4_1& b) {
  std::uint8_t q[32];
  minmax_block(x, b, 15, q);
  pack_nibbles(q, b.qs);
}

void qz_q5_0(const float* x, BlockQ5_0& b) {
  const float vmax = signed_absmax(x, 32);
  const float d = vmax / -16.0f;
  float rounded;
  b.d = f2h(d, rounded);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  std::uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = static_cast<std::uint8_t>(std::min(31, static_cast<int>(x[j] * id + 16.5f)));
  store_q5(q, b);
}

void qz_q5_1(const float* x, BlockQ5_1& b) {
  std::uint8_t q[32];
  minmax_block(x, b, 31, q);
  store_q5(q, b);
}

void qz_q8_0(const float* x, BlockQ8_0& b) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  float rounded;
  b.d = f2h(d, rounded);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<std::int8_t>(std::roundf(x[j] * id));
}

// w ~ scale q - min (min >= 0, q in [0, levels]) for x[0:n]: the min/max fit and fits over
// narrower ranges, each refined by least squares on its rounding; the least squared error wins.
void fit_scale_min(const float* x, int n, int levels, float& scale, float& min) {
  float lo, hi;
  min_max(x, n, lo, hi);
  lo = std::min(lo, 0.0f);
  scale = (hi - lo) / static_cast<float>(levels);
  min = -lo;
  if (scale == 0.0f) return;
  float best = INFINITY;
  for (int step = 0; step < 8; ++step) {
    const float s0 =
        (hi - lo) * (1.0f - 0.04f * static_cast<float>(step)) / static_cast<float>(levels);
    // Least squares of x ~ a q + b over the rounding against (s0, lo).
    double sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < n; ++i) {
      const float q = static_cast<float>(std::clamp(nearest_int((x[i] - lo) / s0), 0, levels));
      sq += q;
      sqq += q * q;
      sx += x[i];
      sxq += x[i] * q;
    }
    const double det = n * sqq - sq * sq;
    float a = s0, b = lo;
    if (det > 0) {
      a = static_cast<float>((n * sxq - sq * sx) / det);
      b = static_cast<float>((sx - a * sq) / n);
    }
    if (a <= 0.0f || b > 0.0f) {
      a = s0;
      b = lo;
    }
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float q = static_cast<float>(std::clamp(nearest_int((x[i] - b) / a), 0, levels));
      err += (x[i] - (a * q + b)) * (x[i] - (a * q + b));
    }
    if (err < best) {
      best = err;
      scale = a;
      min = -b;
    }
  }
}

// Sub-blocks of a min/max K-quant: scale[s] and min[s] (>= 0) such that w ~ scale q - min.
void minmax_subblocks(const float* x, int count, int size, int levels, float* scale, float* mins) {
  for (int s = 0; s < count; ++s) fit_scale_min(x + s * size, size, levels, scale[s], mins[s]);
}

// Quantizes values v[0:count] >= 0 to [0, levels] integers against one super-scale; returns it.
float super_scale(const float* v, int count, int levels, std::uint8_t* out, std::uint16_t& half) {
  const float vmax = *std::max_element(v, v + count);
  float d;
  half = f2h(vmax / static_cast<float>(levels), d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int s = 0; s < count; ++s)
    out[s] = static_cast<std::uint8_t>(std::clamp(nearest_int(v[s] * id), 0, levels));
  return d;
}

void qz_q2_k(const float* x, BlockQ2_K& b) {
  float scale[16], mins[16];
  minmax_subblocks(x, 16, 16, 3, scale, mins);
  std::uint8_t ls[16], lm[16];
  const float d = super_scale(scale, 16, 15, ls, b.d);
  const float dmin = super_scale(mins, 16, 15, lm, b.dmin);
  std::memset(b.qs, 0, sizeof b.qs);
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<std::uint8_t>(ls[s] | (lm[s] << 4));
  for (int e = 0; e < 256; ++e) {
    const float dl = d * ls[e / 16], ml = dmin * lm[e / 16];
    const int q = dl != 0.0f ? std::clamp(nearest_int((x[e] + ml) / dl), 0, 3) : 0;
    b.qs[32 * (e / 128) + e % 32] |= static_cast<std::uint8_t>(q << (2 * ((e % 128) / 32)));
  }
}

void qz_q3_k(const float* x, BlockQ3_K& b) {
  float scale[16];
  for (int s = 0; s < 16; ++s) scale[s] = signed_absmax(x + 16 * s, 16) / -4.0f;
  const float smax = signed_absmax(scale, 16);
  float d;
  b.d = f2h(smax / -32.0f, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int ls[16];
  for (int s = 0; s < 16; ++s) ls[s] = std::clamp(nearest_int(scale[s] * id), -32, 31);
  std::memset(b.scales, 0, sizeof b.scales);
  for (int s = 0; s < 16; ++s) {
    const int u = ls[s] + 32;
    b.scales[s % 8] |= static_cast<std::uint8_t>((u & 15) << (s < 8 ? 0 : 4));
    b.scales[8 + s % 4] |= static_cast<std::uint8_t>((u >> 4) << (2 * (s / 4)));
  }
  std::memset(b.qs, 0, sizeof b.qs);
  std::memset(b.hmask, 0, sizeof b.hmask);
  for (int e = 0; e < 256; ++e) {
    const float dl = d * static_cast<float>(ls[e / 16]);
    const int q = dl != 0.0f ? std::clamp(nearest_int(x[e] / dl), -4, 3) + 4 : 4;
    b.qs[32 * (e / 128) + e % 32] |= static_cast<std::uint8_t>((q & 3) << (2 * ((e % 128) / 32)));
    if (q >= 4) b.hmask[e % 32] |= static_cast<std::uint8_t>(1u << (e / 32));
  }
}

template <class B>
void qz_q45_k(const float* x, B& b, int levels, std::uint8_t* q) {
  float scale[8], mins[8];
  minmax_subblocks(x, 8, 32, levels, scale, mins);
  std::uint8_t ls[8], lm[8];
  const float d = super_scale(scale, 8, 63, ls, b.d);
  const float dmin = super_scale(mins, 8, 63, lm, b.dmin);
  std::memset(b.scales, 0, sizeof b.scales);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      b.scales[j] = ls[j];
      b.scales[j + 4] = lm[j];
    } else {
      b.scales[j + 4] = static_cast<std::uint8_t>((ls[j] & 15) | ((lm[j] & 15) << 4));
      b.scales[j - 4] |= static_cast<std::uint8_t>((ls[j] >> 4) << 6);
      b.scales[j] |= static_cast<std::uint8_t>((lm[j] >> 4) << 6);
    }
  }
  for (int e = 0; e < 256; ++e) {
    const float dl = d * ls[e / 32], ml = dmin * lm[e / 32];
    q[e] = static_cast<std::uint8_t>(
        dl != 0.0f ? std::clamp(nearest_int((x[e] + ml) / dl), 0, levels) : 0);
  }
  std::memset(b.qs, 0, sizeof b.qs);
  for (int e = 0; e < 256; ++e) {
    const int s = e / 32;
    b.qs[32 * (s / 2) + e % 32] |= static_cast<std::uint8_t>((q[e] & 15) << (4 * (s % 2)));
  }
}

void qz_q4_k(const float* x, BlockQ4_K& b) {
  std::uint8_t q[256];
  qz_q45_k(x, b, 15, q);
}

void qz_q5_k(const float* x, BlockQ5_K& b) {
  std::uint8_t q[256];
  qz_q45_k(x, b, 31, q);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int e = 0; e < 256; ++e)
    b.qh[e % 32] |= static_cast<std::uint8_t>(((q[e] >> 4) & 1) << (e / 32));
}

void qz_q6_k(const float* x, BlockQ6_K& b) {
  float scale[16];
  for (int s = 0; s < 16; ++s) scale[s] = signed_absmax(x + 16 * s, 16) / -32.0f;
  const float smax = signed_absmax(scale, 16);
  float d;
  b.d = f2h(smax / -128.0f, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int s = 0; s < 16; ++s)
    b.scales[s] = static_cast<std::int8_t>(std::clamp(nearest_int(scale[s] * id), -128, 127));
  std::memset(b.ql, 0, sizeof b.ql);
  std::memset(b.qh, 0, sizeof b.qh);
  for (int e = 0; e < 256; ++e) {
    const float dl = d * static_cast<float>(b.scales[e / 16]);
    const int q = dl != 0.0f ? std::clamp(nearest_int(x[e] / dl), -32, 31) + 32 : 32;
    const int n = e / 128, g = (e % 128) / 32, l = e % 32;
    b.ql[64 * n + l + 32 * (g & 1)] |= static_cast<std::uint8_t>((q & 15) << (g >= 2 ? 4 : 0));
    b.qh[32 * n + l] |= static_cast<std::uint8_t>((q >> 4) << (2 * g));
  }
}

void iq4_nibbles(const float* x, float dl, std::uint8_t* qs) {
  std::uint8_t q[32];
  for (int j = 0; j < 32; ++j)
    q[j] = static_cast<std::uint8_t>(dl != 0.0f ? iq4_index(x[j] / dl) : 8);
  pack_nibbles(q, qs);
}

void qz_iq4_nl(const float* x, BlockIQ4_NL& b) {
  float d;
  b.d = f2h(iq4_block_scale(x), d);
  iq4_nibbles(x, d, b.qs);
}

void qz_iq4_xs(const float* x, BlockIQ4_XS& b) {
  float scale[8];
  for (int ib = 0; ib < 8; ++ib) scale[ib] = iq4_block_scale(x + 32 * ib);
  const float smax = signed_absmax(scale, 8);
  float d;
  b.d = f2h(smax / -32.0f, d);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.scales_h = 0;
  std::memset(b.scales_l, 0, sizeof b.scales_l);
  for (int ib = 0; ib < 8; ++ib) {
    const int l = std::clamp(nearest_int(scale[ib] * id), -32, 31);
    const int u = l + 32;
    b.scales_l[ib / 2] |= static_cast<std::uint8_t>((u & 15) << (4 * (ib % 2)));
    b.scales_h = static_cast<std::uint16_t>(b.scales_h | ((u >> 4) << (2 * ib)));
    iq4_nibbles(x + 32 * ib, d * static_cast<float>(l), b.qs + 16 * ib);
  }
}

// Blocks at any byte address (a mapping, a test's odd offset): each is copied to or from an
// aligned local.
template <class B, class F>
void each_block(const void* src, float* dst, i64 n, int qk, F f) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  B b;
  for (i64 i = 0; i < n / qk; ++i) {
    std::memcpy(&b, bytes + i * static_cast<i64>(sizeof(B)), sizeof(B));
    f(b, dst + i * qk);
  }
}

template <class B, class F>
void each_block_q(const float* src, void* dst, i64 n, int qk, F f) {
  auto* bytes = static_cast<unsigned char*>(dst);
  B b;
  for (i64 i = 0; i < n / qk; ++i) {
    f(src + i * qk, b);
    std::memcpy(bytes + i * static_cast<i64>(sizeof(B)), &b, sizeof(B));
  }
}

void check(DType t, i64 n) {
  if (!supported(t)) {
    throw Error(ErrorCode::kUnsupported,
                "no dequantizer for tensor type " + std::string(dtype_name(t)));
  }
  if (n < 0 || n % dtype_info(t).block_size != 0) {
    throw Error(ErrorCode::kInvalidArgument, "a row of " + std::to_string(n) +
                                                 " elements is not whole " +
                                                 std::string(dtype_name(t)) + " blocks of " +
                                                 std::to_string(dtype_info(t).block_size));
  }
}

}  // namespace

void q3k_scales(const std::uint8_t* packed, std::int8_t* out) {
  for (int s = 0; s < 16; ++s) {
    const int low = s < 8 ? packed[s] & 15 : packed[s - 8] >> 4;
    const int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
    out[s] = static_cast<std::int8_t>((low | (high << 4)) - 32);
  }
}

bool supported(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ8_0:
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
    case DType::kIQ4_NL:
    case DType::kIQ4_XS:
      return true;
    default:
      return false;
  }
}

std::int64_t row_bytes(DType t, std::int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  return n / info.block_size * info.block_bytes;
}

void dequantize_row(DType t, const void* src, float* dst, std::int64_t n) {
  check(t, n);
  switch (t) {
    case DType::kQ4_0:
      return each_block<BlockQ4_0>(src, dst, n, kQK, deq_q4_0);
    case DType::kQ4_1:
      return each_block<BlockQ4_1>(src, dst, n, kQK, deq_q4_1);
    case DType::kQ5_0:
      return each_block<BlockQ5_0>(src, dst, n, kQK, deq_q5_0);
    case DType::kQ5_1:
      return each_block<BlockQ5_1>(src, dst, n, kQK, deq_q5_1);
    case DType::kQ8_0:
      return each_block<BlockQ8_0>(src, dst, n, kQK, deq_q8_0);
    case DType::kQ2_K:
      return each_block<BlockQ2_K>(src, dst, n, kQKK, deq_q2_k);
    case DType::kQ3_K:
      return each_block<BlockQ3_K>(src, dst, n, kQKK, deq_q3_k);
    case DType::kQ4_K:
      return each_block<BlockQ4_K>(src, dst, n, kQKK, deq_q45_k<BlockQ4_K>);
    case DType::kQ5_K:
      return each_block<BlockQ5_K>(src, dst, n, kQKK, deq_q45_k<BlockQ5_K>);
    case DType::kQ6_K:
      return each_block<BlockQ6_K>(src, dst, n, kQKK, deq_q6_k);
    case DType::kIQ4_NL:
      return each_block<BlockIQ4_NL>(src, dst, n, kQK, deq_iq4_nl);
    case DType::kIQ4_XS:
      return each_block<BlockIQ4_XS>(src, dst, n, kQKK, deq_iq4_xs);
    default:
      return;
  }
}

void quantize_row(DType t, const float* src, void* dst, std::int64_t n) {
  check(t, n);
  switch (t) {
    case DType::kQ4_0:
      return each_block_q<BlockQ4_0>(src, dst, n, kQK, qz_q4_0);
    case DType::kQ4_1:
      return each_block_q<BlockQ4_1>(src, dst, n, kQK, qz_q4_1);
    case DType::kQ5_0:
      return each_block_q<BlockQ5_0>(src, dst, n, kQK, qz_q5_0);
    case DType::kQ5_1:
      return each_block_q<BlockQ5_1>(src, dst, n, kQK, qz_q5_1);
    case DType::kQ8_0:
      return each_block_q<BlockQ8_0>(src, dst, n, kQK, qz_q8_0);
    case DType::kQ2_K:
      return each_block_q<BlockQ2_K>(src, dst, n, kQKK, qz_q2_k);
    case DType::kQ3_K:
      return each_block_q<BlockQ3_K>(src, dst, n, kQKK, qz_q3_k);
    case DType::kQ4_K:
      return each_block_q<BlockQ4_K>(src, dst, n, kQKK, qz_q4_k);
    case DType::kQ5_K:
      return each_block_q<BlockQ5_K>(src, dst, n, kQKK, qz_q5_k);
    case DType::kQ6_K:
      return each_block_q<BlockQ6_K>(src, dst, n, kQKK, qz_q6_k);
    case DType::kIQ4_NL:
      return each_block_q<BlockIQ4_NL>(src, dst, n, kQK, qz_iq4_nl);
    case DType::kIQ4_XS:
      return each_block_q<BlockIQ4_XS>(src, dst, n, kQKK, qz_iq4_xs);
    default:
      return;
  }
}

}  // namespace hearth::ggml
