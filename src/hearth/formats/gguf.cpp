#include "hearth/formats/gguf.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/byte_reader.hpp"
#include "hearth/formats/file_io.hpp"

namespace hearth::formats {
namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr std::uint32_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 8;
constexpr std::uint32_t kMaxDims = 4;
constexpr std::uint32_t kLastType = 12;

// Smallest encoding of one value of each type, used to reject counts the file cannot hold
// before anything is allocated for them.
std::uint64_t min_encoded_size(GGUFType t) {
  switch (t) {
    case GGUFType::kU8:
    case GGUFType::kI8:
    case GGUFType::kBool:
      return 1;
    case GGUFType::kU16:
    case GGUFType::kI16:
      return 2;
    case GGUFType::kU32:
    case GGUFType::kI32:
    case GGUFType::kF32:
      return 4;
    case GGUFType::kString:
    case GGUFType::kU64:
    case GGUFType::kI64:
    case GGUFType::kF64:
      return 8;
    case GGUFType::kArray:
      return 12;
  }
  return 1;
}

template <class T>
std::string number_to_string(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    return buf;
  } else if constexpr (std::is_same_v<T, bool>) {
    return v ? "true" : "false";
  } else {
    return std::to_string(v);
  }
}

std::string quoted(const std::string& s) {
  return "\"" + printable(s, 200) + "\"";
}

}  // namespace

const char* gguf_type_name(GGUFType t) {
  static const char* const kNames[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                       "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<std::uint32_t>(t);
  return i <= kLastType ? kNames[i] : "?";
}

// ---------------------------------------------------------------------------------------------
// GGUFValue / GGUFArray

GGUFValue::GGUFValue(GGUFArray array) : v_(std::make_shared<const GGUFArray>(std::move(array))) {}

const GGUFArray* GGUFValue::as_array() const {
  const auto* p = std::get_if<std::shared_ptr<const GGUFArray>>(&v_);
  return p != nullptr ? p->get() : nullptr;
}

std::optional<std::int64_t> GGUFValue::as_int() const {
  return std::visit(
      [](const auto& v) -> std::optional<std::int64_t> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, std::uint64_t>) {
            if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
              return std::nullopt;
            }
          }
          return static_cast<std::int64_t>(v);
        } else {
          return std::nullopt;
        }
      },
      v_);
}

std::optional<std::uint64_t> GGUFValue::as_uint() const {
  if (const auto* u = get_if<std::uint64_t>()) return *u;
  const auto i = as_int();
  if (!i || *i < 0) return std::nullopt;
  return static_cast<std::uint64_t>(*i);
}

std::optional<double> GGUFValue::as_number() const {
  return std::visit(
      [](const auto& v) -> std::optional<double> {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
          return static_cast<double>(v);
        } else {
          return std::nullopt;
        }
      },
      v_);
}

std::size_t GGUFArray::size() const {
  return std::visit([](const auto& v) { return v.size(); }, items);
}

namespace {

std::string array_display(const GGUFArray& a, std::size_t max_items);

template <class T>
std::string item_display(const T& v, std::size_t max_items) {
  if constexpr (std::is_same_v<T, std::string>) {
    return quoted(v);
  } else if constexpr (std::is_same_v<T, GGUFArray>) {
    return array_display(v, max_items);
  } else {
    return number_to_string(v);
  }
}

std::string array_display(const GGUFArray& a, std::size_t max_items) {
  return std::visit(
      [&](const auto& vec) {
        std::string s = "[";
        const std::size_t n = std::min(vec.size(), max_items);
        for (std::size_t i = 0; i < n; ++i) {
          if (i > 0) s += ", ";
          using T = typename std::decay_t<decltype(vec)>::value_type;
          s += item_display<T>(vec[i], max_items);
        }
        if (vec.size() > n) s += ", ...";
        s += "]";
        if (vec.size() > n) s += " (" + std::to_string(vec.size()) + " items)";
        return s;
      },
      a.items);
}

}  // namespace

std::string GGUFValue::to_display(std::size_t max_items) const {
  return std::visit(
      [&](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return quoted(v);
        } else if constexpr (std::is_same_v<T, std::shared_ptr<const GGUFArray>>) {
          return array_display(*v, max_items);
        } else {
          return number_to_string(v);
        }
      },
      v_);
}

bool GGUFValue::operator==(const GGUFValue& other) const {
  if (v_.index() != other.v_.index()) return false;
  if (const GGUFArray* a = as_array()) return *a == *other.as_array();
  return v_ == other.v_;
}

// ---------------------------------------------------------------------------------------------
// Reader

class GGUFParser {
 public:
  GGUFParser(std::span<const std::byte> bytes, std::string source) : r_(bytes, std::move(source)) {}

  void run(GGUFFile& f) {
    const std::uint32_t magic = r_.read<std::uint32_t>("the magic number");
    if (magic != kMagic) r_.fail("not a GGUF file (magic number is not \"GGUF\")", 0);
    const std::uint64_t version_at = r_.offset();
    f.version_ = r_.read<std::uint32_t>("the version");
    if (f.version_ == 1) {
      throw Error(ErrorCode::kUnsupported,
                  "GGUF version 1 is not supported; re-convert the model with a current llama.cpp",
                  {.file = r_.source(), .offset = version_at});
    }
    if (f.version_ != 2 && f.version_ != 3) {
      const bool swapped = f.version_ == 0x02000000 || f.version_ == 0x03000000;
      throw Error(ErrorCode::kUnsupported,
                  swapped ? "big-endian GGUF files are not supported"
                          : "unsupported GGUF version " + std::to_string(f.version_),
                  {.file = r_.source(), .offset = version_at});
    }
    const std::uint64_t n_tensors = read_count("the tensor count", 8 + 4 + 4 + 8);
    const std::uint64_t n_kv = read_count("the metadata count", 8 + 4 + 1);

    f.kv_.reserve(n_kv);
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      const std::uint64_t at = r_.offset();
      std::string key = read_string("a metadata key");
      check_name(key, at, "metadata key");
      const std::uint64_t type_at = r_.offset();
      const GGUFType type = read_type("the metadata value type", key);
      GGUFValue value = read_value(type, key, 0, type_at);
      if (!f.kv_index_.emplace(key, f.kv_.size()).second) {
        r_.fail("duplicate metadata key", at, key);
      }
      f.kv_.emplace_back(std::move(key), std::move(value));
    }

    if (const GGUFValue* a = f.find("general.alignment")) {
      const auto* v = a->get_if<std::uint32_t>();
      if (v == nullptr) {
        throw Error(ErrorCode::kFormat,
                    std::string("must be a u32, found ") + gguf_type_name(a->type()),
                    {.file = r_.source(), .key = "general.alignment"});
      }
      if (*v == 0 || (*v & (*v - 1)) != 0) {
        throw Error(ErrorCode::kFormat, "must be a power of two, found " + std::to_string(*v),
                    {.file = r_.source(), .key = "general.alignment"});
      }
      f.alignment_ = *v;
    }

    std::vector<std::uint64_t> info_at;
    f.tensors_.reserve(n_tensors);
    info_at.reserve(n_tensors);
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      info_at.push_back(r_.offset());
      GGUFTensorInfo t = read_tensor_info(f.alignment_);
      if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second) {
        r_.fail("duplicate tensor name", info_at.back(), t.name);
      }
      f.tensors_.push_back(std::move(t));
    }

    const std::uint64_t header_end = r_.offset();
    f.data_offset_ = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
    const std::uint64_t file_size = f.bytes_.size();
    if (n_tensors == 0) return;
    if (f.data_offset_ > file_size) {
      r_.fail("file ends before the tensor data section", file_size);
    }
    const std::uint64_t data_size = file_size - f.data_offset_;

    std::vector<std::size_t> order(f.tensors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (std::size_t i = 0; i < f.tensors_.size(); ++i) {
      const GGUFTensorInfo& t = f.tensors_[i];
      if (t.offset > data_size || t.nbytes > data_size - t.offset) {
        r_.fail("tensor data [" + std::to_string(t.offset) + ", +" + std::to_string(t.nbytes) +
                    ") lies past the end of the file (data section holds " +
                    std::to_string(data_size) + " bytes)",
                info_at[i], t.name);
      }
    }
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return f.tensors_[a].offset < f.tensors_[b].offset;
    });
    for (std::size_t k = 1; k < order.size(); ++k) {
      const GGUFTensorInfo& prev = f.tensors_[order[k - 1]];
      const GGUFTensorInfo& cur = f.tensors_[order[k]];
      if (cur.nbytes > 0 && prev.offset + prev.nbytes > cur.offset) {
        r_.fail("tensor data overlaps tensor '" + prev.name + "'", info_at[order[k]], cur.name);
      }
    }
  }

 private:
  std::uint64_t read_count(std::string_view what, std::uint64_t min_each) {
    const std::uint64_t at = r_.offset();
    const auto n = r_.read<std::uint64_t>(what);
    if (n > r_.remaining() / min_each) {
      r_.fail(std::string(what) + " " + std::to_string(n) + " is more than the " +
                  std::to_string(r_.remaining()) + " bytes left can hold",
              at);
    }
    return n;
  }

  std::string read_string(std::string_view what) {
    const std::uint64_t at = r_.offset();
    const auto len = r_.read<std::uint64_t>(what);
    if (len > r_.remaining()) {
      r_.fail(std::string(what) + " has length " + std::to_string(len) + " but only " +
                  std::to_string(r_.remaining()) + " bytes are left",
              at);
    }
    return std::string(r_.read_bytes(len, what));
  }

  void check_name(const std::string& name, std::uint64_t at, std::string_view what) {
    if (name.empty()) r_.fail(std::string(what) + " is empty", at);
    if (const auto bad = find_invalid_utf8(name)) {
      r_.fail(std::string(what) + " is not valid UTF-8 (at byte " + std::to_string(*bad) +
                  "): " + printable(name),
              at);
    }
  }

  GGUFType read_type(std::string_view what, const std::string& key) {
    const std::uint64_t at = r_.offset();
    const auto t = r_.read<std::uint32_t>(what);
    if (t > kLastType) r_.fail("unknown value type " + std::to_string(t), at, key);
    return static_cast<GGUFType>(t);
  }

  template <class T>
  std::vector<T> read_numbers(std::uint64_t n, const std::string& key) {
    const std::string_view raw = r_.read_bytes(n * sizeof(T), "an array of " + key);
    std::vector<T> out(n);
    if (n > 0) std::memcpy(out.data(), raw.data(), raw.size());
    return out;
  }

  bool read_bool(const std::string& key) {
    const std::uint64_t at = r_.offset();
    const auto b = r_.read<std::uint8_t>("a bool");
    if (b > 1) r_.fail("bool value is " + std::to_string(b) + ", not 0 or 1", at, key);
    return b == 1;
  }

  GGUFArray read_array(const std::string& key, int depth) {
    if (depth >= kMaxArrayDepth) {
      r_.fail("arrays nested deeper than " + std::to_string(kMaxArrayDepth), r_.offset(), key);
    }
    const GGUFType elem = read_type("the array element type", key);
    const std::uint64_t count_at = r_.offset();
    const auto n = r_.read<std::uint64_t>("the array length");
    if (n > r_.remaining() / min_encoded_size(elem)) {
      r_.fail("array of " + std::to_string(n) + " " + gguf_type_name(elem) +
                  " values cannot fit in the " + std::to_string(r_.remaining()) + " bytes left",
              count_at, key);
    }
    GGUFArray a;
    switch (elem) {
      case GGUFType::kU8:
        a.items = read_numbers<std::uint8_t>(n, key);
        break;
      case GGUFType::kI8:
        a.items = read_numbers<std::int8_t>(n, key);
        break;
      case GGUFType::kU16:
        a.items = read_numbers<std::uint16_t>(n, key);
        break;
      case GGUFType::kI16:
        a.items = read_numbers<std::int16_t>(n, key);
        break;
      case GGUFType::kU32:
        a.items = read_numbers<std::uint32_t>(n, key);
        break;
      case GGUFType::kI32:
        a.items = read_numbers<std::int32_t>(n, key);
        break;
      case GGUFType::kF32:
        a.items = read_numbers<float>(n, key);
        break;
      case GGUFType::kU64:
        a.items = read_numbers<std::uint64_t>(n, key);
        break;
      case GGUFType::kI64:
        a.items = read_numbers<std::int64_t>(n, key);
        break;
      case GGUFType::kF64:
        a.items = read_numbers<double>(n, key);
        break;
      case GGUFType::kBool: {
        std::vector<bool> v(n);
        for (std::uint64_t i = 0; i < n; ++i) v[i] = read_bool(key);
        a.items = std::move(v);
        break;
      }
      case GGUFType::kString: {
        std::vector<std::string> v;
        v.reserve(n);
        for (std::uint64_t i = 0; i < n; ++i) v.push_back(read_string("a string in an array"));
        a.items = std::move(v);
        break;
      }
      case GGUFType::kArray: {
        std::vector<GGUFArray> v;
        v.reserve(n);
        for (std::uint64_t i = 0; i < n; ++i) v.push_back(read_array(key, depth + 1));
        a.items = std::move(v);
        break;
      }
    }
    return a;
  }

  GGUFValue read_value(GGUFType type, const std::string& key, int depth, std::uint64_t at) {
    switch (type) {
      case GGUFType::kU8:
        return r_.read<std::uint8_t>("a u8 value");
      case GGUFType::kI8:
        return r_.read<std::int8_t>("an i8 value");
      case GGUFType::kU16:
        return r_.read<std::uint16_t>("a u16 value");
      case GGUFType::kI16:
        return r_.read<std::int16_t>("an i16 value");
      case GGUFType::kU32:
        return r_.read<std::uint32_t>("a u32 value");
      case GGUFType::kI32:
        return r_.read<std::int32_t>("an i32 value");
      case GGUFType::kF32:
        return r_.read<float>("an f32 value");
      case GGUFType::kBool:
        return read_bool(key);
      case GGUFType::kString:
        return read_string("a string value");
      case GGUFType::kArray:
        return read_array(key, depth);
      case GGUFType::kU64:
        return r_.read<std::uint64_t>("a u64 value");
      case GGUFType::kI64:
        return r_.read<std::int64_t>("an i64 value");
      case GGUFType::kF64:
        return r_.read<double>("an f64 value");
    }
    r_.fail("unknown value type", at, key);
  }

  GGUFTensorInfo read_tensor_info(std::uint32_t alignment) {
    const std::uint64_t at = r_.offset();
    GGUFTensorInfo t;
    t.name = read_string("a tensor name");
    check_name(t.name, at, "tensor name");
    const std::uint64_t dims_at = r_.offset();
    const auto n_dims = r_.read<std::uint32_t>("the tensor's dimension count");
    if (n_dims > kMaxDims) {
      r_.fail("tensor has " + std::to_string(n_dims) + " dimensions; GGUF allows at most " +
                  std::to_string(kMaxDims),
              dims_at, t.name);
    }
    std::uint64_t count = 1;
    std::uint64_t bound = 1;  // product of max(dim, 1): bounds every stride, even of empty tensors
    t.shape.resize(n_dims);
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const std::uint64_t dim_at = r_.offset();
      const auto dim = r_.read<std::uint64_t>("a tensor dimension");
      constexpr std::uint64_t kMax = std::uint64_t{1} << 60;  // in bytes too, for any element size
      if (dim > kMax || bound > kMax / std::max<std::uint64_t>(dim, 1)) {
        r_.fail("tensor dimension " + std::to_string(dim) + " makes the element count overflow",
                dim_at, t.name);
      }
      bound *= std::max<std::uint64_t>(dim, 1);
      count *= dim;
      t.shape[n_dims - 1 - d] = static_cast<std::int64_t>(dim);  // GGUF lists innermost first
    }
    const std::uint64_t type_at = r_.offset();
    const auto ggml_type = r_.read<std::uint32_t>("the tensor type");
    const auto dtype = dtype_from_ggml(ggml_type);
    if (!dtype) r_.fail("unknown ggml tensor type " + std::to_string(ggml_type), type_at, t.name);
    t.dtype = *dtype;
    const DTypeInfo& info = dtype_info(t.dtype);
    if (n_dims > 0 && t.shape.back() % info.block_size != 0) {
      r_.fail("row length " + std::to_string(t.shape.back()) + " is not a multiple of the " +
                  std::string(info.name) + " block size " + std::to_string(info.block_size),
              dims_at, t.name);
    }
    const auto nbytes = dtype_bytes(t.dtype, count);
    if (!nbytes) r_.fail("tensor byte size overflows", dims_at, t.name);
    t.nbytes = *nbytes;
    const std::uint64_t offset_at = r_.offset();
    t.offset = r_.read<std::uint64_t>("the tensor offset");
    if (t.offset % alignment != 0) {
      r_.fail("tensor offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                  std::to_string(alignment),
              offset_at, t.name);
    }
    return t;
  }

  ByteReader r_;
};

GGUFFile GGUFFile::parse(std::span<const std::byte> bytes, std::string source) {
  GGUFFile f;
  f.bytes_ = bytes;
  f.source_ = source;
  GGUFParser(bytes, std::move(source)).run(f);
  return f;
}

GGUFFile GGUFFile::open(const std::filesystem::path& path) {
  auto mapped = std::make_shared<const MappedFile>(MappedFile::open(path));
  GGUFFile f = parse(mapped->bytes(), path.string());
  f.file_ = std::move(mapped);
  return f;
}

const GGUFValue* GGUFFile::find(std::string_view key) const {
  const auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GGUFValue& GGUFFile::at(std::string_view key) const {
  const GGUFValue* v = find(key);
  if (v == nullptr) {
    throw Error(ErrorCode::kNotFound, "metadata key is missing",
                {.file = source_, .key = std::string(key)});
  }
  return *v;
}

namespace {
[[noreturn]] void wrong_type(const std::string& source, std::string_view key, const char* want,
                             const GGUFValue& v) {
  throw Error(ErrorCode::kFormat,
              std::string("expected ") + want + ", found " + gguf_type_name(v.type()),
              {.file = source, .key = std::string(key)});
}
}  // namespace

std::string GGUFFile::get_string(std::string_view key) const {
  const GGUFValue& v = at(key);
  if (const std::string* s = v.as_string()) return *s;
  wrong_type(source_, key, "a string", v);
}

std::int64_t GGUFFile::get_int(std::string_view key) const {
  const GGUFValue& v = at(key);
  if (const auto i = v.as_int()) return *i;
  wrong_type(source_, key, "an integer", v);
}

double GGUFFile::get_number(std::string_view key) const {
  const GGUFValue& v = at(key);
  if (const auto d = v.as_number()) return *d;
  wrong_type(source_, key, "a number", v);
}

const GGUFArray& GGUFFile::get_array(std::string_view key) const {
  const GGUFValue& v = at(key);
  if (const GGUFArray* a = v.as_array()) return *a;
  wrong_type(source_, key, "an array", v);
}

std::string GGUFFile::architecture() const {
  const GGUFValue* v = find("general.architecture");
  const std::string* s = v != nullptr ? v->as_string() : nullptr;
  return s != nullptr ? *s : std::string();
}

const GGUFTensorInfo* GGUFFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

TensorView GGUFFile::view(const GGUFTensorInfo& info) const {
  return TensorView::contiguous(info.dtype, info.shape, bytes_.data() + data_offset_ + info.offset,
                                info.nbytes);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

class Emitter {
 public:
  explicit Emitter(const std::function<void(const void*, std::size_t)>& out) : out_(out) {}
  template <class T>
  void put(T v) {
    out_(&v, sizeof v);
    written_ += sizeof v;
  }
  void bytes(const void* p, std::size_t n) {
    out_(p, n);
    written_ += n;
  }
  void string(const std::string& s) {
    put<std::uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void zeros(std::uint64_t n) {
    static const char kZeros[64] = {};
    while (n > 0) {
      const std::size_t k = std::min<std::uint64_t>(n, sizeof kZeros);
      bytes(kZeros, k);
      n -= k;
    }
  }
  std::uint64_t written() const { return written_; }

 private:
  const std::function<void(const void*, std::size_t)>& out_;
  std::uint64_t written_ = 0;
};

void emit_array(Emitter& e, const GGUFArray& a);

template <class T>
void emit_item(Emitter& e, const T& v) {
  if constexpr (std::is_same_v<T, std::string>) {
    e.string(v);
  } else if constexpr (std::is_same_v<T, GGUFArray>) {
    emit_array(e, v);
  } else if constexpr (std::is_same_v<T, bool>) {
    e.put<std::uint8_t>(v ? 1 : 0);
  } else {
    e.put<T>(v);
  }
}

void emit_array(Emitter& e, const GGUFArray& a) {
  e.put<std::uint32_t>(static_cast<std::uint32_t>(a.elem_type()));
  e.put<std::uint64_t>(a.size());
  std::visit(
      [&](const auto& vec) {
        using T = typename std::decay_t<decltype(vec)>::value_type;
        for (const auto& item : vec) emit_item<T>(e, item);
      },
      a.items);
}

void emit_value(Emitter& e, const GGUFValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::shared_ptr<const GGUFArray>>) {
          emit_array(e, *v);
        } else {
          emit_item<T>(e, v);
        }
      },
      value.storage());
}

}  // namespace

GGUFWriter::GGUFWriter(std::uint32_t version) : version_(version) {
  if (version != 2 && version != 3) {
    throw Error(ErrorCode::kInvalidArgument, "GGUF writer supports versions 2 and 3");
  }
}

void GGUFWriter::set(std::string key, GGUFValue value) {
  detail::upsert(kv_, std::move(key), std::move(value));
}

void GGUFWriter::add_tensor(std::string name, DType dtype, Shape shape,
                            std::span<const std::byte> data) {
  if (!ggml_type_of(dtype)) {
    throw Error(ErrorCode::kInvalidArgument,
                "dtype " + std::string(dtype_name(dtype)) + " has no GGUF type id", {.key = name});
  }
  if (shape.size() > kMaxDims) {
    throw Error(ErrorCode::kInvalidArgument, "GGUF tensors have at most 4 dimensions",
                {.key = name});
  }
  detail::add_pending_tensor(tensors_, std::move(name), dtype, std::move(shape), data);
}

void GGUFWriter::emit(const std::function<void(const void*, std::size_t)>& out) const {
  std::uint32_t alignment = kDefaultAlignment;
  for (const auto& [k, v] : kv_) {
    if (k != "general.alignment") continue;
    const auto* a = v.get_if<std::uint32_t>();
    if (a == nullptr || *a == 0 || (*a & (*a - 1)) != 0) {
      throw Error(ErrorCode::kInvalidArgument, "must be a u32 power of two",
                  {.key = "general.alignment"});
    }
    alignment = *a;
  }
  const auto align = [&](std::uint64_t x) { return (x + alignment - 1) / alignment * alignment; };

  Emitter e(out);
  e.put<std::uint32_t>(kMagic);
  e.put<std::uint32_t>(version_);
  e.put<std::uint64_t>(tensors_.size());
  e.put<std::uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    e.string(k);
    e.put<std::uint32_t>(static_cast<std::uint32_t>(v.type()));
    emit_value(e, v);
  }
  std::uint64_t offset = 0;
  for (const detail::PendingTensor& t : tensors_) {
    e.string(t.name);
    e.put<std::uint32_t>(static_cast<std::uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) {
      e.put<std::uint64_t>(static_cast<std::uint64_t>(*it));
    }
    e.put<std::uint32_t>(*ggml_type_of(t.dtype));
    e.put<std::uint64_t>(offset);
    offset = align(offset + t.data.size());
  }
  if (tensors_.empty()) return;
  e.zeros(align(e.written()) - e.written());
  for (const detail::PendingTensor& t : tensors_) {
    e.bytes(t.data.data(), t.data.size());
    e.zeros(align(t.data.size()) - t.data.size());
  }
}

std::vector<std::byte> GGUFWriter::serialize() const {
  std::vector<std::byte> out;
  emit([&](const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    out.insert(out.end(), b, b + n);
  });
  return out;
}

void GGUFWriter::write(const std::filesystem::path& path) const {
  AtomicFileWriter file(path);
  emit([&](const void* p, std::size_t n) { file.write(p, n); });
  file.commit();
}

}  // namespace hearth::formats
