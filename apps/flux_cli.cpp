// flux-cli: FLUX.1 schnell/dev text-to-image (and image-to-image) on this machine, PNG out.
// The pipeline is hearth::models::FluxPipeline (src/hearth/models/flux_pipeline.hpp); this file
// reads the flags, draws the progress bar and writes the files.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "hearth/cli/app.hpp"
#include "hearth/cli/console.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/image/image.hpp"
#include "hearth/image/png.hpp"
#include "hearth/models/flux_pipeline.hpp"

namespace fs = std::filesystem;
using hearth::Error;
using hearth::ErrorCode;
namespace models = hearth::models;

namespace {

constexpr const char* kFooter = R"(Examples:
  flux-cli --prompt "a lighthouse at dawn, oil painting" --output lighthouse.png
  flux-cli --model dev --prompt "a red fox in snow" --steps 28 --guidance 3.5 --seed 7
  flux-cli --model ~/ComfyUI/models/unet/flux1-schnell.safetensors --prompt "..." \
           --tokenizers ~/flux-tokenizers          (BFL single files, ComfyUI's folders)
  flux-cli --prompt "the same, at dusk" --init-image day.png --strength 0.6
  flux-cli --prompt "..." --n-images 4 --output cats.png   (cats-1.png .. cats-4.png, cats-grid.png)
  flux-cli --prompt "..." --noise start.npy   (a float32 [16, H/8, W/8] latent from elsewhere)

Models: a diffusers FLUX.1 folder (model_index.json, transformer/, text_encoder/,
text_encoder_2/, vae/, tokenizer/, tokenizer_2/, scheduler/); Black Forest Labs' single files
(flux1-schnell.safetensors or flux1-dev.safetensors with ae.safetensors, clip_l.safetensors and
t5xxl_*.safetensors beside it or in ComfyUI's ../vae, ../clip, ../text_encoders; the tokenizers
from --tokenizers, beside it, or a FLUX.1 snapshot in the Hugging Face cache); or "schnell" /
"dev" / a repo id found in the local Hugging Face cache. hearth never downloads anything.

Seeds: seeded noise comes from std::mt19937_64 through Box-Muller (docs/flux.md); image k of
a run uses seed + k. It is not torch's generator, so the same seed gives a different image than
diffusers; to reproduce another program's image, save its starting latent with numpy and pass it
with --noise.

Stages run one at a time and release their weights (text encoders, then the transformer, then
the VAE), so the peak memory is the largest stage. Ctrl+C stops between steps; nothing is
written then. docs/flux.md has the details.)";

struct Options {
  std::string prompt;
  std::string model = "schnell";
  std::optional<int> steps;
  std::int64_t width = 0, height = 0;
  std::optional<std::uint64_t> seed;
  std::optional<float> guidance;
  int n_images = 1;
  std::string init_image;
  float strength = 0.6f;
  std::string noise;
  std::optional<std::size_t> t5_max_length;
  std::string output = "flux.png";
  bool metadata = false;
  bool json = false;
  int quantize = 0;
  std::vector<std::string> loras;
  models::FluxOpenOptions open;
};

// out.png -> out-K.png (K from 1) for several images; "grid" for the grid.
fs::path image_path(const fs::path& output, const std::string& suffix) {
  if (suffix.empty()) return output;
  fs::path p = output;
  p.replace_filename(output.stem().string() + "-" + suffix + output.extension().string());
  return p;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.2f s" : "%.1f s", s);
  return buf;
}

int generate(const Options& o, const hearth::cli::CommonOptions& common) {
  if (o.prompt.empty()) throw Error(ErrorCode::kInvalidArgument, "--prompt is empty");
  fs::path output(o.output);
  if (output.extension() != ".png") {
    throw Error(ErrorCode::kInvalidArgument, "--output must name a .png file", {.file = o.output});
  }
  const models::FluxPipeline pipe = models::FluxPipeline::open(o.model, o.open);
  models::FluxRequest req;
  req.prompt = o.prompt;
  req.width = o.width;
  req.height = o.height;
  req.steps = o.steps;
  req.seed = o.seed;
  req.guidance = o.guidance;
  req.t5_max_length = o.t5_max_length;
  req.n_images = o.n_images;
  if (!o.init_image.empty()) {
    req.init_image = hearth::image::read_png(o.init_image).image;
    req.strength = o.strength;
  }
  if (!o.noise.empty()) {
    // The size the noise is checked against: the request's, with the defaults filled in.
    models::FluxRequest sized = req;
    sized.seed = 0;
    sized = pipe.resolve(sized);
    req.noise = models::read_flux_noise(o.noise, sized.height, sized.width);
    if (o.n_images == 1) req.n_images = static_cast<int>(req.noise.size());
  }
  req = pipe.resolve(req);  // every mistake reported before anything loads
  if (output.has_parent_path()) fs::create_directories(output.parent_path());

  hearth::cli::Progress bar("flux-cli");
  struct Clear {
    hearth::cli::Progress& p;
    ~Clear() { p.clear(); }
  } clear{bar};
  std::size_t done = 0;
  double step_total = 0.0;
  // --json is for programs: no progress lines around it.
  const auto on_progress = [&](const models::FluxProgress& p) {
    if (o.json) return;
    if (p.kind == models::FluxProgress::Kind::kStage) {
      bar.message(p.stage + " ...");
      return;
    }
    ++done;
    step_total += p.step_seconds;
    const std::size_t total = static_cast<std::size_t>(p.steps) * p.images;
    const double per = step_total / static_cast<double>(done);
    char detail[160];
    std::snprintf(detail, sizeof detail, "image %d/%d step %d/%d, %.2f s/step, ETA %.0fs",
                  p.image + 1, p.images, p.step, p.steps, per,
                  per * static_cast<double>(total - done));
    bar.update(done, total, detail, 0, 0);
  };
  models::FluxRunOptions run;
  run.threads = common.threads;
  run.quantize_bits = o.quantize;
  for (const std::string& l : o.loras) run.loras.push_back(models::parse_flux_lora(l));
  const models::FluxResult r = pipe.generate(req, run, on_progress);
  bar.clear();

  models::FluxImageMetadata meta = models::flux_metadata(r, req.prompt, o.model);
  meta.noise = o.noise;
  meta.loras = o.loras;
  if (req.init_image) {
    meta.init_image = o.init_image;
    meta.strength = req.strength;
  }
  std::vector<std::string> written;
  const bool several = r.images.size() > 1;
  for (std::size_t k = 0; k < r.images.size(); ++k) {
    meta.seed = r.seeds.empty() ? std::nullopt : std::optional(r.seeds[k]);
    const fs::path path = image_path(output, several ? std::to_string(k + 1) : "");
    hearth::image::write_png(path, r.images[k], models::to_png_text(meta));
    written.push_back(path.string());
    if (o.metadata) {
      fs::path json_path = path;
      json_path.replace_extension(".json");
      const std::string text = models::to_json(meta).dump(2) + "\n";
      hearth::formats::AtomicFileWriter w(json_path);
      w.write(text.data(), text.size());
      w.commit();
      written.push_back(json_path.string());
    }
  }
  if (several) {
    // The grid's seed chunk is the first image's; image k has seed + k.
    meta.seed = r.seeds.empty() ? std::nullopt : std::optional(r.seeds.front());
    const fs::path path = image_path(output, "grid");
    hearth::image::write_png(path, hearth::image::grid(r.images), models::to_png_text(meta));
    written.push_back(path.string());
  }

  if (o.json) {
    nlohmann::json j = models::to_json(r);
    j["files"] = written;
    j["model"] = o.model;
    j["layout"] = models::to_string(pipe.files().layout);
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  for (const std::string& n : r.notices) std::fprintf(stderr, "flux-cli: note: %s\n", n.c_str());
  std::string seeds = r.seeds.empty() ? "noise " + o.noise : "seed " + std::to_string(r.seeds[0]);
  if (r.seeds.size() > 1) seeds += ".." + std::to_string(r.seeds.back());
  char guidance[32] = "";
  if (r.guidance) std::snprintf(guidance, sizeof guidance, ", guidance %g", *r.guidance);
  std::printf("wrote %s (%lldx%lld, %s, %d steps%s)\n", written.front().c_str(),
              static_cast<long long>(r.width), static_cast<long long>(r.height), seeds.c_str(),
              r.denoise_steps, guidance);
  for (std::size_t i = 1; i < written.size(); ++i) std::printf("wrote %s\n", written[i].c_str());
  double total = 0.0;
  for (const models::FluxStage& s : r.stages) {
    total += s.seconds;
    std::printf("  %-17s %9s   peak RSS %s\n", s.name.c_str(), seconds(s.seconds).c_str(),
                hearth::format_bytes(s.peak_rss_bytes).c_str());
  }
  if (!r.step_seconds.empty()) {
    const auto [lo, hi] = std::minmax_element(r.step_seconds.begin(), r.step_seconds.end());
    std::printf("  per step          %9s   (%zu steps, %s to %s)\n",
                seconds(std::accumulate(r.step_seconds.begin(), r.step_seconds.end(), 0.0) /
                        static_cast<double>(r.step_seconds.size()))
                    .c_str(),
                r.step_seconds.size(), seconds(*lo).c_str(), seconds(*hi).c_str());
  }
  std::printf("  total             %9s   peak RSS %s\n", seconds(total).c_str(),
              hearth::format_bytes(r.peak_rss_bytes).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"FLUX.1 schnell/dev text-to-image on this machine's CPU, PNG out", "flux-cli"};
  app.footer(kFooter);
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  Options o;
  app.add_option("-p,--prompt", o.prompt, "What to draw")->required();
  app.add_option("-m,--model", o.model,
                 "A FLUX.1 diffusers folder, a flux1-*.safetensors file (or its folder), or "
                 "schnell / dev / a repo id in the local Hugging Face cache")
      ->capture_default_str();
  app.add_option("--steps", o.steps, "Denoising steps (default 4 for schnell, 28 for dev)")
      ->check(CLI::Range(1, models::kFluxMaxSteps));
  app.add_option("--width", o.width,
                 "Image width, a multiple of 16 (default 1024, or the --init-image's)");
  app.add_option("--height", o.height,
                 "Image height, a multiple of 16 (default 1024, or the --init-image's)");
  app.add_option("--seed", o.seed, "Seed of the starting noise (default: random; printed)");
  app.add_option("--guidance", o.guidance, "Distilled guidance, FLUX.1-dev only (default 3.5)");
  app.add_option("-n,--n-images", o.n_images,
                 "Images to make (seeds seed, seed + 1, ...), each saved, plus a grid")
      ->check(CLI::Range(1, models::kFluxMaxImages));
  auto* init = app.add_option("--init-image", o.init_image,
                              "Image-to-image: start from this PNG (of the output size)");
  app.add_option("--strength", o.strength,
                 "Image-to-image: how much of the schedule runs, (0, 1]: 1 ignores the image")
      ->needs(init)
      ->capture_default_str();
  auto* noise = app.add_option("--noise", o.noise,
                               "Start from this float32 .npy latent [16, H/8, W/8] (or [N, 16, "
                               "H/8, W/8]) instead of seeded noise");
  noise->excludes(app.get_option("--seed"));
  app.add_option("--t5-max-length", o.t5_max_length,
                 "T5 prompt tokens (default 256 for schnell, 512 for dev; at most 512)")
      ->check(CLI::Range(2, 512));
  app.add_option("-o,--output", o.output,
                 "PNG to write (prompt, seed, steps, size and model in its text chunks)")
      ->capture_default_str();
  app.add_option("--quantize", o.quantize,
                 "Quantize the transformer's f32/f16/bf16 matrices at load to 4 (q4_0) or 8 "
                 "(q8_0) bits, for machines without the memory for bf16 (default: as stored)")
      ->check(CLI::IsMember({4, 8}));
  app.add_option("--lora", o.loras,
                 "A LoRA adapter PATH[:SCALE] (diffusers/PEFT, kohya or BFL names); repeatable");
  app.add_flag("--metadata", o.metadata, "Also write the metadata as JSON beside each image");
  app.add_flag("--json", o.json, "Print the run's figures (stages, steps, memory) as JSON");
  app.add_option("--clip", o.open.clip, "BFL / mflux layouts: the clip_l.safetensors to use");
  app.add_option("--t5", o.open.t5, "BFL / mflux layouts: the t5xxl_*.safetensors to use");
  app.add_option("--vae", o.open.vae, "BFL / mflux layouts: the ae.safetensors to use");
  app.add_option("--tokenizers", o.open.tokenizers,
                 "BFL layout: a folder holding FLUX.1's tokenizer/ and tokenizer_2/");
  return hearth::cli::run(app, argc, argv, [&] { return generate(o, common); });
}
