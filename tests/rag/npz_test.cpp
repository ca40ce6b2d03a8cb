#include "hearth/rag/npz_import.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <fstream>
#include <limits>

#include "fake_models.hpp"
#include "hearth/core/error.hpp"
#include "hearth/rag/bank.hpp"
#include "support/fixtures.hpp"

namespace hearth::rag {
namespace {

namespace fs = std::filesystem;

// A .npy v1 file with the given header dict and payload.
std::string npy(const std::string& dict, const std::string& payload) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xFF);
  out += static_cast<char>(header.size() >> 8);
  return out + header + payload;
}

TEST(Npy, ParsesIntegersAndFloats) {
  const std::int32_t ints[] = {72, -5, 0x1F989};
  const NpyArray a = parse_npy(npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                                   std::string(reinterpret_cast<const char*>(ints), 12)));
  EXPECT_FALSE(a.is_float);
  EXPECT_EQ(a.ints, (std::vector<std::int64_t>{72, -5, 0x1F989}));
  const float fl[] = {1.5f, -2.0f, 3.25f, 0.0f};
  const NpyArray f = parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                                   std::string(reinterpret_cast<const char*>(fl), 16)));
  EXPECT_TRUE(f.is_float);
  EXPECT_EQ(f.shape, (std::vector<std::size_t>{2, 2}));
  EXPECT_EQ(f.floats[2], 3.25);
}

TEST(Npy, MalformedInputIsAClearError) {
  EXPECT_THROW(parse_npy("not numpy"), Error);
  EXPECT_THROW(parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", "")),
               Error);
  EXPECT_THROW(parse_npy(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (0,), }", "")),
               Error);
  EXPECT_THROW(parse_npy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (0,), }", "")),
               Error);
  EXPECT_THROW(
      parse_npy(
          npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999), }", "")),
      Error);
  EXPECT_THROW(
      parse_npy(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "1234")),
      Error);
  std::string truncated = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "");
  truncated.resize(20);
  EXPECT_THROW(parse_npy(truncated), Error);
}

TEST(Npy, StringsUseCumulativeOffsets) {
  NpyArray data;
  for (const char32_t c : std::u32string(U"abcd\u00e9fgh\U0001F989")) data.ints.push_back(c);
  NpyArray lengths;
  lengths.ints = {3, 5, 1, 0};
  const auto s = decode_strings(data, lengths, "test");
  // The original reader restarted string i at lengths[i-1]: "abc", "def..." would overlap.
  EXPECT_EQ(s, (std::vector<std::string>{"abc",
                                         "d\xC3\xA9"
                                         "fgh",
                                         "\xF0\x9F\xA6\x89", ""}));
  lengths.ints = {3, 50};
  EXPECT_THROW(decode_strings(data, lengths, "test"), Error);
  lengths.ints = {-1};
  EXPECT_THROW(decode_strings(data, lengths, "test"), Error);
  NpyArray bad_cp;
  bad_cp.ints = {0xD800, 0x110000, 65};
  lengths.ints = {3};
  EXPECT_EQ(decode_strings(bad_cp, lengths, "t")[0],
            "\xEF\xBF\xBD\xEF\xBF\xBD"
            "A");
}

// Writes a vdb.npz in the original lab's layout with numpy (Debian's python3-numpy).
bool write_vdb(const fs::path& path, bool compressed) {
  const std::string script =
      "import json, numpy as np\n"
      "chunks = ['Pelicans scoop fish.', 'Owls hunt at night \\u00e9\\U0001F989.', "
      "'Cats sleep all day.', 'Pelican pouches hold water.']\n"
      "sources = ['birds.pdf', 'birds.pdf', 'cats.txt', 'birds.pdf']\n"
      "meta = [json.dumps({'page': p}) for p in (1, 2, 0, 3)]\n"
      "def enc(strings):\n"
      "    data = np.array([ord(c) for s in strings for c in s], dtype=np.int32)\n"
      "    return data, np.array([len(s) for s in strings], dtype=np.int64)\n"
      "cd, cl = enc(chunks); sd, sl = enc(sources); md, ml = enc(meta)\n"
      "emb = np.arange(4 * 8, dtype=np.float32).reshape(4, 8) % 5 + 1\n"
      "f = np." +
      std::string(compressed ? "savez_compressed" : "savez") + "('" + path.string() +
      "', embeddings=emb, chunk_data=cd, chunk_lengths=cl, source_data=sd, source_lengths=sl,"
      " metadata_data=md, metadata_lengths=ml)\n";
  const fs::path py = path.parent_path() / "make_vdb.py";
  std::ofstream(py) << script;
  std::string out;
  const int rc = testing::run_command("/usr/bin/python3 '" + py.string() + "'", &out);
  if (rc != 0) std::cerr << out;
  return rc == 0;
}

TEST(Npz, ImportsTheOriginalLayout) {
  if (!fs::exists("/usr/bin/python3") ||
      testing::run_command("/usr/bin/python3 -c 'import numpy'") != 0) {
    GTEST_SKIP() << "Debian's /usr/bin/python3 with numpy is needed to write test .npz files";
  }
  for (const bool compressed : {false, true}) {
    SCOPED_TRACE(compressed ? "savez_compressed" : "savez");
    testing::TempDir dir;
    ASSERT_TRUE(write_vdb(dir / "vdb.npz", compressed));
    const auto arrays = read_npz(dir / "vdb.npz");
    ASSERT_EQ(arrays.count("embeddings"), 1u);
    EXPECT_EQ(arrays.at("embeddings").shape, (std::vector<std::size_t>{4, 8}));
    const testing_fakes::FakeEmbedding model(8, "all-MiniLM-L6-v2");
    const ImportReport r = import_npz(dir / "vdb.npz", dir / "bank", &model);
    EXPECT_EQ(r.chunks, 4u);
    EXPECT_EQ(r.documents, 2u);
    EXPECT_EQ(r.dim, 8u);
    auto bank = Bank::open(dir / "bank", nullptr, false);
    EXPECT_EQ(bank->manifest().embedding_id, "all-MiniLM-L6-v2");
    EXPECT_EQ(bank->manifest().embedding_fingerprint, model.fingerprint());
    const BankStats s = bank->stats();
    EXPECT_EQ(s.chunks, 4);
    EXPECT_EQ(s.vectors, 4);
    const auto birds = bank->document("birds.pdf");
    ASSERT_TRUE(birds.has_value());
    const auto chunks = bank->chunks_of(birds->id);
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[1].text, "Owls hunt at night \xC3\xA9\xF0\x9F\xA6\x89.");
    EXPECT_EQ(chunks[1].page_first, 2);
    EXPECT_EQ(chunks[2].text, "Pelican pouches hold water.");
    EXPECT_EQ(chunks[2].page_first, 3);
    EXPECT_EQ(bank->search_bm25("pelican", 5).size(), 2u);
    // Row 2 of the embeddings (cats.txt) is found by its own normalised vector.
    std::vector<float> q(8);
    for (int j = 0; j < 8; ++j) q[j] = static_cast<float>((16 + j) % 5 + 1);
    normalize_rows(q.data(), 1, 8);
    const auto hits = bank->search_dense(q, 1);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(bank->chunk(hits[0].chunk_id)->text, "Cats sleep all day.");
    EXPECT_NEAR(hits[0].score, 1.0, 1e-5);
    // Importing again into the same bank is refused.
    EXPECT_THROW(import_npz(dir / "vdb.npz", dir / "bank", nullptr), Error);
    // A model of another dimension cannot have made these vectors.
    const testing_fakes::FakeEmbedding wide(16, "wide");
    EXPECT_THROW(import_npz(dir / "vdb.npz", dir / "other", &wide), Error);
    EXPECT_FALSE(Bank::exists(dir / "other"));
  }
}

TEST(Npz, CorruptArchivesAreClearErrors) {
  testing::TempDir dir;
  std::ofstream(dir / "garbage.npz") << "definitely not a zip file, just text";
  EXPECT_THROW(read_npz(dir / "garbage.npz"), Error);
  std::ofstream(dir / "empty.npz").flush();
  EXPECT_THROW(read_npz(dir / "empty.npz"), Error);
  if (testing::run_command("/usr/bin/python3 -c 'import numpy'") != 0) return;
  ASSERT_TRUE(write_vdb(dir / "vdb.npz", true));
  auto bytes = testing::read_bytes(dir / "vdb.npz");
  // Cut in the middle: the end-of-directory record is gone.
  auto cut = bytes;
  cut.resize(cut.size() / 2);
  testing::write_bytes(dir / "cut.npz", cut);
  EXPECT_THROW(read_npz(dir / "cut.npz"), Error);
  // Flip bytes inside the compressed data.
  auto flipped = bytes;
  for (std::size_t i = 60; i < 200 && i < flipped.size(); ++i) flipped[i] ^= std::byte{0x5A};
  testing::write_bytes(dir / "flipped.npz", flipped);
  EXPECT_THROW(read_npz(dir / "flipped.npz"), Error);
  // Missing arrays are named.
  const std::string script = "import numpy as np\nnp.savez('" + (dir / "partial.npz").string() +
                             "', embeddings=np.zeros((2, 3), dtype=np.float32))\n";
  std::ofstream(dir / "p.py") << script;
  ASSERT_EQ(testing::run_command("/usr/bin/python3 '" + (dir / "p.py").string() + "'"), 0);
  try {
    import_npz(dir / "partial.npz", dir / "bank", nullptr);
    FAIL() << "import without chunk arrays succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chunk_data"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hearth::rag

namespace hearth::rag {
namespace {

// A zip of (name, bytes) members, stored, or deflated from a generator of size bytes.
struct ZipEntry {
  std::string name;
  std::string bytes;            // stored as is when generate is empty
  std::uint64_t size = 0;       // with generate: the uncompressed size
  std::string generate_prefix;  // with size: these bytes, then zeros up to size
};

void put(std::string& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::string zip(const std::vector<ZipEntry>& entries) {
  std::string out;
  std::string central;
  for (const ZipEntry& e : entries) {
    std::string data;
    std::uint32_t crc = 0;
    std::uint64_t usize = 0;
    int method = 0;
    if (e.size == 0) {
      data = e.bytes;
      usize = data.size();
      crc = static_cast<std::uint32_t>(
          crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    } else {
      method = 8;
      usize = e.size;
      z_stream zs{};
      deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY);
      uLong c = crc32(0, Z_NULL, 0);
      std::string block(1 << 20, '\0');
      std::string buf(1 << 16, '\0');
      std::uint64_t fed = 0;
      for (bool first = true; fed < usize || first; first = false) {
        std::string piece = first ? e.generate_prefix : std::string();
        const std::uint64_t zeros =
            std::min<std::uint64_t>(block.size(), usize - fed - piece.size());
        piece.append(zeros, '\0');
        fed += piece.size();
        c = crc32(c, reinterpret_cast<const Bytef*>(piece.data()), static_cast<uInt>(piece.size()));
        zs.next_in = reinterpret_cast<Bytef*>(piece.data());
        zs.avail_in = static_cast<uInt>(piece.size());
        const int flush = fed == usize ? Z_FINISH : Z_NO_FLUSH;
        do {
          zs.next_out = reinterpret_cast<Bytef*>(buf.data());
          zs.avail_out = static_cast<uInt>(buf.size());
          deflate(&zs, flush);
          data.append(buf.data(), buf.size() - zs.avail_out);
        } while (zs.avail_out == 0);
      }
      deflateEnd(&zs);
      crc = static_cast<std::uint32_t>(c);
    }
    const std::size_t local = out.size();
    const std::string name = e.name + ".npy";
    put(out, 0x04034b50, 4);
    put(out, 20, 2);
    put(out, 0, 2);
    put(out, method, 2);
    put(out, 0, 4);
    put(out, crc, 4);
    put(out, data.size(), 4);
    put(out, usize, 4);
    put(out, name.size(), 2);
    put(out, 0, 2);
    out += name + data;
    put(central, 0x02014b50, 4);
    put(central, 20, 2);
    put(central, 20, 2);
    put(central, 0, 2);
    put(central, method, 2);
    put(central, 0, 4);
    put(central, crc, 4);
    put(central, data.size(), 4);
    put(central, usize, 4);
    put(central, name.size(), 2);
    put(central, 0, 2);
    put(central, 0, 2);
    put(central, 0, 2);
    put(central, 0, 2);
    put(central, 0, 4);
    put(central, local, 4);
    central += name;
  }
  const std::size_t cd = out.size();
  out += central;
  put(out, 0x06054b50, 4);
  put(out, 0, 4);
  put(out, entries.size(), 2);
  put(out, entries.size(), 2);
  put(out, central.size(), 4);
  put(out, cd, 4);
  put(out, 0, 2);
  return out;
}

std::string floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}
std::string ints(const std::vector<std::int32_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(std::int32_t));
}
std::string codepoints(const std::string& ascii) {
  std::vector<std::int32_t> v(ascii.begin(), ascii.end());
  return ints(v);
}

// Two chunks from one source, with the given embeddings (2 x 3).
std::vector<ZipEntry> two_chunks(const std::vector<float>& emb) {
  return {{"embeddings",
           npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", floats(emb))},
          {"chunk_data", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (8,), }",
                             codepoints("owlsfish"))},
          {"chunk_lengths",
           npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", ints({4, 4}))},
          {"source_data",
           npy("{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }", codepoints("aa.txt"))},
          {"source_lengths",
           npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", ints({3, 3}))}};
}

std::string import_error(const testing::TempDir& dir, const std::vector<ZipEntry>& entries) {
  const fs::path file = dir / "x.npz";
  std::ofstream(file, std::ios::binary) << zip(entries);
  try {
    import_npz(file, dir / "bank", nullptr);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Npz, NanInfiniteAndZeroVectorsAreRefused) {
  testing::TempDir dir;
  EXPECT_EQ(import_error(dir, two_chunks({1, 0, 0, 0, 1, 0})), "");
  EXPECT_EQ(Bank::open(dir / "bank", nullptr, false)->stats().vectors, 2);
  fs::remove_all(dir / "bank");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_NE(
      import_error(dir, two_chunks({1, 0, 0, 0, nan, 0})).find("row 1 of 'embeddings' holds NaN"),
      std::string::npos);
  EXPECT_NE(import_error(dir, two_chunks({1, inf, 0, 0, 1, 0}))
                .find("row 0 of 'embeddings' holds an infinite"),
            std::string::npos);
  EXPECT_NE(
      import_error(dir, two_chunks({1, 0, 0, 0, 0, 0})).find("row 1 of 'embeddings' is all zeros"),
      std::string::npos);
  EXPECT_FALSE(Bank::exists(dir / "bank")) << "nothing is created for a refused file";
}

TEST(Npz, ShapesAreCheckedFromTheHeadersBeforeAnyArrayIsInflated) {
  testing::TempDir dir;
  // A header whose shape disagrees with the bytes the member holds.
  auto lying = two_chunks({1, 0, 0, 0, 1, 0});
  lying[0].bytes =
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (8400000, 32), }", floats({1, 2}));
  EXPECT_NE(import_error(dir, lying).find("header describes 1075200000 bytes"), std::string::npos)
      << import_error(dir, lying);
  // A deflated 128 MiB of embeddings (1M x 32) beside two chunks: refused from the headers,
  // without inflating it. The peak memory of a child doing the import shows it.
  auto bomb = two_chunks({1, 0, 0, 0, 1, 0});
  const std::string header =
      npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 32), }", "");
  bomb[0] = {"embeddings", "", header.size() + (std::uint64_t{128} << 20), header};
  const fs::path file = dir / "bomb.npz";
  std::ofstream(file, std::ios::binary) << zip(bomb);
  ASSERT_LT(fs::file_size(file), 1u << 20);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    std::string what;
    try {
      import_npz(file, dir / "bank", nullptr);
    } catch (const Error& e) {
      what = e.what();
    }
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    const std::string report =
        std::to_string((after.ru_maxrss - before.ru_maxrss) / 1024) + " " + what;
    (void)!::write(pipe_fds[1], report.data(), report.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string report;
  char buf[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buf, sizeof buf)) > 0;) report.append(buf, n);
  ::close(pipe_fds[0]);
  ::waitpid(pid, nullptr, 0);
  const long grown_mib = std::atol(report.c_str());
  EXPECT_NE(report.find("has 1048576 rows but 'chunk_lengths' has 2 entries"), std::string::npos)
      << report;
  EXPECT_LT(grown_mib, 64) << "peak memory grew by " << grown_mib << " MiB: " << report;
}

}  // namespace
}  // namespace hearth::rag
