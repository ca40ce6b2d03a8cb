// Text generation on a decoder Session: feed the prompt (reusing the cached prefix a previous
// turn left), then sample token after token, streaming whole UTF-8 characters to a callback,
// until an end token, a stop string, the token limit, a full context or Ctrl+C. BatchGenerator
// runs several such generations over sessions of one model together, one decode_step() for all
// of them per token.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
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

// Several generations over sessions of one model, advanced together. Each step() first runs the
// prompts still waiting (at most prefill_chunk tokens of each), then samples one token for every
// stream and runs all those tokens in one decode_step(), so the weights are read once per step
// for every stream. Streams join (add) and leave (when they finish, or cancel()) between steps.
// Each stream behaves as generate() on its session with its options: the same token ids, text,
// callbacks and finish reason (exactly so where decode_step() is exact; docs/llm.md), its
// Generation's timings counting the whole time of the steps it took part in.
//
// Thread safety: one thread drives a BatchGenerator (add, step, size); the on_text callbacks run
// on it, inside step(). cancel() may come from any thread (a server's connection threads). A
// session belongs to its stream until the stream finishes.
// Ctrl+C (cancel_requested()) ends every stream with kCancelled at the next step.
class BatchGenerator {
 public:
  using StreamId = std::uint64_t;
  struct Finished {
    StreamId id = 0;
    Generation generation;  // what the stream made, its finish reason and timings
    // The exception that ended the stream, else null: Error(kCancelled) when Ctrl+C came during
    // its prompt (the session then holds the reused prefix, as generate() leaves it), a failure
    // of the computation, or what its on_text callback threw (no more text is sent to it; the
    // stream ends at the next step). The stream's finish is then kCancelled.
    std::exception_ptr error;
  };

  // prefill_chunk: the most prompt tokens a stream runs per step, so that a long prompt delays
  // the other streams' next token by one chunk's time rather than its whole prefill; 0 = each
  // prompt at once.
  explicit BatchGenerator(const LanguageModel& model, std::int64_t prefill_chunk = 256);
  ~BatchGenerator();
  BatchGenerator(const BatchGenerator&) = delete;
  BatchGenerator& operator=(const BatchGenerator&) = delete;

  // Starts a generation of prompt on session (as generate(): the cached common prefix is kept,
  // the session's timings are reset); it runs from the next step(). Throws, before anything
  // changes, what generate() throws for bad options or a prompt too long for the context, and
  // Error(kInvalidArgument) when the session belongs to another model or to a running stream.
  // The model needs its tokenizer (for the streamed text).
  StreamId add(Session& session, std::span<const std::int32_t> prompt,
               const GenerateOptions& options, std::function<void(std::string_view)> on_text = {});
  // Ends the stream with kCancelled at the next step (its text so far kept). Ids that finished
  // or never existed are ignored. Thread-safe.
  void cancel(StreamId id);
  // Runs one step and returns the streams that finished in it (their text complete).
  std::vector<Finished> step();
  // Streams running (added and not yet returned by step()).
  std::size_t size() const;
  bool empty() const { return size() == 0; }

 private:
  struct Stream;
  const LanguageModel& model_;
  std::int64_t prefill_chunk_;
  StreamId next_id_ = 1;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::mutex cancel_mutex_;
  std::vector<StreamId> cancel_requests_;  // under cancel_mutex_, taken by step()
};

}  // namespace hearth::models
