// Every CPU kernel, at every instruction-set level this machine has, against straightforward
// double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/kernel_table.hpp"
#include "hearth/kernels/peak.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;

std::vector<SimdLevel> levels() {
  return testing::simd_levels();
}
using testing::random_vector;

// y = x W^T + b in double.
std::vector<double> reference_linear(const std::vector<float>& x, const std::vector<float>& w,
                                     const float* bias, i64 m, i64 n, i64 k) {
  std::vector<double> y(static_cast<std::size_t>(m * n));
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) {
      double s = bias != nullptr ? bias[j] : 0.0;
      for (i64 p = 0; p < k; ++p) s += static_cast<double>(x[i * k + p]) * w[j * k + p];
      y[i * n + j] = s;
    }
  }
  return y;
}

double gelu_ref(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double gelu_tanh_ref(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// One head against a double reference, with keys past valid masked.
void check_attention(const KernelTable& t, i64 len, i64 d, i64 ld) {
  const auto q = random_vector(static_cast<std::size_t>(len * ld), 60);
  const auto kk = random_vector(static_cast<std::size_t>(len * ld), 61);
  const auto v = random_vector(static_cast<std::size_t>(len * ld), 62);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (const i64 valid : {i64{1}, i64{7}, i64{11}, len}) {
    std::vector<float> out(static_cast<std::size_t>(len * d), NAN),
        scratch(static_cast<std::size_t>(attention_scratch_floats(len, d)));
    t.attention_head(q.data(), kk.data(), v.data(), ld, out.data(), d, len, valid, d, scale,
                     scratch.data());
    for (i64 i = 0; i < len; ++i) {
      if (i >= valid) {
        for (i64 c = 0; c < d; ++c) ASSERT_EQ(out[i * d + c], 0.0f);
        continue;
      }
      std::vector<double> p(static_cast<std::size_t>(valid));
      double mx = -INFINITY, z = 0.0;
      for (i64 j = 0; j < valid; ++j) {
        double s = 0.0;
        for (i64 c = 0; c < d; ++c) s += static_cast<double>(q[i * ld + c]) * kk[j * ld + c];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (double& e : p) z += (e = std::exp(e - mx));
      for (i64 c = 0; c < d; ++c) {
        double o = 0.0;
        for (i64 j = 0; j < valid; ++j) o += p[j] / z * v[j * ld + c];
        ASSERT_NEAR(out[i * d + c], o, 1e-5) << "valid=" << valid << " i=" << i;
      }
    }
  }
}

class Kernels : public ::testing::TestWithParam<SimdLevel> {
 protected:
  const KernelTable& k() const { return kernel_table(GetParam()); }
};

TEST_P(Kernels, TableIsTheRequestedLevel) {
  EXPECT_EQ(k().level, GetParam());
}

TEST_P(Kernels, PackedGemmMatchesReferenceOnEdgeShapes) {
  const KernelTable& t = k();
  unsigned seed = 1;
  for (const i64 m : {1, 5, 8, 13, 67}) {
    for (const i64 n : {1, 17, 32, 33, 100}) {
      for (const i64 kk : {1, 7, 128, 129, 300}) {
        const auto x = random_vector(static_cast<std::size_t>(m * kk), seed++);
        const auto w = random_vector(static_cast<std::size_t>(n * kk), seed++);
        const auto b = random_vector(static_cast<std::size_t>(n), seed++);
        const i64 panels = gemm_panels(n, t.gemm_nr);
        std::vector<float> packed(static_cast<std::size_t>(panels * kk * t.gemm_nr));
        pack_b(w.data(), n, kk, t.gemm_nr, packed.data());
        std::vector<float> bias(static_cast<std::size_t>(panels * t.gemm_nr), 0.0f);
        std::copy(b.begin(), b.end(), bias.begin());
        std::vector<float> y(static_cast<std::size_t>(m * n), NAN);
        t.gemm_packed(x.data(), kk, 0, m, packed.data(), bias.data(), n, kk, 0, panels, y.data(),
                      n);
        const auto ref = reference_linear(x, w, b.data(), m, n, kk);
        for (std::size_t i = 0; i < y.size(); ++i) {
          ASSERT_NEAR(y[i], ref[i], 1e-5 * static_cast<double>(kk) + 1e-5)
              << "m=" << m << " n=" << n << " k=" << kk << " i=" << i;
        }
      }
    }
  }
}

TEST_P(Kernels, PartialRowAndPanelRangesWriteOnlyTheirBlock) {
  const KernelTable& t = k();
  const i64 m = 20, n = 3 * t.gemm_nr, kk = 16;
  const auto x = random_vector(static_cast<std::size_t>(m * kk), 3);
  const auto w = random_vector(static_cast<std::size_t>(n * kk), 4);
  std::vector<float> packed(static_cast<std::size_t>(3 * kk * t.gemm_nr));
  pack_b(w.data(), n, kk, t.gemm_nr, packed.data());
  std::vector<float> y(static_cast<std::size_t>(m * n), -7.0f);
  t.gemm_packed(x.data(), kk, 3, 11, packed.data(), nullptr, n, kk, 1, 2, y.data(), n);
  const auto ref = reference_linear(x, w, nullptr, m, n, kk);
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) {
      const bool inside = i >= 3 && i < 11 && j >= t.gemm_nr && j < 2 * t.gemm_nr;
      if (inside) {
        ASSERT_NEAR(y[i * n + j], ref[i * n + j], 1e-4);
      } else {
        ASSERT_EQ(y[i * n + j], -7.0f) << i << "," << j;
      }
    }
  }
}

TEST_P(Kernels, LayerNormWithAndWithoutResidual) {
  for (const i64 dim : {1, 5, 16, 37, 384}) {
    const i64 rows = 3;
    const auto x = random_vector(static_cast<std::size_t>(rows * dim), 10, 3.0f);
    const auto r = random_vector(static_cast<std::size_t>(rows * dim), 11);
    const auto g = random_vector(static_cast<std::size_t>(dim), 12);
    const auto b = random_vector(static_cast<std::size_t>(dim), 13);
    for (const bool with_residual : {false, true}) {
      std::vector<float> out(x.size());
      k().layer_norm(x.data(), with_residual ? r.data() : nullptr, out.data(), rows, dim, g.data(),
                     b.data(), 1e-5f);
      for (i64 i = 0; i < rows; ++i) {
        std::vector<double> v(static_cast<std::size_t>(dim));
        double mean = 0.0;
        for (i64 j = 0; j < dim; ++j) {
          v[j] = x[i * dim + j] + (with_residual ? r[i * dim + j] : 0.0f);
          mean += v[j];
        }
        mean /= static_cast<double>(dim);
        double var = 0.0;
        for (const double e : v) var += (e - mean) * (e - mean);
        var /= static_cast<double>(dim);
        for (i64 j = 0; j < dim; ++j) {
          const double want = (v[j] - mean) / std::sqrt(var + 1e-5) * g[j] + b[j];
          ASSERT_NEAR(out[i * dim + j], want, 2e-5) << "dim=" << dim << " j=" << j;
        }
      }
    }
  }
}

TEST_P(Kernels, LayerNormInPlaceEqualsOutOfPlace) {
  const i64 rows = 4, dim = 50;
  auto x = random_vector(static_cast<std::size_t>(rows * dim), 20);
  const auto g = random_vector(static_cast<std::size_t>(dim), 21);
  const auto b = random_vector(static_cast<std::size_t>(dim), 22);
  std::vector<float> out(x.size());
  k().layer_norm(x.data(), nullptr, out.data(), rows, dim, g.data(), b.data(), 1e-12f);
  k().layer_norm(x.data(), nullptr, x.data(), rows, dim, g.data(), b.data(), 1e-12f);
  EXPECT_EQ(x, out);
}

TEST_P(Kernels, RmsNorm) {
  const i64 rows = 2, dim = 45;
  const auto x = random_vector(static_cast<std::size_t>(rows * dim), 30);
  const auto g = random_vector(static_cast<std::size_t>(dim), 31);
  std::vector<float> out(x.size());
  k().rms_norm(x.data(), out.data(), rows, dim, g.data(), 1e-6f);
  for (i64 i = 0; i < rows; ++i) {
    double ms = 0.0;
    for (i64 j = 0; j < dim; ++j) ms += static_cast<double>(x[i * dim + j]) * x[i * dim + j];
    ms /= static_cast<double>(dim);
    for (i64 j = 0; j < dim; ++j) {
      ASSERT_NEAR(out[i * dim + j], x[i * dim + j] / std::sqrt(ms + 1e-6) * g[j], 1e-5);
    }
  }
}

TEST_P(Kernels, ActivationsMatchLibmOverAWideRange) {
  std::vector<float> x;
  for (float v = -12.0f; v <= 12.0f; v += 0.0137f) x.push_back(v);
  for (const float v : {-100.0f, -88.5f, 0.0f, -0.0f, 1e-8f, 88.5f, 100.0f}) x.push_back(v);
  const auto n = static_cast<i64>(x.size());
  std::vector<float> g(x.size()), gt(x.size()), s(x.size()), th(x.size());
  k().gelu_erf(x.data(), g.data(), n);
  k().gelu_tanh(x.data(), gt.data(), n);
  k().silu(x.data(), s.data(), n);
  k().tanh(x.data(), th.data(), n);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    const double tol = 1e-6 * (1.0 + std::fabs(v));
    ASSERT_NEAR(g[i], gelu_ref(v), tol) << "gelu(" << v << ")";
    ASSERT_NEAR(gt[i], gelu_tanh_ref(v), tol) << "gelu_tanh(" << v << ")";
    ASSERT_NEAR(s[i], v / (1.0 + std::exp(-v)), tol) << "silu(" << v << ")";
    ASSERT_NEAR(th[i], std::tanh(v), 1e-6) << "tanh(" << v << ")";
  }
}

TEST_P(Kernels, AddAndMulAreExact) {
  const auto a = random_vector(77, 40);
  const auto b = random_vector(77, 41);
  std::vector<float> sum(77), prod(77);
  k().add(a.data(), b.data(), sum.data(), 77);
  k().mul(a.data(), b.data(), prod.data(), 77);
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(sum[i], a[i] + b[i]);
    ASSERT_EQ(prod[i], a[i] * b[i]);
  }
}

TEST_P(Kernels, SoftmaxIsStableAndNormalised) {
  for (const i64 dim : {1, 3, 16, 17, 130}) {
    auto x = random_vector(static_cast<std::size_t>(2 * dim), 50, 5.0f);
    x[0] = 1000.0f;  // no overflow
    const auto in = x;
    k().softmax(x.data(), 2, dim);
    for (i64 r = 0; r < 2; ++r) {
      double mx = -INFINITY, z = 0.0;
      for (i64 j = 0; j < dim; ++j) mx = std::max<double>(mx, in[r * dim + j]);
      for (i64 j = 0; j < dim; ++j) z += std::exp(in[r * dim + j] - mx);
      for (i64 j = 0; j < dim; ++j) {
        ASSERT_NEAR(x[r * dim + j], std::exp(in[r * dim + j] - mx) / z, 1e-6);
      }
    }
  }
}

TEST_P(Kernels, AttentionHeadWithPaddingMask) {
  for (const i64 d : {1, 8, 24, 32, 64, 100}) {
    check_attention(k(), 70, d, d + 9);
  }
  check_attention(k(), 11, 24, 40);
}

INSTANTIATE_TEST_SUITE_P(AllLevels, Kernels, ::testing::ValuesIn(levels()),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// The threaded backend, both GEMMs, fused activations, at every level.
struct BackendCase {
  SimdLevel level;
  GemmImpl gemm;
  std::size_t threads;
};

class CpuBackendTest : public ::testing::TestWithParam<BackendCase> {};

TEST_P(CpuBackendTest, LinearWithFusedActivationMatchesReference) {
  ThreadPool pool(GetParam().threads);
  auto be = make_cpu_backend(pool, GetParam().level, GetParam().gemm);
  for (const auto& [m, n, kk] :
       std::vector<std::array<i64, 3>>{{1, 3, 5}, {70, 65, 48}, {130, 96, 200}}) {
    const auto x = random_vector(static_cast<std::size_t>(m * kk), 70);
    const auto w = random_vector(static_cast<std::size_t>(n * kk), 71, 0.1f);
    const auto b = random_vector(static_cast<std::size_t>(n), 72);
    const auto lin = be->make_linear(w.data(), b.data(), n, kk);
    EXPECT_EQ(lin->out_features(), n);
    EXPECT_EQ(lin->in_features(), kk);
    const auto ref = reference_linear(x, w, b.data(), m, n, kk);
    for (const Activation act : {Activation::kNone, Activation::kGeluErf, Activation::kTanh}) {
      std::vector<float> y(static_cast<std::size_t>(m * n));
      be->linear(*lin, x.data(), m, y.data(), act);
      for (std::size_t i = 0; i < y.size(); ++i) {
        const double want = act == Activation::kNone      ? ref[i]
                            : act == Activation::kGeluErf ? gelu_ref(ref[i])
                                                          : std::tanh(ref[i]);
        ASSERT_NEAR(y[i], want, 1e-4) << to_string(act) << " m=" << m << " i=" << i;
      }
    }
  }
}

TEST_P(CpuBackendTest, AttentionOverAPaddedBatchMatchesPerSequenceKernel) {
  ThreadPool pool(GetParam().threads);
  auto be = make_cpu_backend(pool, GetParam().level, GetParam().gemm);
  const i64 batch = 3, len = 9, heads = 4, d = 8, hidden = heads * d, ld = 3 * hidden;
  const auto qkv = random_vector(static_cast<std::size_t>(batch * len * ld), 80);
  const std::vector<i64> valid = {9, 4, 1};
  std::vector<float> out(static_cast<std::size_t>(batch * len * hidden));
  be->attention(qkv.data(), qkv.data() + hidden, qkv.data() + 2 * hidden, ld, out.data(), hidden,
                batch, len, valid.data(), heads, d, 0.5f);
  const KernelTable& t = kernel_table(SimdLevel::kScalar);
  std::vector<float> want(static_cast<std::size_t>(len * d)),
      scratch(static_cast<std::size_t>(attention_scratch_floats(len, d)));
  for (i64 s = 0; s < batch; ++s) {
    for (i64 h = 0; h < heads; ++h) {
      const float* base = qkv.data() + s * len * ld + h * d;
      t.attention_head(base, base + hidden, base + 2 * hidden, ld, want.data(), d, len, valid[s], d,
                       0.5f, scratch.data());
      for (i64 i = 0; i < len; ++i) {
        for (i64 c = 0; c < d; ++c) {
          ASSERT_NEAR(out[(s * len + i) * hidden + h * d + c], want[i * d + c], 1e-5);
        }
      }
    }
  }
}

TEST_P(CpuBackendTest, ElementwiseNormsAndEmbedding) {
  ThreadPool pool(GetParam().threads);
  auto be = make_cpu_backend(pool, GetParam().level, GetParam().gemm);
  const i64 n = 40000;  // several pool chunks
  const auto a = random_vector(n, 90);
  const auto b = random_vector(n, 91);
  std::vector<float> out(n);
  be->add(a.data(), b.data(), out.data(), n);
  for (i64 i = 0; i < n; ++i) ASSERT_EQ(out[i], a[i] + b[i]);
  be->mul(a.data(), b.data(), out.data(), n);
  for (i64 i = 0; i < n; ++i) ASSERT_EQ(out[i], a[i] * b[i]);
  be->activation(Activation::kSilu, a.data(), out.data(), n);
  for (i64 i = 0; i < n; ++i) ASSERT_NEAR(out[i], a[i] / (1.0 + std::exp(-a[i])), 1e-6);

  const i64 rows = 100, dim = 40;
  const auto g = random_vector(dim, 92);
  const auto beta = random_vector(dim, 93);
  std::vector<float> ln(static_cast<std::size_t>(rows * dim)), ln1(ln.size());
  be->layer_norm(a.data(), b.data(), ln.data(), rows, dim, g.data(), beta.data(), 1e-6f);
  kernel_table(GetParam().level)
      .layer_norm(a.data(), b.data(), ln1.data(), rows, dim, g.data(), beta.data(), 1e-6f);
  EXPECT_EQ(ln, ln1);
  be->rms_norm(a.data(), ln.data(), rows, dim, g.data(), 1e-6f);
  kernel_table(GetParam().level).rms_norm(a.data(), ln1.data(), rows, dim, g.data(), 1e-6f);
  EXPECT_EQ(ln, ln1);
  std::vector<float> sm(a.begin(), a.begin() + rows * dim), sm1 = sm;
  be->softmax(sm.data(), rows, dim);
  kernel_table(GetParam().level).softmax(sm1.data(), rows, dim);
  EXPECT_EQ(sm, sm1);

  const std::vector<std::int32_t> ids = {3, 0, 99, 3};
  std::vector<float> emb(ids.size() * dim);
  be->embedding(a.data(), rows, dim, ids.data(), 4, emb.data());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    for (i64 c = 0; c < dim; ++c) ASSERT_EQ(emb[i * dim + c], a[ids[i] * dim + c]);
  }
  const std::vector<std::int32_t> bad = {1, 100};
  EXPECT_THROW(be->embedding(a.data(), rows, dim, bad.data(), 2, emb.data()), Error);
  const std::vector<std::int32_t> negative = {-1};
  EXPECT_THROW(be->embedding(a.data(), rows, dim, negative.data(), 1, emb.data()), Error);
}

std::vector<BackendCase> backend_cases() {
  std::vector<BackendCase> out;
  for (const SimdLevel level : levels()) {
    for (const GemmImpl gemm : {GemmImpl::kAuto, GemmImpl::kOwn, GemmImpl::kOpenBlas}) {
      out.push_back({level, gemm, 1});
      out.push_back({level, gemm, 2});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllLevels, CpuBackendTest, ::testing::ValuesIn(backend_cases()),
                         [](const auto& info) {
                           return std::string(to_string(info.param.level)) + "_" +
                                  to_string(info.param.gemm) + "_" +
                                  std::to_string(info.param.threads) + "threads";
                         });

TEST(CpuBackend, NameSaysLevelAndGemm) {
  ThreadPool pool(1);
  EXPECT_EQ(make_cpu_backend(pool, SimdLevel::kScalar, GemmImpl::kOpenBlas)->name(),
            "cpu-scalar-gemm-openblas");
}

TEST(CpuBackend, RejectsEmptyLinear) {
  ThreadPool pool(1);
  auto be = make_cpu_backend(pool, SimdLevel::kScalar);
  const float w = 1.0f;
  EXPECT_THROW(be->make_linear(&w, nullptr, 0, 1), Error);
}

TEST(Peak, FmaProbeMeasuresSomething) {
  if (!cpu_features().avx2) GTEST_SKIP() << "the FMA probe needs AVX2";
  ThreadPool pool(1);
  const double gflops = measure_fma_peak_gflops(pool, 0.01);
  EXPECT_GT(gflops, 0.1);
  EXPECT_LT(gflops, 1e5);
  EXPECT_THROW(measure_fma_peak_gflops(pool, 0.01, SimdLevel::kScalar), Error);
}

}  // namespace
}  // namespace hearth::kernels
