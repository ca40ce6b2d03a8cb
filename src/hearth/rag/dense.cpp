#include "hearth/rag/dense.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "hearth/core/cpu.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/tensor/half.hpp"

namespace hearth::rag {
namespace {

using Scored = std::pair<float, std::size_t>;

// Heap order: the worst kept entry on top (lower score, then higher row, is worse).
bool better(const Scored& a, const Scored& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

void push(std::vector<Scored>& heap, std::size_t k, const Scored& s) {
  if (heap.size() < k) {
    heap.push_back(s);
    std::push_heap(heap.begin(), heap.end(), better);
  } else if (better(s, heap.front())) {
    std::pop_heap(heap.begin(), heap.end(), better);
    heap.back() = s;
    std::push_heap(heap.begin(), heap.end(), better);
  }
}

void scan(VectorType type, const std::byte* rows, std::size_t begin, std::size_t end,
          std::size_t dim, const float* query, std::size_t k, const std::uint8_t* keep,
          std::vector<Scored>& heap) {
  constexpr std::size_t kBlock = 256;
  float scores[kBlock];
  std::vector<float> decoded(type == VectorType::kF32 ? 0 : kBlock * dim);
  const std::size_t stride = row_bytes(type, dim);
  for (std::size_t b = begin; b < end; b += kBlock) {
    const std::size_t n = std::min(kBlock, end - b);
    const float* block = reinterpret_cast<const float*>(rows + b * stride);
    if (type != VectorType::kF32) {
      decode_rows(type, rows + b * stride, n, dim, decoded.data());
      block = decoded.data();
    }
    dot_rows(block, n, dim, query, scores);
    for (std::size_t i = 0; i < n; ++i) {
      if (keep != nullptr && keep[b + i] == 0) continue;
      push(heap, k, {scores[i], b + i});
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

std::vector<Scored> top_k_dense(VectorType type, const std::byte* rows, std::size_t n,
                                std::size_t dim, const float* query, std::size_t k,
                                const std::uint8_t* keep, std::size_t threads) {
  std::vector<Scored> best;
  if (k == 0 || n == 0 || dim == 0) return best;
  constexpr std::size_t kMinRowsPerThread = 32768;
  if (n < 2 * kMinRowsPerThread || threads == 1) {
    scan(type, rows, 0, n, dim, query, k, keep, best);
  } else {
    ThreadPool& pool = pool_for(threads);
    std::mutex mutex;
    pool.parallel_for(
        n,
        [&](std::size_t begin, std::size_t end) {
          std::vector<Scored> local;
          scan(type, rows, begin, end, dim, query, k, keep, local);
          const std::lock_guard lock(mutex);
          best.insert(best.end(), local.begin(), local.end());
        },
        kMinRowsPerThread);
  }
  std::sort(best.begin(), best.end(), better);
  if (best.size() > k) best.resize(k);
  return best;
}

std::vector<Scored> top_k_dense(const float* rows, std::size_t n, std::size_t dim,
                                const float* query, std::size_t k, const std::uint8_t* keep,
                                std::size_t threads) {
  return top_k_dense(VectorType::kF32, reinterpret_cast<const std::byte*>(rows), n, dim, query, k,
                     keep, threads);
}

const char* to_string(VectorType type) {
  switch (type) {
    case VectorType::kF32:
      return "f32";
    case VectorType::kF16:
      return "f16";
    case VectorType::kInt8:
      return "int8";
  }
  return "?";
}

VectorType parse_vector_type(const std::string& name) {
  if (name == "f32") return VectorType::kF32;
  if (name == "f16") return VectorType::kF16;
  if (name == "int8") return VectorType::kInt8;
  throw Error(ErrorCode::kInvalidArgument, "unknown vector type '" + name + "' (f32, f16, int8)");
}

std::size_t row_bytes(VectorType type, std::size_t dim) {
  switch (type) {
    case VectorType::kF32:
      return dim * 4;
    case VectorType::kF16:
      return dim * 2;
    case VectorType::kInt8:
      return 4 + dim;
  }
  return 0;
}

void encode_rows(VectorType type, const float* rows, std::size_t n, std::size_t dim,
                 std::byte* out) {
  if (type == VectorType::kF32) {
    std::memcpy(out, rows, n * dim * 4);
    return;
  }
  if (type == VectorType::kF16) {
    std::vector<std::uint16_t> h(n * dim);
    f32_to_f16(rows, h.data(), n * dim);
    std::memcpy(out, h.data(), h.size() * 2);
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const float* r = rows + i * dim;
    float max_abs = 0;
    for (std::size_t j = 0; j < dim; ++j) max_abs = std::max(max_abs, std::abs(r[j]));
    const float scale = max_abs > 0 && std::isfinite(max_abs) ? max_abs / 127.0f : 0.0f;
    std::byte* o = out + i * (4 + dim);
    std::memcpy(o, &scale, 4);
    for (std::size_t j = 0; j < dim; ++j) {
      const float q = scale > 0 ? std::nearbyint(r[j] / scale) : 0.0f;
      o[4 + j] = static_cast<std::byte>(static_cast<std::int8_t>(std::clamp(q, -127.0f, 127.0f)));
    }
  }
}

void decode_rows(VectorType type, const std::byte* rows, std::size_t n, std::size_t dim,
                 float* out) {
  if (type == VectorType::kF32) {
    std::memcpy(out, rows, n * dim * 4);
  } else if (type == VectorType::kF16) {
    f16_to_f32(reinterpret_cast<const std::uint16_t*>(rows), out, n * dim);
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      const std::byte* r = rows + i * (4 + dim);
      float scale;
      std::memcpy(&scale, r, 4);
      for (std::size_t j = 0; j < dim; ++j) {
        out[i * dim + j] = scale * static_cast<float>(static_cast<std::int8_t>(r[4 + j]));
      }
    }
  }
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
