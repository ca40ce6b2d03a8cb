// A fixed pool of worker threads. Sized once from --threads (default: every core). parallel_for
// splits an index range into contiguous chunks; the calling thread works too.
#pragma once

#include <condition_variable>
#include <cstddef>
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

 private:
  void worker_loop(std::size_t index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(std::size_t)>* job_ = nullptr;  // called with the worker's chunk
  std::size_t generation_ = 0;
  std::size_t pending_ = 0;
  std::size_t n_chunks_ = 0;
  bool stop_ = false;
};

}  // namespace hearth
