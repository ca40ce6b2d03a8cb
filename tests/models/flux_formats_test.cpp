// FLUX transformers in float8 safetensors (e4m3fn / e5m2, plain and ComfyUI's "scaled fp8") and
// in mflux's saved 4- and 8-bit MLX folders, made by hearth-make-model, against the torch
// reference decoding the same files with its own code (a table of the 256 float8 values written
// from the formats' definitions; MLX's bit packing from MLX's description), against the bf16
// weights the files were made from, quantized at load, and malformed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "hearth/models/t5_encoder.hpp"
#include "support/fixtures.hpp"
#include "support/flux.hpp"
#include "support/levels.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::Call;
using testing::make_calls;

// FLUX.1's head shape (128-wide heads: single files and mflux need them), dev, one block of each
// kind. The text widths are 64 so that mflux's group size of 64 divides every input width.
std::string shape_args(unsigned seed = 5) {
  return "--arch flux-transformer --seed " + std::to_string(seed) +
         " --head-dim 128 --guidance-embeds --layers 1 --single-layers 1 --heads 1 --joint-dim 64 "
         "--pooled-dim 64";
}

double rms(const std::vector<double>& v) {
  double s = 0.0;
  for (const double x : v) s += x * x;
  return std::sqrt(s / static_cast<double>(v.size()));
}

double rms_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0.0, r = 0.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    s += (a[i] - b[i]) * (a[i] - b[i]);
    r += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(s / r);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::abs(a[i] - b[i]));
  }
  return m;
}

FluxTransformerOptions two_threads(SimdLevel level = simd_level()) {
  FluxTransformerOptions o;
  o.threads = 2;
  o.level = level;
  return o;
}

void expect_error(const std::function<void()>& f, ErrorCode code, const std::string& file,
                  const std::string& key) {
  try {
    f();
    ADD_FAILURE() << "accepted (expected an error naming " << file << " / " << key << ")";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    EXPECT_NE(e.where().key.find(key), std::string::npos) << e.what();
  }
}

// ---- float8 ----

struct F8Case {
  const char* dtype;
  const char* format;  // "safetensors" (BFL single file) or "hf" (diffusers folder)
  bool scaled;
};

class FluxFloat8 : public ::testing::TestWithParam<F8Case> {};

// Both sides read the same float8 codes exactly (hearth in the f8 kernels at every level this
// machine has, the reference through its table) and compute in f32 / float64: f32 rounding only,
// the transformer tests' tolerance.
TEST_P(FluxFloat8, MatchesTorchDecodingTheSameFile) {
  HEARTH_REQUIRE_TORCH();
  const F8Case p = GetParam();
  testing::TempDir tmp;
  const fs::path file =
      tmp / (std::string(p.format) == "hf" ? "transformer" : "flux1-dev-fp8.safetensors");
  testing::make_model(shape_args() + " --format " + p.format + " --dtype " + p.dtype +
                      (p.scaled ? " --f8-scaled" : "") + " --out " + testing::quote(file));
  ASSERT_FALSE(HasFatalFailure());
  const auto calls = make_calls(FluxTransformer::load(file, two_threads())->config());
  const auto ref = testing::reference_velocities(file, calls, tmp);
  ASSERT_EQ(ref.size(), calls.size());
  for (const SimdLevel level : testing::simd_levels()) {
    const auto m = FluxTransformer::load(file, two_threads(level));
    for (std::size_t i = 0; i < calls.size(); ++i) {
      const auto v = m->forward(calls[i].input());
      const double diff = max_abs_diff(v, ref[i]);
      std::printf("%s %s%s %s call %zu: max |hearth - torch| %.2e (RMS %.2f)\n", p.dtype, p.format,
                  p.scaled ? " scaled" : "", to_string(level), i, diff, rms(ref[i]));
      EXPECT_LT(diff, testing::kTolerance) << to_string(level) << " call " << i;
      EXPECT_GT(rms(ref[i]), 0.1) << "a degenerate output cannot test anything";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Files, FluxFloat8,
                         ::testing::Values(F8Case{"f8_e4m3", "safetensors", false},
                                           F8Case{"f8_e4m3", "safetensors", true},
                                           F8Case{"f8_e4m3", "hf", false},
                                           F8Case{"f8_e4m3", "hf", true},
                                           F8Case{"f8_e5m2", "safetensors", false}),
                         [](const auto& info) {
                           return std::string(info.param.dtype) + "_" + info.param.format +
                                  (info.param.scaled ? "_scaled" : "");
                         });

// The float8 file against the bf16 file it was made from (the same seed; hearth-make-model
// rounds the bf16 values to e4m3fn, nearest even). e4m3fn keeps 3 mantissa bits: each weight
// moves by at most 1/16 of itself (1/32 of a binade on average), about 1.8% RMS relative; one
// layer's outputs move by about that, and the chain of about 9 layers adds (as independent
// errors) to about 5.4% of the output RMS. Bound: twice that, 0.11. The scaled file (each matrix
// spread over e4m3fn's whole range first) only moves the subnormals, so it is no worse. A float8
// file decoded wrongly is off by about 100% of the RMS.
TEST(FluxFloat8Error, CloseToTheBf16FileItWasMadeFrom) {
  testing::TempDir tmp;
  testing::make_model(shape_args() + " --format safetensors --dtype bf16 --out " +
                      testing::quote(tmp / "bf16.safetensors"));
  testing::make_model(shape_args() + " --format safetensors --dtype f8_e4m3 --out " +
                      testing::quote(tmp / "f8.safetensors"));
  testing::make_model(shape_args() + " --format safetensors --dtype f8_e4m3 --f8-scaled --out " +
                      testing::quote(tmp / "f8s.safetensors"));
  ASSERT_FALSE(HasFatalFailure());
  const auto bf16 = FluxTransformer::load(tmp / "bf16.safetensors", two_threads());
  const auto f8 = FluxTransformer::load(tmp / "f8.safetensors", two_threads());
  const auto f8s = FluxTransformer::load(tmp / "f8s.safetensors", two_threads());
  EXPECT_EQ(f8->parameters(), bf16->parameters());
  for (const Call& call : make_calls(bf16->config())) {
    const auto want = bf16->forward(call.input());
    const double plain = rms_diff(f8->forward(call.input()), want);
    const double scaled = rms_diff(f8s->forward(call.input()), want);
    std::printf("float8 vs bf16: RMS difference / RMS %.4f (scaled %.4f; bound 0.11)\n", plain,
                scaled);
    EXPECT_LT(plain, 0.11);
    EXPECT_LT(scaled, 0.11);
    EXPECT_GT(plain, 1e-3) << "identical outputs: were the weights rounded to float8?";
  }
}

// --quantize 8 and 4 from a float8 base (scaled and not): hearth quantizes the decoded (and
// scaled) weights to q8_0 / q4_0; the reference quantizes its own decoding with its numpy
// quantizer (--quantize) and rounds the products' inputs as hearth does (--q8-activations):
// f32 sums and rare rounding ties are left. Most calls agree to 1e-5 of the output RMS; an
// activation that f32 and float64 round to different sides of a half step moves one input by
// max|x| / 127 of its block, and one such flip reached 0.013 of the RMS in the largest output
// here (q4_0 from the scaled file): bound 0.02. The
// error q8_0 adds to the exact float8 weights is printed (the choice of reading float8 in place
// rather than converting it to q8_0 at load rests on it: docs/flux.md).
TEST(FluxFloat8Error, QuantizedAtLoadFromAFloat8Base) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  for (const bool scaled : {false, true}) {
    const fs::path file = tmp / (scaled ? "f8s.safetensors" : "f8.safetensors");
    testing::make_model(shape_args() + " --format safetensors --dtype f8_e4m3" +
                        (scaled ? " --f8-scaled" : "") + " --out " + testing::quote(file));
    ASSERT_FALSE(HasFatalFailure());
    FluxTransformerOptions o = two_threads();
    const auto exact = FluxTransformer::load(file, o);
    const auto calls = make_calls(exact->config());
    for (const int bits : {8, 4}) {
      o.quantize_bits = bits;
      const auto m = FluxTransformer::load(file, o);
      const std::string type = bits == 4 ? "q4_0" : "q8_0";
      std::vector<std::vector<double>> emulated;
      const auto ref = testing::reference_velocities(
          file, calls, tmp, " --quantize " + type + " --q8-activations", &emulated);
      ASSERT_EQ(emulated.size(), calls.size());
      for (std::size_t i = 0; i < calls.size(); ++i) {
        const auto v = m->forward(calls[i].input());
        const double tight = max_abs_diff(v, emulated[i]) / rms(emulated[i]);
        const double added = rms_diff(v, exact->forward(calls[i].input()));
        std::printf(
            "float8%s -> %s call %zu: max |hearth - torch| / RMS %.5f (bound 0.02); RMS change "
            "against the exact float8 weights %.4f\n",
            scaled ? " scaled" : "", type.c_str(), i, tight, added);
        EXPECT_LT(tight, 0.02) << type << " call " << i;
      }
    }
  }
}

TEST(FluxFloat8Error, MalformedScalesAreErrorsNamingFileAndTensor) {
  testing::TempDir tmp;
  const fs::path good = tmp / "f8s.safetensors";
  testing::make_model(shape_args() + " --format safetensors --dtype f8_e4m3 --f8-scaled --out " +
                      testing::quote(good));
  ASSERT_FALSE(HasFatalFailure());
  const auto src = formats::SafetensorsFile::open(good);
  const std::string target = "double_blocks.0.img_attn.qkv.scale_weight";
  const std::vector<float> three = {1.0f, 2.0f, 3.0f}, nan = {std::nanf("")};
  const std::vector<std::int32_t> one_int = {1};
  struct Bad {
    const char* name;
    DType dtype;
    Shape shape;
    std::span<const std::byte> bytes;
  };
  const std::vector<Bad> bad = {
      {"three.safetensors", DType::kF32, {3}, std::as_bytes(std::span(three))},
      {"int.safetensors", DType::kI32, {1}, std::as_bytes(std::span(one_int))},
      {"nan.safetensors", DType::kF32, {1}, std::as_bytes(std::span(nan))}};
  for (const Bad& b : bad) {
    formats::SafetensorsWriter w;
    for (const auto& t : src.tensors()) {
      if (t.name == target) {
        w.add_tensor(t.name, b.dtype, b.shape, b.bytes);
      } else {
        const TensorView v = src.view(t);
        w.add_tensor(t.name, t.dtype, t.shape,
                     std::span(static_cast<const std::byte*>(v.data), t.nbytes));
      }
    }
    w.write(tmp / b.name);
    expect_error([&] { FluxTransformer::load(tmp / b.name, two_threads()); }, ErrorCode::kFormat,
                 b.name, target);
  }
  // A float8 matrix whose byte count does not fit its shape is refused by the safetensors reader.
  {
    formats::SafetensorsWriter w;
    const std::vector<std::byte> bytes(10);
    w.add_tensor("x", DType::kF8E4M3, {10}, bytes);
    auto file = w.serialize();
    const std::string h(reinterpret_cast<const char*>(file.data()) + 8, file.size() - 8);
    const std::size_t at = h.find("[10]");
    ASSERT_NE(at, std::string::npos);
    file[8 + at + 1] = static_cast<std::byte>('9');  // shape [90]: 90 bytes needed
    EXPECT_THROW(formats::SafetensorsFile::parse(file, "short.safetensors"), Error);
  }
  // A scaled float8 T5 (its scales would be ignored by the text encoders): refused.
  testing::make_model("--arch t5-encoder --format safetensors --out " +
                      testing::quote(tmp / "t5.safetensors"));
  ASSERT_FALSE(HasFatalFailure());
  {
    const auto t5 = formats::SafetensorsFile::open(tmp / "t5.safetensors");
    formats::SafetensorsWriter w;
    std::vector<std::vector<std::byte>> keep;
    const std::vector<float> one = {1.0f};
    const std::string q = "encoder.block.0.layer.0.SelfAttention.q";
    for (const auto& t : t5.tensors()) {
      const TensorView v = t5.view(t);
      if (t.name == q + ".weight") {  // any codes will do
        auto& b = keep.emplace_back(static_cast<std::size_t>(numel(t.shape)), std::byte{0x38});
        w.add_tensor(t.name, DType::kF8E4M3, t.shape, b);
        w.add_tensor(q + ".scale_weight", DType::kF32, {1}, std::as_bytes(std::span(one)));
      } else {
        w.add_tensor(t.name, t.dtype, t.shape,
                     std::span(static_cast<const std::byte*>(v.data), t.nbytes));
      }
    }
    w.write(tmp / "t5xxl_fp8_scaled.safetensors");
    TextEncoderOptions o;
    o.threads = 1;
    expect_error([&] { T5Encoder::load(tmp / "t5xxl_fp8_scaled.safetensors", o); },
                 ErrorCode::kUnsupported, "t5xxl_fp8_scaled.safetensors", q + ".weight");
  }
}

// ---- mflux ----

// The scalar level reads MLX affine codes in the f32 kernel, without rounding activations:
// f32-versus-float64 differences only, 1e-3 of the output RMS (1e-5 was measured). The AVX2 and
// AVX-512 levels' int8 kernels (kernels/quant_mlx.hpp; tested against their exact rounding bound
// in kernels/quant_mlx_test.cpp) round each activation block of 32 to 8 bits, with the error
// landing on the scale * code part of each weight, whose magnitude reaches the group's range
// (about 4.8 standard deviations for 64 normal weights; RMS about 2.8 times the weights'): about
// 2.8 times the 5% that the GGUF tests estimate for block-quantized weights (flux_weights_test),
// 14% of the output RMS in the largest output. Bound: twice that, 0.3 (0.10 to 0.13 measured).
class FluxMflux : public ::testing::TestWithParam<int> {};

TEST_P(FluxMflux, MatchesTorchDequantizingTheSameFolder) {
  HEARTH_REQUIRE_TORCH();
  const int bits = GetParam();
  testing::TempDir tmp;
  const fs::path dir = tmp / "transformer";
  testing::make_model(shape_args() + " --format mflux --dtype bf16 --mlx-bits " +
                      std::to_string(bits) + " --out " + testing::quote(dir));
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_TRUE(is_mflux_folder(dir));
  const auto probe = FluxTransformer::load(dir, two_threads());
  const FluxTransformerConfig& c = probe->config();
  EXPECT_EQ(c.inner(), 128);
  EXPECT_EQ(c.joint_dim, 64);
  EXPECT_EQ(c.pooled_dim, 64);
  EXPECT_TRUE(c.guidance_embeds);
  EXPECT_EQ(c.layers, 1);
  EXPECT_EQ(c.single_layers, 1);
  const auto calls = make_calls(c);
  const auto ref = testing::reference_velocities(dir, calls, tmp);
  ASSERT_EQ(ref.size(), calls.size());
  for (const SimdLevel level : testing::simd_levels()) {
    const auto m = FluxTransformer::load(dir, two_threads(level));
    const double bound = level == SimdLevel::kScalar ? 1e-3 : 0.3;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      const auto v = m->forward(calls[i].input());
      const double d = max_abs_diff(v, ref[i]) / rms(ref[i]);
      std::printf("mflux %d-bit %s call %zu: max |hearth - torch| / RMS %.5f (bound %.3f)\n", bits,
                  to_string(level), i, d, bound);
      EXPECT_LT(d, bound) << to_string(level) << " call " << i;
      EXPECT_GT(rms(ref[i]), 0.1);
    }
  }
}

// Against the same bf16 weights unquantized (the folder made by the same seed in diffusers'
// layout). MLX affine rounding moves each weight by at most half a step, s / 2, s = (max - min)
// / (2^bits - 1) of its group of 64; for normal weights the range of 64 is about 4.8 standard
// deviations, so the RMS error is 4.8 sigma / (2^bits - 1) / sqrt(12): 9.2% of a weight's RMS at
// 4 bits, 0.55% at 8. Through about 9 layers that adds to 3 times that of the output RMS: 0.28
// at 4 bits, 0.017 at 8. On the vector levels the int8 activation rounding adds about 0.04 of
// the output RMS (the comparison with torch above: 0.10 to 0.13 in the largest output). Bounds:
// 0.4 and 0.08. 4 bits must be visibly further off than 8.
TEST(FluxMfluxError, CloseToTheUnquantizedWeights) {
  testing::TempDir tmp;
  testing::make_model(shape_args() + " --dtype bf16 --out " + testing::quote(tmp / "bf16"));
  for (const int bits : {4, 8}) {
    testing::make_model(shape_args() + " --format mflux --dtype bf16 --mlx-bits " +
                        std::to_string(bits) + " --out " +
                        testing::quote(tmp / ("mflux" + std::to_string(bits))));
  }
  ASSERT_FALSE(HasFatalFailure());
  const auto plain = FluxTransformer::load(tmp / "bf16", two_threads());
  std::vector<double> worst = {0.0, 0.0};
  for (const int bits : {4, 8}) {
    const auto m = FluxTransformer::load(tmp / ("mflux" + std::to_string(bits)), two_threads());
    EXPECT_EQ(m->parameters(), plain->parameters());
    for (const Call& call : make_calls(plain->config())) {
      const double d = rms_diff(m->forward(call.input()), plain->forward(call.input()));
      std::printf("mflux %d-bit vs bf16: RMS difference / RMS %.4f (bound %.2f)\n", bits, d,
                  bits == 4 ? 0.4 : 0.08);
      EXPECT_LT(d, bits == 4 ? 0.4 : 0.08);
      worst[bits == 4 ? 0 : 1] = std::max(worst[bits == 4 ? 0 : 1], d);
    }
  }
  EXPECT_GT(worst[0], 3.0 * worst[1]) << "4 bits no worse than 8: were the weights quantized?";
}

// Bad folders: a missing scales or biases tensor, scales of the wrong group count (a group size
// other than mflux's 64), scales of an integer type, a quantization_level MLX does not have, a
// packed width that fits no layer: each an Error naming the file and tensor.
TEST(FluxMfluxError, MalformedFoldersAreErrorsNamingFileAndTensor) {
  testing::TempDir tmp;
  const fs::path good = tmp / "good";
  testing::make_model(shape_args() + " --format mflux --dtype bf16 --mlx-bits 4 --out " +
                      testing::quote(good));
  ASSERT_FALSE(HasFatalFailure());
  const auto src = formats::SafetensorsFile::open(good / "0.safetensors");
  const std::string base = "transformer_blocks.0.ff.linear1";
  const std::vector<float> zeros(512 * 32, 0.0f);  // the largest replacement
  const auto zero_bytes = std::as_bytes(std::span(zeros));
  struct Bad {
    std::string name;
    std::string drop;     // a tensor left out
    std::string replace;  // a tensor given another dtype / shape
    DType dtype = DType::kF32;
    Shape shape;
    std::string level = "4";
    ErrorCode code = ErrorCode::kFormat;
    std::string key;
  };
  const std::vector<Bad> bad = {
      {"no_scales", base + ".scales", "", DType::kF32, {}, "4", ErrorCode::kFormat, base},
      {"no_biases", base + ".biases", "", DType::kF32, {}, "4", ErrorCode::kFormat, base},
      {"group_128", "", base + ".scales", DType::kBF16, {512, 1}, "4", ErrorCode::kFormat, base},
      {"int_scales", "", base + ".scales", DType::kI32, {512, 2}, "4", ErrorCode::kFormat, base},
      {"level_7", "", "", DType::kF32, {}, "7", ErrorCode::kUnsupported, "quantization_level"},
      {"wide", "", base + ".weight", DType::kU32, {512, 32}, "4", ErrorCode::kFormat, base}};
  for (const Bad& b : bad) {
    const fs::path dir = tmp / b.name;
    fs::create_directories(dir);
    formats::SafetensorsWriter w;
    w.set_metadata("quantization_level", b.level);
    w.set_metadata("mflux_version", "0.9.0");
    for (const auto& t : src.tensors()) {
      if (t.name == b.drop) continue;
      if (t.name == b.replace) {
        const std::size_t n =
            static_cast<std::size_t>(numel(b.shape)) * (b.dtype == DType::kBF16 ? 2 : 4);
        w.add_tensor(t.name, b.dtype, b.shape, zero_bytes.first(n));
        continue;
      }
      const TensorView v = src.view(t);
      w.add_tensor(t.name, t.dtype, t.shape,
                   std::span(static_cast<const std::byte*>(v.data), t.nbytes));
    }
    w.write(dir / "0.safetensors");
    SCOPED_TRACE(b.name);
    expect_error([&] { FluxTransformer::load(dir, two_threads()); }, b.code, b.name, b.key);
  }
}

INSTANTIATE_TEST_SUITE_P(Bits, FluxMflux, ::testing::Values(4, 8),
                         [](const auto& info) { return std::to_string(info.param) + "bit"; });

}  // namespace
}  // namespace hearth::models
