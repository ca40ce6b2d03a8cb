// .npy writing: the header NumPy expects (checked by numpy itself when Debian's python3-numpy
// is there) and the float32 payload after it; reading float32 arrays back, and refusing the rest.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/npy.hpp"
#include "support/fixtures.hpp"

namespace hearth::formats {
namespace {

TEST(Npy, HeaderIsAlignedAndThePayloadFollowsIt) {
  hearth::testing::TempDir dir;
  const std::vector<float> data{1.0f, -2.5f, 3.25f, 0.0f, 5.0f, 6.0f};
  const std::int64_t shape[2] = {2, 3};
  write_npy_f32(dir / "a.npy", data, shape);
  const std::vector<std::byte> bytes = hearth::testing::read_bytes(dir / "a.npy");
  ASSERT_GT(bytes.size(), 10U);
  const std::string head(reinterpret_cast<const char*>(bytes.data()), 10);
  EXPECT_EQ(head.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const std::size_t len = static_cast<unsigned char>(head[8]) |
                          (static_cast<std::size_t>(static_cast<unsigned char>(head[9])) << 8);
  EXPECT_EQ((10 + len) % 64, 0U);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 10, len);
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'shape': (2, 3)"), std::string::npos) << header;
  EXPECT_EQ(header.back(), '\n');
  ASSERT_EQ(bytes.size(), 10 + len + data.size() * 4);
  std::vector<float> back(data.size());
  std::memcpy(back.data(), bytes.data() + 10 + len, back.size() * 4);
  EXPECT_EQ(back, data);
}

TEST(Npy, NumpyReadsWhatHearthWrites) {
  if (hearth::testing::run_command("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
    GTEST_SKIP() << "needs Debian's python3-numpy at /usr/bin/python3 (apt install python3-numpy)";
  }
  hearth::testing::TempDir dir;
  std::vector<float> data(4 * 5 * 6);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(i) * 0.5f;
  const std::int64_t shape[3] = {4, 5, 6};
  write_npy_f32(dir / "b.npy", data, shape);
  const std::int64_t flat[1] = {3};
  write_npy_f32(dir / "c.npy", std::span<const float>(data).first(3), flat);
  std::string out;
  ASSERT_EQ(hearth::testing::run_command("/usr/bin/python3 -c \"import numpy as n; a=n.load('" +
                                             (dir / "b.npy").string() + "'); c=n.load('" +
                                             (dir / "c.npy").string() +
                                             "'); print(a.shape, a.dtype, a[3,4,5], c.shape)\"",
                                         &out),
            0)
      << out;
  EXPECT_EQ(out, "(4, 5, 6) float32 59.5 (3,)\n");
}

TEST(Npy, AShapeThatDoesNotMatchTheDataIsRefused) {
  hearth::testing::TempDir dir;
  const std::vector<float> data(5);
  const std::int64_t shape[2] = {2, 3};
  EXPECT_THROW(write_npy_f32(dir / "d.npy", data, shape), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "d.npy"));
}

TEST(Npy, ReadsBackWhatItWritesAndWhatNumpySaves) {
  hearth::testing::TempDir dir;
  const std::vector<float> data{1.0f, -2.5f, 3.25f, 0.0f, 5.0f, 6.0f};
  const std::int64_t shape[3] = {1, 2, 3};
  write_npy_f32(dir / "a.npy", data, shape);
  const NpyF32 a = read_npy_f32(dir / "a.npy");
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(a.data, data);
  if (hearth::testing::run_command("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
    GTEST_SKIP() << "needs Debian's python3-numpy at /usr/bin/python3 (apt install python3-numpy)";
  }
  std::string out;
  ASSERT_EQ(hearth::testing::run_command(
                "/usr/bin/python3 -c \"import numpy as n; n.save('" + (dir / "b.npy").string() +
                    "', n.arange(24, dtype=n.float32).reshape(2, 3, 4) * 0.5); n.save('" +
                    (dir / "c.npy").string() + "', n.zeros((2, 2)))\"",
                &out),
            0)
      << out;
  const NpyF32 b = read_npy_f32(dir / "b.npy");
  EXPECT_EQ(b.shape, (std::vector<std::int64_t>{2, 3, 4}));
  ASSERT_EQ(b.data.size(), 24U);
  EXPECT_EQ(b.data[23], 11.5f);
  try {
    read_npy_f32(dir / "c.npy");  // float64
    ADD_FAILURE() << "a float64 array was read as float32";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("<f8"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("c.npy"), std::string::npos) << e.what();
  }
}

TEST(Npy, MalformedFilesAreRefusedNamingTheFile) {
  hearth::testing::TempDir dir;
  const std::vector<float> data{1.0f, 2.0f, 3.0f, 4.0f};
  const std::int64_t shape[1] = {4};
  write_npy_f32(dir / "ok.npy", data, shape);
  const std::vector<std::byte> good = hearth::testing::read_bytes(dir / "ok.npy");
  const auto refused = [&](const std::string& name, std::vector<std::byte> bytes,
                           const std::string& says) {
    hearth::testing::write_bytes(dir / name, bytes);
    try {
      read_npy_f32(dir / name);
      ADD_FAILURE() << name << " was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused("empty.npy", {}, "magic");
  refused("short.npy", std::vector<std::byte>(good.begin(), good.end() - 4), "data bytes");
  std::vector<std::byte> longer = good;
  longer.push_back(std::byte{0});
  refused("long.npy", longer, "data bytes");
  std::vector<std::byte> header_cut(good.begin(), good.begin() + 40);
  refused("header.npy", header_cut, "truncated");
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string text(reinterpret_cast<const char*>(good.data()), good.size());
    text.replace(text.find(from), from.size(), to);
    const auto* b = reinterpret_cast<const std::byte*>(text.data());
    return std::vector<std::byte>(b, b + text.size());
  };
  refused("fortran.npy", edit("False", "True "), "Fortran");
  refused("bigendian.npy", edit("<f4", ">f4"), ">f4");
  refused("shape.npy", edit("(4, )", "(x, )"), "shape");
}

}  // namespace
}  // namespace hearth::formats
