#include "hearth/models/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "hearth/core/error.hpp"

namespace hearth::models {

namespace {

// Larger logit first; among equal logits the lower id, so every order is total and repeatable.
bool before(const std::pair<float, std::int32_t>& a, const std::pair<float, std::int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

std::int32_t argmax(const float* x, std::size_t n) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return static_cast<std::int32_t>(best);
}

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::kInvalidArgument, what);
}

}  // namespace

void SamplingParams::validate() const {
  require(std::isfinite(temperature) && temperature >= 0.0f,
          "temperature must be 0 (greedy) or positive, got " + std::to_string(temperature));
  require(top_k >= 0, "top-k must be 0 (off) or positive, got " + std::to_string(top_k));
  require(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f,
          "top-p must be in (0, 1], got " + std::to_string(top_p));
  require(std::isfinite(min_p) && min_p >= 0.0f && min_p < 1.0f,
          "min-p must be in [0, 1), got " + std::to_string(min_p));
  require(
      std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
      "repetition penalty must be positive (1 = off), got " + std::to_string(repetition_penalty));
  require(repeat_last_n >= 0,
          "repeat-last-n must be 0 (all) or positive, got " + std::to_string(repeat_last_n));
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  params_.validate();
}

double Sampler::uniform() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

std::int32_t Sampler::sample(std::span<const float> logits, std::span<const std::int32_t> history) {
  const std::size_t n = logits.size();
  if (n == 0) throw Error(ErrorCode::kInternal, "sampling from an empty vocabulary");
  const float* x = logits.data();

  if (params_.repetition_penalty != 1.0f && !history.empty()) {
    work_.assign(logits.begin(), logits.end());
    std::size_t first = 0;
    if (params_.repeat_last_n > 0 &&
        history.size() > static_cast<std::size_t>(params_.repeat_last_n)) {
      first = history.size() - static_cast<std::size_t>(params_.repeat_last_n);
    }
    std::unordered_set<std::int32_t> seen;
    for (std::size_t i = first; i < history.size(); ++i) {
      const std::int32_t id = history[i];
      if (id < 0 || static_cast<std::size_t>(id) >= n || !seen.insert(id).second) continue;
      float& v = work_[static_cast<std::size_t>(id)];
      v = v > 0.0f ? v / params_.repetition_penalty : v * params_.repetition_penalty;
    }
    x = work_.data();
  }
  if (params_.greedy()) return argmax(x, n);

  // Temperature-scaled logits as (value, id) candidates.
  const float inv_t = 1.0f / params_.temperature;
  candidates_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    candidates_[i] = {x[i] * inv_t, static_cast<std::int32_t>(i)};
  }
  bool sorted = false;
  if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < n) {
    const auto k = static_cast<std::ptrdiff_t>(params_.top_k);
    std::nth_element(candidates_.begin(), candidates_.begin() + k - 1, candidates_.end(), before);
    candidates_.resize(static_cast<std::size_t>(k));
    std::sort(candidates_.begin(), candidates_.end(), before);
    sorted = true;
  }
  float top = -std::numeric_limits<float>::infinity();
  for (const auto& c : candidates_) top = std::max(top, c.first);
  if (!std::isfinite(top)) {
    throw Error(ErrorCode::kInternal, "the model produced no finite logit to sample from");
  }

  if (params_.top_p < 1.0f) {
    double total = 0.0;
    for (const auto& c : candidates_) total += std::exp(static_cast<double>(c.first - top));
    const double want = static_cast<double>(params_.top_p) * total;
    // Order only as far as the nucleus reaches (most distributions need a few dozen tokens):
    // blocks of growing size are selected with nth_element and sorted in place.
    std::size_t ordered = sorted ? candidates_.size() : 0;
    std::size_t keep = 0;
    double mass = 0.0;
    while (mass < want && keep < candidates_.size()) {
      if (keep == ordered) {
        const std::size_t next =
            std::min(candidates_.size(), std::max<std::size_t>(64, ordered * 4));
        const auto first = candidates_.begin() + static_cast<std::ptrdiff_t>(ordered);
        const auto last = candidates_.begin() + static_cast<std::ptrdiff_t>(next);
        if (last != candidates_.end()) std::nth_element(first, last - 1, candidates_.end(), before);
        std::sort(first, last, before);
        ordered = next;
      }
      mass += std::exp(static_cast<double>(candidates_[keep].first - top));
      ++keep;
    }
    candidates_.resize(std::max<std::size_t>(keep, 1));
  }
  if (params_.min_p > 0.0f) {
    const float floor = top + std::log(params_.min_p);
    std::erase_if(candidates_, [&](const auto& c) { return c.first < floor; });
  }

  double total = 0.0;
  for (const auto& c : candidates_) total += std::exp(static_cast<double>(c.first - top));
  double u = uniform() * total;
  for (const auto& c : candidates_) {
    u -= std::exp(static_cast<double>(c.first - top));
    if (u < 0.0) return c.second;
  }
  return candidates_.back().second;  // rounding left a sliver of mass past the last candidate
}

}  // namespace hearth::models
