// A fixed pool of worker threads. Sized once from --threads (default: every core). parallel_for
// splits an index range into contiguous chunks; the calling thread works too.
//
// Between jobs a worker spins for a short while (kSpinSeconds) before it sleeps on the condition
// variable, and the caller spins likewise for the workers' chunks: a decode step runs a few
// hundred jobs of tens of microseconds to milliseconds each, and waking a sleeping thread costs
// about as much as a small job (and far more on a loaded machine).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hearth {

class ThreadPool {
 public:
  // n_threads counts the caller: 1 means no worker threads. 0 means every hardware thread.
  explicit ThreadPool(std::size_t n_threads = 0);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool();

  std::size_t size() const { return workers_.size() + 1; }

  // Calls fn(begin, end) over disjoint chunks covering [0, n), at most one chunk per thread
  // unless min_chunk makes fewer. Returns when every chunk is done; the first exception thrown
  // by a chunk is rethrown here. Not reentrant: do not call from inside fn.
  void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn,
                    std::size_t min_chunk = 1);

  static std::size_t hardware_threads();

  // How long an idle worker (or a caller waiting for the workers) polls before it sleeps.
  static constexpr double kSpinSeconds = 200e-6;

 private:
  void worker_loop(std::size_t index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // The job's number (upper bits) and its chunk count (kChunkBits), raised together (release)
  // after job_ is set; a worker whose index is below the count reads job_ and then counts
  // pending_ down, so the caller clears job_ only after pending_ has reached 0.
  static constexpr int kChunkBits = 16;
  const std::function<void(std::size_t)>* job_ = nullptr;  // called with the worker's chunk
  std::atomic<std::uint64_t> state_{0};
  std::atomic<std::size_t> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace hearth
