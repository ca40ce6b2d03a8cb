// The batched decode kernels (quant_batch.hpp: 2 to 8 x rows over Q4_0 and 4-bit MLX weights on
// AVX-512 VNNI) against a double-precision reference built from the same int8 activation blocks
// (the rounding every int8 kernel applies, replayed here in scalar code): the integer block sums
// are exact, so the kernels may differ from it only by f32 rounding, bounded by 1e-5 of the sum of
// the terms' magnitudes. Odd sizes (a partial last group of 16 blocks, a single block), every row
// count 1..12 (tiles of 8 and a remainder), a sub-range of weight rows, ldy beyond n, bias or
// none; and through CpuBackend at every level this CPU has, rows 2..8 equal to the scalar level.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/quant_batch.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

bool has_vnni512() {
  return cpu_features().avx512 && cpu_features().avx512_vnni;
}

TEST(BatchDecodeKernels, OnlyOnAvx512Vnni) {
  for (const SimdLevel level : testing::simd_levels()) {
    const bool want = level == SimdLevel::kAvx512 && has_vnni512();
    EXPECT_EQ(batch_decode_kernels(level) != nullptr, want) << to_string(level);
    EXPECT_EQ(batch_affine_decode(level) != nullptr, want) << to_string(level);
  }
  if (const DecodeKernels* k = batch_decode_kernels(SimdLevel::kAvx512)) {
    EXPECT_TRUE(k->handles(DType::kQ4_0));
    EXPECT_FALSE(k->handles(DType::kQ8_0));
    EXPECT_FALSE(k->handles(DType::kQ4_K));
  }
}

using testing::ggml_blocks;
using testing::mlx_blocks;

// 64-byte aligned scratch for prepared rows.
struct Aligned {
  std::vector<unsigned char> bytes;
  void* at(i64 size) {
    bytes.assign(static_cast<std::size_t>(size + 64), 0);
    auto p = reinterpret_cast<std::uintptr_t>(bytes.data());
    return bytes.data() + (64 - p % 64) % 64;
  }
};

void expect_rows(const std::vector<float>& y, const std::vector<double>& ref,
                 const std::vector<double>& mag, i64 rows, i64 n0, i64 n, i64 ldy,
                 const char* what) {
  for (i64 r = 0; r < rows; ++r) {
    for (i64 j = 0; j < n; ++j) {
      const auto i = static_cast<std::size_t>(r * ldy + j);
      const auto o = static_cast<std::size_t>(r * n + j);
      if (j < n0) {
        ASSERT_EQ(y[i], -7.0f) << what << ": wrote outside [n0, n1) at row " << r << " col " << j;
        continue;
      }
      ASSERT_NEAR(y[i], ref[o], 1e-5 * mag[o] + 1e-6) << what << " row " << r << " col " << j;
    }
  }
  for (i64 r = 0; r < rows; ++r) {
    for (i64 j = n; j < ldy; ++j) {
      ASSERT_EQ(y[static_cast<std::size_t>(r * ldy + j)], -7.0f) << what << ": wrote past n";
    }
  }
}

TEST(BatchDecodeKernels, Q4_0MatchesTheExactBlockSums) {
  const DecodeKernels* kern = batch_decode_kernels(SimdLevel::kAvx512);
  if (kern == nullptr) GTEST_SKIP() << "this CPU has no AVX-512 VNNI: no batched kernels";
  for (const i64 k : {32, 96, 512, 544, 1056}) {
    for (const i64 n : {1, 7, 37}) {
      const i64 rb = ggml::row_bytes(DType::kQ4_0, k);
      const auto wf = testing::random_vector(static_cast<std::size_t>(n * k), 3, 0.1f);
      std::vector<unsigned char> w(static_cast<std::size_t>(n * rb + 1));
      for (i64 j = 0; j < n; ++j) {
        ggml::quantize_row(DType::kQ4_0, wf.data() + j * k, w.data() + 1 + j * rb, k);
      }
      const unsigned char* wp = w.data() + 1;  // odd address
      const auto bias = testing::random_vector(static_cast<std::size_t>(n), 4);
      for (i64 rows = 1; rows <= 12; ++rows) {
        const auto x = testing::random_vector(static_cast<std::size_t>(rows * k),
                                              static_cast<unsigned>(rows + k));
        std::vector<double> ref(static_cast<std::size_t>(rows * n)), mag(ref.size());
        for (i64 r = 0; r < rows; ++r) {
          const testing::Int8Blocks a = ggml_blocks(x.data() + r * k, k);
          for (i64 j = 0; j < n; ++j) {
            double s = bias[j], m = std::fabs(bias[j]);
            for (i64 b = 0; b < k / 32; ++b) {
              const unsigned char* blk = wp + j * rb + b * 18;
              std::uint16_t h;
              std::memcpy(&h, blk, 2);
              long dot = 0;
              for (int i = 0; i < 16; ++i) {
                dot += ((blk[2 + i] & 15) - 8) * a.q[b * 32 + i];
                dot += ((blk[2 + i] >> 4) - 8) * a.q[b * 32 + 16 + i];
              }
              const double t = double{f16_to_f32(h)} * a.d[b] * static_cast<double>(dot);
              s += t;
              m += std::fabs(t);
            }
            ref[r * n + j] = s;
            mag[r * n + j] = m;
          }
        }
        Aligned buf;
        void* xp = buf.at(rows * kern->row_bytes(DType::kQ4_0, k));
        kern->prepare(DType::kQ4_0, x.data(), rows, k, k, xp);
        const i64 ldy = n + 3, n0 = n > 2 ? 2 : 0;
        for (const bool with_bias : {true, false}) {
          std::vector<float> y(static_cast<std::size_t>(rows * ldy), -7.0f);
          kern->gemv(DType::kQ4_0, wp, k, n0, n, xp, rows, with_bias ? bias.data() : nullptr,
                     y.data(), ldy);
          std::vector<double> want = ref;
          if (!with_bias) {
            for (i64 r = 0; r < rows; ++r) {
              for (i64 j = 0; j < n; ++j) want[r * n + j] -= bias[j];
            }
          }
          SCOPED_TRACE(::testing::Message()
                       << "k=" << k << " n=" << n << " rows=" << rows << " bias=" << with_bias);
          expect_rows(y, want, mag, rows, n0, n, ldy, "q4_0");
        }
      }
    }
  }
}

TEST(BatchDecodeKernels, Mlx4MatchesTheExactBlockSums) {
  const AffineDecode* kern = batch_affine_decode(SimdLevel::kAvx512);
  if (kern == nullptr) GTEST_SKIP() << "this CPU has no AVX-512 VNNI: no batched kernels";
  for (const int group : {32, 64, 128}) {
    for (const DType sdt : {DType::kF16, DType::kBF16}) {
      for (const i64 k : {i64{group}, 3 * i64{group}, 512 + i64{group}, 1024 + 3 * i64{group}}) {
        const i64 n = 19, groups = k / group, rb = mlx::packed_row_bytes(k, 4);
        const auto wf = testing::random_vector(static_cast<std::size_t>(n * k), 6, 0.05f);
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(n * rb));
        std::vector<std::uint16_t> sc(static_cast<std::size_t>(n * groups)), bi(sc.size());
        std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
        for (i64 j = 0; j < n; ++j) {
          mlx::quantize_row(wf.data() + j * k, k, 4, group, codes.data() + j * rb, s.data(),
                            b.data());
          for (i64 g = 0; g < groups; ++g) {
            sc[j * groups + g] = sdt == DType::kF16 ? f32_to_f16(s[g]) : f32_to_bf16(s[g]);
            bi[j * groups + g] = sdt == DType::kF16 ? f32_to_f16(b[g]) : f32_to_bf16(b[g]);
          }
        }
        const AffineMatrix w{codes.data(), n, k, 4, group, sdt, sc.data(), bi.data()};
        ASSERT_TRUE(kern->handles(w));
        const auto bias = testing::random_vector(static_cast<std::size_t>(n), 7);
        for (i64 rows = 1; rows <= 12; ++rows) {
          const auto x = testing::random_vector(static_cast<std::size_t>(rows * k),
                                                static_cast<unsigned>(rows * 3 + k));
          std::vector<double> ref(static_cast<std::size_t>(rows * n)), mag(ref.size());
          for (i64 r = 0; r < rows; ++r) {
            const float* xr = x.data() + r * k;
            const testing::Int8Blocks a = mlx_blocks(xr, k);
            for (i64 j = 0; j < n; ++j) {
              double acc = bias[j], m = std::fabs(bias[j]);
              for (i64 g = 0; g < groups; ++g) {
                const double sg = mlx::read_scale(sdt, sc.data() + j * groups, g);
                const double bg = mlx::read_scale(sdt, bi.data() + j * groups, g);
                double xs = 0, xa = 0;
                for (i64 i = g * group; i < (g + 1) * group; ++i) {
                  const double t =
                      sg * mlx::unpack_code(codes.data() + j * rb, i, 4) * a.d[i / 32] * a.q[i];
                  acc += t;
                  m += std::fabs(t);
                  xs += xr[i];
                  xa += std::fabs(xr[i]);
                }
                acc += bg * xs;
                m += std::fabs(bg) * xa;
              }
              ref[r * n + j] = acc;
              mag[r * n + j] = m;
            }
          }
          Aligned buf;
          void* xp = buf.at(rows * kern->row_bytes(w));
          kern->prepare(w, x.data(), rows, k, xp);
          const i64 ldy = n + 1, n0 = 3;
          std::vector<float> y(static_cast<std::size_t>(rows * ldy), -7.0f);
          kern->gemv(w, xp, rows, n0, n, bias.data(), y.data(), ldy);
          SCOPED_TRACE(::testing::Message() << "group=" << group << " " << dtype_name(sdt)
                                            << " k=" << k << " rows=" << rows);
          expect_rows(y, ref, mag, rows, n0, n, ldy, "mlx4");
        }
      }
    }
  }
}

// Through the backend: at every level, rows 2..8 of a Q4_0 and a 4-bit MLX layer (the batched
// kernels on AVX-512 VNNI, the others elsewhere) equal each row computed alone and, for Q4_0, the
// scalar level's (the same int8 blocks, so only f32 summation order differs; the scalar MLX
// kernels do not round x).
TEST(BatchDecodeKernels, BackendRowsAtEveryLevel) {
  ThreadPool pool(2);
  const i64 n = 45, k = 544;
  const auto wf = testing::random_vector(static_cast<std::size_t>(n * k), 8, 0.1f);
  const i64 rb = ggml::row_bytes(DType::kQ4_0, k);
  std::vector<unsigned char> q4(static_cast<std::size_t>(n * rb));
  for (i64 j = 0; j < n; ++j) {
    ggml::quantize_row(DType::kQ4_0, wf.data() + j * k, q4.data() + j * rb, k);
  }
  const i64 mrb = mlx::packed_row_bytes(k, 4), groups = k / 32;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n * mrb));
  std::vector<std::uint16_t> sc(static_cast<std::size_t>(n * groups)), bi(sc.size());
  std::vector<float> s(static_cast<std::size_t>(groups)), b(s.size());
  for (i64 j = 0; j < n; ++j) {
    mlx::quantize_row(wf.data() + j * k, k, 4, 32, codes.data() + j * mrb, s.data(), b.data());
    for (i64 g = 0; g < groups; ++g) {
      sc[j * groups + g] = f32_to_f16(s[g]);
      bi[j * groups + g] = f32_to_f16(b[g]);
    }
  }
  WeightView mv{DType::kU32, codes.data(), n, k};
  mv.affine = {4, 32, DType::kF16, sc.data(), bi.data()};
  const WeightView views[] = {{DType::kQ4_0, q4.data(), n, k}, mv};
  const auto bias = testing::random_vector(static_cast<std::size_t>(n), 9);
  const auto x = testing::random_vector(static_cast<std::size_t>(8 * k), 10);
  for (const WeightView& v : views) {
    std::vector<std::vector<float>> scalar(9);
    for (const SimdLevel level : testing::simd_levels()) {
      auto be = make_cpu_backend(pool, level);
      const auto lin = be->make_linear_view(v, bias.data());
      std::vector<float> alone(static_cast<std::size_t>(8 * n));
      for (i64 r = 0; r < 8; ++r) be->linear(*lin, x.data() + r * k, 1, alone.data() + r * n);
      for (i64 rows = 2; rows <= 8; ++rows) {
        std::vector<float> y(static_cast<std::size_t>(rows * n));
        be->linear(*lin, x.data(), rows, y.data());
        if (level == SimdLevel::kScalar) scalar[static_cast<std::size_t>(rows)] = y;
        for (std::size_t i = 0; i < y.size(); ++i) {
          const float want = scalar[static_cast<std::size_t>(rows)][i];
          if (!v.is_affine()) {
            ASSERT_NEAR(y[i], want, 2e-5 * (std::fabs(want) + 1.0f))
                << to_string(level) << " rows " << rows << " output " << i << " vs scalar";
          }
          ASSERT_NEAR(y[i], alone[i], 2e-5 * (std::fabs(alone[i]) + 1.0f))
              << to_string(level) << " " << (v.is_affine() ? "mlx4" : "q4_0") << " rows " << rows
              << " output " << i << " vs the row alone";
        }
      }
    }
  }
}

}  // namespace
}  // namespace hearth::kernels
