#include "hearth/core/thread_pool.hpp"

#include <algorithm>
#include <chrono>
#include <exception>

namespace hearth {

namespace {

// Polls done() for up to ThreadPool::kSpinSeconds, yielding the core between rounds of polls so
// that a loaded machine's other threads (the caller's among them) lose no time to the spinning;
// true when done() became true.
template <class Done>
bool spin_until(const Done& done) {
  using Clock = std::chrono::steady_clock;
  const auto limit = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(ThreadPool::kSpinSeconds));
  const Clock::time_point start = Clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      __builtin_ia32_pause();
    }
    if (Clock::now() - start > limit) return done();
    std::this_thread::yield();
  }
}

}  // namespace

std::size_t ThreadPool::hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

ThreadPool::ThreadPool(std::size_t n_threads) {
  if (n_threads == 0) n_threads = hardware_threads();
  n_threads = std::min<std::size_t>(n_threads, (std::size_t{1} << kChunkBits) - 1);
  workers_.reserve(n_threads - 1);
  for (std::size_t i = 1; i < n_threads; ++i) {
    workers_.emplace_back([this, i] { worker_loop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(std::size_t index) {
  std::uint64_t seen = 0;  // the last job's number
  std::uint64_t state = 0;
  for (;;) {
    const auto ready = [&] {
      state = state_.load(std::memory_order_acquire);
      return stop_.load(std::memory_order_acquire) || (state >> kChunkBits) != seen;
    };
    if (!spin_until(ready)) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, ready);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = state >> kChunkBits;
    if (index >= (state & ((std::uint64_t{1} << kChunkBits) - 1))) continue;
    (*job_)(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mutex_);  // the caller may be about to sleep: it checks under the lock
      done_.notify_one();
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
    pending_.store(n_chunks - 1, std::memory_order_relaxed);  // chunk 0 runs on the caller
    const std::uint64_t number = (state_.load(std::memory_order_relaxed) >> kChunkBits) + 1;
    state_.store(number << kChunkBits | n_chunks, std::memory_order_release);
  }
  wake_.notify_all();
  job(0);
  const auto finished = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(finished)) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, finished);
  }
  job_ = nullptr;
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace hearth
