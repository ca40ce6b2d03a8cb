#include "hearth/models/flux_sampler.hpp"

#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"

namespace hearth::models {

using i64 = std::int64_t;

FluxSchedule FluxSchedule::load(const std::filesystem::path& config_json) {
  const std::string file = config_json.string();
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(formats::read_text_file(config_json));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kFormat, std::string("invalid JSON: ") + e.what(), {.file = file});
  }
  if (!cfg.is_object()) throw Error(ErrorCode::kFormat, "config is not an object", {.file = file});
  const std::string cls = cfg.value("_class_name", std::string("FlowMatchEulerDiscreteScheduler"));
  if (cls != "FlowMatchEulerDiscreteScheduler") {
    throw Error(ErrorCode::kUnsupported,
                "_class_name is \"" + cls + "\", not FlowMatchEulerDiscreteScheduler",
                {.file = file, .key = "_class_name"});
  }
  FluxSchedule s;
  const auto number = [&](const char* key, double fallback) {
    const auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return fallback;
    if (!it->is_number()) {
      throw Error(ErrorCode::kFormat, "config value must be a number", {.file = file, .key = key});
    }
    return it->get<double>();
  };
  if (const auto it = cfg.find("use_dynamic_shifting"); it != cfg.end()) {
    if (!it->is_boolean()) {
      throw Error(ErrorCode::kFormat, "use_dynamic_shifting must be true or false",
                  {.file = file, .key = "use_dynamic_shifting"});
    }
    s.dynamic_shift = it->get<bool>();
  }
  s.shift = number("shift", 1.0);
  s.base_shift = number("base_shift", 0.5);
  s.max_shift = number("max_shift", 1.15);
  s.base_seq_len = static_cast<i64>(number("base_image_seq_len", 256));
  s.max_seq_len = static_cast<i64>(number("max_image_seq_len", 4096));
  if (!(s.shift > 0.0) || s.max_seq_len == s.base_seq_len) {
    throw Error(ErrorCode::kFormat, "shift must be positive and the sequence lengths distinct",
                {.file = file});
  }
  for (const char* key : {"shift_terminal", "use_karras_sigmas", "use_exponential_sigmas",
                          "use_beta_sigmas", "stochastic_sampling", "invert_sigmas"}) {
    const auto it = cfg.find(key);
    if (it != cfg.end() && !it->is_null() && *it != false) {
      throw Error(ErrorCode::kUnsupported, "this scheduler option is not supported",
                  {.file = file, .key = key});
    }
  }
  return s;
}

double flux_mu(const FluxSchedule& s, i64 image_tokens) {
  const double m =
      (s.max_shift - s.base_shift) / static_cast<double>(s.max_seq_len - s.base_seq_len);
  const double b = s.base_shift - m * static_cast<double>(s.base_seq_len);
  return static_cast<double>(image_tokens) * m + b;
}

std::vector<double> flux_sigmas(const FluxSchedule& s, int steps, i64 image_tokens) {
  if (steps < 1 || steps > 10000) {
    throw Error(ErrorCode::kInvalidArgument,
                "steps must be 1..10000, not " + std::to_string(steps));
  }
  std::vector<double> sig(static_cast<std::size_t>(steps) + 1, 0.0);
  const double last = 1.0 / steps;
  const double em = std::exp(flux_mu(s, image_tokens));
  for (int i = 0; i < steps; ++i) {
    // numpy's linspace(1, 1 / steps, steps).
    const double t = steps == 1 ? 1.0 : 1.0 + (last - 1.0) * i / (steps - 1);
    sig[static_cast<std::size_t>(i)] =
        s.dynamic_shift ? em / (em + (1.0 / t - 1.0)) : s.shift * t / (1.0 + (s.shift - 1.0) * t);
  }
  return sig;
}

void flux_euler_step(std::span<float> x, std::span<const float> v, double sigma,
                     double sigma_next) {
  if (x.size() != v.size()) {
    throw Error(ErrorCode::kInvalidArgument, "Euler step: latent and velocity sizes differ");
  }
  const auto dt = static_cast<float>(sigma_next - sigma);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] += dt * v[i];
}

std::vector<i64> flux_image_ids(i64 latent_height, i64 latent_width) {
  if (latent_height < 2 || latent_width < 2 || latent_height % 2 != 0 || latent_width % 2 != 0) {
    throw Error(ErrorCode::kInvalidArgument, "packed latents need even sides of at least 2");
  }
  const i64 h = latent_height / 2, w = latent_width / 2;
  std::vector<i64> ids(static_cast<std::size_t>(h * w * 3), 0);
  for (i64 r = 0; r < h; ++r) {
    for (i64 c = 0; c < w; ++c) {
      ids[static_cast<std::size_t>((r * w + c) * 3 + 1)] = r;
      ids[static_cast<std::size_t>((r * w + c) * 3 + 2)] = c;
    }
  }
  return ids;
}

std::vector<i64> flux_text_ids(i64 tokens) {
  return std::vector<i64>(static_cast<std::size_t>(tokens * 3), 0);
}

}  // namespace hearth::models
