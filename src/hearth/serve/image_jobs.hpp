// hearth-server's image jobs: FLUX generations (POST /v1/images/generations) run one at a time on
// the queue's own thread, off the HTTP threads, each PNG encoded (with flux-cli's text chunks)
// and base64'd there too. Jobs that find one running wait in a bounded queue; submit() refuses
// beyond it (HTTP 429) and while draining (shutdown lets the admitted jobs finish).
//
// An ImageJob is shared by the HTTP side, which waits for it, and the worker. cancel() (a client
// that went away) or its deadline stop it between the pipeline's steps (the pipeline calls its
// progress callback after each one, which throws then); a queued job that was cancelled never
// starts.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hearth/models/flux_pipeline.hpp"
#include "hearth/serve/api.hpp"

namespace hearth::serve {

class ImageJob {
 public:
  using Clock = std::chrono::steady_clock;
  ImageJob(models::FluxRequest request, std::string model, Clock::time_point deadline)
      : request_(std::move(request)),
        model_(std::move(model)),
        deadline_(deadline),
        submitted_(Clock::now()) {}

  // Waits up to timeout; true once the job has ended (done, failed or cancelled).
  bool wait(std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  // After wait() gave true: the images (base64 PNGs), or error() when !ok().
  bool ok() const { return ok_; }
  const ApiError& error() const { return error_; }
  const std::vector<std::string>& b64_png() const { return b64_png_; }
  const std::vector<std::uint64_t>& seeds() const { return seeds_; }
  const ImageTimings& timings() const { return timings_; }
  const models::FluxRequest& request() const { return request_; }

 private:
  friend class ImageQueue;
  void finish(bool ok, ApiError error);  // wakes wait()

  const models::FluxRequest request_;  // resolved (size, steps, seed filled in)
  const std::string model_;            // the name the PNG's "model" chunk gives
  const Clock::time_point deadline_;
  const Clock::time_point submitted_;
  std::atomic<bool> cancelled_{false};

  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  bool ok_ = false;
  ApiError error_;
  std::vector<std::string> b64_png_;
  std::vector<std::uint64_t> seeds_;
  ImageTimings timings_;
};

class ImageQueue {
 public:
  // pipeline must outlive the queue. queue: how many jobs may wait beyond the running one.
  ImageQueue(const models::FluxPipeline& pipeline, models::FluxRunOptions run, std::size_t queue);
  ~ImageQueue();  // drain() and join
  ImageQueue(const ImageQueue&) = delete;
  ImageQueue& operator=(const ImageQueue&) = delete;

  // Admits a resolved request; nullptr when one runs and the queue is full, or while draining.
  std::shared_ptr<ImageJob> submit(models::FluxRequest request, std::string model,
                                   ImageJob::Clock::time_point deadline);
  // Refuses new jobs and waits until the admitted ones have ended.
  void drain();

  struct Counts {
    std::size_t running = 0;
    std::size_t queued = 0;
    std::uint64_t completed = 0;  // images made (not requests)
    std::uint64_t cancelled = 0;  // requests cancelled (client gone, deadline)
    std::uint64_t failed = 0;
  };
  Counts counts() const;
  std::size_t queue_limit() const { return queue_limit_; }

 private:
  void work();
  // Makes the job's images; false with *error when it failed or was stopped.
  bool run(ImageJob& job, ApiError* error);

  const models::FluxPipeline& pipeline_;
  const models::FluxRunOptions run_;
  const std::size_t queue_limit_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;       // the worker waits for jobs
  std::condition_variable idle_cv_;  // drain() waits for the end
  std::deque<std::shared_ptr<ImageJob>> queue_;
  bool running_ = false;
  bool draining_ = false;
  bool stopping_ = false;
  Counts counts_;
  std::thread worker_;
};

}  // namespace hearth::serve
