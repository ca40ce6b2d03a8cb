// bench-cli flux and prompt on a tiny random FLUX.1 pipeline: the contact sheet's geometry, each
// cell the image rendered alone, resuming after an interruption, the labels font, and the
// reports; hearth-bench-flux-transformer's float8 random weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hearth/bench/flux_bench.hpp"
#include "hearth/core/error.hpp"
#include "hearth/image/font.hpp"
#include "hearth/image/png.hpp"
#include "hearth/models/encoder_common.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "hearth/tensor/float8.hpp"
#include "support/fixtures.hpp"
#include "support/flux.hpp"

namespace hearth::bench {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;

constexpr std::int64_t kSize = 16;

// The tiny pipeline, made once for the test program.
const fs::path& tiny_pipeline() {
  static const testing::TempDir dir;
  static const fs::path model = [] {
    testing::make_model("--arch flux-pipeline --out " + quote(dir / "flux"));
    return dir / "flux" / "diffusers";
  }();
  return model;
}

image::Image8 crop(const image::Image8& img, std::int64_t x, std::int64_t y, std::int64_t w,
                   std::int64_t h) {
  image::Image8 out{w, h, std::vector<std::uint8_t>(static_cast<std::size_t>(w * h * 3))};
  for (std::int64_t r = 0; r < h; ++r) {
    std::copy_n(img.rgb.begin() + ((y + r) * img.width + x) * 3, w * 3,
                out.rgb.begin() + r * w * 3);
  }
  return out;
}

bool all_white(const image::Image8& img) {
  return std::all_of(img.rgb.begin(), img.rgb.end(), [](std::uint8_t v) { return v == 255; });
}

PromptMatrixOptions options(const fs::path& out) {
  PromptMatrixOptions o;
  o.model = tiny_pipeline().string();
  o.subjects = {"a fox", "a lighthouse"};
  o.styles = {"oil painting", "pixel art", "ink"};
  o.size = kSize;
  o.steps = 2;
  o.seed = 7;
  o.threads = 1;
  o.out = out;
  return o;
}

TEST(PromptMatrix, SheetGeometryAndEachCellIsTheImageRenderedAlone) {
  ASSERT_FALSE(tiny_pipeline().empty());
  ASSERT_FALSE(HasFatalFailure());
  testing::TempDir tmp;
  const PromptMatrixOptions o = options(tmp.path());
  const PromptMatrixResult r = run_prompt_matrix(o);
  ASSERT_EQ(r.cells.size(), 6u);
  EXPECT_EQ(r.cells[4].row, 1u);
  EXPECT_EQ(r.cells[4].column, 1u);
  EXPECT_EQ(r.cells[4].prompt, "a lighthouse, pixel art");
  const image::PngFile sheet = image::read_png(tmp / r.sheet_file);
  const SheetLayout& l = r.layout;
  EXPECT_EQ(sheet.image.width, l.width);
  EXPECT_EQ(sheet.image.height, l.height);
  EXPECT_EQ(l.width, l.left + 3 * kSize + 2 * l.gap + l.gap);
  EXPECT_EQ(l.height, l.top + 2 * kSize + l.gap + l.gap);
  // Labels are drawn: ink in the column-label band above each column and beside each row.
  for (std::int64_t c = 0; c < 3; ++c) {
    EXPECT_FALSE(all_white(crop(sheet.image, l.left + c * (kSize + l.gap), 0, kSize, l.top))) << c;
  }
  for (std::int64_t row = 0; row < 2; ++row) {
    EXPECT_FALSE(all_white(crop(sheet.image, 0, l.top + row * (kSize + l.gap), l.left, kSize)))
        << row;
  }
  const models::FluxPipeline pipe = models::FluxPipeline::open(o.model);
  for (const PromptCell& cell : r.cells) {
    SCOPED_TRACE(cell.prompt);
    EXPECT_TRUE(cell.rendered);
    models::FluxRequest q;
    q.prompt = cell.prompt;
    q.width = q.height = kSize;
    q.steps = 2;
    q.seed = 7;
    models::FluxRunOptions run;
    run.threads = 1;
    const image::Image8 alone = pipe.generate(q, run).images.at(0);
    const image::Image8 in_sheet =
        crop(sheet.image, l.left + static_cast<std::int64_t>(cell.column) * (kSize + l.gap),
             l.top + static_cast<std::int64_t>(cell.row) * (kSize + l.gap), kSize, kSize);
    EXPECT_EQ(in_sheet.rgb, alone.rgb);
    EXPECT_EQ(image::read_png(tmp / cell.file).image.rgb, alone.rgb);
  }
  // Different prompts give different cells (the labels are not all the same picture).
  EXPECT_NE(image::read_png(tmp / r.cells[0].file).image.rgb,
            image::read_png(tmp / r.cells[5].file).image.rgb);

  Report rep = prompt_report(r, o, describe_machine(1));
  write_report(rep, tmp.path());
  std::ifstream md(tmp / "report.md");
  std::stringstream text;
  text << md.rdbuf();
  EXPECT_NE(text.str().find("![a fox, ink](cells/r1-c3.png)"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("![contact sheet](contact-sheet.png)"), std::string::npos);
}

TEST(PromptMatrix, InterruptedRunResumesWithOnlyTheMissingCells) {
  ASSERT_FALSE(tiny_pipeline().empty());
  testing::TempDir tmp;
  PromptMatrixOptions o = options(tmp.path());
  // Interrupted (as Ctrl+C does, between cells) once two cells are done.
  o.progress = [](const std::string&, std::size_t done, std::size_t) {
    if (done == 2) throw Error(ErrorCode::kCancelled, "interrupted");
  };
  EXPECT_THROW(run_prompt_matrix(o), Error);
  EXPECT_TRUE(fs::exists(tmp / "cells" / "r1-c2.png"));
  EXPECT_FALSE(fs::exists(tmp / "cells" / "r1-c3.png"));
  const auto kept = fs::last_write_time(tmp / "cells" / "r1-c1.png");
  o.progress = nullptr;
  PromptMatrixResult r = run_prompt_matrix(o);
  std::vector<bool> rendered;
  for (const PromptCell& c : r.cells) rendered.push_back(c.rendered);
  EXPECT_EQ(rendered, (std::vector<bool>{false, false, true, true, true, true}));
  EXPECT_EQ(fs::last_write_time(tmp / "cells" / "r1-c1.png"), kept);
  // Nothing left: nothing rendered. Other settings (the seed): everything again.
  r = run_prompt_matrix(o);
  for (const PromptCell& c : r.cells) EXPECT_FALSE(c.rendered);
  o.seed = 8;
  o.subjects.pop_back();
  r = run_prompt_matrix(o);
  for (const PromptCell& c : r.cells) EXPECT_TRUE(c.rendered);
}

TEST(PromptMatrix, ListsFromFilesOrInline) {
  testing::TempDir tmp;
  std::ofstream(tmp / "s.txt") << "# subjects\n a fox \n\nan owl\n";
  EXPECT_EQ(read_list((tmp / "s.txt").string(), "--subjects"),
            (std::vector<std::string>{"a fox", "an owl"}));
  EXPECT_EQ(read_list("ink, oil ,", "--styles"), (std::vector<std::string>{"ink", "oil"}));
  EXPECT_THROW(read_list(" , ", "--styles"), Error);
  EXPECT_EQ(cell_prompt("{style} of {subject}!", "a fox", "ink"), "ink of a fox!");
  EXPECT_EQ(default_subjects().size(), 4u);
}

TEST(Font, DrawsAsciiAndMarksOtherCodePoints) {
  image::Image8 img{40, 10, std::vector<std::uint8_t>(40 * 10 * 3, 255)};
  image::draw_text(img, 1, 1, "I", 1);
  // 'I' is ".###." over "..#..": the top row has three set pixels at x 2..4.
  EXPECT_EQ(img.rgb[(1 * 40 + 2) * 3], 0);
  EXPECT_EQ(img.rgb[(1 * 40 + 1) * 3], 255);
  EXPECT_EQ(img.rgb[(2 * 40 + 3) * 3], 0);
  EXPECT_EQ(img.rgb[(2 * 40 + 2) * 3], 255);
  EXPECT_EQ(image::text_width("ab", 2), 22);
  EXPECT_EQ(image::text_width("é", 1), 5);                 // one code point, one '?'
  image::draw_text(img, 30, 5, "clipped at the edge", 3);  // no write outside the image
  const auto lines = image::wrap_text("a lighthouse on a cliff", 78, 1, 2);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "a lighthouse");
  EXPECT_EQ(lines[1], "on a cliff");
  EXPECT_EQ(image::wrap_text("one two three four", 24, 1, 1), (std::vector<std::string>{"on.."}));
}

TEST(BenchCliFlux, TimesEverySizeAndWritesTheReport) {
  ASSERT_FALSE(tiny_pipeline().empty());
  testing::TempDir tmp;
  std::string out;
  ASSERT_EQ(testing::run_command(
                cat({quote(testing::tools_dir() / "bench-cli"), " --threads 1 flux -m ",
                     quote(tiny_pipeline()), " --sizes 16,32 --steps 3 -r 2 --probe-mib 4 --out ",
                     quote(tmp / "f")}),
                &out),
            0)
      << out;
  std::ifstream f(tmp / "f" / "results.json");
  const auto j = nlohmann::json::parse(f);
  std::map<std::string, double> fig;
  for (const auto& x : j["figures"]) fig[x["id"]] = x["value"];
  for (const char* id :
       {"16.total_seconds", "32.total_seconds", "32.images_per_minute", "32.stage.denoise_seconds",
        "32.stage.vae_decode_seconds", "32.peak_rss_bytes"}) {
    EXPECT_GT(fig[id], 0.0) << id;
  }
  ASSERT_EQ(j["details"]["sizes"].size(), 2u);
  EXPECT_EQ(j["details"]["sizes"][1]["runs"].size(), 2u);
  EXPECT_EQ(j["details"]["sizes"][1]["runs"][0]["step_seconds"].size(), 3u);
  EXPECT_TRUE(fs::exists(tmp / "f" / "flux-steps-32.svg"));
  // A sweep over the transformer's bits: one row per size and setting, each with its figures.
  ASSERT_EQ(testing::run_command(
                cat({quote(testing::tools_dir() / "bench-cli"), " --threads 1 flux -m ",
                     quote(tiny_pipeline()), " --sizes 16 --steps 2 -r 1 --warmup 0 --quantize 0,4",
                     " --probe-mib 4 --out ", quote(tmp / "q")}),
                &out),
            0)
      << out;
  std::ifstream fq(tmp / "q" / "results.json");
  const auto jq = nlohmann::json::parse(fq);
  std::map<std::string, double> figq;
  for (const auto& x : jq["figures"]) figq[x["id"]] = x["value"];
  EXPECT_GT(figq["16.total_seconds"], 0.0);
  EXPECT_GT(figq["16-q4.total_seconds"], 0.0);
  ASSERT_EQ(jq["details"]["sizes"].size(), 2u);
  EXPECT_EQ(jq["details"]["sizes"][1]["quantize"], 4);
  EXPECT_NE(testing::run_command(
                cat({quote(testing::tools_dir() / "bench-cli"), " flux -m ", quote(tiny_pipeline()),
                     " --quantize 5 --out ", quote(tmp / "bad")}),
                &out),
            0);
  EXPECT_NE(out.find("--quantize 5: 0 (as stored), 4 or 8"), std::string::npos) << out;
}

// hearth-bench-flux-transformer --dtype f8_e4m3 / f8_e5m2: the random matrices are stored in
// float8, each byte the same seed's f32 weight rounded to the format (vectors stay f32), and a
// tiny transformer made of them runs, its velocity within the rounding's reach of the f32
// model's, ordered by the formats' precision: relative RMS differences measured 0.0957 (e4m3fn,
// 3 mantissa bits) and 0.1447 (e5m2, 2 bits), bounded at twice that; bf16 (7 bits) below a
// quarter of e4m3fn's, e5m2 above it.
TEST(BenchFluxTransformer, Float8RandomWeights) {
  ThreadPool pool(2);
  for (const DType t : {DType::kF8E4M3, DType::kF8E5M2}) {
    SCOPED_TRACE(dtype_name(t));
    // Tensors are numbered in the order they are asked for: the same requests of both.
    const auto f32 = models::detail::EncoderWeights::random(DType::kF32, 5, pool);
    const auto f8 = models::detail::EncoderWeights::random(t, 5, pool);
    const TensorView m = f8.need("a.weight", {24, 64});
    const TensorView m32 = f32.need("a.weight", {24, 64});
    ASSERT_EQ(m.dtype, t);
    const auto* got = reinterpret_cast<const std::uint8_t*>(m.data);
    const auto* want = reinterpret_cast<const float*>(m32.data);
    for (std::int64_t i = 0; i < 24 * 64; ++i) {
      ASSERT_EQ(got[i], t == DType::kF8E4M3 ? f32_to_f8e4m3(want[i]) : f32_to_f8e5m2(want[i]))
          << "weight " << i;
    }
    const TensorView v = f8.need("a.bias", {24});
    EXPECT_EQ(v.dtype, DType::kF32);
    EXPECT_EQ(std::memcmp(v.data, f32.need("a.bias", {24}).data, 24 * sizeof(float)), 0);
  }
  EXPECT_EQ(f32_to_f8e5m2(57344.0f), 0x7B);
  EXPECT_EQ(f32_to_f8e5m2(1e6f), 0x7C);    // infinity, as PyTorch's cast
  EXPECT_EQ(f32_to_f8e5m2(1.125f), 0x3C);  // a tie to the even code (1.0)
  EXPECT_EQ(f32_to_f8e5m2(1.375f), 0x3E);  // a tie to the even code (1.5)

  models::FluxTransformerConfig c;
  c.layers = c.single_layers = 1;
  c.heads = 2;
  c.head_dim = 16;
  c.axes_dims = {4, 6, 6};
  c.joint_dim = 32;
  c.pooled_dim = 24;
  models::TextEncoderOptions o;
  o.threads = 2;
  const auto call = testing::make_calls(c)[0];
  const std::vector<float> exact =
      models::FluxTransformer::random(c, DType::kF32, 3, o)->forward(call.input());
  const auto relative_rms = [&](DType t) {
    const std::vector<float> v = models::FluxTransformer::random(c, t, 3, o)->forward(call.input());
    EXPECT_EQ(v.size(), exact.size());
    double diff = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < std::min(v.size(), exact.size()); ++i) {
      EXPECT_TRUE(std::isfinite(v[i])) << dtype_name(t) << " " << i;
      diff += (v[i] - exact[i]) * (v[i] - exact[i]);
      norm += exact[i] * exact[i];
    }
    const double rel = std::sqrt(diff / norm);
    std::printf("%s: velocity relative RMS difference to f32 %.4f\n",
                std::string(dtype_name(t)).c_str(), rel);
    return rel;
  };
  const double e4m3 = relative_rms(DType::kF8E4M3);
  const double e5m2 = relative_rms(DType::kF8E5M2);
  const double bf16 = relative_rms(DType::kBF16);
  EXPECT_LT(e4m3, 0.19);
  EXPECT_LT(e5m2, 0.29);
  EXPECT_GT(e5m2, e4m3);
  EXPECT_GT(bf16, 0.0);
  EXPECT_LT(bf16, e4m3 / 4);
}

}  // namespace
}  // namespace hearth::bench
