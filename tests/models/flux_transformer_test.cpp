// FLUX.1's transformer and sampler schedule against the independent torch reference
// (tools/flux_reference.py on Debian's python3-torch, float64): tiny random
// FluxTransformer2DModel folders made by hearth-make-model (diffusers layout, sharded with the
// index), with and without the guidance embedding; schnell's and dev's sigmas; malformed
// configs and missing tensors. Skips the reference comparisons, saying why, without torch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/models/flux_sampler.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "support/fixtures.hpp"
#include "support/flux.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::Call;
using testing::expect_matches_torch;
using testing::kTolerance;
using testing::make_calls;
using testing::normal;
using testing::run_reference;
using testing::write_text;

// Sigmas are computed in double on both sides.
constexpr double kSigmaTolerance = 1e-12;

class FluxTransformerReference : public ::testing::TestWithParam<bool> {};

TEST_P(FluxTransformerReference, OneCallMatchesTorch) {
  HEARTH_REQUIRE_TORCH();
  const bool guidance = GetParam();
  testing::TempDir tmp;
  testing::make_model(std::string("--arch flux-transformer --seed 7 --out ") +
                      testing::quote(tmp / "transformer") + (guidance ? " --guidance-embeds" : ""));
  ASSERT_FALSE(HasFatalFailure());
  TextEncoderOptions o;
  o.threads = 2;
  const auto m = FluxTransformer::load(tmp / "transformer", o);
  const FluxTransformerConfig& c = m->config();
  EXPECT_EQ(c.inner(), 32);
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.single_layers, 2);
  EXPECT_EQ(c.guidance_embeds, guidance);
  EXPECT_EQ(c.axes_dims[0], 4);

  const auto calls = make_calls(c);
  const auto outs = expect_matches_torch(*m, tmp / "transformer", calls, tmp);
  ASSERT_EQ(outs.size(), calls.size());
  // The guidance value is required exactly when the model embeds it.
  Call wrong = calls[0];
  wrong.guidance = guidance ? std::nullopt : std::optional<float>(3.5f);
  EXPECT_THROW(m->forward(wrong.input()), Error);
}

INSTANTIATE_TEST_SUITE_P(Guidance, FluxTransformerReference, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "dev" : "schnell"; });

// FLUX.1's head width and rotary axes (16, 56, 56), and the same weights in Black Forest Labs'
// single-file layout (fused qkv / linear1, swapped final modulation).
TEST(FluxTransformerLayouts, BflSingleFileEqualsDiffusersFolder) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  const std::string shape =
      "--arch flux-transformer --seed 11 --heads 1 --head-dim 128 "
      "--guidance-embeds --layers 1 --single-layers 1 --out ";
  testing::make_model(shape + testing::quote(tmp / "transformer"));
  testing::make_model(shape + testing::quote(tmp / "flux1-dev.safetensors") +
                      " --format safetensors");
  ASSERT_FALSE(HasFatalFailure());
  TextEncoderOptions o;
  o.threads = 2;
  const auto folder = FluxTransformer::load(tmp / "transformer", o);
  const auto single = FluxTransformer::load(tmp / "flux1-dev.safetensors", o);
  EXPECT_EQ(single->config().heads, 1);
  EXPECT_EQ(single->config().head_dim, 128);
  EXPECT_EQ(single->config().layers, 1);
  EXPECT_EQ(single->config().single_layers, 1);
  EXPECT_TRUE(single->config().guidance_embeds);
  EXPECT_EQ(single->config().axes_dims[1], 56);
  EXPECT_EQ(single->parameters(), folder->parameters());
  const auto calls = make_calls(folder->config());
  const auto outs = expect_matches_torch(*folder, tmp / "transformer", calls, tmp);
  ASSERT_EQ(outs.size(), calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(single->forward(calls[i].input()), outs[i]) << "call " << i;
  }
}

TEST(FluxTransformerLayouts, SingleFileErrorsNameTheFile) {
  testing::TempDir tmp;
  // 16-wide heads: a single file cannot say its rotary axes.
  testing::make_model("--arch flux-transformer --format safetensors --out " +
                      testing::quote(tmp / "small.safetensors"));
  testing::make_model("--arch t5-encoder --format safetensors --out " +
                      testing::quote(tmp / "t5.safetensors"));
  ASSERT_FALSE(HasFatalFailure());
  for (const auto& [file, code] : {std::pair{"small.safetensors", ErrorCode::kUnsupported},
                                   std::pair{"t5.safetensors", ErrorCode::kNotFound}}) {
    try {
      FluxTransformer::load(tmp / file);
      ADD_FAILURE() << "accepted " << file;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(e.where().file.find(file), std::string::npos) << e.what();
    }
  }
}

TEST(FluxSampler, SchnellSigmasAreLinearWithoutShift) {
  const auto s = flux_sigmas(FluxSchedule::schnell(), 4, 1024);
  const std::vector<double> want = {1.0, 0.75, 0.5, 0.25, 0.0};
  ASSERT_EQ(s.size(), want.size());
  for (std::size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(s[i], want[i], 1e-15) << i;
  EXPECT_EQ(flux_sigmas(FluxSchedule::schnell(), 1, 256), (std::vector<double>{1.0, 0.0}));
  EXPECT_THROW(flux_sigmas(FluxSchedule::schnell(), 0, 256), Error);
}

TEST(FluxSampler, DevShiftDependsOnResolution) {
  const FluxSchedule dev = FluxSchedule::dev();
  EXPECT_NEAR(flux_mu(dev, 256), 0.5, 1e-12);
  EXPECT_NEAR(flux_mu(dev, 4096), 1.15, 1e-12);
  // 1024x1024: 4096 tokens; sigma 0.5 maps to e^mu / (e^mu + 1).
  const auto s = flux_sigmas(dev, 2, 4096);
  EXPECT_NEAR(s[0], 1.0, 1e-15);
  EXPECT_NEAR(s[1], std::exp(1.15) / (std::exp(1.15) + 1.0), 1e-12);
  EXPECT_EQ(s[2], 0.0);
  // A bigger image is shifted further towards noise.
  EXPECT_GT(flux_sigmas(dev, 28, 4096)[14], flux_sigmas(dev, 28, 1024)[14]);
}

TEST(FluxSampler, SigmasMatchTorch) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  struct Case {
    FluxSchedule s;
    int steps;
    std::int64_t tokens;
  };
  FluxSchedule shifted;  // a static shift, as SD3-style configs use
  shifted.shift = 3.0;
  const std::vector<Case> cases = {{FluxSchedule::schnell(), 4, 1024},
                                   {FluxSchedule::dev(), 28, 1024},
                                   {FluxSchedule::dev(), 50, 4096},
                                   {FluxSchedule::dev(), 20, 64},
                                   {shifted, 10, 1024}};
  nlohmann::json in = {{"cases", nlohmann::json::array()}};
  for (const Case& k : cases) {
    in["cases"].push_back({{"steps", k.steps},
                           {"tokens", k.tokens},
                           {"dynamic", k.s.dynamic_shift},
                           {"shift", k.s.shift},
                           {"base_shift", k.s.base_shift},
                           {"max_shift", k.s.max_shift},
                           {"base_seq", k.s.base_seq_len},
                           {"max_seq", k.s.max_seq_len}});
  }
  write_text(tmp / "s.json", in.dump());
  const auto ref = run_reference("--sigmas " + testing::quote(tmp / "s.json"), tmp);
  ASSERT_FALSE(ref.is_null());
  for (std::size_t c = 0; c < cases.size(); ++c) {
    const Case& k = cases[c];
    const auto want = ref["sigmas"][c].get<std::vector<double>>();
    const auto got = flux_sigmas(k.s, k.steps, k.tokens);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], kSigmaTolerance) << k.steps << " steps, sigma " << i;
    }
  }
}

TEST(FluxSampler, SchedulerConfigAndEulerStep) {
  testing::TempDir tmp;
  // FLUX.1-dev's scheduler/scheduler_config.json.
  write_text(tmp / "scheduler_config.json",
             R"({"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0",
                 "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096,
                 "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
                 "use_dynamic_shifting": true})");
  const FluxSchedule s = FluxSchedule::load(tmp / "scheduler_config.json");
  EXPECT_TRUE(s.dynamic_shift);
  EXPECT_EQ(flux_sigmas(s, 28, 1024), flux_sigmas(FluxSchedule::dev(), 28, 1024));
  for (const std::string bad :
       {R"({"_class_name": "EulerDiscreteScheduler"})", R"({"use_dynamic_shifting": 1})",
        R"({"shift_terminal": 0.1})", R"({"base_shift": "x"})", "{"}) {
    write_text(tmp / "bad.json", bad);
    try {
      FluxSchedule::load(tmp / "bad.json");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(e.where().file.find("bad.json"), std::string::npos) << e.what();
    }
  }
  std::vector<float> x = {1.0f, -2.0f};
  const std::vector<float> v = {4.0f, 8.0f};
  flux_euler_step(x, v, 0.75, 0.5);
  EXPECT_FLOAT_EQ(x[0], 0.0f);
  EXPECT_FLOAT_EQ(x[1], -4.0f);
  EXPECT_THROW(flux_euler_step(x, std::vector<float>{1.0f}, 1.0, 0.5), Error);
}

TEST(FluxSampler, ImageIdsAreRowAndColumnOfThePackedLatent) {
  const auto ids = flux_image_ids(4, 6);  // 2 x 3 tokens
  const std::vector<std::int64_t> want = {0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(flux_text_ids(2), (std::vector<std::int64_t>(6, 0)));
  EXPECT_THROW(flux_image_ids(3, 4), Error);
}

TEST(FluxTransformer, MalformedFoldersAreErrorsNamingFileAndTensor) {
  testing::TempDir tmp;
  const fs::path dir = tmp / "transformer";
  testing::make_model("--arch flux-transformer --out " + testing::quote(dir));
  ASSERT_FALSE(HasFatalFailure());
  const auto original = nlohmann::json::parse(formats::read_text_file(dir / "config.json"));
  const auto expect_error = [&](nlohmann::json cfg, ErrorCode code, const std::string& file,
                                const std::string& key) {
    write_text(dir / "config.json", cfg.dump());
    try {
      FluxTransformer::load(dir);
      ADD_FAILURE() << "accepted " << cfg.dump();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(e.where().file.find(file), std::string::npos) << e.what();
      EXPECT_NE(e.where().key.find(key), std::string::npos) << e.what();
    }
  };
  auto cfg = original;
  cfg["_class_name"] = "UNet2DConditionModel";
  expect_error(cfg, ErrorCode::kUnsupported, "config.json", "_class_name");
  cfg = original;
  cfg["axes_dims_rope"] = {4, 6, 8};
  expect_error(cfg, ErrorCode::kFormat, "config.json", "");
  cfg = original;
  cfg["num_attention_heads"] = "two";
  expect_error(cfg, ErrorCode::kFormat, "config.json", "num_attention_heads");
  // The config asks for a block the weights lack.
  cfg = original;
  cfg["num_single_layers"] = 3;
  expect_error(cfg, ErrorCode::kNotFound, "transformer", "single_transformer_blocks.2.norm.linear");
  // A T5 width the weights disagree with.
  cfg = original;
  cfg["joint_attention_dim"] = 48;
  expect_error(cfg, ErrorCode::kFormat, "transformer", "context_embedder.weight");
  // dev's guidance embedder asked of schnell weights.
  cfg = original;
  cfg["guidance_embeds"] = true;
  expect_error(cfg, ErrorCode::kNotFound, "transformer", "guidance_embedder");
  write_text(dir / "config.json", original.dump());
  const auto m = FluxTransformer::load(dir);
  EXPECT_GT(m->parameters(), 0);
  // A shard the index names is missing.
  fs::remove(dir / "diffusion_pytorch_model-00002-of-00002.safetensors");
  try {
    FluxTransformer::load(dir);
    ADD_FAILURE() << "a missing shard was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.where().file.find("00002-of-00002"), std::string::npos) << e.what();
  }
  EXPECT_THROW(FluxTransformer::load(tmp / "missing"), Error);
  // Inputs of the wrong shape.
  Call call;
  call.image = normal(64 + 1, 1);
  call.img_ids = flux_image_ids(2, 2);
  call.context = normal(32, 2);
  call.txt_ids = flux_text_ids(1);
  call.pooled = normal(32, 3);
  EXPECT_THROW(m->forward(call.input()), Error);
  call.image.pop_back();
  call.pooled.pop_back();
  EXPECT_THROW(m->forward(call.input()), Error);
  call.pooled.push_back(0.0f);
  EXPECT_EQ(m->forward(call.input()).size(), 64u);
}

}  // namespace
}  // namespace hearth::models
