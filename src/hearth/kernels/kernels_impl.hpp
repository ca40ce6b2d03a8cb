// The kernels, written once over Vec (vec.hpp) and compiled three times: kernels_scalar.cpp,
// kernels.avx2.cpp and kernels.avx512.cpp each include this after choosing the micro-tile size
// (HEARTH_GEMM_MR rows x HEARTH_GEMM_NV vectors) and expose the result as a KernelTable.
#pragma once

#include <cmath>
#include <cstdint>

#include "hearth/kernels/kernel_table.hpp"
#include "hearth/kernels/vec.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

// Local helpers instead of <algorithm>: template instances of std:: functions compiled here with
// AVX-512 flags could be merged (weak symbols) with the ones the portable code uses.
inline i64 min_i(i64 a, i64 b) {
  return a < b ? a : b;
}
inline void copy_floats(const float* src, i64 n, float* dst) {
  for (i64 i = 0; i < n; ++i) dst[i] = src[i];
}
inline void zero_floats(float* dst, i64 n) {
  for (i64 i = 0; i < n; ++i) dst[i] = 0.0f;
}
constexpr int kL = Vec::kLanes;
constexpr int kMR = HEARTH_GEMM_MR;
constexpr int kNV = HEARTH_GEMM_NV;
constexpr int kNR = kNV * kL;
constexpr int kMC = kMR * 8;  // rows of A per block (kept in L2)
constexpr int kKC = 128;      // depth per block: a panel slice (kKC x kNR floats) stays in L1

// C tile (MR x kNR) = A rows * panel slice, plus bias (first depth block) or plus C (later
// blocks). Accumulators stay in registers for the whole depth loop.
template <int MR>
void micro_tile(const float* a, i64 lda, const float* b, i64 k, const float* bias, bool accumulate,
                float* c, i64 ldc) {
  Vec acc[MR][kNV];
  for (int j = 0; j < kNV; ++j) {
    const Vec init = bias != nullptr ? Vec::load(bias + j * kL) : Vec::zero();
    for (int i = 0; i < MR; ++i) acc[i][j] = accumulate ? Vec::load(c + i * ldc + j * kL) : init;
  }
  for (i64 p = 0; p < k; ++p) {
    Vec bv[kNV];
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) bv[j] = Vec::load(b + p * kNR + j * kL);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const Vec ai = Vec::set1(a[i * lda + p]);
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) acc[i][j] = fmadd(ai, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < kNV; ++j) acc[i][j].store(c + i * ldc + j * kL);
  }
}

template <int MR>
void tile_dispatch(int mr, const float* a, i64 lda, const float* b, i64 k, const float* bias,
                   bool accumulate, float* c, i64 ldc) {
  if constexpr (MR > 0) {
    if (mr == MR) return micro_tile<MR>(a, lda, b, k, bias, accumulate, c, ldc);
    return tile_dispatch<MR - 1>(mr, a, lda, b, k, bias, accumulate, c, ldc);
  }
}

void gemm_packed(const float* a, i64 lda, i64 m0, i64 m1, const float* packed_b, const float* bias,
                 i64 n, i64 k, i64 p0, i64 p1, float* c, i64 ldc) {
  float edge[kMR * kNR];
  for (i64 mb = m0; mb < m1; mb += kMC) {
    const i64 mb_end = min_i(m1, mb + kMC);
    for (i64 kc = 0; kc < k; kc += kKC) {
      const i64 depth = min_i(kKC, k - kc);
      const bool accumulate = kc > 0;
      for (i64 p = p0; p < p1; ++p) {
        const float* slice = packed_b + p * k * kNR + kc * kNR;
        const float* pbias = bias != nullptr && !accumulate ? bias + p * kNR : nullptr;
        const i64 col = p * kNR;
        const i64 cols = min_i(kNR, n - col);
        for (i64 i = mb; i < mb_end; i += kMR) {
          const int mr = static_cast<int>(min_i(kMR, mb_end - i));
          const float* ai = a + i * lda + kc;
          if (cols == kNR) {
            tile_dispatch<kMR>(mr, ai, lda, slice, depth, pbias, accumulate, c + i * ldc + col,
                               ldc);
            continue;
          }
          if (accumulate) {
            for (int r = 0; r < mr; ++r) copy_floats(c + (i + r) * ldc + col, cols, edge + r * kNR);
          }
          tile_dispatch<kMR>(mr, ai, lda, slice, depth, pbias, accumulate, edge, kNR);
          for (int r = 0; r < mr; ++r) copy_floats(edge + r * kNR, cols, c + (i + r) * ldc + col);
        }
      }
    }
  }
}

// Sum of x[0:n] and of x[0:n]^2 folded into vectors, then reduced.
inline float sum(const float* x, i64 n) {
  Vec s = Vec::zero();
  i64 i = 0;
  for (; i + kL <= n; i += kL) s = s + Vec::load(x + i);
  if (i < n) s = s + Vec::load_partial(x + i, static_cast<int>(n - i));
  return s.reduce_add();
}

inline float dot(const float* a, const float* b, i64 n) {
  Vec s = Vec::zero();
  i64 i = 0;
  for (; i + kL <= n; i += kL) s = fmadd(Vec::load(a + i), Vec::load(b + i), s);
  if (i < n) {
    const int r = static_cast<int>(n - i);
    s = fmadd(Vec::load_partial(a + i, r), Vec::load_partial(b + i, r), s);
  }
  return s.reduce_add();
}

// Applies f to each vector of x[0:n] into out[0:n].
template <class F>
inline void map(const float* x, float* out, i64 n, F f) {
  i64 i = 0;
  for (; i + kL <= n; i += kL) f(Vec::load(x + i)).store(out + i);
  if (i < n) {
    const int r = static_cast<int>(n - i);
    f(Vec::load_partial(x + i, r)).store_partial(out + i, r);
  }
}

template <class F>
inline void map2(const float* a, const float* b, float* out, i64 n, F f) {
  i64 i = 0;
  for (; i + kL <= n; i += kL) f(Vec::load(a + i), Vec::load(b + i)).store(out + i);
  if (i < n) {
    const int r = static_cast<int>(n - i);
    f(Vec::load_partial(a + i, r), Vec::load_partial(b + i, r)).store_partial(out + i, r);
  }
}

void layer_norm(const float* x, const float* residual, float* out, i64 rows, i64 dim,
                const float* gamma, const float* beta, float eps) {
  for (i64 r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    if (residual != nullptr) {
      map2(xr, residual + r * dim, o, dim, [](Vec a, Vec b) { return a + b; });
      xr = o;
    }
    const float mean = sum(xr, dim) / static_cast<float>(dim);
    const Vec vmean = Vec::set1(mean);
    Vec s = Vec::zero();
    i64 i = 0;
    for (; i + kL <= dim; i += kL) {
      const Vec d = Vec::load(xr + i) - vmean;
      s = fmadd(d, d, s);
    }
    float var = s.reduce_add();
    for (; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    const Vec rstd = Vec::set1(1.0f / __builtin_sqrtf(var / static_cast<float>(dim) + eps));
    i = 0;
    for (; i + kL <= dim; i += kL) {
      const Vec y = (Vec::load(xr + i) - vmean) * rstd;
      fmadd(y, Vec::load(gamma + i), Vec::load(beta + i)).store(o + i);
    }
    if (i < dim) {
      const int rem = static_cast<int>(dim - i);
      const Vec y = (Vec::load_partial(xr + i, rem) - vmean) * rstd;
      fmadd(y, Vec::load_partial(gamma + i, rem), Vec::load_partial(beta + i, rem))
          .store_partial(o + i, rem);
    }
  }
}

void rms_norm(const float* x, float* out, i64 rows, i64 dim, const float* gamma, float eps) {
  for (i64 r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float ms = dot(xr, xr, dim) / static_cast<float>(dim);
    const Vec scale = Vec::set1(1.0f / __builtin_sqrtf(ms + eps));
    map2(xr, gamma, out + r * dim, dim, [&](Vec a, Vec g) { return a * scale * g; });
  }
}

void gelu_erf(const float* x, float* out, i64 n) {
  map(x, out, n, [](Vec v) {
    return Vec::set1(0.5f) * v * (Vec::set1(1.0f) + erf(v * Vec::set1(0.70710678118654752f)));
  });
}

void gelu_tanh(const float* x, float* out, i64 n) {
  map(x, out, n, [](Vec v) {
    const Vec inner = Vec::set1(0.79788456080286536f) * fmadd(Vec::set1(0.044715f), v * v * v, v);
    return Vec::set1(0.5f) * v * (Vec::set1(1.0f) + tanh(inner));
  });
}

void silu(const float* x, float* out, i64 n) {
  map(x, out, n, [](Vec v) { return v / (Vec::set1(1.0f) + exp(Vec::zero() - v)); });
}

void quick_gelu(const float* x, float* out, i64 n) {
  map(x, out, n, [](Vec v) { return v / (Vec::set1(1.0f) + exp(Vec::set1(-1.702f) * v)); });
}

void tanh_op(const float* x, float* out, i64 n) {
  map(x, out, n, [](Vec v) { return tanh(v); });
}

void add(const float* a, const float* b, float* out, i64 n) {
  map2(a, b, out, n, [](Vec x, Vec y) { return x + y; });
}

void mul(const float* a, const float* b, float* out, i64 n) {
  map2(a, b, out, n, [](Vec x, Vec y) { return x * y; });
}

void softmax_row(float* x, i64 dim) {
  Vec m = Vec::set1(-INFINITY);
  i64 i = 0;
  for (; i + kL <= dim; i += kL) m = max(m, Vec::load(x + i));
  float mx = m.reduce_max();
  for (; i < dim; ++i) mx = x[i] > mx ? x[i] : mx;
  const Vec vmax = Vec::set1(mx);
  map(x, x, dim, [&](Vec v) { return exp(v - vmax); });
  const Vec inv = Vec::set1(1.0f / sum(x, dim));
  map(x, x, dim, [&](Vec v) { return v * inv; });
}

void softmax(float* x, i64 rows, i64 dim) {
  for (i64 r = 0; r < rows; ++r) softmax_row(x + r * dim, dim);
}

// Scores for one query against every key: K is transposed into kt ([head_dim][vp], vp = valid
// rounded up to whole vectors, zero-padded), so the dot products run across keys with no
// horizontal sums; four key vectors at a time hide the FMA latency.
void attention_scores(const float* qi, const float* kt, i64 vp, i64 head_dim, float scale,
                      float* s) {
  i64 j = 0;
  for (; j + 4 * kL <= vp; j += 4 * kL) {
    Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
    for (i64 c = 0; c < head_dim; ++c) {
      const Vec qc = Vec::set1(qi[c]);
      const float* row = kt + c * vp + j;
      a0 = fmadd(qc, Vec::load(row), a0);
      a1 = fmadd(qc, Vec::load(row + kL), a1);
      a2 = fmadd(qc, Vec::load(row + 2 * kL), a2);
      a3 = fmadd(qc, Vec::load(row + 3 * kL), a3);
    }
    const Vec sc = Vec::set1(scale);
    (a0 * sc).store(s + j);
    (a1 * sc).store(s + j + kL);
    (a2 * sc).store(s + j + 2 * kL);
    (a3 * sc).store(s + j + 3 * kL);
  }
  for (; j < vp; j += kL) {
    Vec a = Vec::zero();
    for (i64 c = 0; c < head_dim; ++c) a = fmadd(Vec::set1(qi[c]), Vec::load(kt + c * vp + j), a);
    (a * Vec::set1(scale)).store(s + j);
  }
}

// o[0:NV vectors] = sum_j p[j] v_j over NV whole vectors of columns, in registers. U keys at a
// time go to separate accumulators so that at least eight FMA chains hide the FMA latency.
template <int NV>
void attention_values_block(const float* p, const float* v, i64 ld, i64 valid, float* o) {
  constexpr int U = NV >= 4 ? 2 : NV == 2 ? 4 : 8;
  Vec acc[U][NV];
  for (int u = 0; u < U; ++u) {
    for (int t = 0; t < NV; ++t) acc[u][t] = Vec::zero();
  }
  i64 j = 0;
  for (; j + U <= valid; j += U) {
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) {
      const Vec pj = Vec::set1(p[j + u]);
#pragma GCC unroll 4
      for (int t = 0; t < NV; ++t) {
        acc[u][t] = fmadd(pj, Vec::load(v + (j + u) * ld + t * kL), acc[u][t]);
      }
    }
  }
  for (; j < valid; ++j) {
    const Vec pj = Vec::set1(p[j]);
    for (int t = 0; t < NV; ++t) acc[0][t] = fmadd(pj, Vec::load(v + j * ld + t * kL), acc[0][t]);
  }
  for (int t = 0; t < NV; ++t) {
    Vec sum = acc[0][t];
    for (int u = 1; u < U; ++u) sum = sum + acc[u][t];
    sum.store(o + t * kL);
  }
}

// o = sum_j p[j] v_j over head_dim columns: blocks of four, two or one vectors, then a partial
// vector.
void attention_values(const float* p, const float* v, i64 ld, i64 valid, i64 head_dim, float* o) {
  i64 c = 0;
  for (; c + 4 * kL <= head_dim; c += 4 * kL) attention_values_block<4>(p, v + c, ld, valid, o + c);
  for (; c + 2 * kL <= head_dim; c += 2 * kL) attention_values_block<2>(p, v + c, ld, valid, o + c);
  for (; c + kL <= head_dim; c += kL) attention_values_block<1>(p, v + c, ld, valid, o + c);
  if (c < head_dim) {
    const int tail = static_cast<int>(head_dim - c);
    Vec acc = Vec::zero();
    for (i64 j = 0; j < valid; ++j) {
      acc = fmadd(Vec::set1(p[j]), Vec::load_partial(v + j * ld + c, tail), acc);
    }
    acc.store_partial(o + c, tail);
  }
}

void attention_head(const float* q, const float* k, const float* v, i64 ld, float* out, i64 ld_out,
                    i64 len, i64 valid, i64 head_dim, float scale, float* scratch) {
  // K transposed and V packed contiguously: rows ld apart (thousands of floats in a batch) would
  // map onto few L1 sets and evict each other on every query.
  const i64 vp = (valid + kL - 1) / kL * kL;
  float* kt = scratch;
  float* vc = kt + head_dim * vp;
  float* s = vc + head_dim * valid;
  for (i64 c = 0; c < head_dim; ++c) {
    float* row = kt + c * vp;
    for (i64 j = 0; j < valid; ++j) row[j] = k[j * ld + c];
    zero_floats(row + valid, vp - valid);
  }
  for (i64 j = 0; j < valid; ++j) copy_floats(v + j * ld, head_dim, vc + j * head_dim);
  for (i64 i = 0; i < len; ++i) {
    float* o = out + i * ld_out;
    if (i >= valid) {
      zero_floats(o, head_dim);
      continue;
    }
    attention_scores(q + i * ld, kt, vp, head_dim, scale, s);
    softmax_row(s, valid);
    attention_values(s, vc, head_dim, valid, head_dim, o);
  }
}

// attention_head over all len keys, with bias[i * len + j] (null: none) added to the scaled
// scores of query i, and keys j > i masked when causal.
void attention_head_bias(const float* q, const float* k, const float* v, i64 ld, float* out,
                         i64 ld_out, i64 len, i64 head_dim, float scale, const float* bias,
                         bool causal, float* scratch) {
  const i64 vp = (len + kL - 1) / kL * kL;
  float* kt = scratch;
  float* vc = kt + head_dim * vp;
  float* s = vc + head_dim * len;
  for (i64 c = 0; c < head_dim; ++c) {
    float* row = kt + c * vp;
    for (i64 j = 0; j < len; ++j) row[j] = k[j * ld + c];
    zero_floats(row + len, vp - len);
  }
  for (i64 j = 0; j < len; ++j) copy_floats(v + j * ld, head_dim, vc + j * head_dim);
  for (i64 i = 0; i < len; ++i) {
    const i64 keys = causal ? i + 1 : len;
    attention_scores(q + i * ld, kt, vp, head_dim, scale, s);
    if (bias) add(s, bias + i * len, s, keys);
    softmax_row(s, keys);
    attention_values(s, vc, head_dim, keys, head_dim, out + i * ld_out);
  }
}

// ---- Weights read in place (f32, f16, bf16, float8 at any byte address) ----

template <int T>
constexpr i64 weight_bytes() {
  return T == kWeightF32 ? 4 : T == kWeightF8E4M3 || T == kWeightF8E5M2 ? 1 : 2;
}

template <int T>
inline Vec load_weights(const unsigned char* p) {
  if constexpr (T == kWeightF32) return Vec::load_f32u(p);
  if constexpr (T == kWeightF16) return Vec::load_f16(p);
  if constexpr (T == kWeightBF16) return Vec::load_bf16(p);
  if constexpr (T == kWeightF8E4M3) return Vec::load_f8e4m3(p);
  if constexpr (T == kWeightF8E5M2) return Vec::load_f8e5m2(p);
}

template <int T>
inline float read_weight(const unsigned char* p) {
  if constexpr (T == kWeightF32) {
    float x;
    __builtin_memcpy(&x, p, sizeof x);
    return x;
  } else if constexpr (T == kWeightF8E4M3) {
    return f8e4m3_to_f32(*p);
  } else if constexpr (T == kWeightF8E5M2) {
    return f8e5m2_to_f32(*p);
  } else {
    std::uint16_t h;
    __builtin_memcpy(&h, p, sizeof h);
    if constexpr (T == kWeightF16) return f16_to_f32(h);
    const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    float x;
    __builtin_memcpy(&x, &bits, sizeof x);
    return x;
  }
}

// n elements of type T at p into f32 dst.
template <int T>
inline void convert_weights(const unsigned char* p, i64 n, float* dst) {
  i64 i = 0;
  for (; i + kL <= n; i += kL) load_weights<T>(p + i * weight_bytes<T>()).store(dst + i);
  for (; i < n; ++i) dst[i] = read_weight<T>(p + i * weight_bytes<T>());
}

// One weight row (k elements) dotted with every x row: four accumulators hide the FMA latency.
// Rows are taken one after another, so each thread reads its share of W as one sequential stream
// (what the hardware prefetchers serve best); the row (a few KiB) stays in L1 for the next x row.
template <int T>
void gemv_row(const unsigned char* w, i64 k, const float* x, i64 rows, i64 ldx, float bias,
              float* y, i64 ldy) {
  constexpr i64 es = weight_bytes<T>();
  const i64 k4 = k / (4 * kL) * (4 * kL);
  const i64 k1 = k / kL * kL;
  for (i64 r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    Vec a0 = Vec::zero(), a1 = Vec::zero(), a2 = Vec::zero(), a3 = Vec::zero();
    i64 i = 0;
    for (; i < k4; i += 4 * kL) {
      const unsigned char* wi = w + i * es;
      a0 = fmadd(load_weights<T>(wi), Vec::load(xr + i), a0);
      a1 = fmadd(load_weights<T>(wi + kL * es), Vec::load(xr + i + kL), a1);
      a2 = fmadd(load_weights<T>(wi + 2 * kL * es), Vec::load(xr + i + 2 * kL), a2);
      a3 = fmadd(load_weights<T>(wi + 3 * kL * es), Vec::load(xr + i + 3 * kL), a3);
    }
    for (; i < k1; i += kL) a0 = fmadd(load_weights<T>(w + i * es), Vec::load(xr + i), a0);
    float s = ((a0 + a1) + (a2 + a3)).reduce_add();
    for (; i < k; ++i) s += read_weight<T>(w + i * es) * xr[i];
    y[r * ldy] = s + bias;
  }
}

template <int T>
void gemv(const void* w, i64 k, i64 n0, i64 n1, const float* x, i64 rows, i64 ldx,
          const float* bias, float* y, i64 ldy) {
  const auto* wb = static_cast<const unsigned char*>(w);
  constexpr i64 es = weight_bytes<T>();
  for (i64 n = n0; n < n1; ++n) {
    gemv_row<T>(wb + n * k * es, k, x, rows, ldx, bias != nullptr ? bias[n] : 0.0f, y + n, ldy);
  }
}

template <int T>
void gemm_convert(const float* a, i64 lda, i64 m, const void* w, const float* bias, i64 n, i64 k,
                  i64 p0, i64 p1, float* c, i64 ldc) {
  const auto* wb = static_cast<const unsigned char*>(w);
  constexpr i64 es = weight_bytes<T>();
  alignas(64) float slice[kKC * kNR];
  float row[kKC];
  float edge[kMR * kNR];
  for (i64 p = p0; p < p1; ++p) {
    const i64 col = p * kNR;
    const i64 cols = min_i(kNR, n - col);
    for (i64 kc = 0; kc < k; kc += kKC) {
      const i64 depth = min_i(kKC, k - kc);
      const bool accumulate = kc > 0;
      for (i64 j = 0; j < kNR; ++j) {
        if (j >= cols) {
          for (i64 t = 0; t < depth; ++t) slice[t * kNR + j] = 0.0f;
          continue;
        }
        convert_weights<T>(wb + ((col + j) * k + kc) * es, depth, row);
        for (i64 t = 0; t < depth; ++t) slice[t * kNR + j] = row[t];
      }
      const float* pbias = bias != nullptr && !accumulate ? bias + col : nullptr;
      for (i64 i = 0; i < m; i += kMR) {
        const int mr = static_cast<int>(min_i(kMR, m - i));
        const float* ai = a + i * lda + kc;
        if (cols == kNR) {
          tile_dispatch<kMR>(mr, ai, lda, slice, depth, pbias, accumulate, c + i * ldc + col, ldc);
          continue;
        }
        if (accumulate) {
          for (int r = 0; r < mr; ++r) copy_floats(c + (i + r) * ldc + col, cols, edge + r * kNR);
        }
        tile_dispatch<kMR>(mr, ai, lda, slice, depth, pbias, accumulate, edge, kNR);
        for (int r = 0; r < mr; ++r) copy_floats(edge + r * kNR, cols, c + (i + r) * ldc + col);
      }
    }
  }
}

// ---- Decoder attention over a KV cache ----

template <int T>
inline float dot_weights(const float* q, const unsigned char* k, i64 n) {
  constexpr i64 es = weight_bytes<T>();
  Vec s = Vec::zero();
  i64 i = 0;
  for (; i + kL <= n; i += kL) s = fmadd(Vec::load(q + i), load_weights<T>(k + i * es), s);
  float r = s.reduce_add();
  for (; i < n; ++i) r += q[i] * read_weight<T>(k + i * es);
  return r;
}

// out[0:n] += p * v[0:n].
template <int T>
inline void axpy_weights(float p, const unsigned char* v, i64 n, float* out) {
  constexpr i64 es = weight_bytes<T>();
  const Vec pv = Vec::set1(p);
  i64 i = 0;
  for (; i + kL <= n; i += kL)
    fmadd(pv, load_weights<T>(v + i * es), Vec::load(out + i)).store(out + i);
  for (; i < n; ++i) out[i] += p * read_weight<T>(v + i * es);
}

template <int T>
void attention_kv_t(const float* q, const void* k, const void* v, i64 lo, i64 hi, i64 head_dim,
                    float scale, float* out, float* scores) {
  constexpr i64 es = weight_bytes<T>();
  const auto* kb = static_cast<const unsigned char*>(k);
  const auto* vb = static_cast<const unsigned char*>(v);
  const i64 n = hi - lo;
  for (i64 j = 0; j < n; ++j)
    scores[j] = scale * dot_weights<T>(q, kb + (lo + j) * head_dim * es, head_dim);
  softmax_row(scores, n);
  zero_floats(out, head_dim);
  for (i64 j = 0; j < n; ++j)
    axpy_weights<T>(scores[j], vb + (lo + j) * head_dim * es, head_dim, out);
}

void attention_kv(const float* q, const void* k, const void* v, bool half, i64 lo, i64 hi,
                  i64 head_dim, float scale, float* out, float* scores) {
  if (half) return attention_kv_t<kWeightF16>(q, k, v, lo, hi, head_dim, scale, out, scores);
  attention_kv_t<kWeightF32>(q, k, v, lo, hi, head_dim, scale, out, scores);
}

void rope(float* x, i64 rows, i64 ld, i64 heads, i64 head_dim, i64 rot_dims, const i64* positions,
          const float* inv_freq, float mscale, bool neox, float* cs) {
  const i64 half = rot_dims / 2;
  float* cosv = cs;
  float* sinv = cs + half;
  for (i64 r = 0; r < rows; ++r) {
    const float pos = static_cast<float>(positions[r]);
    for (i64 i = 0; i < half; ++i) {
      const double theta = static_cast<double>(pos * inv_freq[i]);
      cosv[i] = static_cast<float>(std::cos(theta)) * mscale;
      sinv[i] = static_cast<float>(std::sin(theta)) * mscale;
    }
    for (i64 h = 0; h < heads; ++h) {
      float* xh = x + r * ld + h * head_dim;
      if (neox) {
        i64 i = 0;
        for (; i + kL <= half; i += kL) {
          const Vec x0 = Vec::load(xh + i), x1 = Vec::load(xh + half + i);
          const Vec c = Vec::load(cosv + i), s = Vec::load(sinv + i);
          (x0 * c - x1 * s).store(xh + i);
          fmadd(x0, s, x1 * c).store(xh + half + i);
        }
        for (; i < half; ++i) {
          const float x0 = xh[i], x1 = xh[half + i];
          xh[i] = x0 * cosv[i] - x1 * sinv[i];
          xh[half + i] = x0 * sinv[i] + x1 * cosv[i];
        }
      } else {
        for (i64 i = 0; i < half; ++i) {
          const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
          xh[2 * i] = x0 * cosv[i] - x1 * sinv[i];
          xh[2 * i + 1] = x0 * sinv[i] + x1 * cosv[i];
        }
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, i64 ld, i64 rows, i64 dim, float* out) {
  for (i64 r = 0; r < rows; ++r) {
    map2(gate + r * ld, up + r * ld, out + r * dim, dim,
         [](Vec g, Vec u) { return g / (Vec::set1(1.0f) + exp(Vec::zero() - g)) * u; });
  }
}

// ---- Image kernels ----

void relu(const float* x, float* out, i64 n) {
  map(x, out, n, [](Vec v) { return max(v, Vec::zero()); });
}

void channel_moments(const float* x, i64 rows, i64 channels, const float* center, float* s1,
                     float* s2) {
  i64 c = 0;
  for (; c < channels; c += kL) {
    const int w = static_cast<int>(min_i(kL, channels - c));
    const Vec m = Vec::load_partial(center + c, w);
    Vec a = Vec::zero(), b = Vec::zero();
    for (i64 r = 0; r < rows; ++r) {
      const Vec d = Vec::load_partial(x + r * channels + c, w) - m;
      a = a + d;
      b = fmadd(d, d, b);
    }
    (Vec::load_partial(s1 + c, w) + a).store_partial(s1 + c, w);
    (Vec::load_partial(s2 + c, w) + b).store_partial(s2 + c, w);
  }
}

void channel_affine(const float* x, float* out, i64 rows, i64 channels, const float* scale,
                    const float* shift, int act) {
  for (i64 c = 0; c < channels; c += kL) {
    const int w = static_cast<int>(min_i(kL, channels - c));
    const Vec a = Vec::load_partial(scale + c, w);
    const Vec b = Vec::load_partial(shift + c, w);
    for (i64 r = 0; r < rows; ++r) {
      Vec y = fmadd(Vec::load_partial(x + r * channels + c, w), a, b);
      if (act == kChannelSilu) y = y / (Vec::set1(1.0f) + exp(Vec::zero() - y));
      if (act == kChannelRelu) y = max(y, Vec::zero());
      y.store_partial(out + r * channels + c, w);
    }
  }
}

// The float8 entries of the table (short names keep its lines short).
constexpr auto gemv_e4m3 = gemv<kWeightF8E4M3>;
constexpr auto gemv_e5m2 = gemv<kWeightF8E5M2>;
constexpr auto gc_e4m3 = gemm_convert<kWeightF8E4M3>;
constexpr auto gc_e5m2 = gemm_convert<kWeightF8E5M2>;

constexpr KernelTable make_table(SimdLevel level) {
  return KernelTable{level,
                     kNR,
                     kMR,
                     gemm_packed,
                     layer_norm,
                     rms_norm,
                     gelu_erf,
                     gelu_tanh,
                     silu,
                     tanh_op,
                     add,
                     mul,
                     softmax,
                     attention_head,
                     {gemv<kWeightF32>, gemv<kWeightF16>, gemv<kWeightBF16>, gemv_e4m3, gemv_e5m2},
                     {gemm_convert<kWeightF32>, gemm_convert<kWeightF16>, gemm_convert<kWeightBF16>,
                      gc_e4m3, gc_e5m2},
                     attention_kv,
                     rope,
                     silu_mul,
                     attention_head_bias,
                     quick_gelu,
                     relu,
                     channel_moments,
                     channel_affine};
}

}  // namespace
}  // namespace hearth::kernels
