// FLUX transformer weights beyond f32/f16/bf16: GGUF files of general.architecture "flux" (as
// city96's FLUX GGUFs are written: Black Forest Labs' names, block-quantized matrices, the
// embedders and final layer f32) made by hearth-make-model, against the torch reference reading
// the same GGUF and dequantizing it with its own numpy code (tools/llm_reference.GGUFReader);
// quantization at load (FluxTransformerOptions::quantize_bits); and malformed files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "support/fixtures.hpp"
#include "support/flux.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::Call;
using testing::make_calls;

// FLUX.1's head shape (128-wide heads, as a single file needs): 1 head (inner 128) for the
// 32-element block types, 2 heads (inner 256) for the 256-element K-quants; dev, one block of
// each kind.
std::string shape_args(int heads) {
  return "--arch flux-transformer --seed 5 --head-dim 128 --guidance-embeds --layers 1 "
         "--single-layers 1 --heads " +
         std::to_string(heads);
}

double rms(const std::vector<double>& v) {
  double s = 0.0;
  for (const double x : v) s += x * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::abs(a[i] - b[i]));
  }
  return m;
}

FluxTransformerOptions two_threads() {
  FluxTransformerOptions o;
  o.threads = 2;
  return o;
}

// An f32 GGUF is the single file's weights in another container: bit-identical outputs, and the
// torch reference reading the GGUF agrees to f32 rounding.
TEST(FluxGguf, F32GgufEqualsSingleFileAndTorch) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  testing::make_model(shape_args(1) + " --format gguf --out " + testing::quote(tmp / "f.gguf"));
  testing::make_model(shape_args(1) + " --format safetensors --out " +
                      testing::quote(tmp / "f.safetensors"));
  ASSERT_FALSE(HasFatalFailure());
  const auto gguf = FluxTransformer::load(tmp / "f.gguf", two_threads());
  const auto single = FluxTransformer::load(tmp / "f.safetensors", two_threads());
  EXPECT_EQ(gguf->config().heads, 1);
  EXPECT_TRUE(gguf->config().guidance_embeds);
  EXPECT_EQ(gguf->parameters(), single->parameters());
  const auto calls = make_calls(gguf->config());
  const auto outs = testing::expect_matches_torch(*gguf, tmp / "f.gguf", calls, tmp);
  ASSERT_EQ(outs.size(), calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(single->forward(calls[i].input()), outs[i]) << "call " << i;
  }
}

// Block-quantized GGUFs. The reference dequantizes the weights exactly and computes in float64
// with unrounded activations; hearth's quantized products round each activation block of 32 to
// 8 bits (error at most d / 2 per element, d = max|x| / 127 of the block: kernels/quant_ggml.hpp).
// Per layer that is a relative output error of about max|x| / (127 sqrt(12) rms(x)), 0.5% for
// rows whose block maximum is 2.5 times their RMS; the longest chain of quantized layers here
// (the modulations, q/k/v, the attention output, the MLP of the double block, linear1 and linear2
// of the single block; the embedders and final layer are f32) is about 9, so the errors add to
// about 1.5% of the output's RMS, and the largest of 384 outputs is about 3.3 times that: 5%. The
// bound is twice that estimate, 0.1 x RMS(reference). A block layout read wrongly gives errors
// of the order of the RMS itself.
constexpr double kActivationBound = 0.1;
// The reference rounding the inputs of the same products as hearth does (--q8-activations) is
// left with f32 sums and the rare rounding decision that f32 and float64 activations take on
// either side of a half step (one input moved by max|x| / 127 of its block): 0.01 x RMS.
constexpr double kEmulatedBound = 0.01;

// hearth's outputs for the calls against the reference (plain, and rounding activations as
// hearth does), each within its bound; returns the largest plain difference over RMS.
double expect_quantized_matches(FluxTransformer& m, const fs::path& file,
                                const std::vector<Call>& calls, const testing::TempDir& tmp,
                                const std::string& label, const std::string& extra = "") {
  std::vector<std::vector<double>> emulated;
  const auto ref =
      testing::reference_velocities(file, calls, tmp, extra + " --q8-activations", &emulated);
  EXPECT_EQ(ref.size(), calls.size());
  EXPECT_EQ(emulated.size(), calls.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < std::min(ref.size(), emulated.size()); ++i) {
    const auto v = m.forward(calls[i].input());
    const double r = rms(ref[i]);
    const double plain = max_abs_diff(v, ref[i]) / r;
    const double tight = max_abs_diff(v, emulated[i]) / rms(emulated[i]);
    std::printf(
        "%s call %zu: max |hearth - torch| / RMS %.4f (bound %.2f), with hearth's "
        "activation rounding %.5f (bound %.2f)\n",
        label.c_str(), i, plain, kActivationBound, tight, kEmulatedBound);
    EXPECT_LT(plain, kActivationBound) << label << " call " << i;
    EXPECT_LT(tight, kEmulatedBound) << label << " call " << i;
    EXPECT_GT(r, 0.1) << "a degenerate output cannot test anything";
    worst = std::max(worst, plain);
  }
  return worst;
}

struct QuantCase {
  const char* dtype;
  int heads;
};

class FluxGgufQuant : public ::testing::TestWithParam<QuantCase> {};

TEST_P(FluxGgufQuant, MatchesTorchDequantizingTheSameFile) {
  HEARTH_REQUIRE_TORCH();
  const QuantCase q = GetParam();
  testing::TempDir tmp;
  const fs::path file = tmp / (std::string("flux1-dev-") + q.dtype + ".gguf");
  testing::make_model(shape_args(q.heads) + " --format gguf --dtype " + q.dtype + " --out " +
                      testing::quote(file));
  ASSERT_FALSE(HasFatalFailure());
  const auto m = FluxTransformer::load(file, two_threads());
  expect_quantized_matches(*m, file, make_calls(m->config()), tmp, q.dtype);
}

INSTANTIATE_TEST_SUITE_P(Types, FluxGgufQuant,
                         ::testing::Values(QuantCase{"q4_0", 1}, QuantCase{"q5_0", 1},
                                           QuantCase{"q8_0", 1}, QuantCase{"q4_k", 2}),
                         [](const auto& info) { return std::string(info.param.dtype); });
});

// quantize_bits 4 / 8 on a bf16 single file: the matrices become q4_0 / q8_0 copies. The
// reference quantizes the same matrices with its own numpy q4_0 / q8_0 quantizer (ggml's
// reference rounding; flux_reference.py --quantize), so the bounds are those above. Against the
// unquantized weights q4_0 must be visibly further off than q8_0: the weights were quantized.
TEST(FluxQuantizeAtLoad, Bf16FileQuantizedToFourAndEightBits) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  const fs::path file = tmp / "flux1-dev.safetensors";
  testing::make_model(shape_args(1) + " --format safetensors --dtype bf16 --out " +
                      testing::quote(file));
  ASSERT_FALSE(HasFatalFailure());
  FluxTransformerOptions o = two_threads();
  const auto plain = FluxTransformer::load(file, o);
  const auto calls = make_calls(plain->config());
  const auto ref = testing::reference_velocities(file, calls, tmp);
  ASSERT_EQ(ref.size(), calls.size());
  std::vector<double> off;
  for (const int bits : {8, 4}) {
    o.quantize_bits = bits;
    const auto m = FluxTransformer::load(file, o);
    EXPECT_EQ(m->parameters(), plain->parameters());
    const std::string type = bits == 4 ? "q4_0" : "q8_0";
    expect_quantized_matches(*m, file, calls, tmp, "quantized at load to " + type,
                             " --quantize " + type);
    double worst = 0.0;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      worst = std::max(worst, max_abs_diff(m->forward(calls[i].input()), ref[i]) / rms(ref[i]));
    }
    std::printf("%s: max |hearth - unquantized torch| / RMS %.3f\n", type.c_str(), worst);
    off.push_back(worst);
  }
  EXPECT_GT(off[1], 2.0 * off[0]) << "q4_0 no worse than q8_0: were the weights quantized?";
  o.quantize_bits = 3;
  EXPECT_THROW(FluxTransformer::load(file, o), Error);
}

TEST(FluxGguf, MalformedFilesAreErrorsNamingTheFile) {
  testing::TempDir tmp;
  // A decoder GGUF given as the transformer.
  testing::make_model("--arch llama --out " + testing::quote(tmp / "llama.gguf"));
  testing::make_model(shape_args(1) + " --format gguf --dtype q4_0 --out " +
                      testing::quote(tmp / "flux.gguf"));
  ASSERT_FALSE(HasFatalFailure());
  try {
    FluxTransformer::load(tmp / "llama.gguf");
    ADD_FAILURE() << "a llama GGUF was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported) << e.what();
    EXPECT_NE(e.where().file.find("llama.gguf"), std::string::npos) << e.what();
    EXPECT_EQ(e.where().key, "general.architecture") << e.what();
  }
  // Cut short: the GGUF reader refuses it, naming the file.
  const auto bytes = testing::read_bytes(tmp / "flux.gguf");
  testing::write_bytes(tmp / "short.gguf",
                       std::vector<std::byte>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  try {
    FluxTransformer::load(tmp / "short.gguf");
    ADD_FAILURE() << "a truncated GGUF was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.where().file.find("short.gguf"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hearth::models
