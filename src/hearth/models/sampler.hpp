// Choosing the next token from a decoder's logits: greedy, or sampling with temperature, top-k,
// top-p (nucleus), min-p and a repetition penalty, from a seeded generator so that the same seed
// and settings give the same text on every machine.
//
// Order of the steps (as Hugging Face's generate applies its processors and warpers):
// repetition penalty -> temperature -> top-k -> top-p -> min-p -> draw. Temperature 0 is greedy
// (the lowest id among equal maxima); the penalty applies to greedy decoding too.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace hearth::models {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy
  std::int32_t top_k = 0;           // 0 = off
  float top_p = 1.0f;               // 1 = off; keeps the smallest set with mass >= top_p
  float min_p = 0.0f;               // 0 = off; keeps tokens with p >= min_p * p(max)
  float repetition_penalty = 1.0f;  // 1 = off; CTRL's rule: positive logits / p, negative * p
  std::int32_t repeat_last_n = 64;  // how many recent tokens the penalty looks at (0 = all)
  std::uint64_t seed = 0;

  // Throws Error(kInvalidArgument) naming the setting that is out of range.
  void validate() const;
  bool greedy() const { return temperature <= 0.0f; }
};

// One sampler per generation. Not thread-safe.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // The next token given the logits of the last position and the tokens so far (the context the
  // repetition penalty looks at). logits is not modified.
  std::int32_t sample(std::span<const float> logits, std::span<const std::int32_t> history);

  const SamplingParams& params() const { return params_; }

 private:
  double uniform();  // [0, 1), the same bits from the same seed everywhere (mt19937_64)

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<std::pair<float, std::int32_t>> candidates_;
};

}  // namespace hearth::models
