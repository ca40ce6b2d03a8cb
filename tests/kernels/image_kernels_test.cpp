// The image ops of the CPU backend (NHWC convolution, group norm with fused activations, nearest
// upsampling, ReLU) at every instruction-set level and with 1 and 2 threads, against
// straightforward double-precision references written from the PyTorch definitions (Conv2d over
// NCHW, GroupNorm, Upsample(scale_factor=2)).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/kernels/backend.hpp"
#include "support/levels.hpp"

namespace hearth::kernels {
namespace {

using i64 = std::int64_t;
using testing::random_vector;

struct Case {
  SimdLevel level;
  std::size_t threads;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const SimdLevel l : testing::simd_levels()) {
    out.push_back({l, 1});
    out.push_back({l, 2});
  }
  return out;
}

class ImageKernels : public ::testing::TestWithParam<Case> {
 protected:
  ImageKernels() : pool_(GetParam().threads), be_(make_cpu_backend(pool_, GetParam().level)) {}
  ThreadPool pool_;
  std::unique_ptr<Backend> be_;
};

// Conv2d as PyTorch defines it, with w [out, in, k, k] and x, y in NHWC.
std::vector<double> reference_conv(const std::vector<float>& x, i64 h, i64 w, i64 in,
                                   const std::vector<float>& wt, const float* bias, i64 out,
                                   const ConvShape& s) {
  const i64 oh = s.out_size(h), ow = s.out_size(w), k = s.kernel;
  std::vector<double> y(static_cast<std::size_t>(oh * ow * out));
  for (i64 oy = 0; oy < oh; ++oy) {
    for (i64 ox = 0; ox < ow; ++ox) {
      for (i64 o = 0; o < out; ++o) {
        double acc = bias != nullptr ? bias[o] : 0.0;
        for (i64 ky = 0; ky < k; ++ky) {
          for (i64 kx = 0; kx < k; ++kx) {
            const i64 iy = oy * s.stride + ky - s.pad_begin, ix = ox * s.stride + kx - s.pad_begin;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            for (i64 i = 0; i < in; ++i) {
              acc += static_cast<double>(x[(iy * w + ix) * in + i]) *
                     wt[((o * in + i) * k + ky) * k + kx];
            }
          }
        }
        y[(oy * ow + ox) * out + o] = acc;
      }
    }
  }
  return y;
}

TEST_P(ImageKernels, Conv2dMatchesReferenceForEveryShape) {
  struct Shape {
    i64 h, w, in, out;
    ConvShape s;
  };
  // 3x3 pad 1 (the VAE's convs), stride 2 with TAESD's symmetric padding and the FLUX VAE's
  // (0, 1) padding, 1x1 (shortcuts, attention projections), odd sizes, channel counts that are
  // not whole vectors and more output channels than one GEMM panel.
  for (const Shape& c : std::vector<Shape>{{9, 7, 5, 3, {3, 1, 1, 1}},
                                           {10, 12, 16, 40, {3, 1, 1, 1}},
                                           {11, 8, 6, 9, {3, 2, 1, 1}},
                                           {12, 10, 8, 33, {3, 2, 0, 1}},
                                           {9, 9, 20, 70, {1, 1, 0, 0}},
                                           {6, 5, 3, 4, {1, 2, 0, 0}}}) {
    const auto x = random_vector(static_cast<std::size_t>(c.h * c.w * c.in), 1);
    const auto wt =
        random_vector(static_cast<std::size_t>(c.out * c.in * c.s.kernel * c.s.kernel), 2, 0.2f);
    const auto b = random_vector(static_cast<std::size_t>(c.out), 3);
    const auto conv = be_->make_conv2d(wt.data(), b.data(), c.out, c.in, c.s);
    const i64 oh = c.s.out_size(c.h), ow = c.s.out_size(c.w);
    const auto res = random_vector(static_cast<std::size_t>(oh * ow * c.out), 4);
    const auto ref = reference_conv(x, c.h, c.w, c.in, wt, b.data(), c.out, c.s);
    std::vector<float> y(ref.size(), NAN);
    be_->conv2d(*conv, x.data(), c.h, c.w, y.data());
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i], ref[i], 1e-4)
          << c.h << "x" << c.w << " k" << c.s.kernel << " s" << c.s.stride << " i=" << i;
    }
    // Residual and fused ReLU: y = relu(conv + b + residual).
    be_->conv2d(*conv, x.data(), c.h, c.w, y.data(), res.data(), Activation::kRelu);
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i], std::max(0.0, ref[i] + res[i]), 1e-4) << "residual i=" << i;
    }
  }
  // No bias; SiLU fused.
  const auto x = random_vector(5 * 6 * 4, 5);
  const auto wt = random_vector(7 * 4 * 9, 6, 0.3f);
  const auto conv = be_->make_conv2d(wt.data(), nullptr, 7, 4, {});
  const auto ref = reference_conv(x, 5, 6, 4, wt, nullptr, 7, {});
  std::vector<float> y(ref.size());
  be_->conv2d(*conv, x.data(), 5, 6, y.data(), nullptr, Activation::kSilu);
  for (std::size_t i = 0; i < y.size(); ++i) {
    ASSERT_NEAR(y[i], ref[i] / (1.0 + std::exp(-ref[i])), 1e-4) << i;
  }
}

TEST_P(ImageKernels, Conv2dRejectsImpossibleShapes) {
  const std::vector<float> w(9, 1.0f);
  EXPECT_THROW(be_->make_conv2d(w.data(), nullptr, 0, 1, {}), Error);
  EXPECT_THROW(be_->make_conv2d(w.data(), nullptr, 1, 1, {3, 0, 1, 1}), Error);
  EXPECT_THROW(be_->make_conv2d(w.data(), nullptr, 1, 1, {3, 1, 3, 1}), Error);
  const auto conv = be_->make_conv2d(w.data(), nullptr, 1, 1, {3, 1, 0, 0});
  std::vector<float> x(4), y(4);
  EXPECT_THROW(be_->conv2d(*conv, x.data(), 2, 2, y.data()), Error) << "2x2 under a 3x3 kernel";
}

TEST_P(ImageKernels, GroupNormMatchesReferenceWithFusedActivations) {
  struct Shape {
    i64 pixels, channels, groups;
    float offset;
  };
  // 700 pixels span several statistics blocks; a large offset checks that the variance does
  // not come from a cancelling E[x^2] - E[x]^2 in f32.
  for (const Shape& c : std::vector<Shape>{
           {700, 64, 32, 0.0f}, {13, 12, 4, 0.0f}, {300, 20, 5, 1000.0f}, {1, 8, 1, 0.0f}}) {
    auto x = random_vector(static_cast<std::size_t>(c.pixels * c.channels), 7);
    for (float& v : x) v += c.offset;
    const auto gamma = random_vector(static_cast<std::size_t>(c.channels), 8);
    const auto beta = random_vector(static_cast<std::size_t>(c.channels), 9);
    const i64 per = c.channels / c.groups;
    std::vector<double> ref(x.size());
    for (i64 g = 0; g < c.groups; ++g) {
      double s = 0.0, ss = 0.0;
      for (i64 p = 0; p < c.pixels; ++p) {
        for (i64 i = g * per; i < (g + 1) * per; ++i) s += x[p * c.channels + i];
      }
      const double n = static_cast<double>(c.pixels * per), mean = s / n;
      for (i64 p = 0; p < c.pixels; ++p) {
        for (i64 i = g * per; i < (g + 1) * per; ++i) {
          const double d = x[p * c.channels + i] - mean;
          ss += d * d;
        }
      }
      const double rstd = 1.0 / std::sqrt(ss / n + 1e-6);
      for (i64 p = 0; p < c.pixels; ++p) {
        for (i64 i = g * per; i < (g + 1) * per; ++i) {
          const auto at = static_cast<std::size_t>(p * c.channels + i);
          ref[at] = (x[at] - mean) * rstd * gamma[i] + beta[i];
        }
      }
    }
    for (const Activation act : {Activation::kNone, Activation::kSilu, Activation::kRelu}) {
      std::vector<float> y(x.size());
      be_->group_norm(x.data(), y.data(), c.pixels, c.channels, c.groups, gamma.data(), beta.data(),
                      1e-6f, act);
      for (std::size_t i = 0; i < y.size(); ++i) {
        const double r = ref[i];
        const double want = act == Activation::kSilu   ? r / (1.0 + std::exp(-r))
                            : act == Activation::kRelu ? std::max(0.0, r)
                                                       : r;
        ASSERT_NEAR(y[i], want, 1e-4 * (1.0 + std::abs(want)))
            << to_string(act) << " pixels " << c.pixels << " i=" << i;
      }
    }
    // In place.
    std::vector<float> y = x;
    be_->group_norm(y.data(), y.data(), c.pixels, c.channels, c.groups, gamma.data(), beta.data(),
                    1e-6f);
    for (std::size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + std::abs(ref[i])));
  }
  std::vector<float> x(12);
  EXPECT_THROW(be_->group_norm(x.data(), x.data(), 1, 12, 5, x.data(), x.data(), 1e-6f), Error);
  EXPECT_THROW(be_->group_norm(x.data(), x.data(), 1, 12, 4, x.data(), x.data(), 1e-6f,
                               Activation::kGeluErf),
               Error);
}

TEST_P(ImageKernels, UpsampleNearestAndRelu) {
  const i64 h = 3, w = 5, c = 7;
  const auto x = random_vector(static_cast<std::size_t>(h * w * c), 10);
  std::vector<float> y(static_cast<std::size_t>(4 * h * w * c), NAN);
  be_->upsample_nearest2x(x.data(), h, w, c, y.data());
  for (i64 yy = 0; yy < 2 * h; ++yy) {
    for (i64 xx = 0; xx < 2 * w; ++xx) {
      for (i64 i = 0; i < c; ++i) {
        ASSERT_EQ(y[(yy * 2 * w + xx) * c + i], x[((yy / 2) * w + xx / 2) * c + i]);
      }
    }
  }
  const auto a = random_vector(40000, 11);
  std::vector<float> r(a.size());
  be_->activation(Activation::kRelu, a.data(), r.data(), static_cast<i64>(a.size()));
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(r[i], std::max(0.0f, a[i]));
}

INSTANTIATE_TEST_SUITE_P(AllLevels, ImageKernels, ::testing::ValuesIn(cases()),
                         [](const auto& info) {
                           return std::string(to_string(info.param.level)) + "_" +
                                  std::to_string(info.param.threads) + "threads";
                         });

}  // namespace
}  // namespace hearth::kernels
