// FLUX.1's flow-matching Euler sampler (diffusers FlowMatchEulerDiscreteScheduler as the FLUX
// pipelines drive it): sigmas linspace(1, 1 / steps, steps), then for dev's dynamic shifting
// sigma' = e^mu / (e^mu + (1 / sigma - 1)) with mu linear in the image token count (base_shift
// at base_image_seq_len to max_shift at max_image_seq_len), else the static shift
// s sigma / (1 + (s - 1) sigma) (schnell: s = 1, none); a final 0 is appended. The transformer
// gets timestep = sigma (it embeds 1000 sigma); each Euler step is x += (sigma_next - sigma) v.
// Also the token ids of the 2x2-packed latent and of the text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace hearth::models {

struct FluxSchedule {
  bool dynamic_shift = false;  // use_dynamic_shifting (dev: true)
  double shift = 1.0;          // static shift (schnell: 1.0)
  double base_shift = 0.5, max_shift = 1.15;
  std::int64_t base_seq_len = 256, max_seq_len = 4096;

  static FluxSchedule schnell() { return {}; }
  static FluxSchedule dev() { return {.dynamic_shift = true, .shift = 3.0}; }
  // A diffusers scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler); errors name
  // the file and key.
  static FluxSchedule load(const std::filesystem::path& config_json);
};

// The steps + 1 sigmas, from 1 (or its shifted value) down to 0, for an image of image_tokens
// packed tokens ((height / 16) * (width / 16)).
std::vector<double> flux_sigmas(const FluxSchedule& s, int steps, std::int64_t image_tokens);
// mu for dynamic shifting.
double flux_mu(const FluxSchedule& s, std::int64_t image_tokens);

// One Euler step in place: x += (sigma_next - sigma) * v.
void flux_euler_step(std::span<float> x, std::span<const float> v, double sigma, double sigma_next);

// Ids [(h / 2) * (w / 2), 3] of the packed latent of a [16, h, w] latent: (0, row, column), rows
// first; and [tokens, 3] zeros for the text.
std::vector<std::int64_t> flux_image_ids(std::int64_t latent_height, std::int64_t latent_width);
std::vector<std::int64_t> flux_text_ids(std::int64_t tokens);

}  // namespace hearth::models
