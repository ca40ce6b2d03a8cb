// What the FLUX transformer tests share: random inputs for transformer calls, the torch reference
// (tools/flux_reference.py) run on a model file or folder, and the comparison.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "hearth/formats/file_io.hpp"
#include "hearth/models/flux_sampler.hpp"
#include "hearth/models/flux_transformer.hpp"
#include "support/fixtures.hpp"

namespace hearth::testing {

namespace fs = std::filesystem;
using models::flux_image_ids;
using models::flux_text_ids;
using models::FluxTransformer;
using models::FluxTransformerConfig;
using models::FluxTransformerInput;

// f32 arithmetic against a float64 reference over the same stored values; velocities are O(1)
// (at most about 4 here).
constexpr double kTolerance = 5e-5;

inline void write_text(const fs::path& path, const std::string& text) {
  testing::write_bytes(
      path, std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                   reinterpret_cast<const std::byte*>(text.data()) + text.size()));
}

inline nlohmann::json run_reference(const std::string& args, const testing::TempDir& tmp) {
  std::string log;
  const int rc = testing::run_command(
      testing::cat({testing::kSystemPython, " ",
                    testing::quote(testing::source_dir() / "tools/flux_reference.py"), " ", args,
                    " --output ", testing::quote(tmp / "ref.json")}),
      &log);
  EXPECT_EQ(rc, 0) << log;
  return rc == 0 ? nlohmann::json::parse(formats::read_text_file(tmp / "ref.json"))
                 : nlohmann::json();
}

inline std::vector<float> normal(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Call {
  std::vector<float> image, context, pooled;
  std::vector<std::int64_t> img_ids, txt_ids;
  float timestep = 1.0f;
  std::optional<float> guidance;
  FluxTransformerInput input() const {
    return {image, img_ids, context, txt_ids, pooled, timestep, guidance};
  }
  nlohmann::json json() const {
    nlohmann::json j = {{"image", image},     {"img_ids", img_ids}, {"context", context},
                        {"txt_ids", txt_ids}, {"pooled", pooled},   {"timestep", timestep}};
    if (guidance) j["guidance"] = *guidance;
    return j;
  }
};

inline double max_diff(const std::vector<float>& got, const std::vector<double>& w, double* peak) {
  EXPECT_EQ(got.size(), w.size());
  double m = 0.0;
  for (std::size_t i = 0; i < std::min(got.size(), w.size()); ++i) {
    m = std::max(m, std::abs(got[i] - w[i]));
    *peak = std::max(*peak, std::abs(w[i]));
  }
  return m;
}

// Two calls on a [16, 4, 6] latent (2 x 3 packed tokens of 64) and 5 text tokens: FLUX's ids at
// timestep 0.75, then ids on every axis (the text axis too) at 0.3.
inline std::vector<Call> make_calls(const FluxTransformerConfig& c) {
  std::vector<Call> calls(2);
  calls[0].image = normal(6 * 64, 1);
  calls[0].img_ids = flux_image_ids(4, 6);
  calls[0].context = normal(5 * static_cast<std::size_t>(c.joint_dim), 2);
  calls[0].txt_ids = flux_text_ids(5);
  calls[0].pooled = normal(static_cast<std::size_t>(c.pooled_dim), 3);
  calls[0].timestep = 0.75f;
  calls[1] = calls[0];
  calls[1].timestep = 0.3f;
  std::mt19937 rng(9);
  for (auto* ids : {&calls[1].img_ids, &calls[1].txt_ids}) {
    for (auto& id : *ids) id = static_cast<std::int64_t>(rng() % 12);
  }
  if (c.guidance_embeds) {
    calls[0].guidance = 3.5f;
    calls[1].guidance = 1.0f;
  }
  return calls;
}

// The torch reference's velocities (and, with --q8-activations in extra, its "velocity_q8" in
// *q8) for the calls on a model folder or file, with more of its options in extra (empty after
// a failure, which it reports).
inline std::vector<std::vector<double>> reference_velocities(
    const fs::path& model, const std::vector<Call>& calls, const testing::TempDir& tmp,
    const std::string& extra = "", std::vector<std::vector<double>>* q8 = nullptr) {
  nlohmann::json in = {{"calls", nlohmann::json::array()}};
  for (const Call& call : calls) in["calls"].push_back(call.json());
  write_text(tmp / "in.json", in.dump());
  const auto ref = run_reference(
      "--model " + testing::quote(model) + " --input " + testing::quote(tmp / "in.json") + extra,
      tmp);
  std::vector<std::vector<double>> out;
  if (ref.is_null()) return out;
  for (const auto& v : ref["velocity"]) out.push_back(v.get<std::vector<double>>());
  if (q8 != nullptr && ref.contains("velocity_q8")) {
    for (const auto& v : ref["velocity_q8"]) q8->push_back(v.get<std::vector<double>>());
  }
  return out;
}

// Runs the calls through m and the torch reference on model (a folder or file); every output
// within tolerance (absolute). Returns hearth's outputs.
inline std::vector<std::vector<float>> expect_matches_torch(FluxTransformer& m,
                                                            const fs::path& model,
                                                            const std::vector<Call>& calls,
                                                            const testing::TempDir& tmp,
                                                            double tolerance = kTolerance) {
  const auto ref = reference_velocities(model, calls, tmp);
  std::vector<std::vector<float>> outs;
  if (ref.size() != calls.size()) return outs;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    outs.push_back(m.forward(calls[i].input()));
    EXPECT_EQ(outs.back().size(), 6u * 64u);
    double peak = 0.0;
    const double diff = max_diff(outs.back(), ref[i], &peak);
    EXPECT_LT(diff, tolerance) << "call " << i;
    EXPECT_GT(peak, 0.1) << "a degenerate output cannot test anything";
    std::printf("call %zu: max |hearth - torch| %.2e (tolerance %.1e), max |v| %.2f\n", i, diff,
                tolerance, peak);
  }
  return outs;
}

}  // namespace hearth::testing
