// hearth-make-model --arch flux-pipeline: a tiny random FLUX.1 pipeline in both layouts hearth
// reads, from the same weights (see make_text_encoder.hpp).
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/formats/file_io.hpp"
#include "make_text_encoder.hpp"
#include "vae_weights.hpp"

namespace fs = std::filesystem;
using hearth::DType;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  hearth::formats::AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

void write_json(const fs::path& path, const nlohmann::json& j) {
  write_text(path, j.dump(2) + "\n");
}

void copy_folder(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) {
    if (e.is_regular_file()) {
      fs::copy_file(e.path(), to / e.path().filename(), fs::copy_options::overwrite_existing);
    }
  }
}

// UTF-8 of one code point (below 0x800: GPT-2's byte alphabet needs no more).
std::string utf8(unsigned cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// A CLIPTokenizer folder hearth and transformers read like FLUX.1's tokenizer/ (byte-level BPE,
// "</w>" word ends, lower-casing): every byte as a symbol, alone and with "</w>", no merges, and
// <|startoftext|> / <|endoftext|> as the two highest ids (CLIP's argmax pooling finds the end
// token). For tests that do not need the real CLIP vocabulary.
void write_small_clip_tokenizer(const fs::path& dir) {
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to 256 + n.
  std::vector<unsigned> cps(256);
  unsigned next = 256;
  for (unsigned b = 0; b < 256; ++b) {
    const bool kept = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    cps[b] = kept ? b : next++;
  }
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (unsigned b = 0; b < 256; ++b) vocab[utf8(cps[b])] = id++;
  for (unsigned b = 0; b < 256; ++b) vocab[utf8(cps[b]) + "</w>"] = id++;
  vocab["<|startoftext|>"] = id++;
  vocab["<|endoftext|>"] = id++;
  write_json(dir / "vocab.json", vocab);
  write_text(dir / "merges.txt", "#version: 0.2\n");
  write_json(dir / "tokenizer_config.json", {{"tokenizer_class", "CLIPTokenizer"},
                                             {"bos_token", "<|startoftext|>"},
                                             {"eos_token", "<|endoftext|>"},
                                             {"unk_token", "<|endoftext|>"},
                                             {"pad_token", "<|endoftext|>"},
                                             {"do_lower_case", true},
                                             {"model_max_length", 77}});
}

// A T5-style SentencePiece Unigram tokenizer.json (Metaspace, "$A </s>", <pad> 0, </s> 1, <unk>
// 2) over printable ASCII pieces and "▁" + letter, like FLUX.1's tokenizer_2/ in form.
void write_small_t5_tokenizer(const fs::path& dir) {
  nlohmann::json vocab = nlohmann::json::array();
  const auto piece = [&](const std::string& p, double score) {
    vocab.push_back(nlohmann::json::array({p, score}));
  };
  for (const char* s : {"<pad>", "</s>", "<unk>"}) piece(s, 0.0);
  piece("\xE2\x96\x81", -2.0);
  for (char c = 33; c < 127; ++c) piece(std::string(1, c), -5.0);
  for (char c = 'a'; c <= 'z'; ++c) piece("\xE2\x96\x81" + std::string(1, c), -4.0);
  const auto special = [](int id, const char* content) {
    return nlohmann::json{{"id", id},        {"content", content}, {"single_word", false},
                          {"lstrip", false}, {"rstrip", false},    {"normalized", false},
                          {"special", true}};
  };
  const nlohmann::json meta = {{"type", "Metaspace"},
                               {"replacement", "\xE2\x96\x81"},
                               {"add_prefix_space", true},
                               {"prepend_scheme", "always"}};
  nlohmann::json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {special(0, "<pad>"), special(1, "</s>"), special(2, "<unk>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer", meta},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}}},
      {"decoder", meta},
      {"model", {{"type", "Unigram"}, {"unk_id", 2}, {"vocab", vocab}, {"byte_fallback", false}}}};
  write_json(dir / "tokenizer.json", tok);
  write_json(dir / "tokenizer_config.json", {{"tokenizer_class", "T5Tokenizer"},
                                             {"eos_token", "</s>"},
                                             {"unk_token", "<unk>"},
                                             {"pad_token", "<pad>"},
                                             {"model_max_length", 512}});
}

}  // namespace

void make_flux_pipeline(const std::string& out, DType dtype, unsigned seed,
                        const std::string& tokenizer_dir, bool dev) {
  const fs::path root(out), diff = root / "diffusers", bfl = root / "bfl";
  // The tokenizers: the real ones where tokenizer_dir has them, else small stand-ins.
  const fs::path tok = root / "tokenizers";
  for (const char* part : {"tokenizer", "tokenizer_2"}) {
    const fs::path from = tokenizer_dir.empty() ? fs::path() : fs::path(tokenizer_dir) / part;
    if (!from.empty() && fs::is_directory(from)) {
      copy_folder(from, tok / part);
    } else if (std::string(part) == "tokenizer") {
      write_small_clip_tokenizer(tok / part);
    } else {
      write_small_t5_tokenizer(tok / part);
    }
  }
  const TextEncoderShape clip{64, 2, 1, 128}, t5{32, 2, 4, 48};
  const FluxTransformerShape dit{1, 128, 1, 1, 32, 64, dev};
  make_text_encoder("clip-text", (diff / "text_encoder").string(), "hf", dtype, seed + 1,
                    (tok / "tokenizer").string(), clip);
  make_text_encoder("t5-encoder", (diff / "text_encoder_2").string(), "hf", dtype, seed + 2,
                    (tok / "tokenizer_2").string(), t5);
  make_flux_transformer((diff / "transformer").string(), "hf", dtype, seed + 3, dit);
  const VaeShape vae{{32, 32, 32, 32}, 1, 16, 32};
  fs::create_directories(bfl);
  write_random_vae(diff / "vae", bfl / "ae.safetensors", dtype, vae, seed + 4);
  copy_folder(tok / "tokenizer", diff / "tokenizer");
  copy_folder(tok / "tokenizer_2", diff / "tokenizer_2");
  // FLUX.1-schnell's / -dev's scheduler_config.json and model_index.json.
  write_json(diff / "scheduler" / "scheduler_config.json",
             {{"_class_name", "FlowMatchEulerDiscreteScheduler"},
              {"_diffusers_version", "0.30.0"},
              {"base_image_seq_len", 256},
              {"base_shift", 0.5},
              {"max_image_seq_len", 4096},
              {"max_shift", 1.15},
              {"num_train_timesteps", 1000},
              {"shift", dev ? 3.0 : 1.0},
              {"use_dynamic_shifting", dev}});
  write_json(diff / "model_index.json",
             {{"_class_name", "FluxPipeline"},
              {"_diffusers_version", "0.30.0"},
              {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
              {"text_encoder", {"transformers", "CLIPTextModel"}},
              {"text_encoder_2", {"transformers", "T5EncoderModel"}},
              {"tokenizer", {"transformers", "CLIPTokenizer"}},
              {"tokenizer_2", {"transformers", "T5TokenizerFast"}},
              {"transformer", {"diffusers", "FluxTransformer2DModel"}},
              {"vae", {"diffusers", "AutoencoderKL"}}});
  // The same weights as BFL's and ComfyUI's single files, with the tokenizers beside them.
  const char* t5_name = dtype == DType::kF32   ? "t5xxl_fp32.safetensors"
                        : dtype == DType::kF16 ? "t5xxl_fp16.safetensors"
                                               : "t5xxl_bf16.safetensors";
  make_text_encoder("clip-text", (bfl / "clip_l.safetensors").string(), "safetensors", dtype,
                    seed + 1, (tok / "tokenizer").string(), clip);
  make_text_encoder("t5-encoder", (bfl / t5_name).string(), "safetensors", dtype, seed + 2,
                    (tok / "tokenizer_2").string(), t5);
  make_flux_transformer(
      (bfl / (dev ? "flux1-dev.safetensors" : "flux1-schnell.safetensors")).string(), "safetensors",
      dtype, seed + 3, dit);
  copy_folder(tok / "tokenizer", bfl / "tokenizer");
  copy_folder(tok / "tokenizer_2", bfl / "tokenizer_2");
  // mflux's saved model (unquantized: quantization_level None) of the same weights: transformer/,
  // text_encoder/, text_encoder_2/ and vae/ in its layout, and the tokenizers.
  const fs::path mf = root / "mflux";
  make_flux_transformer((mf / "transformer").string(), "mflux", dtype, seed + 3, dit);
  make_text_encoder("clip-text", (mf / "text_encoder").string(), "mflux", dtype, seed + 1,
                    (tok / "tokenizer").string(), clip);
  write_random_vae_mflux(mf / "vae", {}, dtype, vae, seed + 4, 0);
  make_text_encoder("t5-encoder", (mf / "text_encoder_2").string(), "mflux", dtype, seed + 2,
                    (tok / "tokenizer_2").string(), t5);
  copy_folder(tok / "tokenizer", mf / "tokenizer");
  copy_folder(tok / "tokenizer_2", mf / "tokenizer_2");
  fs::remove_all(tok);
}
