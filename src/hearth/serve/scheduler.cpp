#include "hearth/serve/scheduler.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include "hearth/core/error.hpp"

namespace hearth::serve {
namespace {

// Thrown from the text callback to end a generation that was cancelled or ran out of time.
struct StopGeneration {
  bool timed_out = false;
};

}  // namespace

void Job::push(std::string_view piece) {
  {
    std::lock_guard lock(mutex_);
    pending_ += piece;
  }
  cv_.notify_all();
}

void Job::finish(models::Generation g, std::string error) {
  {
    std::lock_guard lock(mutex_);
    result_ = std::move(g);
    error_ = std::move(error);
    done_ = true;
  }
  cv_.notify_all();
}

Job::Poll Job::wait(std::string* text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  if (!pending_.empty()) {
    *text += pending_;
    pending_.clear();
    return Poll::kText;
  }
  return done_ ? Poll::kDone : Poll::kTimeout;
}

void Job::wait_done(std::string* text) {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return done_; });
  *text += pending_;
  pending_.clear();
}

Scheduler::Scheduler(const models::LanguageModel& model, std::size_t parallel, std::size_t queue,
                     std::int64_t context)
    : model_(model), queue_limit_(queue) {
  for (std::size_t i = 0; i < std::max<std::size_t>(parallel, 1); ++i) {
    auto slot = std::make_unique<Slot>();
    slot->session = std::make_unique<models::Session>(model_, context);
    slots_.push_back(std::move(slot));
  }
  context_ = slots_.front()->session->context();
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    s->thread = std::thread([this, s] { run_slot(*s); });
  }
}

Scheduler::~Scheduler() {
  drain();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& slot : slots_) slot->thread.join();
}

std::shared_ptr<Job> Scheduler::submit(std::vector<std::int32_t> prompt,
                                       models::GenerateOptions options,
                                       Clock::time_point deadline) {
  auto job = std::make_shared<Job>(std::move(prompt), std::move(options), deadline);
  {
    std::lock_guard lock(mutex_);
    if (draining_) return nullptr;
    Slot* best = nullptr;
    std::size_t best_prefix = 0;
    for (auto& slot : slots_) {
      if (slot->busy || slot->next) continue;
      const std::size_t prefix = slot->session->common_prefix(job->prompt_);
      if (best == nullptr || prefix > best_prefix) {
        best = slot.get();
        best_prefix = prefix;
      }
    }
    if (best != nullptr) {
      best->next = job;
    } else if (queue_.size() < queue_limit_) {
      queue_.push_back(job);
    } else {
      return nullptr;
    }
  }
  cv_.notify_all();
  return job;
}

bool Scheduler::has_room() const {
  std::lock_guard lock(mutex_);
  if (draining_) return false;
  for (const auto& slot : slots_) {
    if (!slot->busy && !slot->next) return true;
  }
  return queue_.size() < queue_limit_;
}

void Scheduler::drain() {
  std::unique_lock lock(mutex_);
  draining_ = true;
  idle_cv_.wait(lock, [&] {
    if (!queue_.empty()) return false;
    return std::none_of(slots_.begin(), slots_.end(),
                        [](const auto& s) { return s->busy || s->next; });
  });
}

Scheduler::Counts Scheduler::counts() const {
  std::lock_guard lock(mutex_);
  Counts c = counts_;
  c.queued = queue_.size();
  c.running = static_cast<std::size_t>(std::count_if(
      slots_.begin(), slots_.end(), [](const auto& s) { return s->busy || s->next; }));
  return c;
}

void Scheduler::run_slot(Slot& slot) {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || slot.next || !queue_.empty(); });
      if (slot.next) {
        job = std::move(slot.next);
        slot.next.reset();
      } else if (!queue_.empty()) {
        job = std::move(queue_.front());
        queue_.pop_front();
      } else {
        return;  // stopping, nothing left
      }
      slot.busy = true;
    }
    run_job(slot, *job);
    {
      std::lock_guard lock(mutex_);
      slot.busy = false;
      ++counts_.completed;
    }
    idle_cv_.notify_all();
  }
}

void Scheduler::run_job(Slot& slot, Job& job) {
  models::Session& session = *slot.session;
  if (job.cancelled()) {
    job.finish({}, "cancelled before it started");
    return;
  }
  if (Clock::now() >= job.deadline_) {
    job.timed_out_ = true;
    job.finish({}, "the request waited in the queue past its time limit");
    return;
  }
  const auto check = [&] {
    if (job.cancelled()) throw StopGeneration{false};
    if (Clock::now() >= job.deadline_) throw StopGeneration{true};
  };
  std::string text;
  const std::size_t reusable = std::min(session.common_prefix(job.prompt_),
                                        job.prompt_.empty() ? 0 : job.prompt_.size() - 1);
  {
    std::lock_guard lock(mutex_);
    counts_.prompt_tokens += job.prompt_.size();
    counts_.reused_tokens += reusable;
  }
  try {
    models::Generation g =
        models::generate(session, job.prompt_, job.options_, [&](std::string_view piece) {
          check();
          text += piece;
          job.push(piece);
        });
    job.finish(std::move(g), "");
  } catch (const StopGeneration& stop) {
    // The session holds the prompt and what was generated; the next job truncates to its prefix.
    models::Generation g;
    g.prompt_tokens = job.prompt_.size();
    g.reused_tokens = reusable;
    g.text = std::move(text);
    const std::size_t held = session.tokens().size();
    g.token_ids.resize(held > job.prompt_.size() ? held - job.prompt_.size() : 0);
    g.finish = stop.timed_out ? models::FinishReason::kLength : models::FinishReason::kCancelled;
    job.timed_out_ = stop.timed_out;
    job.finish(std::move(g), "");
  } catch (const std::exception& e) {
    job.finish({}, e.what());
  }
}

}  // namespace hearth::serve
