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

Generation generate(Session& session, std::span<const std::int32_t> prompt,
                    const GenerateOptions& options,
                    const std::function<void(std::string_view)>& on_text) {
  Sampler sampler(options.sampling);  // checks the settings before anything runs
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
  const LanguageModel& model = session.model();
  const std::vector<std::int32_t>& eos = model.eos_ids();

  Generation g;
  g.prompt_tokens = prompt.size();
  // The cache keeps the common prefix; at least the last prompt token is fed again, since its
  // logits choose the first new token.
  std::size_t keep = std::min(session.common_prefix(prompt), prompt.size() - 1);
  if (options.logits != nullptr) keep = 0;  // every prompt row is asked for
  session.truncate(keep);
  g.reused_tokens = keep;
  session.reset_timings();

  // Runs ids (a failed feed leaves the session as it was) and keeps their logits rows when asked.
  std::vector<float> rows;
  const auto run = [&](std::span<const std::int32_t> ids) {
    const std::span<const float> out =
        session.feed(ids, options.logits != nullptr ? &rows : nullptr);
    if (options.logits != nullptr) {
      options.logits->insert(options.logits->end(), rows.begin(), rows.end());
    }
    return out;
  };
  std::span<const float> logits = run(prompt.subspan(keep));

  tokenize::StreamDecoder decoder(model.tokenizer());
  StopScanner stops(options.stop);
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return;
    g.text += piece;
    if (on_text) on_text(piece);
  };

  for (;;) {
    if (cancel_requested()) {
      g.finish = FinishReason::kCancelled;
      break;
    }
    if (options.max_tokens > 0 &&
        g.token_ids.size() >= static_cast<std::size_t>(options.max_tokens)) {
      g.finish = FinishReason::kLength;
      break;
    }
    const std::int32_t id = sampler.sample(logits, session.tokens());
    g.token_ids.push_back(id);
    const bool end = options.stop_at_eos && std::find(eos.begin(), eos.end(), id) != eos.end();
    if (!end) emit(stops.push(decoder.push(id)));
    const bool stopped = end || stops.stopped();
    // The token is run (so the cache holds it for the next turn) unless it ended the answer or
    // the context is full; when logits are asked for, the last one is run too, for its row.
    const bool full = session.tokens().size() >= context;
    if (!full && (!stopped || options.logits != nullptr)) {
      const std::int32_t one[1] = {id};
      try {
        logits = run(one);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kCancelled) throw;
        g.finish = FinishReason::kCancelled;
        break;
      }
    }
    if (stopped) {
      g.finish = FinishReason::kStop;
      break;
    }
    if (full) {
      g.finish = FinishReason::kContext;
      break;
    }
  }
  if (!stops.stopped()) {
    emit(stops.push(decoder.flush()));
    if (!stops.stopped()) emit(stops.finish());
  }
  g.timings = session.timings();
  return g;
}

}  // namespace hearth::models
