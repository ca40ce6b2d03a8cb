// hearth-make-model: writes random-weight models in the real formats, for tests, demos and
// benchmarks (no trained weights can be downloaded here).
//  Decoders (--arch llama, mistral, phi3, qwen2, qwen3): a Hugging Face folder (config.json and
//    generation_config.json as transformers writes them, model.safetensors or shards with
//    model.safetensors.index.json, f32/f16/bf16, optionally mlx-community quantized by hearth's
//    own quantizer at 2-6 or 8 bits: U32-packed weights with .scales/.biases) or a GGUF file with
//    llama.cpp's tensor names and `<arch>.*` keys as its convert_hf_to_gguf.py writes them
//    (llama/mistral: arch `llama`, q/k rows permuted from HF's rotate-half layout to llama.cpp's
//    adjacent pairs; phi3/qwen2/qwen3 unpermuted; phi3 longrope factors as rope_factors_long/short,
//    llama3 rope as rope_freqs). Every weight is a pure function of (seed, HF tensor name, element
//    index), so the same seed gives the same weights in both encodings and any dtype, and the files
//    are written streaming, under a .partial name until complete (the Phi-3-mini shape is 7.6 GB in
//    f16). Vocabulary: a real tokenizer (--tokenizer-dir: its files are copied into HF folders;
//    --gguf-vocab: its tokenizer.* keys are copied into GGUF files), else a small synthetic
//    SentencePiece-style byte vocabulary.
//  --arch bert: a sentence-transformers folder (BertModel weights, modules.json, 1_Pooling,
//    2_Normalize) or, with --classifier, a BertForSequenceClassification cross-encoder (one
//    logit); or the same weights as a GGUF `bert` file with llama.cpp's names and keys. Shapes:
//    --shape tiny or minilm (hidden 384, 6 layers, 12 heads, FFN 1536). The vocabulary is the
//    WordPiece vocab.txt of --tokenizer-dir when given (its tokenizer files are copied), else a
//    small synthetic one.
//  --arch clip-text, t5-encoder: FLUX's text encoders (CLIPTextModel, T5EncoderModel) as a
//    Hugging Face folder or, with --format safetensors, a single file with the same names (as
//    ComfyUI keeps clip_l / t5xxl); tiny by default, with the real tokenizers (--tokenizer-dir)
//    copied into the folder (make_text_encoder.cpp); --arch clip-text / t5-encoder --format mflux
//    [--mlx-bits 4|8]: mflux's saved text_encoder/ / text_encoder_2/ folder.
//  --arch flux-transformer: FLUX.1's FluxTransformer2DModel as a diffusers transformer/ folder
//    (config.json, two shards and their index) or, with --format safetensors, the same weights
//    as Black Forest Labs' single file, or with --format gguf as city96's FLUX GGUFs (general.
//    architecture flux, the single file's names; --dtype f32/f16/bf16 or a ggml block type by
//    hearth's quantizer, the embedders and final layer f32); tiny, --guidance-embeds for dev.
//    --dtype f8_e4m3 / f8_e5m2 (hf, safetensors): float8 matrices made from the bf16 weights
//    (--f8-scaled: with per-tensor scale_weight); --format mflux --mlx-bits 4|8: mflux's saved
//    transformer/ folder.
//  --arch flux-pipeline: a whole tiny FLUX.1 pipeline, OUT/diffusers and OUT/bfl from the same
//    weights, tokenizers from --tokenizer-dir (a folder holding tokenizer/ and tokenizer_2/)
//    or small stand-ins (make_flux_pipeline.cpp); --guidance-embeds for dev.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "hearth/cli/app.hpp"
#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/models/bert.hpp"
#include "hearth/tensor/ggml_quant.hpp"
#include "hearth/tensor/half.hpp"
#include "hearth/tensor/mlx_quant.hpp"

#include "encode_values.hpp"
#include "make_text_encoder.hpp"

namespace fs = std::filesystem;
using hearth::DType;
using hearth::Shape;
namespace formats = hearth::formats;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------
// Decoders

enum class Arch { kLlama, kMistral, kPhi3, kQwen2, kQwen3 };

Arch arch_from_name(const std::string& name) {
  if (name == "llama") return Arch::kLlama;
  if (name == "mistral") return Arch::kMistral;
  if (name == "phi3") return Arch::kPhi3;
  if (name == "qwen2") return Arch::kQwen2;
  return Arch::kQwen3;
}

struct RopeScaling {
  std::string type = "none";  // none, linear, llama3, longrope, su
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_context = 0;  // llama3 / longrope: the pre-training context
  std::vector<float> short_factor, long_factor;
};

struct DecoderConfig {
  Arch arch = Arch::kLlama;
  std::string arch_name = "llama";
  int vocab = 320;
  int hidden = 64;
  int layers = 2;
  int heads = 4;
  int kv_heads = 2;
  int head_dim = 16;
  int ffn = 172;
  int context = 256;
  double theta = 10000.0;
  double eps = 1e-5;
  bool tied = false;
  int sliding_window = 0;  // 0: none
  RopeScaling rope;
  int bos = 1;
  std::vector<int> eos = {2};
};

// The shape defaults of each architecture; command-line options override them afterwards.
DecoderConfig decoder_defaults(Arch arch, const std::string& shape) {
  DecoderConfig c;
  c.arch = arch;
  if (arch == Arch::kQwen2 || arch == Arch::kQwen3) {
    c.theta = 1000000.0;
    c.eps = 1e-6;
    c.tied = true;
  }
  if (arch == Arch::kQwen3) c.head_dim = 32;  // != hidden / heads, as in the real Qwen3 models
  if (arch == Arch::kMistral) c.sliding_window = 16;
  if (shape == "phi3-mini") {
    c.vocab = 32064;
    c.hidden = 3072;
    c.layers = 32;
    c.heads = 32;
    c.kv_heads = 32;
    c.head_dim = 96;
    c.ffn = 8192;
    c.context = 4096;
    c.rope.original_context = 4096;
    if (arch == Arch::kPhi3) c.sliding_window = 2047;
  }
  return c;
}

// Counter-based random numbers: splitmix64 of (key + index).
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::uint64_t name_key(unsigned seed, const std::string& name) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (const unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ULL;
  return splitmix64(h ^ (static_cast<std::uint64_t>(seed) << 32));
}

// Rounds to the bf16 grid (nearest even), so a value is exact in bf16, f16 (for |x| in f16's
// normal range) and f32 alike.
float bf16_grid(float f) {
  return hearth::bf16_to_f32(hearth::f32_to_bf16(f));
}

// One weight as Hugging Face defines it (row-major [rows, cols], HF name). Values are uniform
// with the given mean and standard deviation, or listed (rope factors).
struct Logical {
  std::string name;
  std::int64_t rows = 1;
  std::int64_t cols = 1;
  bool vector = false;  // 1-D: shape {cols}
  float mean = 0.0f;
  float std = 0.0f;
  std::uint64_t key = 0;
  std::vector<float> values;  // listed values (when not empty)

  void row(std::int64_t r, float* out) const {
    if (!values.empty()) {
      std::copy_n(values.begin() + r * cols, cols, out);
      return;
    }
    const float a = std * 1.7320508f;  // uniform [-a, a) has standard deviation std
    const std::uint64_t base = key + static_cast<std::uint64_t>(r * cols);
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::uint64_t h = splitmix64(base + static_cast<std::uint64_t>(c));
      const float u = static_cast<float>(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
      out[c] = mean + a * u;
    }
    if (vector) {
      for (std::int64_t c = 0; c < cols; ++c) out[c] = bf16_grid(out[c]);
    }
  }
};

// How a stored tensor is made from its logical weight.
enum class Encoding { kPlain, kMlxWeight, kMlxScales, kMlxBiases };

struct Stored {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const Logical* src = nullptr;
  int permute_heads = 0;  // llama.cpp's q/k row permutation over this many heads (0: none)
  Encoding enc = Encoding::kPlain;
  int bits = 0;
  int group = 0;

  std::int64_t rows() const { return shape.size() == 2 ? shape[0] : 1; }
  std::uint64_t row_bytes() const {
    return *hearth::dtype_bytes(dtype, static_cast<std::uint64_t>(hearth::numel(shape) / rows()));
  }
  std::uint64_t nbytes() const { return row_bytes() * static_cast<std::uint64_t>(rows()); }

  // The logical row behind stored row r. llama.cpp's converter reshapes each head's rows
  // [2, head_dim / 2] and swaps the two axes: stored row h*d + 2i + j holds HF row h*d + j*d/2 + i.
  std::int64_t logical_row(std::int64_t r) const {
    if (permute_heads == 0) return r;
    const std::int64_t d = src->rows / permute_heads;
    const std::int64_t rem = r % d;
    return r - rem + (rem % 2) * (d / 2) + rem / 2;
  }

  // Writes stored row r into out (row_bytes() bytes); scratch holds src->cols floats.
  void fill_row(std::int64_t r, float* scratch, std::byte* out) const {
    src->row(logical_row(r), scratch);
    const auto n = static_cast<std::size_t>(src->cols);
    if (enc == Encoding::kPlain) {
      if (hearth::ggml::supported(dtype)) {
        hearth::ggml::quantize_row(dtype, scratch, out, src->cols);
      } else if (dtype == DType::kF32) {
        std::memcpy(out, scratch, n * 4);
      } else if (dtype == DType::kF16) {
        hearth::f32_to_f16(scratch, reinterpret_cast<std::uint16_t*>(out), n);
      } else {
        hearth::f32_to_bf16(scratch, reinterpret_cast<std::uint16_t*>(out), n);
      }
      return;
    }
    // mlx affine quantization by hearth's quantizer (MLX's rules, tensor/mlx_quant.hpp); the
    // scales and biases are stored in this tensor's dtype.
    const std::size_t groups = n / static_cast<std::size_t>(group);
    std::vector<std::uint8_t> codes(
        static_cast<std::size_t>(hearth::mlx::packed_row_bytes(src->cols, bits)));
    std::vector<float> scales(groups), biases(groups);
    hearth::mlx::quantize_row(scratch, src->cols, bits, group, codes.data(), scales.data(),
                              biases.data());
    if (enc == Encoding::kMlxWeight) {
      std::memcpy(out, codes.data(), codes.size());
      return;
    }
    const std::vector<float>& v = enc == Encoding::kMlxScales ? scales : biases;
    if (dtype == DType::kF32) {
      std::memcpy(out, v.data(), groups * 4);
    } else if (dtype == DType::kF16) {
      hearth::f32_to_f16(v.data(), reinterpret_cast<std::uint16_t*>(out), groups);
    } else {
      hearth::f32_to_bf16(v.data(), reinterpret_cast<std::uint16_t*>(out), groups);
    }
  }
};

// A GGUF quantization: --dtype q4_0 ... iq4_xs (one block type) or q4_k_m / q5_k_m (llama.cpp's
// mixes). The per-tensor types follow llama-quantize's rules (src/llama-quant.cpp,
// llama_tensor_get_type) for these types without an importance matrix: the output projection
// (or the tied embedding) becomes Q6_K (Q8_0 stays Q8_0); _M mixes give attn_v and ffn_down of
// the first and last eighth of the layers and every third layer between Q6_K and the fused phi3
// attn_qkv Q5_K (q4_k_m) / Q6_K (q5_k_m); q2_k gives attn_v, attn_output and ffn_down Q3_K
// (attn_v Q4_K with 4+ query heads per KV head); iq4 types give attn_v Q5_K with 4+ query heads
// per KV head and ffn_down of the first eighth Q5_K. Rows that are not whole blocks fall back as
// llama.cpp does (K-quants to Q5_0 / Q5_1 / Q8_0 / IQ4_NL, then F16).
struct QuantMix {
  std::string name;  // as given to --dtype
  DType base = DType::kF32;
  bool medium = false;  // q4_k_m, q5_k_m

  static std::optional<QuantMix> parse(const std::string& s) {
    if (s == "q4_k_m") return QuantMix{s, DType::kQ4_K, true};
    if (s == "q5_k_m") return QuantMix{s, DType::kQ5_K, true};
    const auto t = hearth::dtype_from_name(s);
    if (t && hearth::ggml::supported(*t)) return QuantMix{s, *t, false};
    return std::nullopt;
  }

  // llama.cpp's llama_ftype for general.file_type.
  std::uint32_t file_type() const {
    switch (base) {
      case DType::kQ4_0:
        return 2;
      case DType::kQ4_1:
        return 3;
      case DType::kQ8_0:
        return 7;
      case DType::kQ5_0:
        return 8;
      case DType::kQ5_1:
        return 9;
      case DType::kQ2_K:
        return 10;
      case DType::kQ3_K:
        return 11;
      case DType::kQ4_K:
        return medium ? 15 : 14;
      case DType::kQ5_K:
        return medium ? 17 : 16;
      case DType::kQ6_K:
        return 18;
      case DType::kIQ4_NL:
        return 25;
      case DType::kIQ4_XS:
        return 30;
      default:
        return 0;
    }
  }

  // The type of the 2-D tensor gguf_name (cols wide) in a model of layers layers with gqa query
  // heads per KV head; output says whether it is the output projection (or the tied embedding).
  DType type_of(const std::string& gguf_name, std::int64_t cols, int layers, int gqa,
                bool output) const {
    const auto more_bits = [&](int i) {
      return i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2;
    };
    int layer = -1;
    std::sscanf(gguf_name.c_str(), "blk.%d.", &layer);
    const auto has = [&](const char* part) { return gguf_name.find(part) != std::string::npos; };
    const bool iq4 = base == DType::kIQ4_NL || base == DType::kIQ4_XS;
    DType t = base;
    if (output) {
      if (cols % hearth::dtype_info(base).block_size != 0) return DType::kQ8_0;
      if (base != DType::kQ8_0) t = DType::kQ6_K;
    } else if (has("attn_v.weight")) {
      if (base == DType::kQ2_K) t = gqa >= 4 ? DType::kQ4_K : DType::kQ3_K;
      if (iq4 && gqa >= 4) t = DType::kQ5_K;
      if (medium && more_bits(layer)) t = DType::kQ6_K;
    } else if (has("ffn_down")) {
      if (base == DType::kQ2_K) t = DType::kQ3_K;
      if (medium && more_bits(layer)) t = DType::kQ6_K;
      if (iq4 && layer < layers / 8) t = DType::kQ5_K;
    } else if (has("attn_output.weight")) {
      if (base == DType::kQ2_K) t = DType::kQ3_K;
    } else if (has("attn_qkv.weight") && medium) {
      t = base == DType::kQ4_K ? DType::kQ5_K : DType::kQ6_K;
    }
    if (cols % hearth::dtype_info(t).block_size != 0) {
      switch (t) {
        case DType::kQ2_K:
        case DType::kQ3_K:
        case DType::kIQ4_XS:
          t = DType::kIQ4_NL;
          break;
        case DType::kQ4_K:
          t = DType::kQ5_0;
          break;
        case DType::kQ5_K:
          t = DType::kQ5_1;
          break;
        case DType::kQ6_K:
          t = DType::kQ8_0;
          break;
        default:
          break;
      }
      if (cols % hearth::dtype_info(t).block_size != 0) t = DType::kF16;
    }
    return t;
  }
};

// Fills the tensors of a file that a writer laid out with zero bytes: each tensor's rows are made
// in parallel chunks and written in place, so no more than a few rows per thread are in memory.
void fill_in_place(const fs::path& path, const std::vector<const Stored*>& tensors,
                   const std::map<std::string, std::uint64_t>& offsets, hearth::ThreadPool& pool) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) {
    throw hearth::Error(hearth::ErrorCode::kIo, std::string("cannot open: ") + std::strerror(errno),
                        {.file = path.string()});
  }
  std::string failure;
  for (const Stored* t : tensors) {
    const std::uint64_t base = offsets.at(t->name);
    const std::int64_t rows = t->rows();
    const std::uint64_t rb = t->row_bytes();
    const std::int64_t per_chunk =
        std::max<std::int64_t>(1, static_cast<std::int64_t>((4u << 20) / rb));
    const auto chunks = static_cast<std::size_t>((rows + per_chunk - 1) / per_chunk);
    pool.parallel_for(chunks, [&](std::size_t begin, std::size_t end) {
      std::vector<float> scratch(static_cast<std::size_t>(t->src->cols));
      std::vector<std::byte> buf;
      for (std::size_t ch = begin; ch < end; ++ch) {
        hearth::throw_if_cancelled();
        const std::int64_t r0 = static_cast<std::int64_t>(ch) * per_chunk;
        const std::int64_t r1 = std::min(rows, r0 + per_chunk);
        buf.resize(static_cast<std::size_t>(r1 - r0) * rb);
        for (std::int64_t r = r0; r < r1; ++r) {
          t->fill_row(r, scratch.data(), buf.data() + static_cast<std::size_t>(r - r0) * rb);
        }
        std::size_t done = 0;
        while (done < buf.size()) {
          const ssize_t n = ::pwrite(fd, buf.data() + done, buf.size() - done,
                                     static_cast<off_t>(base + r0 * rb + done));
          if (n <= 0) {
            throw hearth::Error(hearth::ErrorCode::kIo,
                                std::string("cannot write: ") + std::strerror(errno),
                                {.file = path.string(), .key = t->name});
          }
          done += static_cast<std::size_t>(n);
        }
      }
    });
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    throw hearth::Error(hearth::ErrorCode::kIo,
                        std::string("cannot write: ") + std::strerror(errno),
                        {.file = path.string()});
  }
}

// Lays a file out with the writer (zero bytes for the data), fills it in place, then renames it
// to path: an interrupted run leaves no half-made file under the real name.
template <class Writer>
void write_streaming(const fs::path& path, const Writer& w,
                     const std::vector<const Stored*>& tensors, hearth::ThreadPool& pool) {
  const fs::path partial = path.string() + ".partial";
  try {
    w.write(partial);
    std::map<std::string, std::uint64_t> offsets;
    if constexpr (std::is_same_v<Writer, formats::GGUFWriter>) {
      const auto g = formats::GGUFFile::open(partial);
      for (const auto& info : g.tensors()) offsets[info.name] = g.data_offset() + info.offset;
    } else {
      const auto st = formats::SafetensorsFile::open(partial);
      for (const auto& info : st.tensors()) offsets[info.name] = st.data_offset() + info.offset;
    }
    fill_in_place(partial, tensors, offsets, pool);
    fs::rename(partial, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(partial, ec);
    throw;
  }
}

// A zeroed buffer that every tensor's placeholder span points into.
std::span<const std::byte> zeros(const std::vector<std::byte>& buf, const Stored& t) {
  return std::span<const std::byte>(buf.data(), t.nbytes());
}

// The vocabulary: where it comes from and the ids the configs name.
struct Vocab {
  std::string tokenizer_dir;              // HF tokenizer files to copy
  std::optional<formats::GGUFFile> gguf;  // tokenizer.* keys to copy
  int size = 0;                           // 0: synthetic
  int bos = 1;
  std::vector<int> eos = {2};
};

// The largest id of a tokenizer.json (model vocabulary and added tokens) plus one, and the id of
// a token by its text.
struct TokenizerJson {
  int size = 0;
  std::map<std::string, int> ids;
};

TokenizerJson read_tokenizer_json(const fs::path& path) {
  const json j = json::parse(formats::read_text_file(path), nullptr, false);
  if (j.is_discarded() || !j.contains("model")) {
    throw hearth::Error(hearth::ErrorCode::kFormat, "not a tokenizer.json",
                        {.file = path.string()});
  }
  TokenizerJson t;
  const json& v = j["model"].value("vocab", json::object());
  if (v.is_object()) {
    for (const auto& [piece, id] : v.items()) t.ids[piece] = id.get<int>();
  } else if (v.is_array()) {  // Unigram: [[piece, score], ...]
    for (std::size_t i = 0; i < v.size(); ++i)
      t.ids[v[i][0].get<std::string>()] = static_cast<int>(i);
  }
  for (const json& a : j.value("added_tokens", json::array())) {
    t.ids[a["content"].get<std::string>()] = a["id"].get<int>();
  }
  for (const auto& [piece, id] : t.ids) t.size = std::max(t.size, id + 1);
  return t;
}

Vocab load_vocab(const std::string& tokenizer_dir, const std::string& gguf_vocab) {
  Vocab v;
  v.tokenizer_dir = tokenizer_dir;
  if (!gguf_vocab.empty()) {
    v.gguf = formats::GGUFFile::open(gguf_vocab);
    v.size = static_cast<int>(v.gguf->get_array("tokenizer.ggml.tokens").size());
    if (v.gguf->find("tokenizer.ggml.bos_token_id"))
      v.bos = static_cast<int>(v.gguf->get_int("tokenizer.ggml.bos_token_id"));
    v.eos.clear();
    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
      if (!v.gguf->find(key)) continue;
      const int id = static_cast<int>(v.gguf->get_int(key));
      if (std::find(v.eos.begin(), v.eos.end(), id) == v.eos.end()) v.eos.push_back(id);
    }
    if (v.eos.empty()) v.eos = {2};
  }
  if (!tokenizer_dir.empty()) {
    const fs::path tj = fs::path(tokenizer_dir) / "tokenizer.json";
    if (!fs::exists(tj)) {
      throw hearth::Error(hearth::ErrorCode::kNotFound, "no tokenizer.json in the tokenizer folder",
                          {.file = tj.string()});
    }
    const TokenizerJson t = read_tokenizer_json(tj);
    if (v.gguf && v.size != t.size) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "--tokenizer-dir has " + std::to_string(t.size) +
                              " tokens but --gguf-vocab " + std::to_string(v.size),
                          {.file = tj.string()});
    }
    if (!v.gguf) {
      v.size = t.size;
      const fs::path tc = fs::path(tokenizer_dir) / "tokenizer_config.json";
      if (fs::exists(tc)) {
        const json c = json::parse(formats::read_text_file(tc), nullptr, false);
        const auto id_of = [&](const char* key) -> std::optional<int> {
          if (c.is_discarded() || !c.contains(key)) return std::nullopt;
          const json& k = c[key];
          const std::string text = k.is_string() ? k.get<std::string>()
                                   : k.is_object() && k.contains("content")
                                       ? k["content"].get<std::string>()
                                       : "";
          const auto it = t.ids.find(text);
          if (it == t.ids.end()) return std::nullopt;
          return it->second;
        };
        if (const auto b = id_of("bos_token")) v.bos = *b;
        if (const auto e = id_of("eos_token")) v.eos = {*e};
      }
    }
  }
  return v;
}

class DecoderMaker {
 public:
  DecoderMaker(DecoderConfig c, unsigned seed) : c_(std::move(c)), seed_(seed) { build(); }

  // Hugging Face folder; shard_bytes > 0 splits the weights into shards of about that size.
  // mlx_bits > 0: every matrix whose input width its group size divides is quantized (the
  // embeddings and the head too, as mlx-lm does), with the spec of mlx_overrides[module path]
  // when listed there ({bits, group_size}, or false for unquantized).
  void write_hf(const fs::path& dir, DType dtype, int mlx_bits, int group,
                const json& mlx_overrides, std::uint64_t shard_bytes, const Vocab& vocab,
                hearth::ThreadPool& pool) {
    fs::create_directories(dir);
    std::vector<Stored> stored;
    for (const Logical& l : weights_) {
      const Shape shape = l.vector ? Shape{l.cols} : Shape{l.rows, l.cols};
      const std::string base = l.name.substr(0, l.name.size() - 7);  // drop ".weight"
      int bits = mlx_bits;
      int group_size = group;
      if (const auto o = mlx_overrides.find(base); mlx_bits > 0 && o != mlx_overrides.end()) {
        bits = o->is_object() ? o->at("bits").get<int>() : 0;
        group_size = o->is_object() ? o->at("group_size").get<int>() : group;
      }
      if (bits > 0 && !l.vector && l.cols % group_size == 0) {
        stored.push_back({l.name,
                          DType::kU32,
                          {l.rows, l.cols * bits / 32},
                          &l,
                          0,
                          Encoding::kMlxWeight,
                          bits,
                          group_size});
        stored.push_back({base + ".scales",
                          dtype,
                          {l.rows, l.cols / group_size},
                          &l,
                          0,
                          Encoding::kMlxScales,
                          bits,
                          group_size});
        stored.push_back({base + ".biases",
                          dtype,
                          {l.rows, l.cols / group_size},
                          &l,
                          0,
                          Encoding::kMlxBiases,
                          bits,
                          group_size});
      } else {
        stored.push_back({l.name, dtype, shape, &l});
      }
    }
    std::ofstream(dir / "config.json")
        << hf_config(dtype, mlx_bits, group, mlx_overrides).dump(2) << "\n";
    json gen = {{"_from_model_config", true},
                {"bos_token_id", c_.bos},
                {"eos_token_id", c_.eos},
                {"transformers_version", "4.46.0"}};
    std::ofstream(dir / "generation_config.json") << gen.dump(2) << "\n";
    if (!vocab.tokenizer_dir.empty()) {
      for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "tokenizer.model", "added_tokens.json", "chat_template.jinja"}) {
        const fs::path src = fs::path(vocab.tokenizer_dir) / f;
        if (!fs::exists(src)) continue;
        fs::copy_file(src, dir / f, fs::copy_options::overwrite_existing);
        fs::permissions(dir / f, fs::perms::owner_read | fs::perms::owner_write,
                        fs::perm_options::add);  // fixtures are read-only
      }
    }
    // Shards in order, each closed when it passes shard_bytes.
    std::vector<std::vector<const Stored*>> shards(1);
    std::uint64_t in_shard = 0;
    std::uint64_t total = 0;
    for (const Stored& t : stored) {
      if (shard_bytes > 0 && in_shard > 0 && in_shard + t.nbytes() > shard_bytes) {
        shards.emplace_back();
        in_shard = 0;
      }
      shards.back().push_back(&t);
      in_shard += t.nbytes();
      total += t.nbytes();
    }
    json weight_map = json::object();
    for (std::size_t s = 0; s < shards.size(); ++s) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      const std::string file = shards.size() == 1 ? "model.safetensors" : name;
      formats::SafetensorsWriter w;
      w.set_metadata("format", "pt");
      const std::vector<std::byte> zero(max_bytes(shards[s]));
      for (const Stored* t : shards[s]) {
        w.add_tensor(t->name, t->dtype, t->shape, zeros(zero, *t));
        weight_map[t->name] = file;
      }
      write_streaming(dir / file, w, shards[s], pool);
    }
    if (shards.size() > 1) {
      const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
      std::ofstream(dir / "model.safetensors.index.json") << index.dump(2) << "\n";
    }
  }

  // mix (may be null): a GGUF quantization choosing each matrix's type (dtype is then unused).
  void write_gguf(const fs::path& path, DType dtype, const Vocab& vocab, hearth::ThreadPool& pool,
                  const QuantMix* mix = nullptr) {
    const bool llama = c_.arch == Arch::kLlama || c_.arch == Arch::kMistral;
    const std::string a = llama                     ? "llama"
                          : c_.arch == Arch::kPhi3  ? "phi3"
                          : c_.arch == Arch::kQwen2 ? "qwen2"
                                                    : "qwen3";
    formats::GGUFWriter w;
    w.set("general.architecture", a);
    w.set("general.name", "hearth random " + c_.arch_name);
    const auto u32 = [](int v) { return static_cast<std::uint32_t>(v); };
    w.set(a + ".context_length", u32(c_.context));
    w.set(a + ".embedding_length", u32(c_.hidden));
    w.set(a + ".block_count", u32(c_.layers));
    w.set(a + ".feed_forward_length", u32(c_.ffn));
    w.set(a + ".attention.head_count", u32(c_.heads));
    w.set(a + ".attention.head_count_kv", u32(c_.kv_heads));
    w.set(a + ".rope.freq_base", static_cast<float>(c_.theta));
    w.set(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c_.eps));
    w.set("general.file_type", mix != nullptr         ? mix->file_type()
                               : dtype == DType::kF32 ? 0u
                               : dtype == DType::kF16 ? 1u
                                                      : 32u);
    if (c_.arch == Arch::kPhi3) {
      w.set(a + ".rope.scaling.original_context_length", u32(c_.rope.original_context));
      w.set(a + ".rope.dimension_count", u32(c_.head_dim));
      w.set(a + ".attention.sliding_window", u32(c_.sliding_window));
      if (longrope())
        w.set(a + ".rope.scaling.attn_factor", static_cast<float>(longrope_attn_factor()));
    } else {
      if (llama) {
        w.set(a + ".vocab_size", u32(c_.vocab));
        w.set(a + ".rope.dimension_count", u32(c_.head_dim));
      }
      if (writes_head_dim()) {
        w.set(a + ".attention.key_length", u32(c_.head_dim));
        w.set(a + ".attention.value_length", u32(c_.head_dim));
      }
      if (c_.rope.type == "linear") {
        w.set(a + ".rope.scaling.type", "linear");
        w.set(a + ".rope.scaling.factor", static_cast<float>(c_.rope.factor));
      }
    }
    if (vocab.gguf) {
      for (const auto& [key, value] : vocab.gguf->metadata()) {
        if (key.starts_with("tokenizer.")) w.set(key, value);
      }
    } else {
      synthetic_vocab(w);
    }

    std::vector<Stored> stored;
    for (const Logical& l : extra_gguf_) stored.push_back({l.name, DType::kF32, {l.cols}, &l});
    for (const Logical& l : weights_) {
      Stored t{gguf_name(l.name), l.vector ? DType::kF32 : dtype,
               l.vector ? Shape{l.cols} : Shape{l.rows, l.cols}, &l};
      if (mix != nullptr && !l.vector) {
        const bool output = t.name == "output.weight" || (c_.tied && t.name == "token_embd.weight");
        t.dtype = mix->type_of(t.name, l.cols, c_.layers, c_.heads / c_.kv_heads, output);
      }
      if (llama && l.name.ends_with("q_proj.weight")) t.permute_heads = c_.heads;
      if (llama && l.name.ends_with("k_proj.weight")) t.permute_heads = c_.kv_heads;
      stored.push_back(t);
    }
    std::vector<const Stored*> all;
    for (const Stored& t : stored) all.push_back(&t);
    const std::vector<std::byte> zero(max_bytes(all));
    for (const Stored& t : stored) w.add_tensor(t.name, t.dtype, t.shape, zeros(zero, t));
    write_streaming(path, w, all, pool);
  }

  std::int64_t parameters() const {
    std::int64_t n = 0;
    for (const Logical& l : weights_) n += l.rows * l.cols;
    return n;
  }

 private:
  bool longrope() const { return c_.rope.type == "longrope" || c_.rope.type == "su"; }
  // transformers writes head_dim for Llama, Mistral and Qwen3 configs.
  bool writes_head_dim() const {
    return c_.arch == Arch::kLlama || c_.arch == Arch::kMistral || c_.arch == Arch::kQwen3;
  }
  double longrope_attn_factor() const {
    const double scale = static_cast<double>(c_.context) / c_.rope.original_context;
    return scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(c_.rope.original_context))
                       : 1.0;
  }

  static std::uint64_t max_bytes(const std::vector<const Stored*>& tensors) {
    std::uint64_t m = 0;
    for (const Stored* t : tensors) m = std::max(m, t->nbytes());
    return m;
  }

  void add(const std::string& name, std::int64_t rows, std::int64_t cols, float mean, float std) {
    weights_.push_back({name, rows, cols, rows == 0, mean, std, name_key(seed_, name), {}});
    if (rows == 0) weights_.back().rows = 1;
  }

  // Scales (as llama.cpp's fixtures do): a matrix reading n inputs has std 0.9/sqrt(n); the
  // untied input embedding std 1; the output projection (or the tied embedding) 3/sqrt(hidden),
  // which gives logits with a standard deviation of about 3; norm gains 1 + 0.1 N; biases 0.1.
  // With tied embeddings ffn_down is 4x larger, so that the layers move the residual away from
  // the input token's embedding (else greedy decoding just repeats the token).
  void build() {
    const float down_gain = c_.tied ? 4.0f : 1.0f;
    const std::int64_t h = c_.hidden;
    const std::int64_t q = static_cast<std::int64_t>(c_.heads) * c_.head_dim;
    const std::int64_t kv = static_cast<std::int64_t>(c_.kv_heads) * c_.head_dim;
    const float in_h = 0.9f / std::sqrt(static_cast<float>(h));
    const float out_std = 3.0f / std::sqrt(static_cast<float>(h));
    add("model.embed_tokens.weight", c_.vocab, h, 0.0f, c_.tied ? out_std : 1.0f);
    for (int l = 0; l < c_.layers; ++l) {
      const std::string b = "model.layers." + std::to_string(l) + ".";
      add(b + "input_layernorm.weight", 0, h, 1.0f, 0.1f);
      if (c_.arch == Arch::kPhi3) {
        add(b + "self_attn.qkv_proj.weight", q + 2 * kv, h, 0.0f, in_h);
      } else {
        add(b + "self_attn.q_proj.weight", q, h, 0.0f, in_h);
        add(b + "self_attn.k_proj.weight", kv, h, 0.0f, in_h);
        add(b + "self_attn.v_proj.weight", kv, h, 0.0f, in_h);
        if (c_.arch == Arch::kQwen2) {
          add(b + "self_attn.q_proj.bias", 0, q, 0.0f, 0.1f);
          add(b + "self_attn.k_proj.bias", 0, kv, 0.0f, 0.1f);
          add(b + "self_attn.v_proj.bias", 0, kv, 0.0f, 0.1f);
        }
        if (c_.arch == Arch::kQwen3) {
          add(b + "self_attn.q_norm.weight", 0, c_.head_dim, 1.0f, 0.1f);
          add(b + "self_attn.k_norm.weight", 0, c_.head_dim, 1.0f, 0.1f);
        }
      }
      add(b + "self_attn.o_proj.weight", h, q, 0.0f, 0.9f / std::sqrt(static_cast<float>(q)));
      add(b + "post_attention_layernorm.weight", 0, h, 1.0f, 0.1f);
      if (c_.arch == Arch::kPhi3) {
        add(b + "mlp.gate_up_proj.weight", 2 * c_.ffn, h, 0.0f, in_h);
      } else {
        add(b + "mlp.gate_proj.weight", c_.ffn, h, 0.0f, in_h);
        add(b + "mlp.up_proj.weight", c_.ffn, h, 0.0f, in_h);
      }
      add(b + "mlp.down_proj.weight", h, c_.ffn, 0.0f,
          down_gain * 0.9f / std::sqrt(static_cast<float>(c_.ffn)));
    }
    add("model.norm.weight", 0, h, 1.0f, 0.1f);
    if (!c_.tied) add("lm_head.weight", c_.vocab, h, 0.0f, out_std);

    const int half = c_.head_dim / 2;
    if (longrope() && c_.rope.short_factor.empty()) {
      // Short factors near 1, long factors rising from 1 to about the context extension.
      const double scale = static_cast<double>(c_.context) / c_.rope.original_context;
      for (int i = 0; i < half; ++i) {
        const double u =
            static_cast<double>(splitmix64(name_key(seed_, "short_factor") + i) >> 40) / 16777216.0;
        c_.rope.short_factor.push_back(bf16_grid(static_cast<float>(1.0 + 0.1 * u)));
        c_.rope.long_factor.push_back(
            bf16_grid(static_cast<float>(1.0 + (scale * 1.5 - 1.0) * i / std::max(1, half - 1))));
      }
    }
    if (longrope()) {
      extra_gguf_.push_back(
          {"rope_factors_long.weight", 1, half, true, 0, 0, 0, c_.rope.long_factor});
      extra_gguf_.push_back(
          {"rope_factors_short.weight", 1, half, true, 0, 0, 0, c_.rope.short_factor});
    }
    if (c_.rope.type == "llama3") {
      // llama.cpp's converter stores llama3 rope scaling as one divisor per frequency.
      const double low_wavelen = c_.rope.original_context / c_.rope.low_freq_factor;
      const double high_wavelen = c_.rope.original_context / c_.rope.high_freq_factor;
      std::vector<float> factors;
      for (int i = 0; i < half; ++i) {
        const double freq = 1.0 / std::pow(c_.theta, 2.0 * i / c_.head_dim);
        const double wavelen = 2.0 * M_PI / freq;
        if (wavelen < high_wavelen) {
          factors.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
          factors.push_back(static_cast<float>(c_.rope.factor));
        } else {
          const double smooth = (c_.rope.original_context / wavelen - c_.rope.low_freq_factor) /
                                (c_.rope.high_freq_factor - c_.rope.low_freq_factor);
          factors.push_back(static_cast<float>(1.0 / ((1.0 - smooth) / c_.rope.factor + smooth)));
        }
      }
      extra_gguf_.push_back({"rope_freqs.weight", 1, half, true, 0, 0, 0, factors});
    }
  }

  static std::string gguf_name(const std::string& hf) {
    static const std::vector<std::pair<std::string, std::string>> kLayer = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.qkv_proj.weight", "attn_qkv.weight"},
        {"self_attn.q_norm.weight", "attn_q_norm.weight"},
        {"self_attn.k_norm.weight", "attn_k_norm.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.gate_up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    const std::string prefix = "model.layers.";
    const std::size_t dot = hf.find('.', prefix.size());
    const std::string rest = hf.substr(dot + 1);
    for (const auto& [from, to] : kLayer) {
      if (rest == from) return "blk." + hf.substr(prefix.size(), dot - prefix.size()) + "." + to;
    }
    throw hearth::Error(hearth::ErrorCode::kInternal, "no GGUF name for " + hf);
  }

  json rope_scaling_json() const {
    const RopeScaling& r = c_.rope;
    if (r.type == "linear") return {{"factor", r.factor}, {"rope_type", "linear"}};
    if (r.type == "llama3") {
      return {{"factor", r.factor},
              {"high_freq_factor", r.high_freq_factor},
              {"low_freq_factor", r.low_freq_factor},
              {"original_max_position_embeddings", r.original_context},
              {"rope_type", "llama3"}};
    }
    if (longrope()) {
      std::vector<double> s(r.short_factor.begin(), r.short_factor.end());
      std::vector<double> l(r.long_factor.begin(), r.long_factor.end());
      return {{"long_factor", l}, {"short_factor", s}, {"type", r.type}};
    }
    return nullptr;
  }

  json hf_config(DType dtype, int mlx_bits, int group, const json& mlx_overrides) const {
    static const char* kNames[][2] = {{"LlamaForCausalLM", "llama"},
                                      {"MistralForCausalLM", "mistral"},
                                      {"Phi3ForCausalLM", "phi3"},
                                      {"Qwen2ForCausalLM", "qwen2"},
                                      {"Qwen3ForCausalLM", "qwen3"}};
    const auto& names = kNames[static_cast<int>(c_.arch)];
    json j = {
        {"architectures", {names[0]}},
        {"model_type", names[1]},
        {"attention_dropout", 0.0},
        {"bos_token_id", c_.bos},
        {"eos_token_id", c_.eos.size() == 1 ? json(c_.eos[0]) : json(c_.eos)},
        {"hidden_act", "silu"},
        {"hidden_size", c_.hidden},
        {"initializer_range", 0.02},
        {"intermediate_size", c_.ffn},
        {"max_position_embeddings", c_.context},
        {"num_attention_heads", c_.heads},
        {"num_hidden_layers", c_.layers},
        {"num_key_value_heads", c_.kv_heads},
        {"rms_norm_eps", c_.eps},
        {"rope_scaling", rope_scaling_json()},
        {"rope_theta", c_.theta},
        {"tie_word_embeddings", c_.tied},
        {"torch_dtype", dtype == DType::kF32   ? "float32"
                        : dtype == DType::kF16 ? "float16"
                                               : "bfloat16"},
        {"transformers_version", "4.46.0"},
        {"use_cache", true},
        {"vocab_size", c_.vocab},
    };
    if (writes_head_dim()) j["head_dim"] = c_.head_dim;
    switch (c_.arch) {
      case Arch::kLlama:
        j["attention_bias"] = false;
        j["mlp_bias"] = false;
        j["pretraining_tp"] = 1;
        break;
      case Arch::kMistral:
        j["sliding_window"] = c_.sliding_window > 0 ? json(c_.sliding_window) : json(nullptr);
        break;
      case Arch::kPhi3:
        j["embd_pdrop"] = 0.0;
        j["resid_pdrop"] = 0.0;
        j["original_max_position_embeddings"] = c_.rope.original_context;
        j["pad_token_id"] = c_.eos[0];
        j["sliding_window"] = c_.sliding_window > 0 ? json(c_.sliding_window) : json(nullptr);
        break;
      case Arch::kQwen2:
      case Arch::kQwen3:
        if (c_.arch == Arch::kQwen3) j["attention_bias"] = false;
        j["max_window_layers"] = c_.layers;
        j["use_sliding_window"] = c_.sliding_window > 0;
        j["sliding_window"] = c_.sliding_window > 0 ? c_.sliding_window : c_.context;
        break;
    }
    if (mlx_bits > 0) {  // as mlx-lm writes it: both keys, the overrides beside the defaults
      json q = {{"group_size", group}, {"bits", mlx_bits}};
      for (const auto& [module, spec] : mlx_overrides.items()) q[module] = spec;
      j["quantization"] = q;
      j["quantization_config"] = q;
    }
    return j;
  }

  // A SentencePiece-style vocabulary: <unk> <s> </s>, the 256 byte tokens, made-up words.
  void synthetic_vocab(formats::GGUFWriter& w) const {
    w.set("tokenizer.ggml.model", "llama");
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<std::int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      tokens.emplace_back(buf);
      types.push_back(6);
    }
    for (int i = static_cast<int>(tokens.size()); i < c_.vocab; ++i) {
      tokens.push_back("\xe2\x96\x81w" + std::to_string(i));
      types.push_back(1);
    }
    std::vector<float> scores(tokens.size());
    for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
    w.set("tokenizer.ggml.tokens", formats::GGUFArray{std::move(tokens)});
    w.set("tokenizer.ggml.scores", formats::GGUFArray{std::move(scores)});
    w.set("tokenizer.ggml.token_type", formats::GGUFArray{std::move(types)});
    w.set("tokenizer.ggml.bos_token_id", std::uint32_t{1});
    w.set("tokenizer.ggml.eos_token_id", std::uint32_t{2});
  }

  DecoderConfig c_;
  unsigned seed_;
  std::vector<Logical> weights_;     // in HF order and naming
  std::vector<Logical> extra_gguf_;  // GGUF-only tensors made from the config (rope factors)
};

// A BERT weight's name, shape and dtype (its values live beside it).
struct Tensor {
  std::string name;
  Shape shape;
  DType dtype;
  std::vector<std::byte> bytes;
};

struct BertConfig {
  int vocab = 0;  // from the vocabulary
  int hidden = 32;
  int layers = 2;
  int heads = 4;
  int ffn = 64;
  int max_positions = 128;
  int type_vocab = 2;
  float eps = 1e-12f;
};

BertConfig bert_shape(const std::string& shape) {
  BertConfig c;
  if (shape == "minilm") {
    c.hidden = 384;
    c.layers = 6;
    c.heads = 12;
    c.ffn = 1536;
    c.max_positions = 512;
  }
  return c;
}

// The WordPiece vocabulary: a real vocab.txt, or [PAD] [UNK] [CLS] [SEP] [MASK], letters, digits,
// punctuation, their ## continuations and made-up words.
std::vector<std::string> bert_vocab(const std::string& tokenizer_dir) {
  std::vector<std::string> vocab;
  if (!tokenizer_dir.empty()) {
    std::ifstream in(fs::path(tokenizer_dir) / "vocab.txt");
    if (!in) {
      throw hearth::Error(hearth::ErrorCode::kNotFound, "no vocab.txt in the tokenizer folder",
                          {.file = (fs::path(tokenizer_dir) / "vocab.txt").string()});
    }
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      vocab.push_back(line);
    }
    return vocab;
  }
  vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  const std::string chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()";
  for (const char ch : chars) vocab.emplace_back(1, ch);
  for (const char ch : chars) vocab.push_back(std::string("##") + ch);
  for (const char* w : {"the", "of", "and", "to", "in", "is", "hello", "world", "paris", "capital",
                        "france", "berlin", "germany", "what", "##s", "##ing", "##ed"}) {
    vocab.emplace_back(w);
  }
  while (vocab.size() < 1000) vocab.push_back("w" + std::to_string(vocab.size()));
  return vocab;
}

int vocab_id(const std::vector<std::string>& vocab, const std::string& token) {
  const auto it = std::find(vocab.begin(), vocab.end(), token);
  if (it == vocab.end()) {
    throw hearth::Error(hearth::ErrorCode::kFormat, "the vocabulary lacks " + token);
  }
  return static_cast<int>(it - vocab.begin());
}

class BertMaker {
 public:
  BertMaker(BertConfig c, bool classifier, unsigned seed)
      : c_(c), classifier_(classifier), rng_(seed) {}

  // Every weight in Hugging Face naming, f32, in a fixed order (weights: N(0, 0.02) like BERT's
  // initializer, except LayerNorm gains around 1 and biases small, so every term matters).
  void generate() {
    const std::int64_t h = c_.hidden;
    const auto add = [&](const std::string& name, Shape shape, float mean, float scale) {
      std::normal_distribution<float> dist(mean, scale);
      std::vector<float> v(static_cast<std::size_t>(hearth::numel(shape)));
      for (float& x : v) x = dist(rng_);
      tensors_.push_back({name, std::move(shape), DType::kF32, {}});
      values_.push_back(std::move(v));
    };
    const auto linear = [&](const std::string& base, std::int64_t out, std::int64_t in) {
      add(base + ".weight", {out, in}, 0.0f, 0.02f * 2.0f);
      add(base + ".bias", {out}, 0.0f, 0.02f);
    };
    const auto norm = [&](const std::string& base) {
      add(base + ".weight", {h}, 1.0f, 0.1f);
      add(base + ".bias", {h}, 0.0f, 0.05f);
    };
    add("embeddings.word_embeddings.weight", {c_.vocab, h}, 0.0f, 0.5f);
    add("embeddings.position_embeddings.weight", {c_.max_positions, h}, 0.0f, 0.5f);
    add("embeddings.token_type_embeddings.weight", {c_.type_vocab, h}, 0.0f, 0.5f);
    norm("embeddings.LayerNorm");
    for (int l = 0; l < c_.layers; ++l) {
      const std::string b = "encoder.layer." + std::to_string(l) + ".";
      linear(b + "attention.self.query", h, h);
      linear(b + "attention.self.key", h, h);
      linear(b + "attention.self.value", h, h);
      linear(b + "attention.output.dense", h, h);
      norm(b + "attention.output.LayerNorm");
      linear(b + "intermediate.dense", c_.ffn, h);
      linear(b + "output.dense", h, c_.ffn);
      norm(b + "output.LayerNorm");
    }
    linear("pooler.dense", h, h);
    if (classifier_) {
      add("classifier.weight", {1, h}, 0.0f, 0.5f);
      add("classifier.bias", {1}, 0.0f, 0.5f);
    }
  }

  void write_hf(const fs::path& dir, DType dtype, const std::vector<std::string>& vocab,
                const std::string& tokenizer_dir, const std::string& pooling, bool normalize) {
    fs::create_directories(dir);
    nlohmann::json config = {
        {"architectures", {classifier_ ? "BertForSequenceClassification" : "BertModel"}},
        {"model_type", "bert"},
        {"vocab_size", c_.vocab},
        {"hidden_size", c_.hidden},
        {"num_hidden_layers", c_.layers},
        {"num_attention_heads", c_.heads},
        {"intermediate_size", c_.ffn},
        {"hidden_act", "gelu"},
        {"max_position_embeddings", c_.max_positions},
        {"type_vocab_size", c_.type_vocab},
        {"layer_norm_eps", c_.eps},
        {"pad_token_id", 0},
        {"position_embedding_type", "absolute"},
        {"torch_dtype", dtype == DType::kF32   ? "float32"
                        : dtype == DType::kF16 ? "float16"
                                               : "bfloat16"},
    };
    if (classifier_) {
      config["id2label"] = {{"0", "LABEL_0"}};
      config["label2id"] = {{"LABEL_0", 0}};
    }
    std::ofstream(dir / "config.json") << config.dump(2) << "\n";
    if (!classifier_) {
      nlohmann::json modules = nlohmann::json::array();
      modules.push_back({{"idx", 0},
                         {"name", "0"},
                         {"path", ""},
                         {"type", "sentence_transformers.models.Transformer"}});
      modules.push_back({{"idx", 1},
                         {"name", "1"},
                         {"path", "1_Pooling"},
                         {"type", "sentence_transformers.models.Pooling"}});
      if (normalize) {
        modules.push_back({{"idx", 2},
                           {"name", "2"},
                           {"path", "2_Normalize"},
                           {"type", "sentence_transformers.models.Normalize"}});
        fs::create_directories(dir / "2_Normalize");
      }
      std::ofstream(dir / "modules.json") << modules.dump(2) << "\n";
      fs::create_directories(dir / "1_Pooling");
      const nlohmann::json pool = {
          {"word_embedding_dimension", c_.hidden},
          {"pooling_mode_cls_token", pooling == "cls"},
          {"pooling_mode_mean_tokens", pooling == "mean"},
          {"pooling_mode_max_tokens", pooling == "max"},
          {"pooling_mode_mean_sqrt_len_tokens", false},
      };
      std::ofstream(dir / "1_Pooling" / "config.json") << pool.dump(2) << "\n";
      std::ofstream(dir / "sentence_bert_config.json")
          << nlohmann::json{{"max_seq_length", std::min(256, c_.max_positions)},
                            {"do_lower_case", false}}
                 .dump(2)
          << "\n";
    }
    if (!tokenizer_dir.empty()) {
      for (const char* f :
           {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
        const fs::path src = fs::path(tokenizer_dir) / f;
        if (fs::exists(src)) fs::copy_file(src, dir / f, fs::copy_options::overwrite_existing);
      }
    } else {
      std::ofstream out(dir / "vocab.txt");
      for (const std::string& t : vocab) out << t << "\n";
      std::ofstream(dir / "tokenizer_config.json")
          << nlohmann::json{{"tokenizer_class", "BertTokenizer"},
                            {"do_lower_case", true},
                            {"model_max_length", c_.max_positions}}
                 .dump(2)
          << "\n";
    }
    formats::SafetensorsWriter w;
    w.set_metadata("format", "pt");
    std::vector<std::vector<std::byte>> bytes;
    bytes.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      const DType td = t.shape.size() == 2 ? dtype : DType::kF32;
      bytes.push_back(encode(values_[i], td));
      const std::string name =
          classifier_ && !t.name.starts_with("classifier.") ? "bert." + t.name : t.name;
      w.add_tensor(name, td, t.shape, bytes.back());
    }
    w.write(dir / "model.safetensors");
  }

  // llama.cpp's `bert` GGUF: its tensor names and keys; WordPiece pieces as llama.cpp stores them
  // (word starts prefixed with U+2581, "##" dropped from continuations).
  void write_gguf(const fs::path& path, DType dtype, const std::vector<std::string>& vocab,
                  const std::string& pooling) {
    formats::GGUFWriter w;
    w.set("general.architecture", "bert");
    w.set("general.name",
          classifier_ ? "hearth tiny random bert reranker" : "hearth tiny random bert");
    w.set("bert.context_length", static_cast<std::uint32_t>(c_.max_positions));
    w.set("bert.embedding_length", static_cast<std::uint32_t>(c_.hidden));
    w.set("bert.feed_forward_length", static_cast<std::uint32_t>(c_.ffn));
    w.set("bert.block_count", static_cast<std::uint32_t>(c_.layers));
    w.set("bert.attention.head_count", static_cast<std::uint32_t>(c_.heads));
    w.set("bert.attention.layer_norm_epsilon", c_.eps);
    w.set("bert.attention.causal", false);
    const std::uint32_t pooling_type = classifier_ ? 4 : pooling == "cls" ? 2 : 1;
    w.set("bert.pooling_type", pooling_type);
    w.set("tokenizer.ggml.model", "bert");
    std::vector<std::string> tokens;
    std::vector<std::int32_t> types;
    for (const std::string& t : vocab) {
      const bool control = t.size() > 2 && t.front() == '[' && t.back() == ']';
      tokens.push_back(control ? t : t.starts_with("##") ? t.substr(2) : "\xe2\x96\x81" + t);
      types.push_back(control ? 3 : 1);
    }
    w.set("tokenizer.ggml.tokens", formats::GGUFArray{std::move(tokens)});
    w.set("tokenizer.ggml.token_type", formats::GGUFArray{std::move(types)});
    w.set("tokenizer.ggml.token_type_count", static_cast<std::uint32_t>(c_.type_vocab));
    w.set("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[UNK]")));
    w.set("tokenizer.ggml.cls_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[CLS]")));
    w.set("tokenizer.ggml.seperator_token_id",
          static_cast<std::uint32_t>(vocab_id(vocab, "[SEP]")));
    w.set("tokenizer.ggml.padding_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[PAD]")));
    w.set("tokenizer.ggml.mask_token_id", static_cast<std::uint32_t>(vocab_id(vocab, "[MASK]")));
    std::vector<std::vector<std::byte>> bytes;
    bytes.reserve(tensors_.size());
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      const std::string name = gguf_name(t.name);
      const DType td = t.shape.size() == 2 ? dtype : DType::kF32;
      bytes.push_back(encode(values_[i], td));
      w.add_tensor(name, td, t.shape, bytes.back());
    }
    w.write(path);
  }

 private:
  static std::string gguf_name(const std::string& hf) {
    std::string name = hearth::models::bert_gguf_name(hf);
    if (name == hf) throw hearth::Error(hearth::ErrorCode::kInternal, "no GGUF name for " + hf);
    return name;
  }

  BertConfig c_;
  bool classifier_;
  std::mt19937 rng_;
  std::vector<Tensor> tensors_;  // names and shapes (bytes unused)
  std::vector<std::vector<float>> values_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a random-weight model in a real format (for tests, demos and benchmarks)",
               "hearth-make-model"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  std::string out;
  std::string format = "gguf";
  std::string dtype_name = "f32";
  int mlx_bits = 0;
  int group = 64;
  std::string mlx_override_file;
  unsigned seed = 1;
  std::string arch = "llama";
  std::string shape = "tiny";
  std::string tokenizer_dir;
  std::string gguf_vocab;
  std::string pooling = "mean";
  bool classifier = false;
  bool no_normalize = false;
  std::optional<int> vocab, hidden, layers, heads, kv_heads, head_dim, ffn, context, window;
  std::optional<int> original_context;
  std::optional<double> theta, rope_factor;
  std::string rope_scaling = "none";
  bool tied = false;
  bool untied = false;
  std::vector<int> eos_ids;
  double shard_mb = 0;
  std::optional<int> single_layers, joint_dim, pooled_dim;
  bool guidance_embeds = false;
  app.add_option("--arch", arch,
                 "llama, mistral, phi3, qwen2, qwen3, bert, clip-text, t5-encoder, "
                 "flux-transformer or flux-pipeline")
      ->check(CLI::IsMember({"llama", "mistral", "phi3", "qwen2", "qwen3", "bert", "clip-text",
                             "t5-encoder", "flux-transformer", "flux-pipeline"}));
  app.add_option("--shape", shape,
                 "tiny; decoders: phi3-mini (hidden 3072, 32 layers, 32 heads, FFN 8192, vocab "
                 "32064); bert: minilm (384, 6 layers)")
      ->check(CLI::IsMember({"tiny", "minilm", "phi3-mini"}));
  app.add_option("--tokenizer-dir", tokenizer_dir,
                 "Folder of a real tokenizer (decoders: tokenizer.json etc., copied into HF "
                 "folders; bert: a WordPiece vocab.txt)");
  app.add_option("--gguf-vocab", gguf_vocab,
                 "decoders: a GGUF file whose tokenizer.* keys GGUF outputs copy (e.g. a llama.cpp "
                 "vocab-only file)");
  app.add_option("--pooling", pooling, "bert embeddings: mean, cls or max")
      ->check(CLI::IsMember({"mean", "cls", "max"}));
  app.add_flag("--classifier", classifier,
               "bert: BertForSequenceClassification with one label (a cross-encoder)");
  app.add_flag("--no-normalize", no_normalize, "bert embeddings: leave out 2_Normalize");
  app.add_option("--out", out, "Output file (gguf) or folder (hf)")->required();
  auto* format_option =
      app.add_option("--format", format,
                     "gguf or hf (text encoders: hf or safetensors; flux-transformer: hf unless "
                     "given, safetensors, gguf or mflux)")
          ->check(CLI::IsMember({"gguf", "hf", "safetensors", "mflux"}));
  app.add_option("--dtype", dtype_name,
                 "Weight dtype: f32, f16 or bf16; gguf decoders and flux-transformer also q4_0, "
                 "q4_1, q5_0, q5_1, "
                 "q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs (hearth's quantizer, "
                 "llama-quantize's per-tensor rules) and the mixes q4_k_m, q5_k_m")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k",
                             "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "q4_k_m", "q5_k_m",
                             "f8_e4m3", "f8_e5m2"}));
  app.add_option("--mlx-bits", mlx_bits,
                 "hf only: quantize the matrices mlx-style (2, 3, 4, 5, 6 or 8 bits; embeddings "
                 "and head included), scales and biases in --dtype")
      ->check(CLI::IsMember({0, 2, 3, 4, 5, 6, 8}));
  app.add_option("--group-size", group, "mlx quantization group size (32, 64 or 128)")
      ->check(CLI::IsMember({32, 64, 128}));
  app.add_option("--mlx-override", mlx_override_file,
                 "JSON file: module path -> {\"bits\", \"group_size\"} or false (unquantized), "
                 "written into config.json's quantization block")
      ->check(CLI::ExistingFile);
  app.add_option("--seed", seed, "Random seed");
  app.add_option("--vocab", vocab, "Synthetic vocabulary size (>= 259; without a tokenizer)")
      ->check(CLI::Range(259, 1 << 20));
  app.add_option("--hidden", hidden, "Hidden size")->check(CLI::Range(8, 1 << 16));
  app.add_option("--layers", layers, "Layers")->check(CLI::Range(1, 256));
  app.add_option("--heads", heads, "Attention heads")->check(CLI::Range(1, 1024));
  app.add_option("--kv-heads", kv_heads, "Key/value heads (GQA)")->check(CLI::Range(1, 1024));
  app.add_option("--head-dim", head_dim, "Head dimension (default hidden / heads; qwen3 tiny 32)")
      ->check(CLI::Range(2, 1024));
  app.add_option("--ffn", ffn, "FFN (intermediate) size")->check(CLI::Range(1, 1 << 20));
  app.add_option("--context", context, "max_position_embeddings")->check(CLI::Range(1, 1 << 24));
  app.add_option("--rope-theta", theta, "Rotary base")->check(CLI::PositiveNumber);
  app.add_option("--rope-scaling", rope_scaling, "none, linear, llama3, longrope or su")
      ->check(CLI::IsMember({"none", "linear", "llama3", "longrope", "su"}));
  app.add_option("--rope-factor", rope_factor, "linear / llama3 factor (default 2 / 8)")
      ->check(CLI::PositiveNumber);
  app.add_option("--original-context", original_context,
                 "llama3 / longrope: original_max_position_embeddings (tiny default: context / 4)")
      ->check(CLI::Range(2, 1 << 24));
  app.add_option("--sliding-window", window, "Sliding-window size (0: none; mistral tiny: 16)")
      ->check(CLI::Range(0, 1 << 24));
  auto* tied_flag = app.add_flag("--tied", tied, "Tie the output projection to the embedding");
  app.add_flag("--untied", untied, "Keep a separate output projection")->excludes(tied_flag);
  app.add_option("--eos-ids", eos_ids, "generation_config eos_token_id list (default: the vocab's)")
      ->delimiter(',');
  app.add_option("--shard-mb", shard_mb, "hf: split the weights into shards of about this size")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--single-layers", single_layers, "flux-transformer: single-stream blocks")
      ->check(CLI::Range(0, 256));
  app.add_option("--joint-dim", joint_dim, "flux-transformer: T5 width (joint_attention_dim)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("--pooled-dim", pooled_dim, "flux-transformer: CLIP pooled width")
      ->check(CLI::Range(1, 1 << 16));
  app.add_flag("--guidance-embeds", guidance_embeds,
               "flux-transformer: a guidance embedding (FLUX.1-dev)");
  bool f8_scaled = false;
  app.add_flag("--f8-scaled", f8_scaled,
               "flux-transformer, --dtype f8_e4m3/f8_e5m2: per-tensor scale_weight (scaled fp8)");
  return hearth::cli::run(app, argc, argv, [&] {
    const std::optional<QuantMix> mix = QuantMix::parse(dtype_name);
    const DType dtype = mix ? DType::kF32 : *hearth::dtype_from_name(dtype_name);
    if (arch == "flux-transformer" && !(mix && mix->medium)) {
      // One block type for every quantized matrix (city96's files), not llama.cpp's mixes.
      const DType flux_dtype = *hearth::dtype_from_name(dtype_name);
      make_flux_transformer(out, format == "gguf" && format_option->count() == 0 ? "hf" : format,
                            flux_dtype, seed,
                            {heads, head_dim, layers, single_layers, joint_dim, pooled_dim,
                             guidance_embeds, f8_scaled, format == "mflux" ? mlx_bits : 0});
      std::printf("wrote %s\n", out.c_str());
      return 0;
    }
    if (format == "mflux" && arch != "clip-text" && arch != "t5-encoder") {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "--format mflux is for --arch flux-transformer, clip-text or t5-encoder");
    }
    if (mix && (arch == "bert" || arch == "flux-transformer" || format != "gguf")) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "--dtype " + dtype_name + " is for --format gguf decoders");
    }
    const bool flux_part = arch == "flux-transformer" || arch == "clip-text" ||
                           arch == "t5-encoder" || arch == "flux-pipeline";
    if (flux_part && hearth::dtype_info(dtype).quantized) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "--arch " + arch + " is written in f32, f16 or bf16");
    }
    if (arch == "flux-pipeline") {
      make_flux_pipeline(out, dtype, seed, tokenizer_dir, guidance_embeds);
      std::printf("wrote %s\n", out.c_str());
      return 0;
    }
    if (arch == "clip-text" || arch == "t5-encoder") {
      make_text_encoder(arch, out, format == "gguf" ? "hf" : format, dtype, seed, tokenizer_dir,
                        {hidden, layers, heads, ffn, mlx_bits});
      std::printf("wrote %s\n", out.c_str());
      return 0;
    }
    if (format == "safetensors") {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "--format safetensors is for the text encoders");
    }
    if (arch == "bert") {
      if (shape == "phi3-mini") {
        throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "--shape phi3-mini is a decoder");
      }
      BertConfig bc = bert_shape(shape);
      const auto vocab_list = bert_vocab(tokenizer_dir);
      bc.vocab = static_cast<int>(vocab_list.size());
      BertMaker maker(bc, classifier, seed);
      maker.generate();
      if (format == "gguf") {
        if (pooling == "max") {
          throw hearth::Error(hearth::ErrorCode::kUnsupported,
                              "llama.cpp's bert GGUF has no max pooling");
        }
        maker.write_gguf(out, dtype, vocab_list, pooling);
      } else {
        maker.write_hf(out, dtype, vocab_list, tokenizer_dir, pooling, !no_normalize);
      }
      std::printf("wrote %s\n", out.c_str());
      return 0;
    }
    if (shape == "minilm") {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "--shape minilm is a bert shape");
    }
    if (format == "gguf" && mlx_bits > 0) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "--mlx-bits is for --format hf");
    }
    DecoderConfig c = decoder_defaults(arch_from_name(arch), shape);
    c.arch_name = arch;
    const Vocab v = load_vocab(tokenizer_dir, gguf_vocab);
    if (v.size > 0) {
      if (vocab && *vocab != v.size) {
        throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                            "--vocab " + std::to_string(*vocab) + " but the tokenizer has " +
                                std::to_string(v.size) + " tokens");
      }
      c.vocab = v.size;
      c.bos = v.bos;
      c.eos = v.eos;
    } else if (vocab) {
      c.vocab = *vocab;
    }
    if (!eos_ids.empty()) c.eos = eos_ids;
    if (hidden) c.hidden = *hidden;
    if (layers) c.layers = *layers;
    if (heads) c.heads = *heads;
    if (kv_heads) c.kv_heads = *kv_heads;
    if (ffn) c.ffn = *ffn;
    if (context) c.context = *context;
    if (theta) c.theta = *theta;
    if (window) c.sliding_window = *window;
    if (tied) c.tied = true;
    if (untied) c.tied = false;
    if (head_dim) {
      c.head_dim = *head_dim;
    } else if (c.arch != Arch::kQwen3 || hidden || heads) {
      c.head_dim = c.hidden / c.heads;
    }
    c.rope.type = rope_scaling;
    c.rope.factor = rope_factor ? *rope_factor : rope_scaling == "linear" ? 2.0 : 8.0;
    if (original_context) {
      c.rope.original_context = *original_context;
    } else if (shape == "tiny") {
      c.rope.original_context = rope_scaling == "none" ? c.context : c.context / 4;
    }
    if (c.head_dim % 2 != 0 || c.heads % c.kv_heads != 0 ||
        (!head_dim && c.hidden % c.heads != 0)) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                          "the head dimension must be even, heads a multiple of kv heads and "
                          "hidden a multiple of heads");
    }
    if (c.vocab <= 258 && v.size == 0) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "the synthetic vocab needs >= 259");
    }
    if ((rope_scaling == "longrope" || rope_scaling == "su") && c.arch != Arch::kPhi3) {
      throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "longrope is a phi3 rope scaling");
    }
    if (format == "gguf" && rope_scaling == "linear" && c.arch == Arch::kPhi3) {
      throw hearth::Error(hearth::ErrorCode::kUnsupported,
                          "llama.cpp's converter has no linear rope scaling for phi3");
    }
    json overrides = json::object();
    if (!mlx_override_file.empty()) {
      overrides = formats::read_json_file(mlx_override_file);
      for (const auto& [module, spec] : overrides.items()) {
        const bool off = spec.is_boolean() && !spec.get<bool>();
        const bool ok = spec.is_object() && spec.contains("bits") &&
                        spec["bits"].is_number_integer() &&
                        hearth::mlx::valid_bits(spec["bits"].get<int>()) &&
                        spec.contains("group_size") && spec["group_size"].is_number_integer() &&
                        hearth::mlx::valid_group_size(spec["group_size"].get<int>());
        if (!off && !ok) {
          throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                              "an override is {\"bits\": 2-6 or 8, \"group_size\": 32/64/128} or "
                              "false",
                              {.file = mlx_override_file, .key = module});
        }
      }
    }
    hearth::ThreadPool pool(common.threads);
    DecoderMaker maker(c, seed);
    if (format == "gguf") {
      maker.write_gguf(out, dtype, v, pool, mix ? &*mix : nullptr);
    } else {
      maker.write_hf(out, dtype, mlx_bits, group, overrides,
                     static_cast<std::uint64_t>(shard_mb * 1024.0 * 1024.0), v, pool);
    }
    std::printf("wrote %s (%lld parameters)\n", out.c_str(),
                static_cast<long long>(maker.parameters()));
    return 0;
  });
}
