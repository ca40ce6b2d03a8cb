// The GGUF reader on malformed input: every case must be one clear hearth::Error naming the
// problem (and, through the caller, the file), never a crash, hang or huge allocation.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "hearth/core/error.hpp"
#include "hearth/formats/gguf.hpp"

namespace hearth::formats {
namespace {

// Hand-built GGUF bytes.
class Raw {
 public:
  Raw& u32(std::uint32_t v) { return put(v); }
  Raw& u64(std::uint64_t v) { return put(v); }
  Raw& u8(std::uint8_t v) { return put(v); }
  Raw& str(const std::string& s) {
    u64(s.size());
    for (char c : s) bytes.push_back(static_cast<std::byte>(c));
    return *this;
  }
  Raw& header(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    return u32(0x46554747).u32(version).u64(n_tensors).u64(n_kv);
  }
  // A tensor info: name, dims (innermost first), ggml type, offset.
  Raw& tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type,
              std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims) u64(d);
    return u32(type).u64(offset);
  }
  Raw& pad_to(std::size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(std::byte{0});
    return *this;
  }
  Raw& zeros(std::size_t n) {
    bytes.insert(bytes.end(), n, std::byte{0});
    return *this;
  }
  std::vector<std::byte> bytes;

 private:
  template <class T>
  Raw& put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof v);
    return *this;
  }
};

// Parses and returns the error message; fails the test if parsing succeeds.
std::string error_of(const std::vector<std::byte>& bytes) {
  try {
    GGUFFile::parse(bytes, "bad.gguf");
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, "bad.gguf");
    return e.what();
  }
  ADD_FAILURE() << "parse succeeded";
  return {};
}

#define EXPECT_GGUF_ERROR(raw, fragment)                                    \
  do {                                                                      \
    const std::string msg = error_of((raw).bytes);                          \
    EXPECT_NE(msg.find(fragment), std::string::npos) << "message: " << msg; \
  } while (0)

TEST(GGUFHostile, EveryTruncationOfAValidFileIsAnError) {
  std::vector<float> data(40, 1.0f);
  GGUFWriter w;
  w.set("general.architecture", "llama");
  w.set("tokens", GGUFArray{std::vector<std::string>{"a", "bb", "ccc"}});
  w.set("nested", GGUFArray{std::vector<GGUFArray>{GGUFArray{std::vector<float>{1.0f}}}});
  w.add_tensor("t", DType::kF32, {4, 10}, std::as_bytes(std::span(data)));
  const std::vector<std::byte> full = w.serialize();
  EXPECT_NO_THROW(GGUFFile::parse(full, "ok"));
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_THROW(GGUFFile::parse(cut, "cut"), Error) << "prefix of " << n << " bytes";
  }
}

TEST(GGUFHostile, MagicAndVersion) {
  EXPECT_GGUF_ERROR(Raw().u32(0x12345678).u32(3).u64(0).u64(0), "not a GGUF file");
  EXPECT_GGUF_ERROR(Raw().header(0, 0, 1), "version 1");
  EXPECT_GGUF_ERROR(Raw().header(0, 0, 0x03000000), "big-endian");
  EXPECT_GGUF_ERROR(Raw().header(0, 0, 4), "unsupported GGUF version 4");
  EXPECT_GGUF_ERROR(Raw().u32(0x46554747), "file ends inside the version");
}

TEST(GGUFHostile, AbsurdCountsAreRejectedBeforeAllocating) {
  EXPECT_GGUF_ERROR(Raw().header(std::uint64_t{1} << 63, 0), "tensor count");
  EXPECT_GGUF_ERROR(Raw().header(0, std::uint64_t{1} << 63), "metadata count");
  EXPECT_GGUF_ERROR(Raw().header(0, ~std::uint64_t{0}), "metadata count");
  // An array claiming 2^63 u8 values, or 2^62 strings, in a tiny file.
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(9).u32(0).u64(std::uint64_t{1} << 63),
                    "cannot fit");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(9).u32(8).u64(std::uint64_t{1} << 62),
                    "cannot fit");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(9).u32(9).u64(~std::uint64_t{0}), "cannot fit");
}

TEST(GGUFHostile, StringLengthsPastTheEnd) {
  EXPECT_GGUF_ERROR(Raw().header(0, 1).u64(std::uint64_t{1} << 63).zeros(16), "has length");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(8).u64(1000).u8('v'), "has length");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(9).u32(8).u64(1).u64(5).u8('x'), "has length");
}

TEST(GGUFHostile, BadValueTypes) {
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(13).u32(0), "unknown value type 13");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(9).u32(77).u64(0), "unknown value type 77");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(7).u8(2), "bool value is 2");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("k").u32(4), "file ends inside a u32 value");
}

TEST(GGUFHostile, KeysMustBeUniqueNonEmptyUtf8) {
  EXPECT_GGUF_ERROR(Raw().header(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2),
                    "duplicate metadata key");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("bad\xFFkey").u32(0).u8(1), "not valid UTF-8");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("").u32(0).u8(1), "metadata key is empty");
}

TEST(GGUFHostile, DeeplyNestedArrays) {
  Raw r;
  r.header(0, 1).str("deep").u32(9);
  for (int i = 0; i < 50; ++i) r.u32(9).u64(1);
  r.u32(0).u64(0);
  EXPECT_GGUF_ERROR(r, "nested deeper");
}

TEST(GGUFHostile, Alignment) {
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("general.alignment").u32(8).str("32"), "must be a u32");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("general.alignment").u32(4).u32(0), "power of two");
  EXPECT_GGUF_ERROR(Raw().header(0, 1).str("general.alignment").u32(4).u32(48), "power of two");
}

TEST(GGUFHostile, TensorInfos) {
  const auto one = [](Raw r) { return r.pad_to(32).zeros(64); };
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0)), "5 dimensions");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {4}, 4, 0)), "unknown ggml tensor type 4");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {4}, 200, 0)), "unknown ggml tensor type");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {std::uint64_t{1} << 62, 1u << 20}, 0, 0)),
                    "overflow");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {~std::uint64_t{0}}, 0, 0)), "overflow");
  // Found by the mutation run: an empty tensor whose other dims would overflow a stride.
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {std::uint64_t{1} << 61, 0}, 0, 0)),
                    "overflow");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {33}, 2, 0)), "block size 32");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {4}, 0, 7)),
                    "not a multiple of the alignment");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {100}, 0, 0)), "past the end");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("t", {4}, 0, std::uint64_t{1} << 63)),
                    "past the end");
  EXPECT_GGUF_ERROR(one(Raw().header(2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0)),
                    "overlaps");
  EXPECT_GGUF_ERROR(one(Raw().header(2, 0).tensor("a", {4}, 0, 0).tensor("a", {4}, 0, 32)),
                    "duplicate tensor name");
  EXPECT_GGUF_ERROR(one(Raw().header(1, 0).tensor("\xC0\xAF", {4}, 0, 0)), "not valid UTF-8");
  // Header ends, but the file stops before the aligned data section begins.
  EXPECT_GGUF_ERROR(Raw().header(1, 0).tensor("t", {0}, 0, 0), "before the tensor data");
  // A well-formed one parses.
  EXPECT_NO_THROW(GGUFFile::parse(one(Raw().header(1, 0).tensor("t", {16}, 0, 0)).bytes, "ok"));
}

}  // namespace
}  // namespace hearth::formats
