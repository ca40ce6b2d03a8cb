#include "hearth/rag/npz_import.hpp"

#include <zlib.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "hearth/core/error.hpp"
#include "hearth/core/hash.hpp"
#include "hearth/core/mapped_file.hpp"
#include "hearth/rag/bank.hpp"

namespace hearth::rag {
namespace {

std::uint64_t le(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::kFormat, what);
}

// The value text after 'key': in a .npy header dict.
std::string_view dict_value(std::string_view header, std::string_view key) {
  std::size_t at = 0;
  for (;;) {
    at = header.find(key, at);
    if (at == std::string_view::npos) {
      bad(std::string(".npy header has no '").append(key).append("'"));
    }
    const bool quoted = at > 0 && (header[at - 1] == '\'' || header[at - 1] == '"') &&
                        at + key.size() < header.size() &&
                        header[at + key.size()] == header[at - 1];
    if (quoted) break;
    at += key.size();
  }
  std::size_t colon = header.find(':', at);
  if (colon == std::string_view::npos) bad(".npy header is malformed");
  std::string_view v = header.substr(colon + 1);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return v;
}

void append_utf8(std::string& out, std::int64_t cp) {
  if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  const auto c = static_cast<std::uint32_t>(cp);
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// What a .npy header says: dtype, shape, element count and where the data starts.
struct NpyHeader {
  std::string descr;
  std::vector<std::size_t> shape;
  std::uint64_t count = 1;
  int itemsize = 0;
  bool is_float = false;
  bool is_signed = false;
  std::size_t data_at = 0;
  std::uint64_t data_bytes() const { return count * static_cast<std::uint64_t>(itemsize); }
};

// The length of the bytes before the header dict (10 or 12); sets header_len.
std::size_t npy_prefix_length(std::string_view bytes, std::size_t* header_len) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    bad("not a .npy array (bad magic)");
  }
  const int major = p[6];
  if (major == 1) {
    *header_len = static_cast<std::size_t>(le(p + 8, 2));
    return 10;
  }
  if (major == 2 || major == 3) {
    if (bytes.size() < 12) bad(".npy header truncated");
    *header_len = static_cast<std::size_t>(le(p + 8, 4));
    return 12;
  }
  throw Error(ErrorCode::kUnsupported, ".npy version " + std::to_string(major));
}

NpyHeader parse_npy_header(std::string_view bytes) {
  std::size_t header_len = 0;
  const std::size_t header_at = npy_prefix_length(bytes, &header_len);
  if (header_len > bytes.size() - header_at) bad(".npy header runs past the end");
  const std::string_view header = bytes.substr(header_at, header_len);
  NpyHeader a;
  std::string_view d = dict_value(header, "descr");
  if (d.empty() || (d.front() != '\'' && d.front() != '"')) {
    throw Error(ErrorCode::kUnsupported, "structured .npy dtypes are not supported");
  }
  const std::size_t close = d.find(d.front(), 1);
  if (close == std::string_view::npos) bad(".npy descr is malformed");
  a.descr = std::string(d.substr(1, close - 1));
  if (dict_value(header, "fortran_order").starts_with("True")) {
    throw Error(ErrorCode::kUnsupported, "Fortran-ordered .npy arrays are not supported");
  }
  std::string_view s = dict_value(header, "shape");
  if (s.empty() || s.front() != '(') bad(".npy shape is malformed");
  const std::size_t s_end = s.find(')');
  if (s_end == std::string_view::npos) bad(".npy shape is malformed");
  std::uint64_t cur = 0;
  bool in_number = false;
  auto end_number = [&] {
    if (!in_number) return;
    a.shape.push_back(static_cast<std::size_t>(cur));
    if (cur != 0 && a.count > (std::uint64_t{1} << 40) / cur) bad(".npy shape is too large");
    a.count *= cur;
  };
  for (const char c : s.substr(1, s_end - 1)) {
    if (c >= '0' && c <= '9') {
      if (cur > (std::uint64_t{1} << 40)) bad(".npy dimension is absurdly large");
      cur = cur * 10 + static_cast<std::uint64_t>(c - '0');
      in_number = true;
    } else if (c == ',' || c == ' ' || c == 'L') {
      end_number();
      cur = 0;
      in_number = false;
    } else {
      bad(".npy shape is malformed");
    }
  }
  end_number();
  if (a.descr.size() < 3) throw Error(ErrorCode::kUnsupported, "dtype " + a.descr);
  const char order = a.descr[0];
  const char kind = a.descr[1];
  a.itemsize = std::atoi(a.descr.c_str() + 2);
  if (order == '>' && a.itemsize > 1) {
    throw Error(ErrorCode::kUnsupported, "big-endian .npy arrays are not supported");
  }
  a.is_float = kind == 'f' && (a.itemsize == 4 || a.itemsize == 8);
  const bool ok_int = (kind == 'i' || kind == 'u') &&
                      (a.itemsize == 1 || a.itemsize == 2 || a.itemsize == 4 || a.itemsize == 8);
  if (!a.is_float && !ok_int) {
    throw Error(ErrorCode::kUnsupported, "unsupported .npy dtype " + a.descr);
  }
  a.is_signed = kind == 'i';
  a.data_at = header_at + header_len;
  return a;
}

// Element i of little-endian data in the header's dtype.
double float_at(const NpyHeader& h, const char* data, std::size_t i) {
  if (h.itemsize == 4) {
    float f;
    std::memcpy(&f, data + i * 4, 4);
    return f;
  }
  double v;
  std::memcpy(&v, data + i * 8, 8);
  return v;
}

std::int64_t int_at(const NpyHeader& h, const char* data, std::size_t i) {
  const auto* q = reinterpret_cast<const unsigned char*>(data + i * h.itemsize);
  std::uint64_t v = le(q, h.itemsize);
  if (h.is_signed && h.itemsize < 8 && (v >> (h.itemsize * 8 - 1)) != 0) {
    v |= ~std::uint64_t{0} << (h.itemsize * 8);  // sign-extend
  }
  if (!h.is_signed && h.itemsize == 8 && v > static_cast<std::uint64_t>(INT64_MAX)) {
    bad(".npy unsigned value too large");
  }
  return static_cast<std::int64_t>(v);
}

// One member of a zip as its central directory describes it.
struct ZipMember {
  std::string name;  // without ".npy"
  std::uint64_t method = 0;
  std::uint32_t crc = 0;
  std::string_view raw;    // the stored or deflated bytes
  std::uint64_t size = 0;  // uncompressed
};

std::vector<ZipMember> zip_members(std::string_view z) {
  const auto* u = reinterpret_cast<const unsigned char*>(z.data());
  std::vector<ZipMember> out;
  if (z.size() < 22) bad("too small to be a .npz (zip) file");
  std::size_t eocd = std::string_view::npos;
  const std::size_t lowest = z.size() > 22 + 65535 ? z.size() - 22 - 65535 : 0;
  for (std::size_t i = z.size() - 22 + 1; i-- > lowest;) {
    if (le(u + i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string_view::npos) bad("not a zip archive (no end-of-directory record)");
  std::uint64_t entries = le(u + eocd + 10, 2);
  std::uint64_t cd_offset = le(u + eocd + 16, 4);
  if (cd_offset == 0xFFFFFFFF || entries == 0xFFFF) {
    // Zip64: the locator sits just before the end record.
    if (eocd < 20 || le(u + eocd - 20, 4) != 0x07064b50) bad("zip64 locator missing");
    const std::uint64_t z64 = le(u + eocd - 20 + 8, 8);
    if (z64 > z.size() - 56 || le(u + z64, 4) != 0x06064b50) bad("zip64 end record missing");
    entries = le(u + z64 + 32, 8);
    cd_offset = le(u + z64 + 48, 8);
  }
  std::uint64_t pos = cd_offset;
  for (std::uint64_t e = 0; e < entries; ++e) {
    if (pos > z.size() || z.size() - pos < 46 || le(u + pos, 4) != 0x02014b50) {
      bad("zip central directory is corrupt");
    }
    ZipMember m;
    m.method = le(u + pos + 10, 2);
    m.crc = static_cast<std::uint32_t>(le(u + pos + 16, 4));
    std::uint64_t csize = le(u + pos + 20, 4);
    m.size = le(u + pos + 24, 4);
    const std::uint64_t name_len = le(u + pos + 28, 2);
    const std::uint64_t extra_len = le(u + pos + 30, 2);
    const std::uint64_t comment_len = le(u + pos + 32, 2);
    std::uint64_t local = le(u + pos + 42, 4);
    if (z.size() - pos - 46 < name_len + extra_len + comment_len) bad("zip entry truncated");
    m.name = std::string(z.substr(pos + 46, name_len));
    // Zip64 extra field: 64-bit values replace the fields that read 0xFFFFFFFF, in order.
    std::uint64_t x = pos + 46 + name_len;
    const std::uint64_t x_end = x + extra_len;
    while (x + 4 <= x_end) {
      const std::uint64_t id = le(u + x, 2);
      const std::uint64_t len = le(u + x + 2, 2);
      if (x + 4 + len > x_end) break;
      if (id == 1) {
        std::uint64_t f = x + 4;
        auto take = [&](std::uint64_t& v) {
          if (v == 0xFFFFFFFF && f + 8 <= x + 4 + len) {
            v = le(u + f, 8);
            f += 8;
          }
        };
        take(m.size);
        take(csize);
        take(local);
      }
      x += 4 + len;
    }
    pos += 46 + name_len + extra_len + comment_len;
    if (local > z.size() || z.size() - local < 30 || le(u + local, 4) != 0x04034b50) {
      bad("zip local header of " + m.name + " is corrupt");
    }
    const std::uint64_t data_at = local + 30 + le(u + local + 26, 2) + le(u + local + 28, 2);
    if (data_at > z.size() || csize > z.size() - data_at) {
      bad("zip member " + m.name + " is truncated");
    }
    m.raw = z.substr(data_at, csize);
    if (m.method != 0 && m.method != 8) {
      throw Error(ErrorCode::kUnsupported,
                  "zip member " + m.name + " uses compression method " + std::to_string(m.method));
    }
    if (m.method == 0 && m.size != csize) bad("zip member " + m.name + " has two sizes");
    if (m.name.ends_with(".npy")) m.name.resize(m.name.size() - 4);
    out.push_back(std::move(m));
  }
  return out;
}

// Reads one member's uncompressed bytes in order, inflating as it goes, and checks its size and
// CRC at the end: memory stays at what the caller asks for at a time.
class MemberReader {
 public:
  explicit MemberReader(const ZipMember& m) : m_(m), crc_(crc32(0L, Z_NULL, 0)) {
    if (m_.method != 8) return;
    if (inflateInit2(&zs_, -MAX_WBITS) != Z_OK) {
      throw Error(ErrorCode::kInternal, "zlib init failed");
    }
    inflating_ = true;
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(m_.raw.data()));
  }
  ~MemberReader() {
    if (inflating_) inflateEnd(&zs_);
  }
  MemberReader(const MemberReader&) = delete;
  MemberReader& operator=(const MemberReader&) = delete;

  std::uint64_t left() const { return m_.size - done_; }

  // Exactly n bytes into out.
  void read(char* out, std::size_t n) {
    if (n > left()) bad("zip member " + m_.name + " is shorter than its header says");
    if (!inflating_) {
      std::memcpy(out, m_.raw.data() + done_, n);
    } else {
      std::size_t got = 0;
      while (got < n) {
        zs_.avail_in =
            static_cast<uInt>(std::min<std::uint64_t>(m_.raw.size() - consumed_, 1u << 30));
        zs_.next_out = reinterpret_cast<Bytef*>(out + got);
        zs_.avail_out = static_cast<uInt>(std::min<std::size_t>(n - got, 1u << 30));
        const uInt in_before = zs_.avail_in;
        const uInt out_before = zs_.avail_out;
        const int rc = inflate(&zs_, Z_NO_FLUSH);
        consumed_ += in_before - zs_.avail_in;
        got += out_before - zs_.avail_out;
        if (rc == Z_STREAM_END && got < n) bad("zip member " + m_.name + " inflates short");
        if (rc != Z_OK && rc != Z_STREAM_END) {
          bad("zip member " + m_.name + " does not inflate correctly");
        }
      }
    }
    for (std::size_t off = 0; off < n; off += 1u << 30) {
      crc_ = crc32(crc_, reinterpret_cast<const Bytef*>(out + off),
                   static_cast<uInt>(std::min<std::size_t>(n - off, 1u << 30)));
    }
    done_ += n;
  }

  // After the last read: the CRC holds.
  void finish() const {
    if (left() != 0) bad("zip member " + m_.name + " has bytes past its array");
    if (crc_ != m_.crc) bad("zip member " + m_.name + " fails its CRC check (corrupt file)");
  }

 private:
  const ZipMember& m_;
  z_stream zs_{};
  bool inflating_ = false;
  std::uint64_t consumed_ = 0;
  std::uint64_t done_ = 0;
  uLong crc_;
};

// Reads a member's .npy header; the reader is left at the start of the data, whose size the
// header must account for exactly.
NpyHeader read_header(MemberReader& r, const ZipMember& m) {
  std::string head(10, '\0');
  if (r.left() < 10) bad("zip member " + m.name + " is too short for a .npy array");
  r.read(head.data(), 10);
  std::size_t header_len = 0;
  if (head[6] == 2 || head[6] == 3) {
    head.resize(12);
    if (r.left() < 2) bad(".npy header truncated");
    r.read(head.data() + 10, 2);
  }
  const std::size_t at = npy_prefix_length(head, &header_len);
  if (header_len > r.left()) bad(".npy header runs past the end");
  head.resize(at + header_len);
  r.read(head.data() + at, header_len);
  NpyHeader h = parse_npy_header(head);
  if (h.data_bytes() != r.left()) {
    bad("zip member " + m.name + ": its header describes " + std::to_string(h.data_bytes()) +
        " bytes of data but it holds " + std::to_string(r.left()));
  }
  return h;
}

// Reads count elements in blocks, calling each(i, value) for integer or floating arrays.
template <typename Each>
void stream_values(MemberReader& r, const NpyHeader& h, Each each) {
  std::vector<char> block;
  const std::size_t per_block = std::max<std::size_t>(1, (1u << 20) / h.itemsize);
  for (std::uint64_t i = 0; i < h.count;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(per_block, h.count - i));
    block.resize(n * h.itemsize);
    r.read(block.data(), block.size());
    for (std::size_t k = 0; k < n; ++k) {
      if (h.is_float) {
        each(i + k, float_at(h, block.data(), k), std::int64_t{0});
      } else {
        each(i + k, 0.0, int_at(h, block.data(), k));
      }
    }
    i += n;
  }
  r.finish();
}

}  // namespace

std::size_t NpyArray::count() const {
  return is_float ? floats.size() : ints.size();
}

NpyArray parse_npy(std::string_view bytes) {
  const NpyHeader h = parse_npy_header(bytes);
  const std::uint64_t need = h.data_bytes();
  if (need > bytes.size() - h.data_at) {
    bad(".npy data is truncated: needs " + std::to_string(need) + " bytes, has " +
        std::to_string(bytes.size() - h.data_at));
  }
  const char* data = bytes.data() + h.data_at;
  NpyArray a;
  a.descr = h.descr;
  a.shape = h.shape;
  a.is_float = h.is_float;
  if (h.is_float) {
    a.floats.resize(h.count);
    for (std::size_t i = 0; i < h.count; ++i) a.floats[i] = float_at(h, data, i);
  } else {
    a.ints.resize(h.count);
    for (std::size_t i = 0; i < h.count; ++i) a.ints[i] = int_at(h, data, i);
  }
  return a;
}

std::map<std::string, NpyArray> read_npz(const std::filesystem::path& path) {
  const MappedFile file = MappedFile::open(path);
  const std::string_view z(reinterpret_cast<const char*>(file.bytes().data()), file.size());
  std::map<std::string, NpyArray> out;
  try {
    for (const ZipMember& m : zip_members(z)) {
      if (m.size > (std::uint64_t{4} << 30)) bad("zip member claims more than 4 GiB");
      MemberReader r(m);
      std::string member(static_cast<std::size_t>(m.size), '\0');
      r.read(member.data(), member.size());
      r.finish();
      try {
        out[m.name] = parse_npy(member);
      } catch (const Error& err) {
        throw Error(err.code(), err.message(), {.key = m.name});
      }
    }
  } catch (const Error& e) {
    if (e.where().file.empty()) throw e.with_file(path.string());
    throw;
  }
  return out;
}

std::vector<std::string> decode_strings(const NpyArray& data, const NpyArray& lengths,
                                        const std::string& what) {
  if (data.is_float || lengths.is_float) bad(what + ": strings must be integer arrays");
  std::vector<std::string> out;
  out.reserve(lengths.ints.size());
  std::uint64_t offset = 0;
  for (const std::int64_t len : lengths.ints) {
    if (len < 0 || static_cast<std::uint64_t>(len) > data.ints.size() - offset) {
      bad(what + ": lengths run past the code-point data");
    }
    std::string s;
    for (std::int64_t i = 0; i < len; ++i)
      append_utf8(s, data.ints[offset + static_cast<std::uint64_t>(i)]);
    offset += static_cast<std::uint64_t>(len);
    out.push_back(std::move(s));
  }
  return out;
}

ImportReport import_npz(const std::filesystem::path& npz, const std::filesystem::path& folder,
                        const EmbeddingModel* model) {
  const MappedFile file = MappedFile::open(npz);
  const std::string_view z(reinterpret_cast<const char*>(file.bytes().data()), file.size());
  try {
    const std::vector<ZipMember> members = zip_members(z);
    auto find = [&](const char* name) -> const ZipMember* {
      for (const ZipMember& m : members) {
        if (m.name == name) return &m;
      }
      return nullptr;
    };
    auto need = [&](const char* name) -> const ZipMember& {
      const ZipMember* m = find(name);
      if (m == nullptr) bad(std::string("vdb.npz has no '") + name + "' array");
      return *m;
    };
    // Every header first: shapes and counts agree before any array is read.
    struct Array {
      const ZipMember* member;
      std::unique_ptr<MemberReader> reader;
      NpyHeader header;
    };
    auto open = [&](const ZipMember& m) {
      Array a{&m, std::make_unique<MemberReader>(m), {}};
      try {
        a.header = read_header(*a.reader, m);
      } catch (const Error& err) {
        throw Error(err.code(), err.message(), {.key = m.name});
      }
      return a;
    };
    Array emb = open(need("embeddings"));
    if (!emb.header.is_float || emb.header.shape.size() != 2) {
      bad("'embeddings' must be a 2-D float array");
    }
    const std::size_t n = emb.header.shape[0];
    const std::size_t dim = emb.header.shape[1];
    if (dim == 0) bad("'embeddings' has zero columns");
    if (model != nullptr && model->dim() != dim) {
      bad("the vectors have " + std::to_string(dim) + " dimensions but " + model->id() + " makes " +
          std::to_string(model->dim()));
    }
    const bool with_metadata = find("metadata_data") != nullptr && find("metadata_lengths");
    std::vector<std::pair<Array, Array>> strings;  // (data, lengths) of chunks, sources, metadata
    for (const auto& [data, lengths] :
         {std::pair{"chunk_data", "chunk_lengths"}, std::pair{"source_data", "source_lengths"},
          std::pair{"metadata_data", "metadata_lengths"}}) {
      if (std::string_view(data) == "metadata_data" && !with_metadata) break;
      Array d = open(need(data));
      Array l = open(need(lengths));
      if (d.header.is_float || l.header.is_float) {
        bad(std::string("'") + data + "' and '" + lengths + "' must be integer arrays");
      }
      if (d.header.shape.size() != 1 || l.header.shape.size() != 1) {
        bad(std::string("'") + data + "' and '" + lengths + "' must be 1-D");
      }
      if (l.header.count != n) {
        bad("'embeddings' has " + std::to_string(n) + " rows but '" + lengths + "' has " +
            std::to_string(l.header.count) + " entries");
      }
      strings.emplace_back(std::move(d), std::move(l));
    }
    // Then the data, streamed: lengths, the strings they cut, and the vectors row by row.
    std::vector<std::vector<std::string>> decoded;
    for (auto& [d, l] : strings) {
      std::vector<std::int64_t> lengths(n);
      std::uint64_t total = 0;
      stream_values(*l.reader, l.header, [&](std::uint64_t i, double, std::int64_t v) {
        if (v < 0 || static_cast<std::uint64_t>(v) > d.header.count - total) {
          bad("'" + l.member->name + "' runs past the code points of '" + d.member->name + "'");
        }
        lengths[i] = v;
        total += static_cast<std::uint64_t>(v);
      });
      std::vector<std::string> out(n);
      std::size_t which = 0;
      std::int64_t left_in_string = n > 0 ? lengths[0] : 0;
      stream_values(*d.reader, d.header, [&](std::uint64_t, double, std::int64_t cp) {
        while (which < n && left_in_string == 0) {
          if (++which < n) left_in_string = lengths[which];
        }
        if (which >= n) return;  // code points past the last string are not used
        append_utf8(out[which], cp);
        --left_in_string;
      });
      decoded.push_back(std::move(out));
    }
    const std::vector<std::string>& chunks = decoded[0];
    const std::vector<std::string>& sources = decoded[1];
    std::vector<Bank::PendingDocument> docs;
    std::vector<std::size_t> doc_of_row(n);
    std::unordered_map<std::string, std::size_t> doc_of;
    for (std::size_t i = 0; i < n; ++i) {
      auto [it, inserted] = doc_of.emplace(sources[i], docs.size());
      if (inserted) {
        docs.emplace_back();
        docs.back().key = sources[i];
        docs.back().doc.kind =
            kind_for_path(sources[i]).empty() ? "import" : kind_for_path(sources[i]);
      }
      doc_of_row[i] = it->second;
      Bank::PendingDocument& d = docs[it->second];
      Chunk c;
      if (!d.doc.text.empty()) d.doc.text += "\n\n";
      c.begin = d.doc.text.size();
      d.doc.text += chunks[i];
      c.end = d.doc.text.size();
      c.text = chunks[i];
      if (with_metadata) {
        const auto j = nlohmann::json::parse(decoded[2][i], nullptr, false);
        if (j.is_object() && j.contains("page") && j["page"].is_number_integer()) {
          c.page_first = c.page_last = j["page"].get<int>();
        }
      }
      d.chunks.push_back(std::move(c));
    }
    decoded.clear();
    // A vector that is not finite or is all zeros cannot be ranked by cosine: refused.
    bool nonzero = false;
    stream_values(*emb.reader, emb.header, [&](std::uint64_t i, double v, std::int64_t) {
      const std::size_t row = static_cast<std::size_t>(i / dim);
      const auto f = static_cast<float>(v);
      if (!std::isfinite(f)) {
        bad("row " + std::to_string(row) + " of 'embeddings' holds " +
            (std::isnan(v) ? "NaN" : "an infinite value (or one past the float range)"));
      }
      nonzero = nonzero || f != 0;
      docs[doc_of_row[row]].vectors.push_back(f);
      if (i % dim == dim - 1) {
        if (!nonzero) bad("row " + std::to_string(row) + " of 'embeddings' is all zeros");
        nonzero = false;
      }
    });
    for (Bank::PendingDocument& d : docs) {
      d.hash = content_hash(d.doc.text);
      d.size = d.doc.text.size();
    }
    auto bank = Bank::create_for_import(folder, model != nullptr ? model->id() : "imported",
                                        model != nullptr ? model->fingerprint() : "", dim,
                                        ChunkingOptions::original());
    const std::size_t n_docs = docs.size();
    bank->store_batch(docs);
    return {n, n_docs, dim};
  } catch (const Error& e) {
    if (e.where().file.empty()) throw e.with_file(npz.string());
    throw;
  }
}

}  // namespace hearth::rag
