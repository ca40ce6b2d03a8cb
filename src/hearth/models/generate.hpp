// Text generation on a decoder Session: feed the prompt (reusing the cached prefix a previous
// turn left), then sample token after token, streaming whole UTF-8 characters to a callback,
// until an end token, a stop string, the token limit, a full context or Ctrl+C.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/models/decoder.hpp"
#include "hearth/models/sampler.hpp"

namespace hearth::models {

// Holds back generated text that may be the beginning of a stop string, so that a stop string
// never reaches the user, not even in part.
class StopScanner {
 public:
  explicit StopScanner(std::vector<std::string> stops);
  // Appends text and returns what can be released now. Once a stop string has completed,
  // stopped() is true, the text before it is released and the rest is dropped.
  std::string push(std::string_view text);
  // Releases whatever is still held back (no stop string completed).
  std::string finish();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
  std::string matched_;
};

enum class FinishReason {
  kStop,       // an end-of-turn token or a stop string
  kLength,     // the token limit
  kContext,    // the context is full
  kCancelled,  // Ctrl+C: the text so far is kept
};
const char* to_string(FinishReason reason);

struct GenerateOptions {
  SamplingParams sampling;
  std::int64_t max_tokens = 512;  // 0: until the context is full
  std::vector<std::string> stop;  // stop strings (not part of the text)
  bool stop_at_eos = true;        // the model's end tokens end the answer
  // When set, receives the logits of every prompt position fed in this call, then of every
  // generated token once it has been fed, row-major [rows, vocab] (so the rows are
  // prompt-fed + generated; the last generated token is fed too, to give its row).
  std::vector<float>* logits = nullptr;
};

struct Generation {
  std::size_t prompt_tokens = 0;  // the prompt's length
  std::size_t reused_tokens = 0;  // of which the cache already held this many
  std::vector<std::int32_t> token_ids;
  std::string text;
  FinishReason finish = FinishReason::kStop;
  Timings timings;  // prefill and decode of this call
};

// Runs prompt (the whole conversation's ids: the cached common prefix is kept) and generates.
// A prompt longer than the context is an Error(kInvalidArgument) before anything runs.
// Cancellation during the prompt throws Error(kCancelled); the session then holds the reused
// prefix.
Generation generate(Session& session, std::span<const std::int32_t> prompt,
                    const GenerateOptions& options,
                    const std::function<void(std::string_view)>& on_text = {});

}  // namespace hearth::models
