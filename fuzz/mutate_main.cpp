// A deterministic mutation driver for the fuzz targets, for CTest under ASan/UBSan (libFuzzer
// needs clang; this runs with any compiler). It replays every seed, then runs N mutants, each a
// seed with 1-4 random mutations: bit flips, interesting bytes/words (0, -1, 2^63, sizes),
// dictionary tokens written over the bytes (JSON syntax, dtype names), truncation, insertion,
// deletion and duplicated ranges. Same --seed, same mutants.
//
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
namespace fs = std::filesystem;

struct Rng {
  std::uint64_t s;
  std::uint64_t next() {  // splitmix64
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

using Bytes = std::vector<std::uint8_t>;

const std::string_view kDictionary[] = {
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "-1",
    "0",
    "1e999",
    "18446744073709551616",
    "9223372036854775808",
    "\"dtype\"",
    "\"shape\"",
    "\"data_offsets\"",
    "\"__metadata__\"",
    "\"F32\"",
    "\"F16\"",
    "\"BF16\"",
    "\"U32\"",
    "\"I8\"",
    "\"BOOL\"",
    "\"F8_E4M3\"",
    "null",
    "true",
    "[[[[[[",
    "\\u0000",
    "\xFF\xFE",
    "GGUF",
    "general.alignment",
};

void mutate(Bytes& b, Rng& rng) {
  const auto put = [&](std::size_t at, const void* src, std::size_t n) {
    if (at >= b.size()) return;
    std::memcpy(b.data() + at, src, std::min(n, b.size() - at));
  };
  const std::uint64_t size = b.size();
  const std::uint64_t kWords[] = {0,          1,          2,          3,          4,
                                  8,          12,         13,         32,         0x7F,
                                  0xFF,       0x7FFFFFFF, 0xFFFFFFFF, 1ull << 32, 1ull << 62,
                                  1ull << 63, ~0ull,      size,       size - 8,   size + 1};
  switch (rng.below(9)) {
    case 0:  // flip a bit
      if (!b.empty()) b[rng.below(b.size())] ^= static_cast<std::uint8_t>(1u << rng.below(8));
      break;
    case 1: {  // an interesting byte
      const std::uint8_t v[] = {0, 1, 0x7F, 0x80, 0xFF, '{', '"', '9'};
      if (!b.empty()) b[rng.below(b.size())] = v[rng.below(sizeof v)];
      break;
    }
    case 2: {  // an interesting u32 (often a type id or dimension count)
      const auto v = static_cast<std::uint32_t>(kWords[rng.below(std::size(kWords))]);
      put(rng.below(b.size()), &v, 4);
      break;
    }
    case 3: {  // an interesting u64 (counts, lengths, offsets), often at an 8-aligned spot
      const std::uint64_t v = kWords[rng.below(std::size(kWords))];
      std::size_t at = rng.below(b.size());
      if (rng.below(2) == 0) at &= ~std::size_t{7};
      put(at, &v, 8);
      break;
    }
    case 4: {  // a dictionary token written over the bytes (keeps the length)
      const std::string_view t = kDictionary[rng.below(std::size(kDictionary))];
      put(rng.below(b.size()), t.data(), t.size());
      break;
    }
    case 5:  // truncate
      b.resize(rng.below(b.size() + 1));
      break;
    case 6: {  // insert random bytes
      const std::size_t at = rng.below(b.size() + 1);
      const std::size_t n = 1 + rng.below(16);
      Bytes ins(n);
      for (auto& x : ins) x = static_cast<std::uint8_t>(rng.next());
      b.insert(b.begin() + static_cast<long>(at), ins.begin(), ins.end());
      break;
    }
    case 7: {  // delete a range
      if (b.empty()) break;
      const std::size_t at = rng.below(b.size());
      const std::size_t n = 1 + rng.below(std::min<std::size_t>(64, b.size() - at));
      b.erase(b.begin() + static_cast<long>(at), b.begin() + static_cast<long>(at + n));
      break;
    }
    case 8: {  // copy a range over another place
      if (b.size() < 2) break;
      const std::size_t from = rng.below(b.size());
      const std::size_t to = rng.below(b.size());
      const std::size_t n = 1 + rng.below(std::min<std::size_t>(32, b.size() - std::max(from, to)));
      std::memmove(b.data() + to, b.data() + from, n);
      break;
    }
  }
}

Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int usage() {
  std::fprintf(stderr,
               "usage: hearth-mutate-* [--mutants N] [--seed S] [--max-seed-bytes B] "
               "SEED_FILE_OR_DIR...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t mutants = 100000;
  std::uint64_t seed = 1;
  std::size_t max_seed_bytes = 64 * 1024;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--mutants" && i + 1 < argc) {
      mutants = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--max-seed-bytes" && i + 1 < argc) {
      max_seed_bytes = std::strtoull(argv[++i], nullptr, 10);
    } else if (a.starts_with("--")) {
      return usage();
    } else {
      inputs.emplace_back(a);
    }
  }
  std::vector<fs::path> files;
  for (const fs::path& p : inputs) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else if (fs::is_regular_file(p, ec)) {
      files.push_back(p);
    } else {
      std::fprintf(stderr, "skipping %s: not found\n", p.c_str());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return usage();

  const auto start = std::chrono::steady_clock::now();
  std::vector<Bytes> seeds;
  for (const fs::path& p : files) {
    Bytes b = read_file(p);
    LLVMFuzzerTestOneInput(b.data(), b.size());  // replay every seed as it is
    if (b.size() <= max_seed_bytes) seeds.push_back(std::move(b));
  }
  std::printf("replayed %zu seed files; mutating %zu of them (<= %zu bytes)\n", files.size(),
              seeds.size(), max_seed_bytes);
  if (seeds.empty() && mutants > 0) {
    std::fprintf(stderr, "no seed is small enough to mutate\n");
    return 2;
  }
  Rng rng{seed};
  Bytes b;
  for (std::uint64_t i = 0; i < mutants; ++i) {
    b = seeds[rng.below(seeds.size())];
    const std::size_t n = 1 + rng.below(4);
    for (std::size_t k = 0; k < n; ++k) mutate(b, rng);
    LLVMFuzzerTestOneInput(b.data(), b.size());
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%llu mutants + %zu seeds executed in %.2f s (%.0f exec/s), seed %llu: no crash\n",
              static_cast<unsigned long long>(mutants), files.size(), secs,
              static_cast<double>(mutants + files.size()) / secs,
              static_cast<unsigned long long>(seed));
  return 0;
}
