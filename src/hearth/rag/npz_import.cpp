#include "hearth/rag/npz_import.hpp"

#include <zlib.h>

#include <cstring>
#include <limits>
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

std::string inflate_raw(std::string_view in, std::uint64_t expected) {
  if (expected > (std::uint64_t{4} << 30)) bad("zip member claims more than 4 GiB");
  std::string out(static_cast<std::size_t>(expected), '\0');
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) throw Error(ErrorCode::kInternal, "zlib init failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(std::min<std::size_t>(in.size(), UINT32_MAX));
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  const std::uint64_t produced = zs.total_out;
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || produced != expected) bad("zip member does not inflate correctly");
  return out;
}

}  // namespace

std::size_t NpyArray::count() const {
  return is_float ? floats.size() : ints.size();
}

NpyArray parse_npy(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) {
    bad("not a .npy array (bad magic)");
  }
  const int major = p[6];
  std::size_t header_len = 0;
  std::size_t header_at = 0;
  if (major == 1) {
    header_len = static_cast<std::size_t>(le(p + 8, 2));
    header_at = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) bad(".npy header truncated");
    header_len = static_cast<std::size_t>(le(p + 8, 4));
    header_at = 12;
  } else {
    throw Error(ErrorCode::kUnsupported, ".npy version " + std::to_string(major));
  }
  if (header_len > bytes.size() - header_at) bad(".npy header runs past the end");
  const std::string_view header = bytes.substr(header_at, header_len);
  NpyArray a;
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
  std::uint64_t count = 1;
  std::uint64_t cur = 0;
  bool in_number = false;
  for (const char c : s.substr(1, s_end - 1)) {
    if (c >= '0' && c <= '9') {
      if (cur > (std::uint64_t{1} << 40)) bad(".npy dimension is absurdly large");
      cur = cur * 10 + static_cast<std::uint64_t>(c - '0');
      in_number = true;
    } else if (c == ',' || c == ' ' || c == 'L') {
      if (in_number) {
        a.shape.push_back(static_cast<std::size_t>(cur));
        if (cur != 0 && count > (std::uint64_t{1} << 40) / cur) bad(".npy shape is too large");
        count *= cur;
      }
      cur = 0;
      in_number = false;
    } else {
      bad(".npy shape is malformed");
    }
  }
  if (in_number) {
    a.shape.push_back(static_cast<std::size_t>(cur));
    if (cur != 0 && count > (std::uint64_t{1} << 40) / cur) bad(".npy shape is too large");
    count *= cur;
  }
  if (a.descr.size() < 3) throw Error(ErrorCode::kUnsupported, "dtype " + a.descr);
  const char order = a.descr[0];
  const char kind = a.descr[1];
  const int size = std::atoi(a.descr.c_str() + 2);
  if (order == '>' && size > 1) {
    throw Error(ErrorCode::kUnsupported, "big-endian .npy arrays are not supported");
  }
  const bool ok_float = kind == 'f' && (size == 4 || size == 8);
  const bool ok_int =
      (kind == 'i' || kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8);
  if (!ok_float && !ok_int) {
    throw Error(ErrorCode::kUnsupported, "unsupported .npy dtype " + a.descr);
  }
  const std::size_t data_at = header_at + header_len;
  const std::uint64_t need = count * static_cast<std::uint64_t>(size);
  if (need > bytes.size() - data_at) {
    bad(".npy data is truncated: needs " + std::to_string(need) + " bytes, has " +
        std::to_string(bytes.size() - data_at));
  }
  const char* data = bytes.data() + data_at;
  a.is_float = ok_float;
  if (ok_float) {
    a.floats.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      if (size == 4) {
        float f;
        std::memcpy(&f, data + i * 4, 4);
        a.floats[i] = f;
      } else {
        std::memcpy(&a.floats[i], data + i * 8, 8);
      }
    }
  } else {
    a.ints.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
      const auto* q = reinterpret_cast<const unsigned char*>(data + i * size);
      std::uint64_t v = le(q, size);
      if (kind == 'i' && size < 8 && (v >> (size * 8 - 1)) != 0) {
        v |= ~std::uint64_t{0} << (size * 8);  // sign-extend
      }
      if (kind == 'u' && size == 8 && v > static_cast<std::uint64_t>(INT64_MAX)) {
        bad(".npy unsigned value too large");
      }
      a.ints[i] = static_cast<std::int64_t>(v);
    }
  }
  return a;
}

std::map<std::string, NpyArray> read_npz(const std::filesystem::path& path) {
  const MappedFile file = MappedFile::open(path);
  const std::string_view z(reinterpret_cast<const char*>(file.bytes().data()), file.size());
  const auto* u = reinterpret_cast<const unsigned char*>(z.data());
  std::map<std::string, NpyArray> out;
  try {
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
      const std::uint64_t method = le(u + pos + 10, 2);
      const auto crc = static_cast<std::uint32_t>(le(u + pos + 16, 4));
      std::uint64_t csize = le(u + pos + 20, 4);
      std::uint64_t usize = le(u + pos + 24, 4);
      const std::uint64_t name_len = le(u + pos + 28, 2);
      const std::uint64_t extra_len = le(u + pos + 30, 2);
      const std::uint64_t comment_len = le(u + pos + 32, 2);
      std::uint64_t local = le(u + pos + 42, 4);
      if (z.size() - pos - 46 < name_len + extra_len + comment_len) bad("zip entry truncated");
      std::string name(z.substr(pos + 46, name_len));
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
          take(usize);
          take(csize);
          take(local);
        }
        x += 4 + len;
      }
      pos += 46 + name_len + extra_len + comment_len;
      if (local > z.size() || z.size() - local < 30 || le(u + local, 4) != 0x04034b50) {
        bad("zip local header of " + name + " is corrupt");
      }
      const std::uint64_t data_at = local + 30 + le(u + local + 26, 2) + le(u + local + 28, 2);
      if (data_at > z.size() || csize > z.size() - data_at)
        bad("zip member " + name + " is truncated");
      const std::string_view raw = z.substr(data_at, csize);
      std::string inflated;
      std::string_view member;
      if (method == 0) {
        member = raw;
      } else if (method == 8) {
        inflated = inflate_raw(raw, usize);
        member = inflated;
      } else {
        throw Error(ErrorCode::kUnsupported,
                    "zip member " + name + " uses compression method " + std::to_string(method));
      }
      uLong actual = crc32(0L, Z_NULL, 0);
      for (std::size_t off = 0; off < member.size(); off += 1u << 30) {
        const std::size_t len = std::min<std::size_t>(member.size() - off, 1u << 30);
        actual = crc32(actual, reinterpret_cast<const Bytef*>(member.data() + off),
                       static_cast<uInt>(len));
      }
      if (actual != crc) bad("zip member " + name + " fails its CRC check (corrupt file)");
      if (name.ends_with(".npy")) name.resize(name.size() - 4);
      try {
        out[name] = parse_npy(member);
      } catch (const Error& err) {
        throw Error(err.code(), err.message(), {.key = name});
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
  const auto arrays = read_npz(npz);
  auto need = [&](const char* name) -> const NpyArray& {
    const auto it = arrays.find(name);
    if (it == arrays.end()) {
      throw Error(ErrorCode::kFormat, std::string("vdb.npz has no '") + name + "' array",
                  {.file = npz.string()});
    }
    return it->second;
  };
  try {
    const NpyArray& emb = need("embeddings");
    if (!emb.is_float || emb.shape.size() != 2) bad("'embeddings' must be a 2-D float array");
    const std::size_t n = emb.shape[0];
    const std::size_t dim = emb.shape[1];
    if (dim == 0) bad("'embeddings' has zero columns");
    const NpyArray& chunk_data = need("chunk_data");
    const NpyArray& chunk_lengths = need("chunk_lengths");
    const NpyArray& source_data = need("source_data");
    const NpyArray& source_lengths = need("source_lengths");
    const auto chunks = decode_strings(chunk_data, chunk_lengths, "chunk strings");
    const auto sources = decode_strings(source_data, source_lengths, "source strings");
    if (chunks.size() != n || sources.size() != n) {
      bad("'embeddings' has " + std::to_string(n) + " rows but there are " +
          std::to_string(chunks.size()) + " chunks and " + std::to_string(sources.size()) +
          " sources");
    }
    std::vector<std::string> metadata;
    if (arrays.count("metadata_data") > 0 && arrays.count("metadata_lengths") > 0) {
      metadata = decode_strings(arrays.at("metadata_data"), arrays.at("metadata_lengths"),
                                "metadata strings");
      if (metadata.size() != n) bad("metadata count differs from the chunk count");
    }
    if (model != nullptr && model->dim() != dim) {
      bad("the vectors have " + std::to_string(dim) + " dimensions but " + model->id() + " makes " +
          std::to_string(model->dim()));
    }
    auto bank = Bank::create_for_import(folder, model != nullptr ? model->id() : "imported",
                                        model != nullptr ? model->fingerprint() : "", dim,
                                        ChunkingOptions::original());
    std::vector<Bank::PendingDocument> docs;
    std::unordered_map<std::string, std::size_t> doc_of;
    for (std::size_t i = 0; i < n; ++i) {
      auto [it, inserted] = doc_of.emplace(sources[i], docs.size());
      if (inserted) {
        docs.emplace_back();
        docs.back().key = sources[i];
        docs.back().doc.kind =
            kind_for_path(sources[i]).empty() ? "import" : kind_for_path(sources[i]);
      }
      Bank::PendingDocument& d = docs[it->second];
      Chunk c;
      if (!d.doc.text.empty()) d.doc.text += "\n\n";
      c.begin = d.doc.text.size();
      d.doc.text += chunks[i];
      c.end = d.doc.text.size();
      c.text = chunks[i];
      if (!metadata.empty()) {
        const auto j = nlohmann::json::parse(metadata[i], nullptr, false);
        if (j.is_object() && j.contains("page") && j["page"].is_number_integer()) {
          c.page_first = c.page_last = j["page"].get<int>();
        }
      }
      d.chunks.push_back(std::move(c));
      for (std::size_t k = 0; k < dim; ++k) {
        d.vectors.push_back(static_cast<float>(emb.floats[i * dim + k]));
      }
    }
    for (Bank::PendingDocument& d : docs) {
      d.hash = content_hash(d.doc.text);
      d.size = d.doc.text.size();
    }
    const std::size_t n_docs = docs.size();
    bank->store_batch(docs);
    return {n, n_docs, dim};
  } catch (const Error& e) {
    if (e.where().file.empty()) throw e.with_file(npz.string());
    throw;
  }
}

}  // namespace hearth::rag
