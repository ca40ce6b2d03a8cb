#include "hearth/rag/dense.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "hearth/core/cpu.hpp"
#include "hearth/core/thread_pool.hpp"

namespace hearth::rag {
namespace {

using Scored = std::pair<float, std::size_t>;

// Heap order: the worst kept entry on top (lower score, then higher row, is worse).
bool better(const Scored& a, const Scored& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

void scan(const float* rows, std::size_t begin, std::size_t end, std::size_t dim,
          const float* query, std::size_t k, const std::uint8_t* keep, std::vector<Scored>& heap) {
  constexpr std::size_t kBlock = 1024;
  float scores[kBlock];
  for (std::size_t b = begin; b < end; b += kBlock) {
    const std::size_t n = std::min(kBlock, end - b);
    dot_rows(rows + b * dim, n, dim, query, scores);
    for (std::size_t i = 0; i < n; ++i) {
      if (keep != nullptr && keep[b + i] == 0) continue;
      const Scored s{scores[i], b + i};
      if (heap.size() < k) {
        heap.push_back(s);
        std::push_heap(heap.begin(), heap.end(), better);
      } else if (better(s, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), better);
        heap.back() = s;
        std::push_heap(heap.begin(), heap.end(), better);
      }
    }
  }
}

ThreadPool& pool_for(std::size_t threads) {
  static std::mutex mutex;
  static std::unordered_map<std::size_t, std::unique_ptr<ThreadPool>> pools;
  const std::lock_guard lock(mutex);
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

}  // namespace

void dot_rows(const float* rows, std::size_t n, std::size_t dim, const float* query, float* out) {
  switch (simd_level()) {
    case SimdLevel::kAvx512:
      detail::dot_rows_avx512(rows, n, dim, query, out);
      return;
    case SimdLevel::kAvx2:
      detail::dot_rows_avx2(rows, n, dim, query, out);
      return;
    case SimdLevel::kScalar:
      break;
  }
  for (std::size_t i = 0; i < n; ++i) {
    float total = 0;
    for (std::size_t j = 0; j < dim; ++j) total += rows[i * dim + j] * query[j];
    out[i] = total;
  }
}

std::vector<Scored> top_k_dense(const float* rows, std::size_t n, std::size_t dim,
                                const float* query, std::size_t k, const std::uint8_t* keep,
                                std::size_t threads) {
  std::vector<Scored> best;
  if (k == 0 || n == 0 || dim == 0) return best;
  constexpr std::size_t kMinRowsPerThread = 32768;
  if (n < 2 * kMinRowsPerThread || threads == 1) {
    scan(rows, 0, n, dim, query, k, keep, best);
  } else {
    ThreadPool& pool = pool_for(threads);
    std::mutex mutex;
    pool.parallel_for(
        n,
        [&](std::size_t begin, std::size_t end) {
          std::vector<Scored> local;
          scan(rows, begin, end, dim, query, k, keep, local);
          const std::lock_guard lock(mutex);
          best.insert(best.end(), local.begin(), local.end());
        },
        kMinRowsPerThread);
  }
  std::sort(best.begin(), best.end(), better);
  if (best.size() > k) best.resize(k);
  return best;
}

std::vector<std::pair<std::int64_t, double>> reciprocal_rank_fusion(
    const std::vector<std::vector<std::int64_t>>& lists, double k) {
  std::vector<std::pair<std::int64_t, double>> fused;
  std::unordered_map<std::int64_t, std::size_t> index;
  for (const auto& list : lists) {
    for (std::size_t r = 0; r < list.size(); ++r) {
      const double add = 1.0 / (k + static_cast<double>(r + 1));
      const auto [it, inserted] = index.emplace(list[r], fused.size());
      if (inserted) {
        fused.emplace_back(list[r], add);
      } else {
        fused[it->second].second += add;
      }
    }
  }
  std::stable_sort(fused.begin(), fused.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return fused;
}

}  // namespace hearth::rag
