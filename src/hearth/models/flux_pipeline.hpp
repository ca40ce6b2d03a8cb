// FLUX.1 text-to-image (and image-to-image) end to end, as diffusers' FluxPipeline and
// FluxImg2ImgPipeline run it: the prompt through CLIP-L (pooled vector) and T5 (hidden states),
// seeded or given noise, the flow-matching Euler loop over the transformer, and the VAE decode to
// 8-bit RGB. Stages run one after another and each releases its weights before the next loads
// (text encoders, then the transformer, then the VAE), so the peak memory is the largest stage,
// not the sum. docs/flux.md describes the layouts, seeds and stages.
//
// Model layouts (FluxPipeline::open):
//  * the diffusers folder of black-forest-labs/FLUX.1-schnell / -dev: model_index.json,
//    transformer/, text_encoder/, text_encoder_2/, vae/, tokenizer/, tokenizer_2/, scheduler/;
//  * Black Forest Labs' single files as ComfyUI users keep them: the transformer
//    flux1-schnell.safetensors or flux1-dev.safetensors, or a GGUF of the same tensors
//    (flux1-*.gguf), given as the
//    path or found in the folder given; ae.safetensors, clip_l.safetensors and
//    t5xxl_*.safetensors beside it or in ComfyUI's sibling folders (../vae, ../clip,
//    ../text_encoders); the tokenizer/ and tokenizer_2/ folders from FluxOpenOptions::tokenizers,
//    else beside the file or one folder up, else from a FLUX.1 snapshot in the local Hugging
//    Face cache;
//  * mflux's saved model folder (mflux-save: transformer/ found by its shards' metadata, see
//    is_mflux_folder; tokenizer/, tokenizer_2/), or its transformer/ itself: the 4- or 8-bit MLX
//    transformer is read in place, and so are its text_encoder/ (CLIP), text_encoder_2/ (T5)
//    and vae/ when present; where one is absent, clip_l.safetensors, t5xxl_*.safetensors or
//    ae.safetensors is looked for as for single files (beside the folder, ComfyUI's siblings, or
//    FluxOpenOptions, which also override mflux's own);
//  * "schnell" / "dev" (or any repo id): the diffusers snapshot in the local Hugging Face cache
//    (no network).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hearth/image/image.hpp"
#include "hearth/image/png.hpp"
#include "hearth/models/encoder_common.hpp"
#include "hearth/models/flux_sampler.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "hearth/models/image_net.hpp"

namespace hearth::models {

enum class FluxLayout { kDiffusers, kBfl, kMflux };
const char* to_string(FluxLayout layout);  // "diffusers", "bfl", "mflux"

// Where each part of a model is. Folders for the diffusers layout, files for BFL's (mflux: the
// transformer folder, the other parts files).
struct FluxFiles {
  FluxLayout layout = FluxLayout::kDiffusers;
  std::filesystem::path transformer;     // transformer/ or flux1-*.safetensors
  std::filesystem::path clip;            // text_encoder/ or clip_l.safetensors
  std::filesystem::path t5;              // text_encoder_2/ or t5xxl_*.safetensors
  std::filesystem::path vae;             // vae/ or ae.safetensors
  std::filesystem::path clip_tokenizer;  // tokenizer/
  std::filesystem::path t5_tokenizer;    // tokenizer_2/
  std::filesystem::path scheduler;       // scheduler/scheduler_config.json; empty: by variant
};

// Explicit locations for the BFL and mflux layouts' separate files (each overrides the search).
struct FluxOpenOptions {
  std::filesystem::path clip;        // clip_l.safetensors
  std::filesystem::path t5;          // t5xxl_*.safetensors
  std::filesystem::path vae;         // ae.safetensors
  std::filesystem::path tokenizers;  // a folder holding tokenizer/ and tokenizer_2/
};

// How the pipeline runs.
struct FluxRunOptions {
  std::size_t threads = 0;  // 0: every core
  SimdLevel level = simd_level();
  // The transformer's load-time options (FluxTransformerOptions): 4 or 8 quantizes its
  // f32/f16/bf16 matrices to q4_0 / q8_0 at load (0: as stored), and LoRA adapters applied
  // beside the (possibly quantized) base weights.
  int quantize_bits = 0;
  std::vector<FluxLora> loras;
};

// The limits FluxRequest is checked against.
inline constexpr std::int64_t kFluxMaxSide = 4096;
inline constexpr std::int64_t kFluxMaxPixels = std::int64_t{1} << 22;  // 4 megapixels
inline constexpr int kFluxMaxSteps = 1000;
inline constexpr int kFluxMaxImages = 64;

struct FluxRequest {
  std::string prompt;
  // Multiples of 16, each side 16..kFluxMaxSide, at most kFluxMaxPixels. 0: the init image's
  // size, else 1024.
  std::int64_t width = 0, height = 0;
  std::optional<int> steps;                  // default 4 (schnell) / 28 (dev)
  std::optional<std::uint64_t> seed;         // default: random (the result records it)
  std::optional<float> guidance;             // dev only; default 3.5
  std::optional<std::size_t> t5_max_length;  // default 256 (schnell) / 512 (dev); at most 512
  int n_images = 1;                          // 1..kFluxMaxImages
  // Image-to-image: the start image (its size must be width x height) and how much of the
  // schedule runs over it, in (0, 1] (diffusers FluxImg2ImgPipeline; default 0.6).
  std::optional<image::Image8> init_image;
  float strength = 0.6f;
  // The starting noise, one latent [16, height / 8, width / 8] per image, instead of seeded
  // noise (read_flux_noise reads it from .npy). Empty: seeded.
  std::vector<Latent> noise;
};

// What the pipeline reports while it runs. kStage: a stage begins (stage names it). kStep: a
// denoising step ended.
struct FluxProgress {
  enum class Kind { kStage, kStep } kind = Kind::kStage;
  std::string stage;  // "vae encode", "text encoders", "transformer load", "denoise", "vae decode"
  int image = 0, images = 1;  // image index (kStep), of images
  int step = 0, steps = 0;    // steps done of this image's steps (kStep)
  double step_seconds = 0.0;  // the step that ended (kStep)
  double elapsed = 0.0;       // seconds since generate() began
};

struct FluxStage {
  std::string name;  // as FluxProgress::stage
  double seconds = 0.0;
  std::uint64_t peak_rss_bytes = 0;  // the process's peak resident size during the stage
};

struct FluxResult {
  std::vector<image::Image8> images;
  // Image k's seed (seed + k); empty when the noise was given.
  std::vector<std::uint64_t> seeds;
  std::int64_t width = 0, height = 0;
  int steps = 0;                  // the schedule's steps (requested or default)
  int denoise_steps = 0;          // steps run per image (fewer for image-to-image)
  std::optional<float> guidance;  // dev
  std::size_t t5_max_length = 0;
  std::vector<double> sigmas;  // the sigmas the loop ran through (denoise_steps + 1)
  std::vector<std::int32_t> clip_ids, t5_ids;  // the padded prompt tokens
  std::vector<std::string> notices;            // e.g. the prompt was truncated
  std::vector<FluxStage> stages;               // in order
  std::vector<double> step_seconds;            // every step of every image, in order
  std::uint64_t peak_rss_bytes = 0;            // the process's peak so far at the end
};

class FluxPipeline {
 public:
  // A model folder or file, or a repo id / "schnell" / "dev" in the local Hugging Face cache.
  // Finds every part and reads only configs and file headers; Error(kNotFound) lists what was
  // looked for and where, Error(kFormat) names a file that is not what its place says.
  static FluxPipeline open(const std::string& model, const FluxOpenOptions& options = {});

  const FluxFiles& files() const { return files_; }
  const std::string& model() const { return model_; }  // as given to open()
  bool dev() const { return dev_; }                    // the transformer embeds guidance
  const FluxSchedule& schedule() const { return schedule_; }
  std::int64_t joint_dim() const { return joint_dim_; }    // the T5 width it takes
  std::int64_t pooled_dim() const { return pooled_dim_; }  // the CLIP width it takes

  // The request with its defaults filled in (steps, size, guidance, T5 length, seed), checked:
  // Error(kInvalidArgument) names the field.
  FluxRequest resolve(const FluxRequest& request) const;

  // Runs every stage. Cancellable between steps (and inside the long stages): Error(kCancelled),
  // with everything loaded released. on_progress, when set, is called from this thread.
  FluxResult generate(const FluxRequest& request, const FluxRunOptions& run = {},
                      const std::function<void(const FluxProgress&)>& on_progress = {}) const;

 private:
  FluxFiles files_;
  std::string model_;
  bool dev_ = false;
  FluxSchedule schedule_;
  std::int64_t joint_dim_ = 0, pooled_dim_ = 0, in_channels_ = 0;
};

// Seeded noise: the latent [channels, height, width] (CHW) of standard normals drawn by
// std::mt19937_64 seeded with seed (the standard fixes its output), two 53-bit uniforms per pair
// of values through Box-Muller (u1 in (0, 1], u2 in [0, 1): sqrt(-2 ln u1) cos(2 pi u2), then
// sin), in double, rounded to float. It is not torch's generator: reproducing a run of another
// implementation goes through FluxRequest::noise.
Latent flux_seeded_noise(std::uint64_t seed, std::int64_t channels, std::int64_t height,
                         std::int64_t width);

// The starting noise from a float32 .npy: shape [16, height / 8, width / 8] for one image or
// [n, 16, height / 8, width / 8] for n. Errors name the file and both shapes.
std::vector<Latent> read_flux_noise(const std::filesystem::path& npy, std::int64_t height,
                                    std::int64_t width);

// The schedule image-to-image runs: of the sigmas for steps, those from index
// t_start = int(max(steps - steps * strength, 0)) on (diffusers' get_timesteps); the image
// latent is mixed as sigma_0 * noise + (1 - sigma_0) * latent. Error(kInvalidArgument) when no
// step would be left.
std::vector<double> flux_img2img_sigmas(const std::vector<double>& sigmas, float strength);

// The metadata of one generated image, for PNG text chunks and the JSON beside it.
struct FluxImageMetadata {
  std::string prompt;
  std::optional<std::uint64_t> seed;  // absent when the noise was given
  std::string noise;                  // the .npy the noise came from, if any
  int steps = 0;
  std::int64_t width = 0, height = 0;
  std::string model;
  std::optional<float> guidance;
  std::size_t t5_max_length = 0;
  std::string init_image;  // image-to-image: the start image and its strength
  float strength = 0.0f;
  std::vector<std::string> loras;  // "PATH:SCALE" of each adapter applied
};
// Keywords: prompt, seed, steps, size ("WxH"), model, and where they apply guidance,
// t5_max_length, noise, init_image, strength, loras; "Software" "hearth flux-cli".
// The metadata of an image of r: prompt and model as given, steps, size, guidance and T5 length
// from the result; the caller adds the seed or noise, init image and LoRAs.
FluxImageMetadata flux_metadata(const FluxResult& r, std::string prompt, std::string model);
image::PngText to_png_text(const FluxImageMetadata& m);
nlohmann::json to_json(const FluxImageMetadata& m);
// The run's figures: size, steps, seeds, sigmas, stages (seconds, peak RSS), step times, peak
// RSS, notices.
nlohmann::json to_json(const FluxResult& r);

}  // namespace hearth::models
