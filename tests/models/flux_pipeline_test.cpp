// The FLUX.1 pipeline end to end on tiny random pipelines made by hearth-make-model --arch
// flux-pipeline (the diffusers folder and BFL's single files from the same weights): the final
// PNG against the independent torch reference (tools/flux_reference.py --pipeline, float64, the
// same .npy noise) within 1 of 255 per channel, text-to-image for schnell and dev and
// image-to-image; both layouts give the same image; seeded noise; the Hugging Face cache;
// stages, progress, Ctrl+C; errors naming the file; flux-cli itself. The tokenizers are FLUX.1's
// real ones when ../shared/fixtures has both folders (tokenizers/flux/tokenizer and
// tokenizer_2), else the maker's small stand-ins of the same kinds: nothing here depends on the
// exact vocabulary (the tokenizers are tested against their references elsewhere), so these
// tests do not skip without the fixture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/npy.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/image/png.hpp"
#include "hearth/models/flux_pipeline.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using testing::quote;

// Small requests (32 x 32, 16 T5 tokens) keep the tests fast under the sanitizers; the torch
// comparisons use 64 x 64 and the real default lengths.
FluxRequest small(const std::string& prompt = "a red fox in the snow") {
  FluxRequest r;
  r.prompt = prompt;
  r.width = 32;
  r.height = 32;
  r.steps = 2;
  r.seed = 11;
  r.t5_max_length = 16;
  return r;
}

FluxRunOptions two_threads() {
  FluxRunOptions o;
  o.threads = 2;
  return o;
}

void expect_error(const std::function<void()>& f, ErrorCode code,
                  const std::vector<std::string>& says) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& s : says) {
      EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << s << " not in: " << e.what();
    }
  }
}

class FluxPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<testing::TempDir>();
    const fs::path clip = testing::fixture("tokenizers/flux/tokenizer");
    const fs::path t5 = testing::fixture("tokenizers/flux/tokenizer_2");
    real_tokenizers_ = !clip.empty() && !t5.empty();
    const std::string tok =
        real_tokenizers_ ? " --tokenizer-dir " + quote(clip.parent_path()) : std::string();
    testing::make_model("--arch flux-pipeline --out " + quote(*dir_ / "schnell") + tok);
    testing::make_model("--arch flux-pipeline --guidance-embeds --out " + quote(*dir_ / "dev") +
                        tok);
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    if (HasFatalFailure()) GTEST_SKIP();
    RecordProperty("tokenizers", real_tokenizers_ ? "FLUX.1's" : "the maker's stand-ins");
  }
  static fs::path model(const std::string& variant, const std::string& layout) {
    return *dir_ / variant / layout;
  }

  static std::unique_ptr<testing::TempDir> dir_;
  static bool real_tokenizers_;
};
std::unique_ptr<testing::TempDir> FluxPipelineTest::dir_;
bool FluxPipelineTest::real_tokenizers_ = false;

// Runs the reference on request r (noise from noise_npy) and hearth on the same; both images.
void expect_matches_torch(const fs::path& folder, FluxRequest r, const fs::path& noise_npy,
                          const testing::TempDir& tmp, const fs::path& init_npy = {}) {
  const FluxPipeline p = FluxPipeline::open(folder.string());
  r.seed.reset();
  r.noise = read_flux_noise(noise_npy, r.height, r.width);
  const FluxResult got = p.generate(r, two_threads());
  ASSERT_EQ(got.images.size(), 1U);
  nlohmann::json in = {{"clip_ids", got.clip_ids},
                       {"t5_ids", got.t5_ids},
                       {"noise", noise_npy.string()},
                       {"steps", got.steps}};
  if (got.guidance) in["guidance"] = *got.guidance;
  if (!init_npy.empty()) {
    in["init_image"] = init_npy.string();
    in["strength"] = r.strength;
  }
  {
    formats::AtomicFileWriter w(tmp / "in.json");
    const std::string text = in.dump();
    w.write(text.data(), text.size());
    w.commit();
  }
  std::string log;
  const int rc = testing::run_command(
      testing::cat({testing::kSystemPython, " ",
                    quote(testing::source_dir() / "tools/flux_reference.py"), " --pipeline ",
                    quote(folder), " --input ", quote(tmp / "in.json"), " --output ",
                    quote(tmp / "out.json"), " 2>&1"}),
      &log);
  ASSERT_EQ(rc, 0) << log;
  const auto ref = nlohmann::json::parse(formats::read_text_file(tmp / "out.json"));
  const auto want = ref.at("image").get<std::vector<int>>();
  const auto sigmas = ref.at("sigmas").get<std::vector<double>>();
  ASSERT_EQ(sigmas.size(), got.sigmas.size());
  for (std::size_t i = 0; i < sigmas.size(); ++i) EXPECT_NEAR(got.sigmas[i], sigmas[i], 1e-12);
  const auto& px = got.images[0].rgb;
  ASSERT_EQ(px.size(), want.size());
  int worst = 0;
  std::size_t off = 0;
  for (std::size_t i = 0; i < px.size(); ++i) {
    worst = std::max(worst, std::abs(static_cast<int>(px[i]) - want[i]));
    off += px[i] != want[i];
  }
  EXPECT_LE(worst, 1) << "the PNG differs from torch's by up to " << worst << " of 255";
  // A sanity check that the image is not flat (a broken stage tends to give one colour).
  const auto [lo, hi] = std::minmax_element(px.begin(), px.end());
  EXPECT_GT(*hi - *lo, 20);
  std::printf("flux pipeline vs torch: max |diff| %d of 255, %zu of %zu values differ\n", worst,
              off, px.size());
}

void save_noise(const fs::path& path, std::int64_t h, std::int64_t w, std::uint64_t seed,
                int n = 1) {
  std::vector<float> v;
  for (int k = 0; k < n; ++k) {
    const Latent l = flux_seeded_noise(seed + k, 16, h / 8, w / 8);
    v.insert(v.end(), l.data.begin(), l.data.end());
  }
  std::vector<std::int64_t> shape = {16, h / 8, w / 8};
  if (n > 1) shape.insert(shape.begin(), n);
  formats::write_npy_f32(path, v, shape);
}

TEST_F(FluxPipelineTest, SchnellMatchesTorch) {
  HEARTH_REQUIRE_TORCH();
  const testing::TempDir tmp;
  save_noise(tmp / "noise.npy", 64, 64, 3);
  FluxRequest r = small();
  r.width = r.height = 64;
  r.t5_max_length.reset();  // schnell's 256
  expect_matches_torch(model("schnell", "diffusers"), r, tmp / "noise.npy", tmp);
}

TEST_F(FluxPipelineTest, DevWithGuidanceMatchesTorch) {
  HEARTH_REQUIRE_TORCH();
  const testing::TempDir tmp;
  save_noise(tmp / "noise.npy", 64, 48, 4);
  FluxRequest r = small("a lighthouse at dawn, oil painting");
  r.width = 48;
  r.height = 64;
  r.guidance = 4.0f;
  r.t5_max_length = 64;
  expect_matches_torch(model("dev", "diffusers"), r, tmp / "noise.npy", tmp);
}

TEST_F(FluxPipelineTest, ImageToImageMatchesTorch) {
  HEARTH_REQUIRE_TORCH();
  const testing::TempDir tmp;
  save_noise(tmp / "noise.npy", 64, 64, 5);
  image::Image8 start{64, 64, std::vector<std::uint8_t>(64 * 64 * 3)};
  for (std::size_t i = 0; i < start.rgb.size(); ++i) {
    start.rgb[i] = static_cast<std::uint8_t>((i * 37 + i / 192 * 11) % 256);
  }
  const std::vector<float> f = image::to_f32_signed(start);
  const std::int64_t shape[3] = {64, 64, 3};
  formats::write_npy_f32(tmp / "init.npy", f, shape);
  FluxRequest r = small();
  r.width = r.height = 64;
  r.steps = 4;
  r.strength = 0.6f;  // t_start = int(4 - 2.4) = 1: three steps
  r.init_image = start;
  expect_matches_torch(model("schnell", "diffusers"), r, tmp / "noise.npy", tmp, tmp / "init.npy");
  const FluxPipeline p = FluxPipeline::open(model("schnell", "diffusers").string());
  const FluxResult res = p.generate(r, two_threads());
  EXPECT_EQ(res.denoise_steps, 3);
  EXPECT_EQ(res.stages.front().name, "vae encode");
}

TEST_F(FluxPipelineTest, DiffusersFolderAndBflFilesGiveTheSameImage) {
  for (const char* variant : {"schnell", "dev"}) {
    const FluxPipeline a = FluxPipeline::open(model(variant, "diffusers").string());
    const FluxPipeline b = FluxPipeline::open(model(variant, "bfl").string());
    EXPECT_EQ(a.files().layout, FluxLayout::kDiffusers);
    EXPECT_EQ(b.files().layout, FluxLayout::kBfl);
    EXPECT_EQ(a.dev(), std::string(variant) == "dev");
    EXPECT_EQ(b.dev(), a.dev());
    const FluxResult ra = a.generate(small(), two_threads());
    const FluxResult rb = b.generate(small(), two_threads());
    ASSERT_EQ(ra.images.size(), 1U);
    EXPECT_EQ(ra.images[0].rgb, rb.images[0].rgb) << variant;
    EXPECT_EQ(ra.sigmas, rb.sigmas) << variant;
    // The transformer file itself names the same model.
    const std::string file =
        std::string(variant) == "dev" ? "flux1-dev.safetensors" : "flux1-schnell.safetensors";
    const FluxPipeline c = FluxPipeline::open((model(variant, "bfl") / file).string());
    EXPECT_EQ(c.files().vae, model(variant, "bfl") / "ae.safetensors");
  }
}

// mflux's saved model of the same weights (unquantized; hearth-make-model writes it beside the
// others): its own transformer/, text_encoder/ (CLIP), text_encoder_2/ (T5) and vae/ are read,
// no single file beside it, and the image is the diffusers folder's exactly.
TEST_F(FluxPipelineTest, MfluxFolderGivesTheDiffusersImage) {
  for (const char* variant : {"schnell", "dev"}) {
    const FluxPipeline a = FluxPipeline::open(model(variant, "diffusers").string());
    const FluxPipeline m = FluxPipeline::open(model(variant, "mflux").string());
    EXPECT_EQ(m.files().layout, FluxLayout::kMflux);
    EXPECT_EQ(m.files().clip, model(variant, "mflux") / "text_encoder");
    EXPECT_EQ(m.files().t5, model(variant, "mflux") / "text_encoder_2");
    EXPECT_EQ(m.files().vae, model(variant, "mflux") / "vae");
    EXPECT_EQ(m.dev(), a.dev());
    const FluxResult ra = a.generate(small(), two_threads());
    const FluxResult rm = m.generate(small(), two_threads());
    ASSERT_EQ(rm.images.size(), 1U);
    EXPECT_EQ(ra.images[0].rgb, rm.images[0].rgb) << variant;
  }
  // An explicit T5 overrides mflux's own.
  FluxOpenOptions opts;
  opts.t5 = model("schnell", "diffusers") / "text_encoder_2";
  EXPECT_EQ(FluxPipeline::open(model("schnell", "mflux").string(), opts).files().t5, opts.t5);
  // Without text_encoder_2/ and no single file: the message asks for the T5 file.
  const testing::TempDir tmp;
  fs::copy(model("schnell", "mflux"), tmp / "m", fs::copy_options::recursive);
  fs::remove_all(tmp / "m" / "text_encoder_2");
  expect_error([&] { FluxPipeline::open((tmp / "m").string()); }, ErrorCode::kNotFound,
               {"t5xxl_", "text_encoder_2/"});
}

TEST_F(FluxPipelineTest, AGgufTransformerIsFoundAndReadFromItsHeader) {
  // The dev single file's tensors as a GGUF (city96's FLUX GGUFs keep BFL's names), beside the
  // other single files.
  const testing::TempDir tmp;
  fs::copy(model("dev", "bfl"), tmp / "b", fs::copy_options::recursive);
  const fs::path st_path = tmp / "b" / "flux1-dev.safetensors";
  {
    const auto st = formats::SafetensorsFile::open(st_path);
    formats::GGUFWriter w;
    w.set("general.architecture", std::string("flux"));
    for (const auto& t : st.tensors()) {
      const TensorView v = st.view(t);
      w.add_tensor(t.name, t.dtype, t.shape, std::span(v.data, t.nbytes));
    }
    w.write(tmp / "b" / "flux1-dev-F32.gguf");
  }
  fs::remove(st_path);
  const FluxPipeline p = FluxPipeline::open((tmp / "b").string());
  EXPECT_EQ(p.files().transformer, tmp / "b" / "flux1-dev-F32.gguf");
  EXPECT_TRUE(p.dev());
  EXPECT_EQ(p.joint_dim(), 32);
  EXPECT_EQ(p.pooled_dim(), 64);
  // Two candidates: the user picks.
  fs::copy(tmp / "b" / "flux1-dev-F32.gguf", tmp / "b" / "flux1-dev-Q8_0.gguf");
  expect_error([&] { FluxPipeline::open((tmp / "b").string()); }, ErrorCode::kInvalidArgument,
               {"flux1-dev-F32.gguf, flux1-dev-Q8_0.gguf", "pass the one"});
}

// The dev pipeline's transformer (make_flux_pipeline: seed 1 + 3, FLUX.1's head shape, one
// block of each kind, text widths 32 and 64) in another dtype or format.
std::string dev_transformer_args() {
  return "--arch flux-transformer --seed 4 --heads 1 --head-dim 128 --layers 1 --single-layers 1 "
         "--joint-dim 32 --pooled-dim 64 --guidance-embeds";
}

// A float8 diffusers transformer (scaled e4m3fn) in the dev pipeline: the final image as the
// torch reference decoding the same float8 file gives it, within 1 of 255.
TEST_F(FluxPipelineTest, Float8TransformerMatchesTorch) {
  HEARTH_REQUIRE_TORCH();
  const testing::TempDir tmp;
  fs::copy(model("dev", "diffusers"), tmp / "d", fs::copy_options::recursive);
  fs::remove_all(tmp / "d" / "transformer");
  testing::make_model(dev_transformer_args() + " --dtype f8_e4m3 --f8-scaled --out " +
                      quote(tmp / "d" / "transformer"));
  ASSERT_FALSE(HasFatalFailure());
  save_noise(tmp / "noise.npy", 32, 32, 5);
  FluxRequest r = small("a lighthouse at dawn");
  r.guidance = 3.5f;
  expect_matches_torch(tmp / "d", r, tmp / "noise.npy", tmp);
}

// The same weights as bf16, as float8 (e4m3fn, rounded from the bf16 values) and as mflux's
// saved 8-bit MLX transformer (its folder beside the single files, found by its metadata) give
// nearly the same image: the velocity moves by about 6% of its RMS in float8 and about 4% with
// 8-bit MLX (flux_formats_test); over two steps and the VAE decode that moved the 8-bit pixels
// by 13 / 10 of 255 at most and 2.3 / 1.5 on average when this was written. Bounds: about twice
// that, 26 and 5 on average.
TEST_F(FluxPipelineTest, Float8AndMfluxTransformersGiveNearlyTheBf16Image) {
  const testing::TempDir tmp;
  for (const char* d : {"bf16", "f8", "mflux"}) {
    fs::copy(model("dev", "bfl"), tmp / d, fs::copy_options::recursive);
  }
  // The fixture's own transformer is what these arguments make: the weights are the same.
  testing::make_model(dev_transformer_args() + " --format safetensors --out " +
                      quote(tmp / "f32.safetensors"));
  testing::make_model(dev_transformer_args() + " --format safetensors --dtype bf16 --out " +
                      quote(tmp / "bf16" / "flux1-dev.safetensors"));
  testing::make_model(dev_transformer_args() + " --format safetensors --dtype f8_e4m3 --out " +
                      quote(tmp / "f8" / "flux1-dev.safetensors"));
  fs::remove(tmp / "mflux" / "flux1-dev.safetensors");
  testing::make_model(dev_transformer_args() + " --format mflux --mlx-bits 8 --dtype bf16 --out " +
                      quote(tmp / "mflux" / "transformer"));
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(testing::read_bytes(tmp / "f32.safetensors"),
            testing::read_bytes(model("dev", "bfl") / "flux1-dev.safetensors"));
  const FluxPipeline base = FluxPipeline::open((tmp / "bf16").string());
  const FluxResult want = base.generate(small(), two_threads());
  ASSERT_EQ(want.images.size(), 1U);
  for (const char* d : {"f8", "mflux"}) {
    const FluxPipeline p = FluxPipeline::open((tmp / d).string());
    EXPECT_EQ(p.files().layout, std::string(d) == "mflux" ? FluxLayout::kMflux : FluxLayout::kBfl);
    EXPECT_TRUE(p.dev());
    EXPECT_EQ(p.joint_dim(), 32);
    EXPECT_EQ(p.pooled_dim(), 64);
    const FluxResult got = p.generate(small(), two_threads());
    ASSERT_EQ(got.images.size(), 1U);
    const auto& a = got.images[0].rgb;
    const auto& b = want.images[0].rgb;
    ASSERT_EQ(a.size(), b.size());
    int worst = 0;
    double sum = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const int diff = std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
      worst = std::max(worst, diff);
      sum += diff;
    }
    const double mean = sum / static_cast<double>(a.size());
    std::printf("%s vs bf16 image: max |diff| %d of 255, mean %.2f\n", d, worst, mean);
    EXPECT_LE(worst, 26) << d;
    EXPECT_LT(mean, 5.0) << d;
  }
  // mflux's folder without the single files it needs: the message says why they are needed.
  fs::remove(tmp / "mflux" / "ae.safetensors");
  expect_error([&] { FluxPipeline::open((tmp / "mflux").string()); }, ErrorCode::kNotFound,
               {"ae.safetensors", "mflux's own"});
}

TEST_F(FluxPipelineTest, SeedsAreRecordedAndReproduceTheImage) {
  const FluxPipeline p = FluxPipeline::open(model("schnell", "diffusers").string());
  FluxRequest r = small();
  r.n_images = 2;
  const FluxResult two = p.generate(r, two_threads());
  ASSERT_EQ(two.images.size(), 2U);
  EXPECT_EQ(two.seeds, (std::vector<std::uint64_t>{11, 12}));
  EXPECT_NE(two.images[0].rgb, two.images[1].rgb);
  // Image k of a run is the single image of seed + k.
  FluxRequest one = small();
  one.seed = 12;
  EXPECT_EQ(p.generate(one, two_threads()).images[0].rgb, two.images[1].rgb);
  // The same noise given as a latent gives the same image.
  const testing::TempDir tmp;
  save_noise(tmp / "n.npy", 32, 32, 11, 2);
  FluxRequest given = small();
  given.seed.reset();
  given.noise = read_flux_noise(tmp / "n.npy", 32, 32);
  given.n_images = 2;
  const FluxResult from_noise = p.generate(given, two_threads());
  EXPECT_TRUE(from_noise.seeds.empty());
  EXPECT_EQ(from_noise.images[1].rgb, two.images[1].rgb);
  // No seed: a random one, recorded.
  FluxRequest unseeded = small();
  unseeded.seed.reset();
  EXPECT_EQ(p.resolve(unseeded).seed.has_value(), true);
}

TEST(FluxNoise, SeededNoiseIsDeterministicStandardNormal) {
  const Latent a = flux_seeded_noise(42, 16, 32, 32);
  const Latent b = flux_seeded_noise(42, 16, 32, 32);
  const Latent c = flux_seeded_noise(43, 16, 32, 32);
  EXPECT_EQ(a.data, b.data);
  EXPECT_NE(a.data, c.data);
  double sum = 0, sq = 0;
  for (float v : a.data) {
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(a.data.size());
  EXPECT_NEAR(sum / n, 0.0, 0.05);
  EXPECT_NEAR(sq / n, 1.0, 0.05);
  // Odd counts fill the last value too.
  const Latent odd = flux_seeded_noise(42, 1, 3, 3);
  EXPECT_EQ(odd.data.size(), 9U);
  EXPECT_EQ(std::vector<float>(a.data.begin(), a.data.begin() + 8),
            std::vector<float>(odd.data.begin(), odd.data.begin() + 8));
}

TEST(FluxNoise, ImageToImageScheduleFollowsDiffusers) {
  const std::vector<double> s = flux_sigmas(FluxSchedule::schnell(), 4, 16);
  EXPECT_EQ(flux_img2img_sigmas(s, 1.0f), s);
  EXPECT_EQ(flux_img2img_sigmas(s, 0.6f), std::vector<double>(s.begin() + 1, s.end()));
  EXPECT_EQ(flux_img2img_sigmas(s, 0.5f), std::vector<double>(s.begin() + 2, s.end()));
  EXPECT_EQ(flux_img2img_sigmas(s, 0.25f), std::vector<double>(s.begin() + 3, s.end()));
  // Any strength above 0 leaves a step (int(steps - steps * strength) < steps); 0 leaves none.
  EXPECT_EQ(flux_img2img_sigmas(s, 0.01f).size(), 2U);
  expect_error([&] { flux_img2img_sigmas(s, 0.0f); }, ErrorCode::kInvalidArgument, {"no step"});
}

TEST_F(FluxPipelineTest, StagesRunInOrderWithTimesProgressAndNotices) {
  const FluxPipeline p = FluxPipeline::open(model("dev", "bfl").string());
  std::vector<std::string> seen;
  int steps = 0;
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "tall tree ";
  FluxRequest r = small(long_prompt);
  const FluxResult res = p.generate(r, two_threads(), [&](const FluxProgress& pr) {
    if (pr.kind == FluxProgress::Kind::kStage) seen.push_back(pr.stage);
    if (pr.kind == FluxProgress::Kind::kStep) {
      ++steps;
      EXPECT_EQ(pr.step, steps);
      EXPECT_EQ(pr.steps, 2);
      EXPECT_GE(pr.step_seconds, 0.0);
    }
  });
  const std::vector<std::string> want = {"text encoders", "transformer load", "denoise",
                                         "vae decode"};
  EXPECT_EQ(seen, want);
  EXPECT_EQ(steps, 2);
  ASSERT_EQ(res.stages.size(), 4U);
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(res.stages[i].name, want[i]);
    EXPECT_GT(res.stages[i].peak_rss_bytes, 0U);
    EXPECT_GE(res.peak_rss_bytes, res.stages[i].peak_rss_bytes);
  }
  EXPECT_EQ(res.step_seconds.size(), 2U);
  EXPECT_EQ(res.guidance, 3.5f);  // dev's default
  ASSERT_EQ(res.notices.size(), 2U);
  EXPECT_NE(res.notices[0].find("CLIP reads the first 77"), std::string::npos) << res.notices[0];
  EXPECT_NE(res.notices[1].find("first 16"), std::string::npos) << res.notices[1];
  EXPECT_EQ(res.t5_ids.size(), 16U);
  EXPECT_EQ(res.clip_ids.size(), 77U);
  const nlohmann::json j = to_json(res);
  EXPECT_EQ(j.at("stages").size(), 4U);
  EXPECT_EQ(j.at("seeds"), nlohmann::json({11}));
}

TEST_F(FluxPipelineTest, CtrlCStopsBetweenSteps) {
  const FluxPipeline p = FluxPipeline::open(model("schnell", "diffusers").string());
  install_cancel_handler();
  reset_cancel();
  int steps = 0;
  FluxRequest r = small();
  r.steps = 4;
  try {
    p.generate(r, two_threads(), [&](const FluxProgress& pr) {
      if (pr.kind == FluxProgress::Kind::kStep && ++steps == 1) std::raise(SIGINT);
    });
    ADD_FAILURE() << "generate() went on after Ctrl+C";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  reset_cancel();
  EXPECT_EQ(steps, 1);
  // Nothing stays held: the next run works.
  EXPECT_EQ(p.generate(small(), two_threads()).images.size(), 1U);
}

TEST_F(FluxPipelineTest, SchnellAndDevResolveInTheHuggingFaceCache) {
  const testing::TempDir cache;
  const fs::path repo = cache / "models--black-forest-labs--FLUX.1-schnell";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots");
  fs::copy(model("schnell", "diffusers"), repo / "snapshots" / "abc123",
           fs::copy_options::recursive);
  {
    formats::AtomicFileWriter w(repo / "refs" / "main");
    w.write("abc123", 6);
    w.commit();
  }
  const char* old = std::getenv("HF_HUB_CACHE");
  const std::string saved = old ? old : "";
  setenv("HF_HUB_CACHE", cache.path().c_str(), 1);
  const FluxPipeline p = FluxPipeline::open("schnell");
  EXPECT_EQ(p.files().layout, FluxLayout::kDiffusers);
  EXPECT_EQ(p.files().vae, repo / "snapshots" / "abc123" / "vae");
  expect_error([] { FluxPipeline::open("dev"); }, ErrorCode::kNotFound,
               {"black-forest-labs/FLUX.1-dev", "never downloads"});
  // A BFL file without tokenizers beside it takes them from the snapshot.
  const testing::TempDir comfy;
  fs::create_directories(comfy / "models/unet");
  fs::create_directories(comfy / "models/clip");
  fs::create_directories(comfy / "models/vae");
  const fs::path bfl = model("schnell", "bfl");
  fs::copy(bfl / "flux1-schnell.safetensors", comfy / "models/unet/flux1-schnell.safetensors");
  fs::copy(bfl / "clip_l.safetensors", comfy / "models/clip/clip_l.safetensors");
  fs::copy(bfl / "t5xxl_fp32.safetensors", comfy / "models/clip/t5xxl_fp32.safetensors");
  fs::copy(bfl / "ae.safetensors", comfy / "models/vae/ae.safetensors");
  const FluxPipeline c =
      FluxPipeline::open((comfy / "models/unet/flux1-schnell.safetensors").string());
  EXPECT_EQ(c.files().clip_tokenizer, repo / "snapshots" / "abc123" / "tokenizer");
  EXPECT_EQ(c.generate(small(), two_threads()).images[0].rgb,
            p.generate(small(), two_threads()).images[0].rgb);
  if (old) {
    setenv("HF_HUB_CACHE", saved.c_str(), 1);
  } else {
    unsetenv("HF_HUB_CACHE");
  }
}

TEST_F(FluxPipelineTest, MissingPartsAreListedWithWhereTheyWereLookedFor) {
  const testing::TempDir tmp;
  fs::copy(model("schnell", "diffusers"), tmp / "d", fs::copy_options::recursive);
  fs::remove_all(tmp / "d" / "vae");
  fs::remove_all(tmp / "d" / "tokenizer_2");
  expect_error([&] { FluxPipeline::open((tmp / "d").string()); }, ErrorCode::kNotFound,
               {"the VAE", (tmp / "d" / "vae" / "config.json").string(), "the T5 tokenizer",
                "model_index.json"});
  fs::copy(model("schnell", "bfl"), tmp / "b", fs::copy_options::recursive);
  fs::remove(tmp / "b" / "ae.safetensors");
  fs::remove(tmp / "b" / "t5xxl_fp32.safetensors");
  expect_error([&] { FluxPipeline::open((tmp / "b").string()); }, ErrorCode::kNotFound,
               {"ae.safetensors", "t5xxl_*.safetensors", (tmp / "b").string(), "../vae",
                "flux1-schnell.safetensors"});
  // Given explicitly, the part is taken from there.
  FluxOpenOptions o;
  o.vae = model("schnell", "bfl") / "ae.safetensors";
  o.t5 = model("schnell", "bfl") / "t5xxl_fp32.safetensors";
  EXPECT_EQ(FluxPipeline::open((tmp / "b").string(), o).files().vae, o.vae);
  o.tokenizers = tmp / "nowhere";
  expect_error([&] { FluxPipeline::open((tmp / "b").string(), o); }, ErrorCode::kNotFound,
               {(tmp / "nowhere" / "tokenizer").string()});
  fs::create_directories(tmp / "empty");
  expect_error([&] { FluxPipeline::open((tmp / "empty").string()); }, ErrorCode::kNotFound,
               {"model_index.json", "flux1-schnell.safetensors", (tmp / "empty").string()});
  // A broken transformer config.
  fs::copy(model("dev", "diffusers"), tmp / "c", fs::copy_options::recursive);
  {
    formats::AtomicFileWriter w(tmp / "c" / "transformer" / "config.json");
    const std::string text = R"({"guidance_embeds": "yes"})";
    w.write(text.data(), text.size());
    w.commit();
  }
  expect_error([&] { FluxPipeline::open((tmp / "c").string()); }, ErrorCode::kFormat,
               {"transformer/config.json", "guidance_embeds"});
  // A file that is no FLUX transformer.
  expect_error(
      [&] { FluxPipeline::open((model("schnell", "bfl") / "clip_l.safetensors").string()); },
      ErrorCode::kFormat, {"clip_l.safetensors", "not a FLUX transformer"});
}

TEST_F(FluxPipelineTest, BadRequestsAreRefusedBeforeAnythingLoads) {
  const FluxPipeline p = FluxPipeline::open(model("schnell", "diffusers").string());
  const auto refused = [&](const std::function<void(FluxRequest&)>& edit,
                           const std::vector<std::string>& says) {
    FluxRequest r = small();
    edit(r);
    expect_error([&] { p.resolve(r); }, ErrorCode::kInvalidArgument, says);
  };
  refused([](FluxRequest& r) { r.width = 72; }, {"width 72", "multiple of 16"});
  refused([](FluxRequest& r) { r.height = 40; }, {"height 40", "multiple of 16"});
  refused([](FluxRequest& r) { r.width = 8192; }, {"width 8192", "out of range"});
  refused([](FluxRequest& r) { r.width = r.height = 4096; }, {"4096x4096", "megapixels"});
  refused([](FluxRequest& r) { r.steps = 0; }, {"steps"});
  refused([](FluxRequest& r) { r.guidance = 3.5f; }, {"guidance", "schnell"});
  refused([](FluxRequest& r) { r.t5_max_length = 513; }, {"T5 length"});
  refused([](FluxRequest& r) { r.n_images = 0; }, {"image count"});
  refused(
      [](FluxRequest& r) {
        r.init_image = image::Image8{16, 16, std::vector<std::uint8_t>(16 * 16 * 3)};
      },
      {"16x16", "32x32"});
  refused(
      [](FluxRequest& r) {
        r.init_image = image::Image8{32, 32, std::vector<std::uint8_t>(32 * 32 * 3)};
        r.strength = 0.0f;
      },
      {"strength"});
  refused(
      [](FluxRequest& r) {
        r.seed.reset();
        r.noise = {flux_seeded_noise(1, 16, 8, 4)};
      },
      {"[16, 8, 4]", "[16, 4, 4]"});
  refused([](FluxRequest& r) { r.noise = {flux_seeded_noise(1, 16, 4, 4)}; }, {"seed", "noise"});
  // The default size and steps.
  FluxRequest d;
  d.prompt = "x";
  const FluxRequest resolved = p.resolve(d);
  EXPECT_EQ(resolved.width, 1024);
  EXPECT_EQ(*resolved.steps, 4);
  EXPECT_EQ(*resolved.t5_max_length, 256U);
  const FluxPipeline dev = FluxPipeline::open(model("dev", "diffusers").string());
  EXPECT_EQ(*dev.resolve(d).steps, 28);
  EXPECT_EQ(*dev.resolve(d).t5_max_length, 512U);
  // Noise files of the wrong shape name the file.
  const testing::TempDir tmp;
  save_noise(tmp / "n.npy", 32, 32, 1);
  expect_error([&] { read_flux_noise(tmp / "n.npy", 64, 32); }, ErrorCode::kInvalidArgument,
               {"n.npy", "[16, 4, 4]", "[16, 8, 4]"});
}

TEST_F(FluxPipelineTest, AT5OfTheWrongWidthIsRefusedNamingTheFile) {
  const testing::TempDir tmp;
  fs::copy(model("schnell", "bfl"), tmp / "b", fs::copy_options::recursive);
  fs::remove(tmp / "b" / "t5xxl_fp32.safetensors");
  testing::make_model("--arch t5-encoder --format safetensors --hidden 48 --out " +
                      quote(tmp / "b" / "t5xxl_fp16.safetensors"));
  const FluxPipeline p = FluxPipeline::open((tmp / "b").string());
  expect_error([&] { p.generate(small(), two_threads()); }, ErrorCode::kFormat,
               {"t5xxl_fp16.safetensors", "48 wide", "takes 32"});
  // The same for a CLIP of the wrong width in a diffusers folder.
  fs::copy(model("schnell", "diffusers"), tmp / "d", fs::copy_options::recursive);
  fs::remove_all(tmp / "d" / "text_encoder");
  testing::make_model("--arch clip-text --hidden 32 --out " + quote(tmp / "d" / "text_encoder"));
  const FluxPipeline q = FluxPipeline::open((tmp / "d").string());
  expect_error([&] { q.generate(small(), two_threads()); }, ErrorCode::kFormat,
               {"text_encoder", "32 wide", "takes 64"});
}

TEST(FluxMetadata, PngTextAndJsonCarryTheSettings) {
  FluxImageMetadata m;
  m.prompt = "a café";
  m.seed = 7;
  m.steps = 4;
  m.width = 512;
  m.height = 256;
  m.model = "schnell";
  m.t5_max_length = 256;
  const image::PngText t = to_png_text(m);
  const auto get = [&](const std::string& k) {
    for (const auto& [key, v] : t) {
      if (key == k) return v;
    }
    return std::string("(absent)");
  };
  EXPECT_EQ(get("prompt"), "a café");
  EXPECT_EQ(get("seed"), "7");
  EXPECT_EQ(get("steps"), "4");
  EXPECT_EQ(get("size"), "512x256");
  EXPECT_EQ(get("model"), "schnell");
  EXPECT_EQ(get("guidance"), "(absent)");
  EXPECT_EQ(get("loras"), "(absent)");
  m.guidance = 3.5f;
  m.loras = {"a.safetensors:0.8", "b.safetensors:1"};
  EXPECT_EQ(get("guidance"), "(absent)");
  const image::PngText t2 = to_png_text(m);
  EXPECT_NE(std::find(t2.begin(), t2.end(), std::pair<std::string, std::string>("guidance", "3.5")),
            t2.end());
  EXPECT_NE(
      std::find(t2.begin(), t2.end(),
                std::pair<std::string, std::string>("loras", "a.safetensors:0.8, b.safetensors:1")),
      t2.end());
  const nlohmann::json j = to_json(m);
  EXPECT_EQ(j.at("seed"), 7);
  EXPECT_EQ(j.at("loras").size(), 2U);
  // PNG accepts every keyword.
  EXPECT_NO_THROW(image::encode_png(image::Image8{1, 1, {0, 0, 0}}, t2));
}

TEST(FluxGrid, ImagesAreLaidOutRowByRow) {
  std::vector<image::Image8> ims;
  for (std::uint8_t k = 0; k < 3; ++k) {
    ims.push_back({2, 1, std::vector<std::uint8_t>(6, static_cast<std::uint8_t>(k + 1))});
  }
  const image::Image8 g = image::grid(ims);
  EXPECT_EQ(g.width, 4);
  EXPECT_EQ(g.height, 2);
  const auto at = [&](int x, int y) { return g.rgb[(y * g.width + x) * 3]; };
  EXPECT_EQ(at(0, 0), 1);
  EXPECT_EQ(at(2, 0), 2);
  EXPECT_EQ(at(1, 1), 3);
  EXPECT_EQ(at(3, 1), 0);  // the empty cell
  ims.push_back({1, 1, {0, 0, 0}});
  expect_error([&] { image::grid(ims); }, ErrorCode::kInvalidArgument, {"one size"});
}

TEST_F(FluxPipelineTest, FluxCliWritesImagesGridAndMetadata) {
  const testing::TempDir tmp;
  const fs::path cli = testing::tools_dir() / "flux-cli";
  std::string out;
  const std::string common =
      testing::cat({quote(cli), " --threads 2 --model ", quote(model("schnell", "bfl")),
                    " --height 32 --steps 2 --t5-max-length 16"});
  const std::string base = common + " --width 32";
  ASSERT_EQ(testing::run_command(base +
                                     " --prompt 'a blue door' --seed 9 --n-images 2 "
                                     "--metadata --output " +
                                     quote(tmp / "out" / "door.png"),
                                 &out),
            0)
      << out;
  EXPECT_NE(out.find("denoise"), std::string::npos) << out;
  EXPECT_NE(out.find("peak RSS"), std::string::npos) << out;
  for (const char* f : {"door-1.png", "door-2.png", "door-grid.png", "door-1.json"}) {
    EXPECT_TRUE(fs::exists(tmp / "out" / f)) << f << "\n" << out;
  }
  const image::PngFile png = image::read_png(tmp / "out" / "door-2.png");
  EXPECT_EQ(png.image.width, 32);
  const auto has = [&](const std::string& k, const std::string& v) {
    return std::find(png.text.begin(), png.text.end(), std::pair(k, v)) != png.text.end();
  };
  EXPECT_TRUE(has("prompt", "a blue door"));
  EXPECT_TRUE(has("seed", "10"));
  EXPECT_TRUE(has("steps", "2"));
  EXPECT_TRUE(has("size", "32x32"));
  EXPECT_EQ(image::read_png(tmp / "out" / "door-grid.png").image.width, 64);
  const auto meta = nlohmann::json::parse(formats::read_text_file(tmp / "out" / "door-1.json"));
  EXPECT_EQ(meta.at("seed"), 9);
  // --json: the figures.
  ASSERT_EQ(testing::run_command("(" + base + " --prompt x --seed 1 --json --output " +
                                     quote(tmp / "j.png") + " 2>/dev/null)",
                                 &out),
            0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j.at("stages").size(), 4U);
  EXPECT_EQ(j.at("layout"), "bfl");
  // Usage mistakes exit 2 and say what is wrong, before any work.
  EXPECT_EQ(testing::run_command(common + " --prompt x --width 40 --output " + quote(tmp / "w.png"),
                                 &out),
            2)
      << out;
  EXPECT_NE(out.find("width 40 is not a multiple of 16"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(tmp / "w.png"));
}

}  // namespace
}  // namespace hearth::models
