// FLUX's text encoders against the independent torch reference (tools/text_encoder_reference.py
// on Debian's python3-torch, float64): tiny random CLIPTextModel and T5EncoderModel folders made
// by hearth-make-model in f32 and bf16 (with the real FLUX tokenizers when the fixtures are
// here), their hidden states and CLIP's pooled output; the single-file (ComfyUI) layout; and the
// checks FLUX loading applies. Skips the reference comparisons, saying why, without torch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/models/clip_text.hpp"
#include "hearth/models/flux_text.hpp"
#include "hearth/models/t5_encoder.hpp"
#include "hearth/tokenize/tokenizer.hpp"
#include "support/fixtures.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<std::int32_t>;

// Both f32 and bf16 weights are compared in f32 arithmetic against a float64 reference over the
// same stored values; outputs are O(1) (after a final norm, at most 3.6 here).
constexpr double kTolerance = 2e-5;  // observed at most 4e-6

void write_text(const fs::path& path, const std::string& text) {
  testing::write_bytes(
      path, std::vector<std::byte>(reinterpret_cast<const std::byte*>(text.data()),
                                   reinterpret_cast<const std::byte*>(text.data()) + text.size()));
}

nlohmann::json reference(const fs::path& model, const std::vector<Ids>& seqs,
                         const testing::TempDir& tmp) {
  write_text(tmp / "ids.json", nlohmann::json({{"sequences", seqs}}).dump());
  std::string log;
  const int rc = testing::run_command(
      testing::cat({testing::kSystemPython, " ",
                    testing::quote(testing::source_dir() / "tools/text_encoder_reference.py"),
                    " --model ", testing::quote(model), " --input ",
                    testing::quote(tmp / "ids.json"), " --output ",
                    testing::quote(tmp / "ref.json")}),
      &log);
  EXPECT_EQ(rc, 0) << log;
  return rc == 0 ? nlohmann::json::parse(formats::read_text_file(tmp / "ref.json"))
                 : nlohmann::json();
}

double max_diff(const std::vector<float>& got, const nlohmann::json& want) {
  const auto w = want.get<std::vector<double>>();
  EXPECT_EQ(got.size(), w.size());
  double m = 0.0;
  for (std::size_t i = 0; i < std::min(got.size(), w.size()); ++i) {
    m = std::max(m, std::abs(got[i] - w[i]));
  }
  return m;
}

// The real FLUX tokenizer folder when present, else "" (a synthetic vocabulary).
std::string tokenizer_dir(const char* name) {
  const fs::path dir = testing::fixture(std::string("tokenizers/flux/") + name);
  return dir.empty() ? "" : dir.string();
}

// Prompt ids from the real tokenizer padded as FLUX does, plus random ids of other lengths.
std::vector<Ids> inputs(const fs::path& model, std::size_t limit, const std::string& pad,
                        std::int32_t vocab, std::vector<std::size_t> lengths) {
  std::vector<Ids> seqs;
  if (fs::exists(model / "tokenizer_config.json")) {
    const auto tok = tokenize::Tokenizer::load(model);
    seqs.push_back(
        flux_prompt_tokens(tok, "a photo of a cat in a spacesuit, 35mm", limit, pad).ids);
  }
  std::mt19937 rng(5);
  for (const std::size_t n : lengths) {
    Ids ids(n);
    for (auto& id : ids) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
    seqs.push_back(ids);
  }
  return seqs;
}

class TextEncoderReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TextEncoderReference, ClipHiddenAndPooledMatchTorch) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  const std::string tok = tokenizer_dir("tokenizer");
  testing::make_model("--arch clip-text --format hf --seed 3 --dtype " + GetParam() +
                      (tok.empty() ? "" : " --tokenizer-dir " + testing::quote(tok)) + " --out " +
                      testing::quote(tmp / "clip"));
  ASSERT_FALSE(HasFatalFailure());
  TextEncoderOptions o;
  o.threads = 2;
  const auto m = ClipTextModel::load(tmp / "clip", o);
  EXPECT_EQ(m->config().hidden, 32);
  EXPECT_EQ(m->config().layers, 2);
  EXPECT_EQ(m->config().act, kernels::Activation::kQuickGelu);
  const auto seqs = inputs(tmp / "clip", kFluxClipTokens, "<|endoftext|>",
                           static_cast<std::int32_t>(m->config().vocab), {1, 9, 77});
  const auto ref = reference(tmp / "clip", seqs, tmp);
  ASSERT_FALSE(ref.is_null());
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    const ClipTextOutput out = m->encode(seqs[s]);
    EXPECT_LT(max_diff(out.hidden, ref["hidden"][s]), kTolerance) << "sequence " << s;
    EXPECT_LT(max_diff(out.pooled, ref["pooled"][s]), kTolerance) << "sequence " << s;
  }
  if (!tok.empty()) {
    // The pooled token of a padded prompt is its first <|endoftext|>.
    const Ids& p = seqs[0];
    EXPECT_EQ(p[static_cast<std::size_t>(m->pooled_position(p))], 49407);
    EXPECT_EQ(p[static_cast<std::size_t>(m->pooled_position(p)) - 1] != 49407, true);
  }
}

TEST_P(TextEncoderReference, T5HiddenStatesMatchTorch) {
  HEARTH_REQUIRE_TORCH();
  testing::TempDir tmp;
  const std::string tok = tokenizer_dir("tokenizer_2");
  testing::make_model("--arch t5-encoder --format hf --seed 4 --dtype " + GetParam() +
                      (tok.empty() ? "" : " --tokenizer-dir " + testing::quote(tok)) + " --out " +
                      testing::quote(tmp / "t5"));
  ASSERT_FALSE(HasFatalFailure());
  TextEncoderOptions o;
  o.threads = 2;
  const auto m = T5Encoder::load(tmp / "t5", o);
  EXPECT_EQ(m->config().d_model, 32);
  EXPECT_EQ(m->config().vocab, tok.empty() ? 1024 : 32128);
  // 300 tokens reach past max_distance 128 (the logarithmic buckets and the last one).
  const auto seqs =
      inputs(tmp / "t5", 64, "<pad>", static_cast<std::int32_t>(m->config().vocab), {1, 7, 300});
  const auto ref = reference(tmp / "t5", seqs, tmp);
  ASSERT_FALSE(ref.is_null());
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    EXPECT_LT(max_diff(m->encode(seqs[s]), ref["hidden"][s]), kTolerance) << "sequence " << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TextEncoderReference, ::testing::Values("f32", "bf16"),
                         [](const auto& info) { return info.param; });

// The buckets of T5's relative position bias at the edges of the exact, logarithmic and
// saturated ranges (32 buckets, max distance 128: 8 exact per direction, 16 per direction).
TEST(T5Buckets, BidirectionalExactLogAndSaturated) {
  EXPECT_EQ(t5_relative_bucket(0, 32, 128), 0);
  EXPECT_EQ(t5_relative_bucket(-7, 32, 128), 7);
  EXPECT_EQ(t5_relative_bucket(7, 32, 128), 23);
  EXPECT_EQ(t5_relative_bucket(-8, 32, 128), 8);
  EXPECT_EQ(t5_relative_bucket(-16, 32, 128), 10);   // 8 + int(log(2) / log(16) * 8) = 10
  EXPECT_EQ(t5_relative_bucket(-127, 32, 128), 15);  // 8 + int(7.97) = 15
  EXPECT_EQ(t5_relative_bucket(-1000, 32, 128), 15);
  EXPECT_EQ(t5_relative_bucket(1000, 32, 128), 31);
  for (std::int64_t r = -600; r < 600; ++r) {
    const auto b = t5_relative_bucket(r, 32, 128);
    ASSERT_GE(b, 0);
    ASSERT_LT(b, 32);
    ASSERT_EQ(b >= 16, r > 0) << r;
  }
}

TEST(TextEncoders, SingleFileLayoutGivesTheFolderResult) {
  testing::TempDir tmp;
  // Heads of 64 (the width a single file's head count is inferred from) for CLIP.
  for (const auto& [arch, shape] : {std::pair{std::string("clip-text"), " --hidden 128 --heads 2"},
                                    std::pair{std::string("t5-encoder"), ""}}) {
    testing::make_model("--arch " + arch + shape + " --format hf --seed 7 --dtype bf16 --out " +
                        testing::quote(tmp / (arch + "-hf")));
    testing::make_model("--arch " + arch + shape +
                        " --format safetensors --seed 7 --dtype bf16 --out " +
                        testing::quote(tmp / (arch + ".safetensors")));
    ASSERT_FALSE(HasFatalFailure());
  }
  const Ids ids = {5, 17, 900, 3, 1023, 0, 8};
  TextEncoderOptions o;
  o.threads = 1;
  const auto c1 = ClipTextModel::load(tmp / "clip-text-hf", o);
  const auto c2 = ClipTextModel::load(tmp / "clip-text.safetensors", o);
  EXPECT_EQ(c2->config().heads, 2);
  EXPECT_EQ(c2->config().layers, 2);
  EXPECT_EQ(c2->config().ffn, 64);
  EXPECT_EQ(c2->config().max_positions, 77);
  const ClipTextOutput a = c1->encode(ids), b = c2->encode(ids);
  EXPECT_EQ(a.hidden, b.hidden);
  EXPECT_EQ(a.pooled, b.pooled);
  EXPECT_EQ(c1->pooled_position(ids), 4);  // argmax: the highest id, 1023
  const auto t1 = T5Encoder::load(tmp / "t5-encoder-hf", o);
  const auto t2 = T5Encoder::load(tmp / "t5-encoder.safetensors", o);
  EXPECT_EQ(t2->config().heads, 4);
  EXPECT_EQ(t2->config().d_kv, 8);
  EXPECT_EQ(t2->config().d_ff, 48);
  EXPECT_EQ(t2->config().layers, 2);
  EXPECT_EQ(t1->encode(ids), t2->encode(ids));
}

double rel_rms(const std::vector<float>& got, const std::vector<float>& want) {
  double d = 0, r = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    d += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    r += double(want[i]) * want[i];
  }
  return std::sqrt(d / r);
}

// mflux's saved text_encoder/: unquantized, the folder result exactly; MLX-quantized (every
// matrix and both embedding tables, as mflux-save --quantize), within a bound. An affine code's
// rounding error is uniform over +-s/2 with s = range / (2^bits - 1); a group of 64 normal
// weights spans about 4.8 sigma, so the weights move by 4.8 / (255 sqrt 12) = 0.5% of their RMS
// at 8 bits and 4.8 / (15 sqrt 12) = 9% at 4 bits, and each product's output by about as much
// (independent errors). On AVX2 / AVX-512 the affine kernels also round every activation row to
// int8 (the transformer's mflux test measures that alone at about 10% max-abs / RMS, a few % in
// RMS). Seven products in a row (embeddings, 2 x 3 per layer) compound those terms: measured
// 2.9% (8-bit) and 19% (4-bit) of the hidden states' RMS here; the bounds are 8% and 40%.
TEST(TextEncoders, MfluxClipFolderGivesTheFolderResult) {
  testing::TempDir tmp;
  const std::string shape =
      " --arch clip-text --hidden 128 --heads 2 --ffn 128 --seed 7 --dtype bf16";
  testing::make_model(shape + " --format hf --out " + testing::quote(tmp / "hf"));
  for (const int bits : {0, 8, 4}) {
    testing::make_model(shape + " --format mflux --mlx-bits " + std::to_string(bits) + " --out " +
                        testing::quote(tmp / ("mflux" + std::to_string(bits))));
  }
  ASSERT_FALSE(HasFatalFailure());
  const Ids ids = {5, 17, 900, 3, 1023, 0, 8};
  TextEncoderOptions o;
  o.threads = 1;
  const auto ref = ClipTextModel::load(tmp / "hf", o);
  const ClipTextOutput want = ref->encode(ids);
  for (const auto& [bits, bound] : {std::pair{0, 0.0}, std::pair{8, 0.08}, std::pair{4, 0.4}}) {
    const auto m = ClipTextModel::load(tmp / ("mflux" + std::to_string(bits)), o);
    EXPECT_EQ(m->config().hidden, 128);
    EXPECT_EQ(m->config().heads, 2);
    EXPECT_EQ(m->config().layers, 2);
    EXPECT_EQ(m->config().ffn, 128);
    EXPECT_EQ(m->config().vocab, 1024);
    EXPECT_EQ(m->config().max_positions, 77);
    const ClipTextOutput got = m->encode(ids);
    if (bits == 0) {
      EXPECT_EQ(got.hidden, want.hidden);
      EXPECT_EQ(got.pooled, want.pooled);
      continue;
    }
    const double d = rel_rms(got.hidden, want.hidden);
    std::printf("mflux CLIP %d-bit: hidden RMS difference / RMS %.4f (bound %.2f)\n", bits, d,
                bound);
    EXPECT_GT(d, 0.0);
    EXPECT_LT(d, bound);
    EXPECT_LT(rel_rms(got.pooled, want.pooled), bound);
  }
}

// The shard rewritten with one tensor dropped or reshaped.
void rewrite_shard(const fs::path& file, const std::string& name, const Shape* new_shape) {
  const auto f = formats::SafetensorsFile::open(file);
  formats::SafetensorsWriter w;
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  std::vector<std::vector<std::byte>> bytes;
  bytes.reserve(f.tensors().size());
  for (const auto& t : f.tensors()) {
    if (t.name == name && new_shape == nullptr) continue;
    const TensorView v = f.view(t);
    const Shape& shape = t.name == name ? *new_shape : t.shape;
    bytes.emplace_back(v.data,
                       v.data + *dtype_bytes(t.dtype, static_cast<std::uint64_t>(numel(shape))));
    w.add_tensor(t.name, t.dtype, shape, bytes.back());
  }
  w.write(file.string() + ".new");
  fs::rename(file.string() + ".new", file);
}

TEST(TextEncoders, BrokenMfluxClipFoldersNameFileAndTensor) {
  testing::TempDir tmp;
  const auto make = [&] {
    testing::make_model(
        "--arch clip-text --hidden 128 --heads 2 --ffn 128 --format mflux --mlx-bits 8 --out " +
        testing::quote(tmp / "m"));
  };
  const fs::path shard = tmp / "m" / "0.safetensors";
  const auto error_of = [&]() -> Error {
    try {
      ClipTextModel::load(tmp / "m");
    } catch (const Error& e) {
      return e;
    }
    return Error(ErrorCode::kInternal, "(no error)");
  };
  make();
  ASSERT_FALSE(HasFatalFailure());
  rewrite_shard(shard, "text_model.encoder.layers.1.self_attn.v_proj.bias", nullptr);
  Error e = error_of();
  EXPECT_NE(std::string(e.what()).find("text_model.encoder.layers.1.self_attn.v_proj.bias"),
            std::string::npos)
      << e.what();
  EXPECT_NE(std::string(e.what()).find("0.safetensors"), std::string::npos) << e.what();
  // Codes for 64 inputs where the layer takes 128.
  make();
  ASSERT_FALSE(HasFatalFailure());
  const Shape half{128, 16};
  rewrite_shard(shard, "text_model.encoder.layers.0.mlp.fc2.weight", &half);
  e = error_of();
  EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
  EXPECT_NE(std::string(e.what()).find("text_model.encoder.layers.0.mlp.fc2"), std::string::npos)
      << e.what();
  EXPECT_NE(std::string(e.what()).find("0.safetensors"), std::string::npos) << e.what();
}

// mflux's saved text_encoder_2/ (its names, block 0's position bias copied into every block):
// unquantized, the Hugging Face folder's result exactly; MLX-quantized, within a bound. 64 heads
// of 8 over a width of 64 make every matrix and both tables (shared, and the [32, 64] position
// bias, an nn.Embedding that mflux quantizes too) whole groups of 64, so all are quantized.
// The error terms are CLIP's (MfluxClipFolderGivesTheFolderResult above): about 0.5% (8-bit) and
// 9% (4-bit) of the weights' RMS per product plus the int8 activation rows, over the embedding,
// the position bias and seven products per layer (the gated product wi_0 x wi_1 adds two
// errors), two layers, where CLIP has three per layer: measured 4.6% (8-bit) and 32% (4-bit) of
// the hidden states' RMS here (seed 7); the bounds are 10% and 45% (wi_0 and wi_1 read swapped
// gives 59% and 64%).
TEST(TextEncoders, MfluxT5FolderGivesTheFolderResult) {
  testing::TempDir tmp;
  const std::string shape = " --arch t5-encoder --hidden 64 --heads 64 --ffn 128 --seed 7";
  testing::make_model(shape + " --format hf --dtype f32 --out " + testing::quote(tmp / "hf"));
  for (const int bits : {0, 8, 4}) {
    testing::make_model(shape + " --format mflux --dtype f32 --mlx-bits " + std::to_string(bits) +
                        " --out " + testing::quote(tmp / ("mflux" + std::to_string(bits))));
  }
  ASSERT_FALSE(HasFatalFailure());
  const auto shard = formats::SafetensorsFile::open(tmp / "mflux8" / "0.safetensors");
  for (const char* name :
       {"t5_blocks.1.attention.SelfAttention.relative_attention_bias.scales",
        "t5_blocks.1.ff.DenseReluDense.wo.biases", "shared.scales", "final_layer_norm.weight"}) {
    EXPECT_NE(shard.find_tensor(name), nullptr) << name;
  }
  const Ids ids = {5, 17, 900, 3, 1023, 0, 8, 1};
  TextEncoderOptions o;
  o.threads = 1;
  const auto ref = T5Encoder::load(tmp / "hf", o);
  const std::vector<float> want = ref->encode(ids);
  for (const auto& [bits, bound] : {std::pair{0, 0.0}, std::pair{8, 0.1}, std::pair{4, 0.45}}) {
    const auto m = T5Encoder::load(tmp / ("mflux" + std::to_string(bits)), o);
    EXPECT_EQ(m->config().d_model, 64);
    EXPECT_EQ(m->config().heads, 64);
    EXPECT_EQ(m->config().d_kv, 8);
    EXPECT_EQ(m->config().d_ff, 128);
    EXPECT_EQ(m->config().layers, 2);
    EXPECT_EQ(m->config().vocab, 1024);
    EXPECT_EQ(m->config().num_buckets, 32);
    const std::vector<float> got = m->encode(ids);
    if (bits == 0) {
      EXPECT_EQ(got, want);
      continue;
    }
    const double d = rel_rms(got, want);
    std::printf("mflux T5 %d-bit: hidden RMS difference / RMS %.4f (bound %.2f)\n", bits, d, bound);
    EXPECT_GT(d, 0.0);
    EXPECT_LT(d, bound);
  }
}

TEST(TextEncoders, BrokenMfluxT5FoldersNameFileAndTensor) {
  testing::TempDir tmp;
  const auto make = [&] {
    testing::make_model(
        "--arch t5-encoder --hidden 64 --heads 64 --ffn 128 --format mflux --mlx-bits 8 --out " +
        testing::quote(tmp / "m"));
  };
  const fs::path shard = tmp / "m" / "0.safetensors";
  const auto error_of = [&]() -> Error {
    try {
      T5Encoder::load(tmp / "m");
    } catch (const Error& e) {
      return e;
    }
    return Error(ErrorCode::kInternal, "(no error)");
  };
  const auto expect_names = [&](const Error& e, const std::string& tensor) {
    EXPECT_NE(std::string(e.what()).find(tensor), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0.safetensors"), std::string::npos) << e.what();
  };
  make();
  ASSERT_FALSE(HasFatalFailure());
  rewrite_shard(shard, "t5_blocks.1.ff.layer_norm.weight", nullptr);
  expect_names(error_of(), "t5_blocks.1.ff.layer_norm.weight");
  // A packed weight without its scales, then without its biases.
  for (const char* part : {".scales", ".biases"}) {
    make();
    ASSERT_FALSE(HasFatalFailure());
    rewrite_shard(shard, std::string("t5_blocks.0.attention.SelfAttention.k") + part, nullptr);
    const Error e = error_of();
    EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
    expect_names(e, std::string("t5_blocks.0.attention.SelfAttention.k") + part);
  }
  // Codes for 64 inputs where wo takes 128.
  make();
  ASSERT_FALSE(HasFatalFailure());
  const Shape half{64, 16};
  rewrite_shard(shard, "t5_blocks.0.ff.DenseReluDense.wo.weight", &half);
  const Error e = error_of();
  EXPECT_EQ(e.code(), ErrorCode::kFormat) << e.what();
  expect_names(e, "t5_blocks.0.ff.DenseReluDense.wo");
}

// eos_token_id 2 (FLUX.1's config) pools at the argmax of the ids; any other value at its first
// occurrence, as transformers' CLIPTextTransformer does.
TEST(TextEncoders, ClipPoolsAtTheConfiguredEndToken) {
  testing::TempDir tmp;
  testing::make_model("--arch clip-text --format hf --out " + testing::quote(tmp / "clip"));
  ASSERT_FALSE(HasFatalFailure());
  const Ids ids = {1, 900, 7, 1000, 7, 3};
  const auto legacy = ClipTextModel::load(tmp / "clip");
  EXPECT_EQ(legacy->pooled_position(ids), 3);
  auto cfg = nlohmann::json::parse(formats::read_text_file(tmp / "clip/config.json"));
  cfg["eos_token_id"] = 7;
  write_text(tmp / "clip/config.json", cfg.dump());
  const auto m = ClipTextModel::load(tmp / "clip");
  EXPECT_EQ(m->pooled_position(ids), 2);
  EXPECT_EQ(m->pooled_position(Ids{4, 5}), 0);  // no end token: position 0, as transformers
  const ClipTextOutput out = m->encode(ids);
  const std::int64_t h = m->config().hidden;
  EXPECT_EQ(out.pooled, std::vector<float>(out.hidden.begin() + 2 * h, out.hidden.begin() + 3 * h));
}

TEST(TextEncoders, FluxRefusesAT5OfTheWrongWidthNamingTheFile) {
  testing::TempDir tmp;
  testing::make_model("--arch t5-encoder --format hf --out " + testing::quote(tmp / "t5"));
  ASSERT_FALSE(HasFatalFailure());
  const auto m = T5Encoder::load(tmp / "t5");
  try {
    check_flux_t5(m->config(), m->source());
    FAIL() << "a 32-wide T5 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("4096"), std::string::npos) << e.what();
    EXPECT_NE(e.where().file.find("t5"), std::string::npos) << e.where().file;
  }
  T5EncoderConfig xxl;
  EXPECT_NO_THROW(check_flux_t5(xxl, "t5xxl_fp16.safetensors"));
  ClipTextConfig clip_l;
  EXPECT_NO_THROW(check_flux_clip(clip_l, "clip_l.safetensors"));
  clip_l.hidden = 1280;
  EXPECT_THROW(check_flux_clip(clip_l, "clip_g.safetensors"), Error);
}

TEST(TextEncoders, MalformedFilesAreErrorsNamingFileAndTensor) {
  testing::TempDir tmp;
  testing::make_model("--arch clip-text --format hf --out " + testing::quote(tmp / "clip"));
  ASSERT_FALSE(HasFatalFailure());
  // A config that disagrees with the weights.
  auto cfg = nlohmann::json::parse(formats::read_text_file(tmp / "clip/config.json"));
  cfg["intermediate_size"] = 65;
  write_text(tmp / "clip/config.json", cfg.dump());
  try {
    ClipTextModel::load(tmp / "clip");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(e.where().key.find("mlp.fc1.weight"), std::string::npos) << e.where().key;
    EXPECT_NE(e.where().file.find("clip"), std::string::npos) << e.where().file;
  }
  cfg["model_type"] = "t5";
  write_text(tmp / "clip/config.json", cfg.dump());
  EXPECT_THROW(ClipTextModel::load(tmp / "clip"), Error);
  // A safetensors file of something else.
  testing::make_model("--arch t5-encoder --format safetensors --out " +
                      testing::quote(tmp / "t5.safetensors"));
  ASSERT_FALSE(HasFatalFailure());
  try {
    ClipTextModel::load(tmp / "t5.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_NE(e.where().file.find("t5.safetensors"), std::string::npos);
  }
  EXPECT_THROW(T5Encoder::load(tmp / "missing"), Error);
  const auto t5 = T5Encoder::load(tmp / "t5.safetensors");
  EXPECT_THROW(t5->encode(Ids{}), Error);
  EXPECT_THROW(t5->encode(Ids{5000}), Error);  // outside the 1,024-entry table
}

}  // namespace
}  // namespace hearth::models
