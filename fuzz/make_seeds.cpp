// Writes the fuzz seed corpora: small GGUF and safetensors files that exercise every metadata
// type, nested arrays, alignment, plain and block-quantized tensors. Generated at build time so
// no binary seeds live in the repository.
//   hearth-fuzz-seeds OUT_DIR   (writes OUT_DIR/gguf/*.gguf and OUT_DIR/safetensors/*)
#include <cstdio>
#include <filesystem>
#include <vector>

#include "hearth/formats/gguf.hpp"
#include "hearth/formats/safetensors.hpp"

namespace fs = std::filesystem;
using namespace hearth;
using namespace hearth::formats;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: hearth-fuzz-seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out / "gguf");
  fs::create_directories(out / "safetensors");

  std::vector<float> f32(64);
  for (std::size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(i);
  const auto f32_bytes = std::as_bytes(std::span(f32));
  std::vector<std::byte> q8(2 * 34, std::byte{7});
  std::vector<std::byte> q4k(144, std::byte{9});

  {  // every value type
    GGUFWriter w;
    w.set("general.architecture", "llama");
    w.set("a.u8", std::uint8_t{1});
    w.set("a.i8", std::int8_t{-1});
    w.set("a.u16", std::uint16_t{2});
    w.set("a.i16", std::int16_t{-2});
    w.set("a.u32", std::uint32_t{3});
    w.set("a.i32", std::int32_t{-3});
    w.set("a.f32", 0.5f);
    w.set("a.bool", true);
    w.set("a.str", "text");
    w.set("a.u64", std::uint64_t{4});
    w.set("a.i64", std::int64_t{-4});
    w.set("a.f64", 0.25);
    w.set("a.tokens", GGUFArray{std::vector<std::string>{"<s>", "a", "b"}});
    w.set("a.scores", GGUFArray{std::vector<float>{0, -1, -2}});
    w.set("a.nested", GGUFArray{std::vector<GGUFArray>{GGUFArray{std::vector<std::int32_t>{1}}}});
    w.write(out / "gguf" / "kv.gguf");
  }
  {  // tensors of several types
    GGUFWriter w(3);
    w.set("general.architecture", "llama");
    w.add_tensor("token_embd.weight", DType::kF32, {4, 16}, f32_bytes);
    w.add_tensor("blk.0.attn_q.weight", DType::kQ8_0, {2, 32}, q8);
    w.add_tensor("blk.0.ffn_down.weight", DType::kQ4_K, {1, 256}, q4k);
    w.write(out / "gguf" / "tensors.gguf");
  }
  {  // version 2, custom alignment
    GGUFWriter w(2);
    w.set("general.alignment", std::uint32_t{64});
    w.add_tensor("a", DType::kF32, {8}, f32_bytes.subspan(0, 32));
    w.add_tensor("b", DType::kF32, {2, 2, 2, 2}, f32_bytes.subspan(0, 64));
    w.write(out / "gguf" / "aligned-v2.gguf");
  }
  {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    w.add_tensor("embeddings.weight", DType::kF32, {4, 8}, f32_bytes.subspan(0, 128));
    w.add_tensor("layer.bias", DType::kF16, {8}, f32_bytes.subspan(0, 16));
    w.add_tensor("packed", DType::kU32, {2, 2}, f32_bytes.subspan(0, 16));
    w.add_tensor("empty", DType::kBF16, {0}, {});
    w.write(out / "safetensors" / "mixed.safetensors");
  }
  {
    SafetensorsWriter w;
    w.add_tensor("x", DType::kI8, {3}, f32_bytes.subspan(0, 3));
    w.add_tensor("y", DType::kF64, {1, 1}, f32_bytes.subspan(0, 8));
    w.write(out / "safetensors" / "small.safetensors");
  }
  std::printf("wrote seeds to %s\n", out.c_str());
  return 0;
}
