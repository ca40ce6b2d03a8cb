#include "hearth/formats/gguf.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "hearth/core/error.hpp"
#include "support/fixtures.hpp"

namespace hearth::formats {
namespace {

std::span<const std::byte> as_bytes(const std::vector<float>& v) {
  return std::as_bytes(std::span(v));
}

// A writer holding every metadata type, nested arrays, and tensors of plain and block types.
struct Sample {
  std::vector<float> f32 = std::vector<float>(6 * 4, 0.5f);
  std::vector<std::byte> q4 = std::vector<std::byte>(2 * 18, std::byte{0x11});
  std::vector<std::byte> q6k = std::vector<std::byte>(210, std::byte{0x22});
  GGUFWriter writer;

  Sample() {
    writer.set("general.architecture", "llama");
    writer.set("u8", std::uint8_t{200});
    writer.set("i8", std::int8_t{-100});
    writer.set("u16", std::uint16_t{60000});
    writer.set("i16", std::int16_t{-30000});
    writer.set("u32", std::uint32_t{4000000000u});
    writer.set("i32", std::int32_t{-2000000000});
    writer.set("f32", 1.5f);
    writer.set("bool", true);
    writer.set("u64", std::uint64_t{1} << 63);
    writer.set("i64", std::int64_t{-(std::int64_t{1} << 62)});
    writer.set("f64", 2.25);
    writer.set("string", "h\xC3\xA9llo");
    writer.set("strings", GGUFArray{std::vector<std::string>{"a", "", "c"}});
    writer.set("floats", GGUFArray{std::vector<float>{1, 2, 3}});
    writer.set("bools", GGUFArray{std::vector<bool>{true, false, true}});
    writer.set("nested", GGUFArray{std::vector<GGUFArray>{
                             GGUFArray{std::vector<std::int32_t>{1, 2}},
                             GGUFArray{std::vector<std::int32_t>{}},
                         }});
    writer.add_tensor("plain", DType::kF32, {6, 4}, as_bytes(f32));
    writer.add_tensor("blocks.q4_0", DType::kQ4_0, {1, 64}, q4);
    writer.add_tensor("blocks.q6_K", DType::kQ6_K, {256}, q6k);
  }
};

TEST(GGUF, WriteThenReadPreservesEveryKeyValueAndTensorByte) {
  Sample s;
  const std::vector<std::byte> bytes = s.writer.serialize();
  const GGUFFile f = GGUFFile::parse(bytes, "mem.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  ASSERT_EQ(f.metadata().size(), 17u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(*f.find("u8")->get_if<std::uint8_t>(), 200);
  EXPECT_EQ(f.get_int("i8"), -100);
  EXPECT_EQ(f.get_int("u16"), 60000);
  EXPECT_EQ(f.get_int("i16"), -30000);
  EXPECT_EQ(f.get_int("u32"), 4000000000LL);
  EXPECT_EQ(f.get_int("i32"), -2000000000LL);
  EXPECT_EQ(f.get_number("f32"), 1.5);
  EXPECT_EQ(*f.find("bool")->get_if<bool>(), true);
  EXPECT_EQ(f.find("u64")->as_uint(), std::uint64_t{1} << 63);
  EXPECT_FALSE(f.find("u64")->as_int());  // does not fit in i64
  EXPECT_EQ(f.get_int("i64"), -(std::int64_t{1} << 62));
  EXPECT_EQ(f.get_number("f64"), 2.25);
  EXPECT_EQ(f.get_string("string"), "h\xC3\xA9llo");
  EXPECT_EQ(*f.get_array("strings").get_if<std::string>(),
            (std::vector<std::string>{"a", "", "c"}));
  EXPECT_EQ(*f.get_array("bools").get_if<bool>(), (std::vector<bool>{true, false, true}));
  const auto* nested = f.get_array("nested").get_if<GGUFArray>();
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ(*(*nested)[0].get_if<std::int32_t>(), (std::vector<std::int32_t>{1, 2}));
  EXPECT_EQ((*nested)[1].size(), 0u);

  ASSERT_EQ(f.tensors().size(), 3u);
  const GGUFTensorInfo* plain = f.find_tensor("plain");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->shape, (Shape{6, 4}));
  const TensorView v = f.view(*plain);
  ASSERT_EQ(v.nbytes, 96u);
  EXPECT_EQ(std::memcmp(v.data, s.f32.data(), 96), 0);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.data) % alignof(float), 0u);
  const TensorView q = f.view(*f.find_tensor("blocks.q6_K"));
  EXPECT_EQ(q.dtype, DType::kQ6_K);
  EXPECT_EQ(std::memcmp(q.data, s.q6k.data(), 210), 0);

  // Copying every key and tensor into a new writer reproduces the file byte for byte.
  GGUFWriter copy;
  for (const auto& [k, val] : f.metadata()) copy.set(k, val);
  for (const auto& t : f.tensors()) copy.add_tensor(t.name, t.dtype, t.shape, f.view(t).bytes());
  EXPECT_EQ(copy.serialize(), bytes);
}

TEST(GGUF, HonoursGeneralAlignmentAndVersion2) {
  std::vector<float> data(3, 1.0f);
  GGUFWriter w(2);
  w.set("general.alignment", std::uint32_t{64});
  w.add_tensor("a", DType::kF32, {3}, as_bytes(data));
  w.add_tensor("b", DType::kF32, {3}, as_bytes(data));
  const auto bytes = w.serialize();
  const GGUFFile f = GGUFFile::parse(bytes, "mem");
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.find_tensor("b")->offset, 64u);
}

TEST(GGUF, WriterRejectsInconsistentTensors) {
  std::vector<float> data(4);
  GGUFWriter w;
  EXPECT_THROW(w.add_tensor("x", DType::kF32, {5}, as_bytes(data)), Error);
  EXPECT_THROW(w.add_tensor("x", DType::kF32, {1, 1, 1, 1, 4}, as_bytes(data)), Error);
  EXPECT_THROW(w.add_tensor("x", DType::kU32, {4}, as_bytes(data)), Error);  // no ggml id
  w.add_tensor("x", DType::kF32, {4}, as_bytes(data));
  EXPECT_THROW(w.add_tensor("x", DType::kF32, {4}, as_bytes(data)), Error);
}

TEST(GGUF, FileRoundTripAndMissingKeys) {
  testing::TempDir dir;
  Sample s;
  s.writer.write(dir / "m.gguf");
  const GGUFFile f = GGUFFile::open(dir / "m.gguf");
  EXPECT_EQ(f.source(), (dir / "m.gguf").string());
  EXPECT_EQ(f.tensors().size(), 3u);
  try {
    f.get_string("no.such.key");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_EQ(e.where().key, "no.such.key");
    EXPECT_NE(std::string(e.what()).find("m.gguf"), std::string::npos);
  }
  EXPECT_THROW(f.get_string("u32"), Error);  // wrong type
  EXPECT_THROW(f.get_int("string"), Error);
}

// ---- the real files in ../shared/fixtures ----

TEST(GGUFFixtures, Stories260K) {
  HEARTH_REQUIRE_FIXTURE(path, "models/stories260K/stories260K-f32.gguf");
  const GGUFFile f = GGUFFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.architecture(), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 5);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(f.get_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f.get_int("llama.context_length"), 512);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_array("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(f.tensors().size(), 47u);  // embeddings + 5 x 9 + output norm (tied output)
  const GGUFTensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::kF32);
  EXPECT_EQ(emb->shape, (Shape{512, 64}));
  const GGUFTensorInfo* k = f.find_tensor("blk.4.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (Shape{32, 64}));  // 4 kv heads x head_dim 8
  const GGUFTensorInfo* ffn = f.find_tensor("blk.0.ffn_down.weight");
  ASSERT_NE(ffn, nullptr);
  EXPECT_EQ(ffn->shape, (Shape{64, 172}));
  std::uint64_t total = 0;
  for (const auto& t : f.tensors()) total += static_cast<std::uint64_t>(numel(t.shape));
  EXPECT_EQ(total, 260032u);
  EXPECT_LE(f.data_offset() + emb->offset + emb->nbytes, f.file_size());
}

struct VocabCase {
  const char* file;
  const char* model;
  std::size_t tokens;
  const char* arch;
};

TEST(GGUFFixtures, LlamaCppVocabFiles) {
  const VocabCase cases[] = {
      {"ggml-vocab-bert-bge.gguf", "bert", 30522, "bert"},
      {"ggml-vocab-phi-3.gguf", "llama", 32064, "phi3"},
      {"ggml-vocab-llama-spm.gguf", "llama", 32000, "llama"},
      {"ggml-vocab-gpt-2.gguf", "gpt2", 50257, "gpt2"},
  };
  for (const VocabCase& c : cases) {
    HEARTH_REQUIRE_FIXTURE(path, std::string("tokenizers/llamacpp-vocab/") + c.file);
    SCOPED_TRACE(c.file);
    const GGUFFile f = GGUFFile::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.architecture(), c.arch);
    EXPECT_EQ(f.get_string("tokenizer.ggml.model"), c.model);
    const GGUFArray& tokens = f.get_array("tokenizer.ggml.tokens");
    EXPECT_EQ(tokens.elem_type(), GGUFType::kString);
    EXPECT_EQ(tokens.size(), c.tokens);
    if (const GGUFValue* tt = f.find("tokenizer.ggml.token_type")) {
      EXPECT_EQ(tt->as_array()->size(), c.tokens);
    }
  }
  HEARTH_REQUIRE_FIXTURE(phi3, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  const GGUFFile f = GGUFFile::open(phi3);
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), 32000);
  EXPECT_EQ(f.get_int("phi3.block_count"), 32);
  EXPECT_NE(f.get_string("tokenizer.chat_template").find("<|assistant|>"), std::string::npos);
  EXPECT_EQ((*f.get_array("tokenizer.ggml.tokens").get_if<std::string>())[32000], "<|endoftext|>");
  HEARTH_REQUIRE_FIXTURE(gpt2, "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(GGUFFile::open(gpt2).get_array("tokenizer.ggml.merges").size(), 50000u);
}

TEST(GGUFFixtures, RealFileRoundTripsThroughTheWriter) {
  HEARTH_REQUIRE_FIXTURE(path, "models/stories260K/stories260K-f32.gguf");
  const GGUFFile f = GGUFFile::open(path);
  GGUFWriter w;
  for (const auto& [k, v] : f.metadata()) w.set(k, v);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.dtype, t.shape, f.view(t).bytes());
  testing::TempDir dir;
  w.write(dir / "copy.gguf");
  const GGUFFile g = GGUFFile::open(dir / "copy.gguf");
  ASSERT_EQ(g.metadata().size(), f.metadata().size());
  for (std::size_t i = 0; i < f.metadata().size(); ++i) {
    EXPECT_EQ(g.metadata()[i].first, f.metadata()[i].first);
    EXPECT_TRUE(g.metadata()[i].second == f.metadata()[i].second) << f.metadata()[i].first;
  }
  ASSERT_EQ(g.tensors().size(), f.tensors().size());
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const auto a = f.view(f.tensors()[i]);
    const auto b = g.view(g.tensors()[i]);
    EXPECT_EQ(g.tensors()[i].name, f.tensors()[i].name);
    EXPECT_EQ(b.shape, a.shape);
    ASSERT_EQ(b.nbytes, a.nbytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << f.tensors()[i].name;
  }
}

}  // namespace
}  // namespace hearth::formats
