// Reading NumPy .npz archives (a zip of .npy arrays) and importing the original lab's vdb.npz
// index into a bank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "hearth/rag/embedding.hpp"

namespace hearth::rag {

// One .npy array, converted: floats for float dtypes, integers for integer dtypes.
struct NpyArray {
  std::string descr;  // "<f4", "<i8", ...
  std::vector<std::size_t> shape;
  std::vector<double> floats;
  std::vector<std::int64_t> ints;
  bool is_float = false;
  std::size_t count() const;
};

// Parses one .npy file's bytes. Throws Error(kFormat / kUnsupported) naming the problem.
NpyArray parse_npy(std::string_view bytes);

// Every member of an .npz (stored or deflated entries; zip64 sizes understood), keyed by name
// without ".npy".
std::map<std::string, NpyArray> read_npz(const std::filesystem::path& path);

// Strings stored as one code-point array plus per-string lengths: string i is
// data[sum(lengths[0..i)) .. + lengths[i]) (cumulative offsets; the original reader restarted
// each string at the previous length, which was a bug). Invalid code points become U+FFFD.
std::vector<std::string> decode_strings(const NpyArray& data, const NpyArray& lengths,
                                        const std::string& what);

struct ImportReport {
  std::size_t chunks = 0;
  std::size_t documents = 0;
  std::size_t dim = 0;
};

// Imports vdb.npz (embeddings, chunk_data/chunk_lengths, source_data/source_lengths, optional
// metadata_data/metadata_lengths with JSON objects whose "page" is kept) into a new bank at
// folder. model, when given, is the embedding model that made the vectors: the bank records it
// (its dimension must match) and can then be searched densely and extended with it. Without it
// the vectors are labelled "imported".
ImportReport import_npz(const std::filesystem::path& npz, const std::filesystem::path& folder,
                        const EmbeddingModel* model);

}  // namespace hearth::rag
