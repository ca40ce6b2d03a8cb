#include "hearth/core/thread_pool.hpp"

#include <algorithm>
#include <exception>

namespace hearth {

std::size_t ThreadPool::hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

ThreadPool::ThreadPool(std::size_t n_threads) {
  if (n_threads == 0) n_threads = hardware_threads();
  workers_.reserve(n_threads - 1);
  for (std::size_t i = 1; i < n_threads; ++i) {
    workers_.emplace_back([this, i] { worker_loop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(std::size_t index) {
  std::size_t seen = 0;
  for (;;) {
    const std::function<void(std::size_t)>* job = nullptr;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index < n_chunks_) job = job_;
    }
    if (job != nullptr) {
      (*job)(index);
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(std::size_t n,
                              const std::function<void(std::size_t, std::size_t)>& fn,
                              std::size_t min_chunk) {
  if (n == 0) return;
  min_chunk = std::max<std::size_t>(min_chunk, 1);
  const std::size_t n_chunks = std::min(size(), (n + min_chunk - 1) / min_chunk);
  if (n_chunks <= 1) {
    fn(0, n);
    return;
  }
  std::exception_ptr first_error;
  std::mutex error_mutex;
  const std::function<void(std::size_t)> job = [&](std::size_t chunk) {
    const std::size_t begin = n * chunk / n_chunks;
    const std::size_t end = n * (chunk + 1) / n_chunks;
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
    }
  };
  {
    std::lock_guard lock(mutex_);
    job_ = &job;
    n_chunks_ = n_chunks;
    pending_ = n_chunks - 1;  // chunk 0 runs on the caller
    ++generation_;
  }
  wake_.notify_all();
  job(0);
  {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace hearth
