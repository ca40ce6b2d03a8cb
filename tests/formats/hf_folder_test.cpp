#include "hearth/formats/hf_folder.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "hearth/core/error.hpp"
#include "support/fixtures.hpp"

namespace hearth::formats {
namespace {
namespace fs = std::filesystem;

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// Expects ModelFolder::open to fail with code and a message containing fragment.
void expect_open_error(const fs::path& dir, ErrorCode code, const std::string& fragment) {
  try {
    ModelFolder::open(dir);
    ADD_FAILURE() << "open succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(HFFolderFixtures, Stories260K) {
  HEARTH_REQUIRE_FIXTURE(dir, "models/stories260K/hf");
  const ModelFolder m = ModelFolder::open(dir);
  EXPECT_EQ(m.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(m.model_type(), "llama");
  EXPECT_EQ(m.config()["num_hidden_layers"], 5);
  EXPECT_EQ(m.config()["num_key_value_heads"], 4);
  EXPECT_TRUE(m.tokenizer_files().tokenizer_json.has_value());
  EXPECT_TRUE(m.tokenizer_files().tokenizer_config.has_value());
  EXPECT_FALSE(m.tokenizer_files().vocab_txt.has_value());
  EXPECT_FALSE(m.quantization().has_value());
  ASSERT_EQ(m.shards().size(), 1u);
  EXPECT_EQ(m.tensors().size(), 47u);
  const auto q = m.find_tensor("model.layers.4.self_attn.q_proj.weight");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->info->shape, (Shape{64, 64}));
  EXPECT_EQ(ModelFolder::view(*q).dtype, DType::kF32);
  EXPECT_FALSE(m.find_tensor("lm_head.weight").has_value());  // tied embeddings
}

TEST(HFFolderFixtures, MiniLMTokenizerFolder) {
  HEARTH_REQUIRE_FIXTURE(dir, "tokenizers/minilm");
  const ModelFolder m = ModelFolder::open(dir);
  EXPECT_EQ(m.model_type(), "bert");
  EXPECT_EQ(m.config()["hidden_size"], 384);
  EXPECT_TRUE(m.tokenizer_files().vocab_txt.has_value());
  EXPECT_TRUE(m.tokenizer_files().special_tokens_map.has_value());
  ASSERT_EQ(m.st_modules().size(), 3u);
  EXPECT_EQ(m.st_modules()[1].path, "1_Pooling");
  EXPECT_TRUE(m.normalize());
  EXPECT_FALSE(m.pooling().has_value());  // the fixture has no 1_Pooling/config.json
  EXPECT_EQ(m.max_seq_length(), 256);
  EXPECT_TRUE(m.shards().empty());  // tokenizer files only, no weights
}

TEST(HFFolder, MlxQuantizedFolderFromTheModelMaker) {
  testing::TempDir tmp;
  const fs::path dir = tmp / "q4";
  std::string out;
  ASSERT_EQ(
      testing::run_command((testing::tools_dir() / "hearth-make-model").string() +
                               " --format hf --mlx-bits 4 --group-size 32 --out " + dir.string(),
                           &out),
      0)
      << out;
  const ModelFolder m = ModelFolder::open(dir);
  ASSERT_TRUE(m.quantization().has_value());
  EXPECT_EQ(m.quantization()->bits, 4);
  EXPECT_EQ(m.quantization()->group_size, 32);
  // embed_tokens, lm_head and q/k/v/o/gate/up of both layers (down_proj's 172 inputs are not a
  // multiple of the group, so the maker leaves it unquantized).
  EXPECT_EQ(m.quantized_weights().size(), 14u);
  const QuantizedWeight* q = m.find_quantized("model.layers.1.self_attn.k_proj");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->in_features, 64);
  EXPECT_EQ(q->out_features, 32);
  EXPECT_EQ(q->weight.info->shape, (Shape{32, 8}));  // 64 inputs x 4 bits / 32
  EXPECT_EQ(q->scales.info->shape, (Shape{32, 2}));
  EXPECT_EQ(q->biases.info->shape, (Shape{32, 2}));
  EXPECT_EQ(m.find_quantized("model.layers.0.mlp.down_proj"), nullptr);
  EXPECT_EQ(m.find_quantized("model.layers.1.self_attn"), nullptr);
}

// A folder with one quantized module "proj" ([4, words] U32, scales/biases [4, groups]) and a
// plain f16 "other.weight".
void write_quant_folder(const fs::path& dir, const std::string& config, Shape weight, Shape scales,
                        bool with_scales = true, bool with_biases = true,
                        DType scale_dtype = DType::kF16, DType bias_dtype = DType::kF16) {
  std::vector<std::uint32_t> w(static_cast<std::size_t>(numel(weight)));
  std::vector<std::uint32_t> s(static_cast<std::size_t>(numel(scales)));  // room for any type
  std::vector<std::uint16_t> other(16);
  SafetensorsWriter st;
  st.add_tensor("proj.weight", DType::kU32, weight, std::as_bytes(std::span(w)));
  const auto bytes = [&](DType t) {
    return std::as_bytes(std::span(s))
        .first(static_cast<std::size_t>(numel(scales)) *
               (t == DType::kF32 || t == DType::kI32 ? 4 : 2));
  };
  if (with_scales) st.add_tensor("proj.scales", scale_dtype, scales, bytes(scale_dtype));
  if (with_biases) st.add_tensor("proj.biases", bias_dtype, scales, bytes(bias_dtype));
  st.add_tensor("other.weight", DType::kF16, {4, 4}, std::as_bytes(std::span(other)));
  st.write(dir / "model.safetensors");
  write_text(dir / "config.json", config);
}

constexpr const char* kQ4G32 = R"({"quantization": {"group_size": 32, "bits": 4}})";

TEST(HFFolder, MlxQuantizationMismatchesAreErrors) {
  testing::TempDir tmp;
  // 8 words x 32 / 4 bits = 64 inputs = 2 groups of 32, but the scales have 3.
  write_quant_folder(tmp.path(), kQ4G32, {4, 8}, {4, 3});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "proj.scales");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "make 2 groups per row");
  // 3 words at 4 bits = 24 inputs: group 32 does not divide them.
  write_quant_folder(tmp.path(), kQ4G32, {4, 3}, {4, 1});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "does not divide the input width 24");
  // 8 words x 32 bits are not whole 3-bit codes.
  write_quant_folder(tmp.path(), R"({"quantization": {"group_size": 32, "bits": 3}})", {4, 8},
                     {4, 2});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "whole 3-bit codes");
  // Missing scales or biases.
  write_quant_folder(tmp.path(), kQ4G32, {4, 8}, {4, 2}, false);
  expect_open_error(tmp.path(), ErrorCode::kFormat, "no proj.scales");
  write_quant_folder(tmp.path(), kQ4G32, {4, 8}, {4, 2}, true, false);
  expect_open_error(tmp.path(), ErrorCode::kFormat, "no proj.biases");
  // Scale types.
  write_quant_folder(tmp.path(), kQ4G32, {4, 8}, {4, 2}, true, true, DType::kI32, DType::kI32);
  expect_open_error(tmp.path(), ErrorCode::kFormat, "scales must be F16, BF16 or F32, not i32");
  write_quant_folder(tmp.path(), kQ4G32, {4, 8}, {4, 2}, true, true, DType::kF16, DType::kBF16);
  expect_open_error(tmp.path(), ErrorCode::kFormat, "biases are bf16 but scales f16");
  // Packed scales without any quantization block.
  write_quant_folder(tmp.path(), R"({"architectures": ["X"]})", {4, 8}, {4, 2});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "no \"quantization\" block");
  // The config's own values.
  write_quant_folder(tmp.path(), R"({"quantization": {"group_size": 32, "bits": 7}})", {4, 8},
                     {4, 2});
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "bits 7");
  write_text(tmp / "config.json", R"({"quantization": {"group_size": 16, "bits": 4}})");
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "group_size 16");
  write_text(tmp / "config.json", R"({"quantization": {"group_size": "x", "bits": 4}})");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "integer");
  write_text(tmp / "config.json",
             R"({"quantization": {"group_size": 32, "bits": 4, "mode": "mxfp4"}})");
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "mode");
  write_text(tmp / "config.json",
             R"({"quantization": {"group_size": 32, "bits": 4, "proj": false}})");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "unquantized (false) but it has scales");
}

// mflux's saved folders: no config.json; the bits in every shard's "quantization_level"
// metadata, MLX's default group size 64.
TEST(HFFolder, MfluxQuantizationLevelMetadata) {
  testing::TempDir tmp;
  const auto write = [&](const char* level, Shape weight, Shape scales) {
    std::vector<std::uint32_t> w(static_cast<std::size_t>(numel(weight)));
    std::vector<std::uint16_t> sc(static_cast<std::size_t>(numel(scales)));
    SafetensorsWriter st;
    if (level != nullptr) st.set_metadata("quantization_level", level);
    st.set_metadata("mflux_version", "0.9.0");
    st.add_tensor("proj.weight", DType::kU32, weight, std::as_bytes(std::span(w)));
    st.add_tensor("proj.scales", DType::kBF16, scales, std::as_bytes(std::span(sc)));
    st.add_tensor("proj.biases", DType::kBF16, scales, std::as_bytes(std::span(sc)));
    fs::remove(tmp / "config.json");
    st.write(tmp / "0.safetensors");
  };
  write("4", {3, 16}, {3, 2});  // 16 words x 32 / 4 bits = 128 inputs = 2 groups of 64
  const ModelFolder f = ModelFolder::open(tmp.path());
  ASSERT_TRUE(f.quantization().has_value());
  EXPECT_EQ(f.quantization()->bits, 4);
  EXPECT_EQ(f.quantization()->group_size, 64);
  const QuantizedWeight* q = f.find_quantized("proj");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->in_features, 128);
  EXPECT_EQ(q->out_features, 3);
  write("8", {3, 16}, {3, 1});  // 64 inputs at 8 bits: one group
  EXPECT_EQ(ModelFolder::open(tmp.path()).find_quantized("proj")->in_features, 64);
  // Scales for groups of 32: the message names the group size and where it came from.
  write("4", {3, 16}, {3, 4});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "quantization_level");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "make 2 groups per row");
  write("3", {3, 16}, {3, 2});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "whole 3-bit codes");
  write("7", {3, 16}, {3, 2});
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "quantization_level \"7\"");
  write("four", {3, 16}, {3, 2});
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "quantization_level \"four\"");
  // Unquantized ("None") or no level at all, yet packed weights with scales.
  write("None", {3, 16}, {3, 2});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "no \"quantization\" block");
  write(nullptr, {3, 16}, {3, 2});
  expect_open_error(tmp.path(), ErrorCode::kFormat, "no \"quantization\" block");
}

TEST(HFFolder, MlxQuantizationBlocksAndOverrides) {
  testing::TempDir tmp;
  // quantization_config (newer mlx-lm writes both), bf16 scales, f32 scales.
  for (const DType t : {DType::kBF16, DType::kF32}) {
    write_quant_folder(
        tmp.path(), R"({"quantization_config": {"group_size": 32, "bits": 4, "mode": "affine"}})",
        {4, 8}, {4, 2}, true, true, t, t);
    const ModelFolder m = ModelFolder::open(tmp.path());
    ASSERT_TRUE(m.quantization().has_value());
    const QuantizedWeight* q = m.find_quantized("proj");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->in_features, 64);
    EXPECT_EQ(q->scales.info->dtype, t);
    EXPECT_EQ(m.find_quantized("other"), nullptr);
  }
  // A per-module override: proj at 8 bits, group 64 while the default is 4 bits, group 32.
  write_quant_folder(
      tmp.path(),
      R"({"quantization": {"group_size": 32, "bits": 4, "proj": {"group_size": 64, "bits": 8},
          "other": false}})",
      {4, 32}, {4, 2});
  const ModelFolder m = ModelFolder::open(tmp.path());
  const QuantizedWeight* q = m.find_quantized("proj");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->spec.bits, 8);
  EXPECT_EQ(q->spec.group_size, 64);
  EXPECT_EQ(q->in_features, 128);
  // The same tensors read with the default spec are 256 inputs: 8 groups, not 2.
  write_text(tmp / "config.json", kQ4G32);
  expect_open_error(tmp.path(), ErrorCode::kFormat, "make 8 groups per row");
}

TEST(HFFolder, ShardedWeightsThroughTheIndex) {
  testing::TempDir tmp;
  std::vector<float> a(4, 1.0f);
  std::vector<float> b(2, 2.0f);
  SafetensorsWriter s1;
  s1.add_tensor("a.weight", DType::kF32, {2, 2}, std::as_bytes(std::span(a)));
  s1.write(tmp / "model-00001-of-00002.safetensors");
  SafetensorsWriter s2;
  s2.add_tensor("b.weight", DType::kF32, {2}, std::as_bytes(std::span(b)));
  s2.write(tmp / "model-00002-of-00002.safetensors");
  write_text(tmp / "config.json", R"({"architectures": ["X"]})");
  const std::string good = R"({"metadata": {}, "weight_map": {
      "a.weight": "model-00001-of-00002.safetensors",
      "b.weight": "model-00002-of-00002.safetensors"}})";
  write_text(tmp / "model.safetensors.index.json", good);
  const ModelFolder m = ModelFolder::open(tmp.path());
  EXPECT_EQ(m.shards().size(), 2u);
  ASSERT_TRUE(m.find_tensor("b.weight").has_value());
  EXPECT_EQ(ModelFolder::view(*m.find_tensor("b.weight")).as<float>()[1], 2.0f);

  write_text(tmp / "model.safetensors.index.json",
             R"({"weight_map": {"a.weight": "model-00002-of-00002.safetensors"}})");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "index says");
  write_text(tmp / "model.safetensors.index.json",
             R"({"weight_map": {"a.weight": "../../etc/passwd"}})");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "outside the model folder");
  write_text(tmp / "model.safetensors.index.json",
             R"({"weight_map": {"a.weight": "missing.safetensors"}})");
  expect_open_error(tmp.path(), ErrorCode::kNotFound, "missing");
  write_text(tmp / "model.safetensors.index.json", R"({"weight_map": 3})");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "weight_map");
  write_text(tmp / "model.safetensors.index.json", R"({"weight_map": )");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "model.safetensors.index.json");

  // Without an index every *.safetensors is read; a tensor in two files is an error.
  fs::remove(tmp / "model.safetensors.index.json");
  SafetensorsWriter dup;
  dup.add_tensor("a.weight", DType::kF32, {2, 2}, std::as_bytes(std::span(a)));
  dup.write(tmp / "extra.safetensors");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "more than one weight file");
}

TEST(HFFolder, ConfigsAndPooling) {
  testing::TempDir tmp;
  write_text(tmp / "config.json", "{not json");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "config.json");
  write_text(tmp / "config.json", "[1, 2]");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "JSON object");
  write_text(tmp / "config.json", R"({"model_type": "bert"})");
  write_text(tmp / "modules.json",
             R"([{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])");
  write_text(tmp / "1_Pooling" / "config.json",
             R"({"word_embedding_dimension": 384, "pooling_mode_cls_token": true,
                 "pooling_mode_mean_tokens": false})");
  ModelFolder m = ModelFolder::open(tmp.path());
  ASSERT_TRUE(m.pooling().has_value());
  EXPECT_EQ(m.pooling()->mode, PoolingMode::kCls);
  EXPECT_EQ(m.pooling()->dimension, 384);
  EXPECT_FALSE(m.normalize());
  write_text(tmp / "1_Pooling" / "config.json",
             R"({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true})");
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "2 modes");
  write_text(tmp / "modules.json", R"([{"idx": "one", "path": "", "type": "x"}])");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "'idx': has the wrong JSON type (string)");
  write_text(tmp / "modules.json", R"([{"idx": 1e999}])");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "modules.json");
  write_text(tmp / "modules.json", R"([{"idx": 1, "path": "../x", "type": "a.Pooling"}])");
  expect_open_error(tmp.path(), ErrorCode::kFormat, "leaves the model folder");
  fs::remove(tmp / "modules.json");

  write_text(tmp / "pytorch_model.bin", "pickle");
  expect_open_error(tmp.path(), ErrorCode::kUnsupported, "safetensors");
  expect_open_error(tmp / "nope", ErrorCode::kNotFound, "does not exist");
  expect_open_error(tmp / "config.json", ErrorCode::kInvalidArgument, "found a file");
}

}  // namespace
}  // namespace hearth::formats
