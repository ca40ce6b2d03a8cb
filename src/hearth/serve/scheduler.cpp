#include "hearth/serve/scheduler.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include "hearth/core/error.hpp"

namespace hearth::serve {

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
    : model_(model), queue_limit_(queue), batch_(model) {
  slots_.resize(std::max<std::size_t>(parallel, 1));
  for (Slot& slot : slots_) slot.session = std::make_unique<models::Session>(model_, context);
  context_ = slots_.front().session->context();
  driver_ = std::thread([this] { drive(); });
}

Scheduler::~Scheduler() {
  drain();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  driver_.join();
}

std::shared_ptr<Job> Scheduler::submit(std::vector<std::int32_t> prompt,
                                       models::GenerateOptions options,
                                       Clock::time_point deadline) {
  auto job = std::make_shared<Job>(std::move(prompt), std::move(options), deadline);
  {
    std::lock_guard lock(mutex_);
    if (draining_ || running_ + queue_.size() >= slots_.size() + queue_limit_) return nullptr;
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

bool Scheduler::has_room() const {
  std::lock_guard lock(mutex_);
  return !draining_ && running_ + queue_.size() < slots_.size() + queue_limit_;
}

void Scheduler::drain() {
  std::unique_lock lock(mutex_);
  draining_ = true;
  idle_cv_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

Scheduler::Counts Scheduler::counts() const {
  std::lock_guard lock(mutex_);
  Counts c = counts_;
  c.queued = queue_.size();
  c.running = running_;
  return c;
}

void Scheduler::start_queued() {
  while (!queue_.empty() && running_ < slots_.size()) {
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    if (job->cancelled()) {
      job->finish({}, "cancelled before it started");
      continue;
    }
    if (Clock::now() >= job->deadline_) {
      job->timed_out_ = true;
      job->finish({}, "the request waited in the queue past its time limit");
      continue;
    }
    // The free slot whose cache holds the longest prefix of the prompt.
    Slot* best = nullptr;
    std::size_t best_prefix = 0;
    for (Slot& slot : slots_) {
      if (slot.job) continue;
      const std::size_t prefix = slot.session->common_prefix(job->prompt_);
      if (best == nullptr || prefix > best_prefix) {
        best = &slot;
        best_prefix = prefix;
      }
    }
    try {
      Job* j = job.get();
      best->stream = batch_.add(*best->session, job->prompt_, job->options_,
                                [j](std::string_view piece) { j->push(piece); });
    } catch (const std::exception& e) {
      job->finish({}, e.what());
      continue;
    }
    counts_.prompt_tokens += job->prompt_.size();
    counts_.reused_tokens += std::min(best_prefix, job->prompt_.size() - 1);
    best->job = std::move(job);
    ++running_;
  }
}

void Scheduler::drive() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || running_ > 0; });
      if (stopping_ && queue_.empty() && running_ == 0) return;
      start_queued();
    }
    // Clients gone and time limits: those streams end at this step.
    const Clock::time_point now = Clock::now();
    for (Slot& slot : slots_) {
      if (!slot.job) continue;
      if (now >= slot.job->deadline_) slot.job->timed_out_ = true;
      if (slot.job->cancelled() || slot.job->timed_out_) batch_.cancel(slot.stream);
    }
    if (batch_.empty()) {
      idle_cv_.notify_all();
      continue;
    }
    std::vector<models::BatchGenerator::Finished> finished = batch_.step();
    if (finished.empty()) continue;
    // Counted before the jobs are told, so that a client that has its answer sees it counted.
    {
      std::lock_guard lock(mutex_);
      running_ -= finished.size();
      counts_.completed += finished.size();
    }
    for (models::BatchGenerator::Finished& f : finished) {
      const auto slot = std::find_if(slots_.begin(), slots_.end(),
                                     [&](const Slot& s) { return s.job && s.stream == f.id; });
      std::string error;
      if (f.error) {
        try {
          std::rethrow_exception(f.error);
        } catch (const Error& e) {
          if (e.code() != ErrorCode::kCancelled) error = e.what();
        } catch (const std::exception& e) {
          error = e.what();
        }
      }
      if (slot->job->timed_out_) f.generation.finish = models::FinishReason::kLength;
      slot->job->finish(std::move(f.generation), std::move(error));
      slot->job.reset();
    }
    idle_cv_.notify_all();
  }
}

}  // namespace hearth::serve
