#include "hearth/formats/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/file_io.hpp"

namespace hearth::formats {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 4;  // {name: {"shape": [..]}} is depth 3

[[noreturn]] void fail(const std::string& source, const std::string& message, std::uint64_t offset,
                       const std::string& key = {}) {
  throw Error(ErrorCode::kFormat, message, {.file = source, .offset = offset, .key = key});
}

// Parses the header with a depth limit and duplicate-key detection (the JSON library would keep
// the last duplicate silently).
Json parse_header(std::string_view text, const std::string& source) {
  std::vector<std::unordered_set<std::string>> keys;
  std::string duplicate;
  const Json::parser_callback_t check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (depth >= kMaxDepth) {
          throw Error(ErrorCode::kFormat, "header JSON nests deeper than a safetensors header can",
                      {.file = source});
        }
        if (event == Json::parse_event_t::object_start) keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          throw Error(ErrorCode::kFormat, "duplicate key in the header JSON",
                      {.file = source, .key = printable(parsed.get<std::string>())});
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const Json::parse_error& e) {
    fail(source, std::string("header is not valid JSON: ") + e.what(), 8 + e.byte);
  } catch (const Json::exception& e) {  // e.g. a number too large for any JSON number type
    fail(source, std::string("header is not valid JSON: ") + e.what(), 8);
  }
}

std::uint64_t checked_offset(const Json& v, const std::string& source, const std::string& name) {
  if (!v.is_number_unsigned()) {
    fail(source, "data_offsets must hold non-negative integers", 8, name);
  }
  return v.get<std::uint64_t>();
}

}  // namespace

SafetensorsFile SafetensorsFile::parse(std::span<const std::byte> bytes, std::string source) {
  SafetensorsFile f;
  f.bytes_ = bytes;
  f.source_ = std::move(source);
  const std::string& src = f.source_;
  if (bytes.size() < 8) {
    fail(src,
         "file is " + std::to_string(bytes.size()) +
             " bytes, too short for a safetensors header length",
         0);
  }
  std::uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > bytes.size() - 8) {
    fail(src,
         "header length " + std::to_string(header_len) + " is larger than the file (" +
             std::to_string(bytes.size()) + " bytes)",
         0);
  }
  if (header_len > kMaxHeaderBytes) {
    fail(src, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit", 0);
  }
  if (header_len < 2 || static_cast<char>(bytes[8]) != '{') {
    fail(src, "header does not start with a JSON object", 8);
  }
  f.data_offset_ = 8 + header_len;
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  const Json header = parse_header(text, src);
  if (!header.is_object()) fail(src, "header is not a JSON object", 8);

  const std::uint64_t data_size = bytes.size() - f.data_offset_;
  for (const auto& [name, entry] : header.items()) {
    if (find_invalid_utf8(name)) {
      fail(src, "tensor name is not valid UTF-8", 8, printable(name));
    }
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(src, "__metadata__ must be an object of strings", 8, name);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(src, "__metadata__ values must be strings", 8, k);
        f.metadata_.emplace_back(k, v.get<std::string>());
      }
      continue;
    }
    if (!entry.is_object()) fail(src, "tensor entry must be an object", 8, name);
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      fail(src, "tensor entry has no \"dtype\" string", 8, name);
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      fail(src, "tensor entry has no \"shape\" array", 8, name);
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      fail(src, "tensor entry has no \"data_offsets\" pair", 8, name);
    }
    SafetensorsTensorInfo t;
    t.name = name;
    const std::string dtype_name = dtype_it->get<std::string>();
    const auto dtype = dtype_from_safetensors(dtype_name);
    if (!dtype) {
      throw Error(ErrorCode::kUnsupported, "unknown dtype \"" + printable(dtype_name) + "\"",
                  {.file = src, .offset = 8, .key = name});
    }
    t.dtype = *dtype;
    std::uint64_t count = 1;
    std::uint64_t bound = 1;  // product of max(dim, 1): bounds every stride, even of empty tensors
    constexpr std::uint64_t kMax = std::uint64_t{1} << 60;  // in bytes too, for any element size
    for (const Json& d : *shape_it) {
      if (!d.is_number_unsigned()) fail(src, "shape must hold non-negative integers", 8, name);
      const auto dim = d.get<std::uint64_t>();
      if (dim > kMax || bound > kMax / std::max<std::uint64_t>(dim, 1)) {
        fail(src, "shape makes the element count overflow", 8, name);
      }
      bound *= std::max<std::uint64_t>(dim, 1);
      count *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const std::uint64_t begin = checked_offset((*offsets_it)[0], src, name);
    const std::uint64_t end = checked_offset((*offsets_it)[1], src, name);
    if (end < begin) fail(src, "data_offsets end before they begin", 8, name);
    if (end > data_size) {
      fail(src,
           "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
               ") lie past the end of the file (data section holds " + std::to_string(data_size) +
               " bytes)",
           8, name);
    }
    const auto nbytes = dtype_bytes(t.dtype, count);
    if (!nbytes || *nbytes != end - begin) {
      fail(src,
           "holds " + std::to_string(end - begin) + " bytes but shape " + shape_string(t.shape) +
               " of " + dtype_name + " needs " +
               (nbytes ? std::to_string(*nbytes) : std::string("more than 2^64")),
           8, name);
    }
    t.offset = begin;
    t.nbytes = end - begin;
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  std::vector<const SafetensorsTensorInfo*> order;
  order.reserve(f.tensors_.size());
  for (const auto& t : f.tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    if (order[k]->nbytes > 0 && order[k - 1]->offset + order[k - 1]->nbytes > order[k]->offset) {
      fail(src, "tensor data overlaps tensor '" + order[k - 1]->name + "'", 8, order[k]->name);
    }
  }
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  auto mapped = std::make_shared<const MappedFile>(MappedFile::open(path));
  SafetensorsFile f = parse(mapped->bytes(), path.string());
  f.file_ = std::move(mapped);
  return f;
}

const std::string* SafetensorsFile::find_metadata(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return &v;
  }
  return nullptr;
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

TensorView SafetensorsFile::view(const SafetensorsTensorInfo& info) const {
  return TensorView::contiguous(info.dtype, info.shape, bytes_.data() + data_offset_ + info.offset,
                                info.nbytes);
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  detail::upsert(metadata_, std::move(key), std::move(value));
}

void SafetensorsWriter::add_tensor(std::string name, DType dtype, Shape shape,
                                   std::span<const std::byte> data) {
  const auto st_name = safetensors_name_of(dtype);
  if (!st_name) {
    throw Error(ErrorCode::kInvalidArgument,
                "dtype " + std::string(dtype_name(dtype)) + " cannot be stored in safetensors",
                {.key = name});
  }
  if (name == "__metadata__") {
    throw Error(ErrorCode::kInvalidArgument, "reserved tensor name", {.key = name});
  }
  detail::add_pending_tensor(tensors_, std::move(name), dtype, std::move(shape), data);
}

std::string SafetensorsWriter::header() const {
  Json h = Json::object();
  if (!metadata_.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    h["__metadata__"] = std::move(meta);
  }
  std::vector<std::uint64_t> offsets(tensors_.size());
  std::uint64_t offset = 0;
  for (const std::size_t i : data_order()) {
    offsets[i] = offset;
    offset += tensors_[i].data.size();
  }
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const detail::PendingTensor& t = tensors_[i];
    h[t.name] = {{"dtype", *safetensors_name_of(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {offsets[i], offsets[i] + t.data.size()}}};
  }
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::vector<std::size_t> SafetensorsWriter::data_order() const {
  std::vector<std::size_t> order(tensors_.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return dtype_info(tensors_[a].dtype).block_bytes > dtype_info(tensors_[b].dtype).block_bytes;
  });
  return order;
}

std::vector<std::byte> SafetensorsWriter::serialize() const {
  const std::string h = header();
  std::vector<std::byte> out(8 + h.size());
  const std::uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, h.data(), h.size());
  for (const std::size_t i : data_order()) {
    out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
  }
  return out;
}

void SafetensorsWriter::write(const std::filesystem::path& path) const {
  const std::string h = header();
  const std::uint64_t n = h.size();
  AtomicFileWriter file(path);
  file.write(&n, 8);
  file.write(h.data(), h.size());
  for (const std::size_t i : data_order()) {
    file.write(tensors_[i].data.data(), tensors_[i].data.size());
  }
  file.commit();
}

}  // namespace hearth::formats
