// What the FLUX text encoders added to the kernels, at every instruction-set level: the attention
// variant with an additive per-head score bias and a causal mask (against a double-precision
// reference, and the threaded backend against it) and CLIP's quick-GELU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/kernel_table.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;
using testing::random_vector;

// out[i] = softmax_j<=keys(i)(scale q_i.k_j + bias[i][j]) v_j in double.
std::vector<double> reference(const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, i64 ld, i64 len, i64 d, float scale,
                              const float* bias, bool causal) {
  std::vector<double> out(static_cast<std::size_t>(len * d));
  for (i64 i = 0; i < len; ++i) {
    const i64 keys = causal ? i + 1 : len;
    std::vector<double> p(static_cast<std::size_t>(keys));
    double mx = -INFINITY, z = 0.0;
    for (i64 j = 0; j < keys; ++j) {
      double s = 0.0;
      for (i64 c = 0; c < d; ++c) s += static_cast<double>(q[i * ld + c]) * k[j * ld + c];
      p[j] = s * scale + (bias ? bias[i * len + j] : 0.0);
      mx = std::max(mx, p[j]);
    }
    for (double& e : p) z += (e = std::exp(e - mx));
    for (i64 c = 0; c < d; ++c) {
      double o = 0.0;
      for (i64 j = 0; j < keys; ++j) o += p[j] / z * v[j * ld + c];
      out[i * d + c] = o;
    }
  }
  return out;
}

class AttentionBias : public ::testing::TestWithParam<SimdLevel> {};

TEST_P(AttentionBias, KernelMatchesReferenceWithBiasAndCausalMask) {
  const KernelTable& t = kernel_table(GetParam());
  for (const auto& [len, d, ld] :
       std::vector<std::array<i64, 3>>{{1, 8, 8}, {13, 24, 40}, {77, 64, 70}}) {
    const auto q = random_vector(static_cast<std::size_t>(len * ld), 90);
    const auto k = random_vector(static_cast<std::size_t>(len * ld), 91);
    const auto v = random_vector(static_cast<std::size_t>(len * ld), 92);
    const auto bias = random_vector(static_cast<std::size_t>(len * len), 93, 3.0f);
    const float scale = 0.3f;
    for (const bool with_bias : {false, true}) {
      for (const bool causal : {false, true}) {
        std::vector<float> out(static_cast<std::size_t>(len * d), NAN),
            scratch(static_cast<std::size_t>(attention_scratch_floats(len, d)));
        const float* b = with_bias ? bias.data() : nullptr;
        t.attention_head_bias(q.data(), k.data(), v.data(), ld, out.data(), d, len, d, scale, b,
                              causal, scratch.data());
        const auto want = reference(q, k, v, ld, len, d, scale, b, causal);
        for (std::size_t i = 0; i < want.size(); ++i) {
          ASSERT_NEAR(out[i], want[i], 2e-5)
              << "len=" << len << " bias=" << with_bias << " causal=" << causal << " i=" << i;
        }
      }
    }
  }
}

// The causal mask really hides later keys: changing the last key and value leaves every earlier
// query's output unchanged, and changes the last one.
TEST_P(AttentionBias, CausalMaskHidesLaterKeys) {
  const KernelTable& t = kernel_table(GetParam());
  const i64 len = 9, d = 16;
  auto q = random_vector(static_cast<std::size_t>(len * d), 94);
  auto k = random_vector(static_cast<std::size_t>(len * d), 95);
  auto v = random_vector(static_cast<std::size_t>(len * d), 96);
  std::vector<float> a(static_cast<std::size_t>(len * d)), b(a.size()),
      scratch(static_cast<std::size_t>(attention_scratch_floats(len, d)));
  t.attention_head_bias(q.data(), k.data(), v.data(), d, a.data(), d, len, d, 0.25f, nullptr, true,
                        scratch.data());
  for (i64 c = 0; c < d; ++c) {
    k[(len - 1) * d + c] += 5.0f;
    v[(len - 1) * d + c] -= 7.0f;
  }
  t.attention_head_bias(q.data(), k.data(), v.data(), d, b.data(), d, len, d, 0.25f, nullptr, true,
                        scratch.data());
  for (i64 i = 0; i < (len - 1) * d; ++i) ASSERT_EQ(a[i], b[i]) << i;
  EXPECT_NE(a[(len - 1) * d], b[(len - 1) * d]);
}

TEST_P(AttentionBias, BackendSplitsBatchAndHeadsWithPerHeadBias) {
  for (const std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
    ThreadPool pool(threads);
    auto be = make_cpu_backend(pool, GetParam());
    const i64 batch = 2, len = 7, heads = 3, d = 8, hidden = heads * d, ld = 3 * hidden;
    const auto qkv = random_vector(static_cast<std::size_t>(batch * len * ld), 97);
    const auto bias = random_vector(static_cast<std::size_t>(heads * len * len), 98, 2.0f);
    for (const bool causal : {false, true}) {
      std::vector<float> out(static_cast<std::size_t>(batch * len * hidden));
      be->attention_biased(qkv.data(), qkv.data() + hidden, qkv.data() + 2 * hidden, ld, out.data(),
                           hidden, batch, len, heads, d, 0.5f, bias.data(), causal);
      for (i64 s = 0; s < batch; ++s) {
        for (i64 h = 0; h < heads; ++h) {
          std::vector<float> q(static_cast<std::size_t>(len * d)), k(q.size()), v(q.size());
          for (i64 i = 0; i < len; ++i) {
            for (i64 c = 0; c < d; ++c) {
              const float* row = qkv.data() + (s * len + i) * ld + h * d + c;
              q[i * d + c] = row[0];
              k[i * d + c] = row[hidden];
              v[i * d + c] = row[2 * hidden];
            }
          }
          const auto want =
              reference(q, k, v, d, len, d, 0.5f, bias.data() + h * len * len, causal);
          for (i64 i = 0; i < len; ++i) {
            for (i64 c = 0; c < d; ++c) {
              ASSERT_NEAR(out[(s * len + i) * hidden + h * d + c], want[i * d + c], 2e-5)
                  << "threads=" << threads << " causal=" << causal << " s=" << s << " h=" << h;
            }
          }
        }
      }
    }
  }
}

TEST_P(AttentionBias, QuickGeluMatchesDoubleReference) {
  const KernelTable& t = kernel_table(GetParam());
  std::vector<float> x = random_vector(1003, 99, 6.0f);
  x.push_back(-90.0f);
  x.push_back(90.0f);
  x.push_back(0.0f);
  std::vector<float> out(x.size());
  t.quick_gelu(x.data(), out.data(), static_cast<i64>(x.size()));
  ThreadPool pool(2);
  auto be = make_cpu_backend(pool, GetParam());
  std::vector<float> via_backend(x.size());
  be->activation(Activation::kQuickGelu, x.data(), via_backend.data(), static_cast<i64>(x.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double want = x[i] / (1.0 + std::exp(-1.702 * x[i]));
    ASSERT_NEAR(out[i], want, 1e-5 * std::max(1.0, std::abs(want))) << "x=" << x[i];
    ASSERT_EQ(via_backend[i], out[i]);
  }
  EXPECT_STREQ(to_string(Activation::kQuickGelu), "quick_gelu");
}

INSTANTIATE_TEST_SUITE_P(AllLevels, AttentionBias, ::testing::ValuesIn(testing::simd_levels()),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace hearth::kernels
