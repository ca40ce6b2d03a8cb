#include "hearth/models/generate.hpp"

#include <algorithm>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::models {

StopScanner::StopScanner(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopScanner::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  std::size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    const std::size_t at = pending_.find(s);
    if (at < first) {
      first = at;
      matched_ = s;
    }
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Keep the longest tail that some stop string begins with.
  std::size_t hold = 0;
  for (const std::string& s : stops_) {
    for (std::size_t len = std::min(s.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopScanner::finish() {
  std::string out;
  out.swap(pending_);
  return out;
}

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kContext:
      return "context";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

struct BatchGenerator::Stream {
  StreamId id;
  Session* session;
  std::vector<std::int32_t> prompt;
  std::size_t fed = 0;  // prompt tokens in the session (from the reused prefix on)
  GenerateOptions options;
  std::function<void(std::string_view)> on_text;
  Sampler sampler;
  tokenize::StreamDecoder decoder;
  StopScanner stops;
  Generation g;
  std::span<const float> logits;  // of the last token run
  std::vector<float> rows;        // options.logits: a feed's rows
  bool cancelled = false;         // cancel()
  bool stopped = false;           // the last sampled token ended the answer
  bool done = false;

  Stream(StreamId i, Session& s, std::span<const std::int32_t> p, const GenerateOptions& o,
         std::function<void(std::string_view)> cb)
      : id(i),
        session(&s),
        prompt(p.begin(), p.end()),
        options(o),
        on_text(std::move(cb)),
        sampler(o.sampling),
        decoder(s.model().tokenizer()),
        stops(o.stop) {}

  std::exception_ptr callback_error;  // on_text threw: the stream ends with it

  void emit(const std::string& piece) {
    if (piece.empty()) return;
    g.text += piece;
    if (!on_text || callback_error) return;
    try {
      on_text(piece);
    } catch (...) {
      callback_error = std::current_exception();
    }
  }
  void keep_rows(std::span<const float> last) {
    logits = last;
    if (options.logits != nullptr)
      options.logits->insert(options.logits->end(), last.begin(), last.end());
  }
};

BatchGenerator::BatchGenerator(const LanguageModel& model, std::int64_t prefill_chunk)
    : model_(model), prefill_chunk_(prefill_chunk) {
  if (prefill_chunk < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "the prefill chunk must be 0 (whole prompts) or positive");
  }
}

BatchGenerator::~BatchGenerator() = default;

std::size_t BatchGenerator::size() const {
  return streams_.size();
}

BatchGenerator::StreamId BatchGenerator::add(Session& session, std::span<const std::int32_t> prompt,
                                             const GenerateOptions& options,
                                             std::function<void(std::string_view)> on_text) {
  options.sampling.validate();
  if (options.max_tokens < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "the token limit must be 0 (up to the context) or "
                "positive");
  }
  const auto context = static_cast<std::size_t>(session.context());
  if (prompt.empty()) throw Error(ErrorCode::kInvalidArgument, "the prompt has no tokens");
  if (prompt.size() > context) {
    throw Error(ErrorCode::kInvalidArgument, "the prompt is " + std::to_string(prompt.size()) +
                                                 " tokens and the context holds " +
                                                 std::to_string(context) +
                                                 "; shorten it or raise the context (--ctx)");
  }
  if (&session.model() != &model_) {
    throw Error(ErrorCode::kInvalidArgument,
                "the session belongs to another model than the batch's");
  }
  for (const auto& s : streams_) {
    if (s->session == &session) {
      throw Error(ErrorCode::kInvalidArgument,
                  "the session is already generating (stream " + std::to_string(s->id) + ")");
    }
  }
  auto s = std::make_unique<Stream>(next_id_, session, prompt, options, std::move(on_text));
  s->g.prompt_tokens = prompt.size();
  // The cache keeps the common prefix; at least the last prompt token is fed again, since its
  // logits choose the first new token.
  std::size_t keep = std::min(session.common_prefix(prompt), prompt.size() - 1);
  if (options.logits != nullptr) keep = 0;  // every prompt row is asked for
  session.truncate(keep);
  session.reset_timings();
  s->g.reused_tokens = keep;
  s->fed = keep;
  streams_.push_back(std::move(s));
  return next_id_++;
}

void BatchGenerator::cancel(StreamId id) {
  std::lock_guard lock(cancel_mutex_);
  cancel_requests_.push_back(id);
}

std::vector<BatchGenerator::Finished> BatchGenerator::step() {
  std::vector<StreamId> cancels;
  {
    std::lock_guard lock(cancel_mutex_);
    cancels.swap(cancel_requests_);
  }
  for (const auto& s : streams_) {
    s->cancelled =
        s->cancelled || std::find(cancels.begin(), cancels.end(), s->id) != cancels.end();
  }
  std::vector<Finished> finished;
  const auto finish = [&](Stream& s, FinishReason reason, std::exception_ptr error = {}) {
    if (!s.stops.stopped()) {
      s.emit(s.stops.push(s.decoder.flush()));
      if (!s.stops.stopped()) s.emit(s.stops.finish());
    }
    s.g.finish = reason;
    s.g.timings = s.session->timings();
    s.done = true;
    finished.push_back({s.id, std::move(s.g), error ? std::move(error) : s.callback_error});
  };

  // Prompts: a chunk of each (a failed feed leaves the session as it was).
  for (const auto& sp : streams_) {
    Stream& s = *sp;
    if (s.fed == s.prompt.size()) continue;
    if (s.cancelled) {
      s.session->truncate(s.g.reused_tokens);
      finish(s, FinishReason::kCancelled);
      continue;
    }
    const std::size_t left = s.prompt.size() - s.fed;
    const std::size_t n =
        prefill_chunk_ > 0 ? std::min(left, static_cast<std::size_t>(prefill_chunk_)) : left;
    try {
      const std::span<const float> last = s.session->feed(
          std::span(s.prompt).subspan(s.fed, n), s.options.logits != nullptr ? &s.rows : nullptr);
      if (s.options.logits != nullptr) {
        s.options.logits->insert(s.options.logits->end(), s.rows.begin(), s.rows.end());
      }
      s.logits = last;
      s.fed += n;
    } catch (...) {
      s.session->truncate(s.g.reused_tokens);
      finish(s, FinishReason::kCancelled, std::current_exception());
    }
  }

  // One token of every stream whose prompt has run: sampled, streamed, then run together.
  std::vector<Stream*> batch;
  std::vector<Session*> sessions;
  std::vector<std::int32_t> tokens;
  const std::vector<std::int32_t>& eos = model_.eos_ids();
  for (const auto& sp : streams_) {
    Stream& s = *sp;
    if (s.done || s.fed < s.prompt.size()) continue;
    if (s.cancelled || cancel_requested() || s.callback_error) {
      finish(s, FinishReason::kCancelled, s.callback_error);
      continue;
    }
    if (s.options.max_tokens > 0 &&
        s.g.token_ids.size() >= static_cast<std::size_t>(s.options.max_tokens)) {
      finish(s, FinishReason::kLength);
      continue;
    }
    const std::int32_t id = s.sampler.sample(s.logits, s.session->tokens());
    s.g.token_ids.push_back(id);
    const bool end = s.options.stop_at_eos && std::find(eos.begin(), eos.end(), id) != eos.end();
    if (!end) s.emit(s.stops.push(s.decoder.push(id)));
    s.stopped = end || s.stops.stopped();
    // The token is run (so the cache holds it for the next turn) unless it ended the answer or
    // the context is full; when logits are asked for, the last one is run too, for its row.
    const bool full = s.session->tokens().size() >= static_cast<std::size_t>(s.session->context());
    if (!full && (!s.stopped || s.options.logits != nullptr)) {
      batch.push_back(&s);
      sessions.push_back(s.session);
      tokens.push_back(id);
    } else {
      finish(s, s.stopped ? FinishReason::kStop : FinishReason::kContext);
    }
  }
  if (!batch.empty()) {
    try {
      const std::vector<std::span<const float>> out = decode_step(sessions, tokens);
      for (std::size_t j = 0; j < batch.size(); ++j) {
        Stream& s = *batch[j];
        s.keep_rows(out[j]);
        if (s.stopped) finish(s, FinishReason::kStop);
      }
    } catch (const Error& e) {
      const bool cancelled = e.code() == ErrorCode::kCancelled;
      for (Stream* s : batch) {
        finish(*s, FinishReason::kCancelled, cancelled ? nullptr : std::current_exception());
      }
    } catch (...) {
      for (Stream* s : batch) finish(*s, FinishReason::kCancelled, std::current_exception());
    }
  }
  std::erase_if(streams_, [](const std::unique_ptr<Stream>& s) { return s->done; });
  return finished;
}

Generation generate(Session& session, std::span<const std::int32_t> prompt,
                    const GenerateOptions& options,
                    const std::function<void(std::string_view)>& on_text) {
  BatchGenerator batch(session.model(), 0);
  batch.add(session, prompt, options, on_text);
  for (;;) {
    std::vector<BatchGenerator::Finished> done = batch.step();
    if (done.empty()) continue;
    if (done[0].error) std::rethrow_exception(done[0].error);
    return std::move(done[0].generation);
  }
}

}  // namespace hearth::models
