// Opening a model must cost O(header), not O(file): time GGUFFile::open and
// SafetensorsFile::open on generated 4 GiB files (sparse: the data pages are never touched).
// Each file is shaped like a 7B-class checkpoint's header: 291 tensors and, for GGUF, a
// 32,000-token vocabulary with scores and types.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "hearth/core/memory.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/safetensors.hpp"

namespace {
namespace fs = std::filesystem;

constexpr int kTensors = 291;
constexpr std::uint64_t kRow = 4096;
constexpr std::uint64_t kTotalBytes = 4ull << 30;
// f16 rows per tensor so that all tensors together fill 4 GiB.
constexpr std::uint64_t kRowsPerTensor = kTotalBytes / kTensors / (kRow * 2);

class Bytes {
 public:
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    data.append(p, sizeof v);
  }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    data += s;
  }
  std::string data;
};

void finish(const fs::path& path, const std::string& header, std::uint64_t total_size) {
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0 || ::write(fd, header.data(), header.size()) != static_cast<ssize_t>(header.size()) ||
      ::ftruncate(fd, static_cast<off_t>(total_size)) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  ::close(fd);
}

fs::path make_gguf(const fs::path& dir) {
  Bytes b;
  b.put<std::uint32_t>(0x46554747);
  b.put<std::uint32_t>(3);
  b.put<std::uint64_t>(kTensors);
  b.put<std::uint64_t>(5);
  b.str("general.architecture");
  b.put<std::uint32_t>(8);
  b.str("llama");
  b.str("tokenizer.ggml.tokens");
  b.put<std::uint32_t>(9);
  b.put<std::uint32_t>(8);
  b.put<std::uint64_t>(32000);
  for (int i = 0; i < 32000; ++i) b.str("\xe2\x96\x81tok" + std::to_string(i));
  b.str("tokenizer.ggml.scores");
  b.put<std::uint32_t>(9);
  b.put<std::uint32_t>(6);
  b.put<std::uint64_t>(32000);
  for (int i = 0; i < 32000; ++i) b.put<float>(-static_cast<float>(i));
  b.str("tokenizer.ggml.token_type");
  b.put<std::uint32_t>(9);
  b.put<std::uint32_t>(5);
  b.put<std::uint64_t>(32000);
  for (int i = 0; i < 32000; ++i) b.put<std::int32_t>(1);
  b.str("llama.block_count");
  b.put<std::uint32_t>(4);
  b.put<std::uint32_t>(32);
  const std::uint64_t nbytes = kRowsPerTensor * kRow * 2;
  for (int i = 0; i < kTensors; ++i) {
    b.str("blk." + std::to_string(i) + ".weight");
    b.put<std::uint32_t>(2);
    b.put<std::uint64_t>(kRow);
    b.put<std::uint64_t>(kRowsPerTensor);
    b.put<std::uint32_t>(1);  // f16
    b.put<std::uint64_t>(static_cast<std::uint64_t>(i) * nbytes);
  }
  const std::uint64_t data_offset = (b.data.size() + 31) / 32 * 32;
  const fs::path path = dir / "sparse-4g.gguf";
  finish(path, b.data, data_offset + nbytes * kTensors);
  return path;
}

fs::path make_safetensors(const fs::path& dir) {
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
  const std::uint64_t nbytes = kRowsPerTensor * kRow * 2;
  for (int i = 0; i < kTensors; ++i) {
    const std::uint64_t off = static_cast<std::uint64_t>(i) * nbytes;
    json += ",\"model.layers." + std::to_string(i) + ".weight\":{\"dtype\":\"F16\",\"shape\":[" +
            std::to_string(kRowsPerTensor) + "," + std::to_string(kRow) + "],\"data_offsets\":[" +
            std::to_string(off) + "," + std::to_string(off + nbytes) + "]}";
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  Bytes b;
  b.put<std::uint64_t>(json.size());
  b.data += json;
  const fs::path path = dir / "sparse-4g.safetensors";
  finish(path, b.data, b.data.size() + nbytes * kTensors);
  return path;
}

const fs::path& bench_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("hearth-bench-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

void BM_OpenGGUF4GiB(benchmark::State& state) {
  static const fs::path path = make_gguf(bench_dir());
  std::size_t n = 0;
  for (auto _ : state) {
    const auto f = hearth::formats::GGUFFile::open(path);
    n = f.tensors().size();
    benchmark::DoNotOptimize(n);
  }
  state.counters["file_GiB"] = static_cast<double>(fs::file_size(path)) / (1ull << 30);
  state.counters["tensors"] = static_cast<double>(n);
}
BENCHMARK(BM_OpenGGUF4GiB)->Unit(benchmark::kMillisecond);

void BM_OpenSafetensors4GiB(benchmark::State& state) {
  static const fs::path path = make_safetensors(bench_dir());
  std::size_t n = 0;
  for (auto _ : state) {
    const auto f = hearth::formats::SafetensorsFile::open(path);
    n = f.tensors().size();
    benchmark::DoNotOptimize(n);
  }
  state.counters["file_GiB"] = static_cast<double>(fs::file_size(path)) / (1ull << 30);
  state.counters["tensors"] = static_cast<double>(n);
}
BENCHMARK(BM_OpenSafetensors4GiB)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::printf("peak RSS %s (the 4 GiB files are mapped, never read)\n",
              hearth::format_bytes(hearth::peak_rss_bytes()).c_str());
  std::error_code ec;
  fs::remove_all(bench_dir(), ec);
  return 0;
}
