// The generation slots of hearth-server: `parallel` Sessions over one LanguageModel driven by
// one thread through a models::BatchGenerator, so the running generations advance together, one
// decode_step() (one read of the weights) per token for all of them. Each slot keeps its KV cache
// between requests, and a request starts on the free slot whose cache shares the longest prefix
// with its prompt (a conversation's next turn prefills only its new tokens). Requests that find
// every slot busy wait in a bounded queue; submit() refuses beyond it (HTTP 429).
//
// A Job is shared by the HTTP side (which waits for its text) and the driver. Its text arrives
// in pieces; cancel() (a client that went away) or its deadline ends the generation at the next
// step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hearth/models/decoder.hpp"
#include "hearth/models/generate.hpp"

namespace hearth::serve {

using Clock = std::chrono::steady_clock;

class Job {
 public:
  Job(std::vector<std::int32_t> prompt, models::GenerateOptions options, Clock::time_point deadline)
      : prompt_(std::move(prompt)), options_(std::move(options)), deadline_(deadline) {}

  enum class Poll { kText, kDone, kTimeout };
  // Waits up to timeout for text (appended to *text) or the end.
  Poll wait(std::string* text, std::chrono::milliseconds timeout);
  // Waits for the end, gathering every piece.
  void wait_done(std::string* text);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // After kDone: the generation (token counts, finish reason; text as streamed), or the error.
  const models::Generation& result() const { return result_; }
  const std::string& error() const { return error_; }
  bool timed_out() const { return timed_out_; }

 private:
  friend class Scheduler;
  void push(std::string_view piece);
  void finish(models::Generation g, std::string error);

  const std::vector<std::int32_t> prompt_;
  const models::GenerateOptions options_;
  const Clock::time_point deadline_;
  std::atomic<bool> cancelled_{false};
  bool timed_out_ = false;  // written by the slot before finish()

  std::mutex mutex_;
  std::condition_variable cv_;
  std::string pending_;
  bool done_ = false;
  models::Generation result_;
  std::string error_;
};

class Scheduler {
 public:
  // parallel >= 1 sessions of context tokens each (0: the model's default); queue: how many
  // jobs may wait beyond them.
  Scheduler(const models::LanguageModel& model, std::size_t parallel, std::size_t queue,
            std::int64_t context);
  ~Scheduler();  // drain() and join
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Admits a job (it starts on a free slot at the next step, or waits in the queue); nullptr
  // when every slot is busy and the queue is full, or the scheduler is draining.
  std::shared_ptr<Job> submit(std::vector<std::int32_t> prompt, models::GenerateOptions options,
                              Clock::time_point deadline);
  // Whether submit() would admit a job now.
  bool has_room() const;
  // Refuses new jobs and waits until the admitted ones have finished.
  void drain();

  std::int64_t context() const { return context_; }
  std::size_t parallel() const { return slots_.size(); }
  struct Counts {
    std::size_t running = 0;
    std::size_t queued = 0;
    std::uint64_t completed = 0;
    std::uint64_t reused_tokens = 0;  // prompt tokens the slots' caches already held
    std::uint64_t prompt_tokens = 0;
  };
  Counts counts() const;

 private:
  struct Slot {
    std::unique_ptr<models::Session> session;
    std::shared_ptr<Job> job;  // running on this slot, else null
    models::BatchGenerator::StreamId stream = 0;
  };
  void drive();
  // Starts queued jobs on free slots (under mutex_).
  void start_queued();

  const models::LanguageModel& model_;
  std::int64_t context_ = 0;
  const std::size_t queue_limit_;
  models::BatchGenerator batch_;  // the driver's only
  std::vector<Slot> slots_;       // the driver's only (running_ counts the busy ones)
  mutable std::mutex mutex_;
  std::condition_variable cv_;       // the driver waits for work
  std::condition_variable idle_cv_;  // drain() waits for the end
  std::deque<std::shared_ptr<Job>> queue_;
  std::size_t running_ = 0;
  bool draining_ = false;
  bool stopping_ = false;
  Counts counts_;
  std::thread driver_;
};

}  // namespace hearth::serve
