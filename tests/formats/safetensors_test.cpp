#include "hearth/formats/safetensors.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "hearth/core/error.hpp"
#include "support/fixtures.hpp"

namespace hearth::formats {
namespace {

std::vector<std::byte> with_header(const std::string& json, std::size_t data_bytes = 0) {
  std::vector<std::byte> out(8 + json.size() + data_bytes, std::byte{0});
  const std::uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, json.data(), json.size());
  return out;
}

std::string error_of(const std::vector<std::byte>& bytes) {
  try {
    SafetensorsFile::parse(bytes, "bad.safetensors");
  } catch (const Error& e) {
    EXPECT_EQ(e.where().file, "bad.safetensors");
    return e.what();
  }
  ADD_FAILURE() << "parse succeeded";
  return {};
}

#define EXPECT_ST_ERROR(bytes, fragment)                                    \
  do {                                                                      \
    const std::string msg = error_of(bytes);                                \
    EXPECT_NE(msg.find(fragment), std::string::npos) << "message: " << msg; \
  } while (0)

TEST(Safetensors, WriteThenReadPreservesEverything) {
  std::vector<float> a(12);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i) * 0.25f;
  std::vector<std::uint16_t> b = {0x3C00, 0x4000, 0xC000};
  std::vector<std::uint32_t> packed = {0xDEADBEEF, 0x01234567};
  std::vector<std::int8_t> c = {-1, 2, -3, 4};
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "h\xC3\xA9llo");
  w.add_tensor("layer.weight", DType::kF32, {3, 4}, std::as_bytes(std::span(a)));
  w.add_tensor("layer.bias", DType::kBF16, {3}, std::as_bytes(std::span(b)));
  w.add_tensor("packed", DType::kU32, {1, 2}, std::as_bytes(std::span(packed)));
  w.add_tensor("scalar.i8", DType::kI8, {4}, std::as_bytes(std::span(c)));
  w.add_tensor("empty", DType::kF16, {0, 5}, {});
  const std::vector<std::byte> bytes = w.serialize();
  EXPECT_EQ((bytes.size() - a.size() * 4 - 6 - 8 - 4) % 8, 0u);  // header padded to 8

  const SafetensorsFile f = SafetensorsFile::parse(bytes, "mem");
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(*f.find_metadata("note"), "h\xC3\xA9llo");
  ASSERT_EQ(f.tensors().size(), 5u);
  EXPECT_EQ(f.tensors()[0].name, "layer.weight");  // header order kept
  const TensorView va = f.view(*f.find_tensor("layer.weight"));
  EXPECT_EQ(va.shape, (Shape{3, 4}));
  EXPECT_EQ(std::memcmp(va.data, a.data(), 48), 0);
  const TensorView vb = f.view(*f.find_tensor("layer.bias"));
  EXPECT_EQ(vb.dtype, DType::kBF16);
  EXPECT_EQ(vb.as<std::uint16_t>()[2], 0xC000);
  EXPECT_EQ(f.view(*f.find_tensor("packed")).as<std::uint32_t>()[0], 0xDEADBEEFu);
  EXPECT_EQ(f.view(*f.find_tensor("scalar.i8")).as<std::int8_t>()[2], -3);
  EXPECT_EQ(f.find_tensor("empty")->nbytes, 0u);
  for (const auto& t : f.tensors()) {  // the writer aligns every tensor to its element size
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f.view(t).data) % dtype_info(t.dtype).block_bytes,
              0u)
        << t.name;
  }
  EXPECT_EQ(f.find_tensor("nope"), nullptr);

  SafetensorsWriter copy;
  for (const auto& [k, v] : f.metadata()) copy.set_metadata(k, v);
  for (const auto& t : f.tensors()) copy.add_tensor(t.name, t.dtype, t.shape, f.view(t).bytes());
  EXPECT_EQ(copy.serialize(), bytes);

  testing::TempDir dir;
  w.write(dir / "m.safetensors");
  EXPECT_EQ(testing::read_bytes(dir / "m.safetensors"), bytes);
}

TEST(Safetensors, MisalignedTensorsAreReadableAsBytesButNotAsTypedSpans) {
  // Another writer may put a U32 tensor at an odd offset; typed access must not be UB.
  const auto bytes = with_header(R"({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                                     "b": {"dtype": "U32", "shape": [1], "data_offsets": [1, 5]}})",
                                 5);
  const SafetensorsFile f = SafetensorsFile::parse(bytes, "odd.safetensors");
  const TensorView b = f.view(*f.find_tensor("b"));
  EXPECT_EQ(b.bytes().size(), 4u);
  if (reinterpret_cast<std::uintptr_t>(b.data) % 4 != 0) {
    EXPECT_THROW(b.as<std::uint32_t>(), Error);
  }
}

TEST(SafetensorsHostile, HeaderLength) {
  EXPECT_ST_ERROR(std::vector<std::byte>(5), "too short");
  std::vector<std::byte> huge(16, std::byte{0});
  const std::uint64_t n = std::uint64_t{1} << 62;
  std::memcpy(huge.data(), &n, 8);
  EXPECT_ST_ERROR(huge, "larger than the file");
  EXPECT_ST_ERROR(with_header("[1]"), "does not start with a JSON object");
  EXPECT_ST_ERROR(with_header("{\"a\": "), "not valid JSON");
  EXPECT_ST_ERROR(with_header("{} trailing"), "not valid JSON");
}

TEST(SafetensorsHostile, EveryTruncationIsAnError) {
  std::vector<float> a(8, 1.0f);
  SafetensorsWriter w;
  w.add_tensor("a", DType::kF32, {8}, std::as_bytes(std::span(a)));
  const auto full = w.serialize();
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_THROW(SafetensorsFile::parse(cut, "cut"), Error) << n;
  }
}

TEST(SafetensorsHostile, Entries) {
  EXPECT_ST_ERROR(with_header(R"({"a": 1})"), "must be an object");
  EXPECT_ST_ERROR(with_header(R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", 4), "dtype");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", 4), "shape");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": "F32", "shape": [1]}})", 4), "data_offsets");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4),
                  "data_offsets");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}})", 4),
                  "unknown dtype \"Q9\"");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}})", 4),
                  "dtype");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4),
      "non-negative");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 4]}})", 4),
      "non-negative");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8),
      "needs 8");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", 4),
      "end before they begin");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 2),
      "past the end");
  EXPECT_ST_ERROR(
      with_header(
          R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [18446744073709551612, 18446744073709551615]}})",
          4),
      "past the end");
  EXPECT_ST_ERROR(
      with_header(
          R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904], "data_offsets": [0, 4]}})",
          4),
      "overflow");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0.5, 4]}})", 4),
      "non-negative");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                              8),
                  "overlaps");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                 "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                              8),
                  "duplicate key");
  // Found by the mutation run: a number too large for JSON's number types.
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F32", "shape": [31e999], "data_offsets": [0, 4]}})", 4),
      "not valid JSON");
  EXPECT_ST_ERROR(with_header(R"({"__metadata__": {"k": 1}})"), "must be strings");
  EXPECT_ST_ERROR(with_header(R"({"__metadata__": []})"), "object of strings");
  EXPECT_ST_ERROR(with_header("{\"bad\xFFname\": {}}"), "not valid JSON");
  EXPECT_ST_ERROR(with_header(R"({"a": {"dtype": [[[[[[1]]]]]]}})"), "nests deeper");
  EXPECT_ST_ERROR(with_header(std::string(100000, '[')), "does not start with a JSON object");
  EXPECT_ST_ERROR(with_header("{\"a\":" + std::string(100000, '[')), "nests deeper");
}

// float8 (FLUX fp8 files): one byte an element, read and written, sizes checked.
TEST(Safetensors, Float8TensorsAreOneByteAnElement) {
  SafetensorsWriter w;
  const std::vector<std::byte> e4m3 = {std::byte{0x38}, std::byte{0x7E}, std::byte{0x01}};
  const std::vector<std::byte> e5m2 = {std::byte{0x3C}, std::byte{0x7B}};
  w.add_tensor("w", DType::kF8E4M3, {3}, e4m3);
  w.add_tensor("v", DType::kF8E5M2, {1, 2}, e5m2);
  const auto bytes = w.serialize();
  const auto f = SafetensorsFile::parse(bytes, "f8.safetensors");
  const TensorView a = f.view(*f.find_tensor("w"));
  const TensorView b = f.view(*f.find_tensor("v"));
  EXPECT_EQ(a.dtype, DType::kF8E4M3);
  EXPECT_EQ(b.dtype, DType::kF8E5M2);
  EXPECT_EQ(f.find_tensor("w")->nbytes, 3u);
  EXPECT_EQ(std::memcmp(a.data, e4m3.data(), 3), 0);
  EXPECT_EQ(std::memcmp(b.data, e5m2.data(), 2), 0);
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F8_E4M3", "shape": [3], "data_offsets": [0, 6]}})", 6),
      "needs 3");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F8_E5M2", "shape": [2, 2], "data_offsets": [0, 2]}})", 2),
      "needs 4");
  EXPECT_ST_ERROR(
      with_header(R"({"a": {"dtype": "F8_E4M3FNUZ", "shape": [1], "data_offsets": [0, 1]}})", 1),
      "unknown dtype");
}

TEST(SafetensorsFixtures, Taef2) {
  for (const char* name : {"taef2_encoder.safetensors", "taef2_decoder.safetensors"}) {
    HEARTH_REQUIRE_FIXTURE(path, std::string("models/taef2/") + name);
    SCOPED_TRACE(name);
    const SafetensorsFile f = SafetensorsFile::open(path);
    EXPECT_EQ(f.tensors().size(), 79u);
    for (const auto& t : f.tensors()) EXPECT_EQ(t.dtype, DType::kF16) << t.name;
    ASSERT_NE(f.find_metadata("format"), nullptr);
    EXPECT_EQ(*f.find_metadata("format"), "pt");
  }
  HEARTH_REQUIRE_FIXTURE(dec, "models/taef2/taef2_decoder.safetensors");
  const SafetensorsFile d = SafetensorsFile::open(dec);
  const auto* first = d.find_tensor("1.weight");
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->shape, (Shape{64, 32, 3, 3}));  // conv: 32 latent channels in, 64 out
  std::uint64_t params = 0;
  for (const auto& t : d.tensors()) params += static_cast<std::uint64_t>(numel(t.shape));
  EXPECT_EQ(params, 1338499u);
}

}  // namespace
}  // namespace hearth::formats
