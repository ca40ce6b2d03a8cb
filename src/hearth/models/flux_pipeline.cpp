#include "hearth/models/flux_pipeline.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>
#include <random>
#include <utility>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/gguf.hpp"
#include "hearth/formats/hf_cache.hpp"
#include "hearth/formats/hf_folder.hpp"
#include "hearth/formats/npy.hpp"
#include "hearth/formats/safetensors.hpp"
#include "hearth/models/clip_text.hpp"
#include "hearth/models/flux_text.hpp"
#include "hearth/models/t5_encoder.hpp"
#include "hearth/models/vae.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace hearth::models {
namespace {

namespace fs = std::filesystem;
using i64 = std::int64_t;

constexpr float kDefaultGuidance = 3.5f;
constexpr std::int64_t kDefaultSide = 1024;
constexpr std::size_t kMaxT5Length = 512;  // diffusers' max_sequence_length limit
constexpr i64 kLatentChannels = 16;
constexpr i64 kVaeScale = 8;

bool present(const fs::path& p) {
  std::error_code ec;
  return !p.empty() && fs::exists(p, ec);
}

std::string show(const fs::path& p) {
  return printable(p.string(), 300);
}

// The repo ids "schnell" and "dev" stand for.
std::string repo_for(const std::string& model) {
  if (model == "schnell") return "black-forest-labs/FLUX.1-schnell";
  if (model == "dev") return "black-forest-labs/FLUX.1-dev";
  return model;
}

// A tensor's shape in a safetensors file's header (nothing else read); empty when absent.
Shape header_shape(const formats::SafetensorsFile& f, const std::string& name) {
  const formats::SafetensorsTensorInfo* t = f.find_tensor(name);
  return t != nullptr ? t->shape : Shape{};
}

struct Missing {
  std::vector<std::string> lines;
  void need(const fs::path& p, const std::string& what) {
    if (!present(p)) lines.push_back(what + " (" + show(p) + ")");
  }
  void raise(const std::string& model, const std::string& file) const {
    if (lines.empty()) return;
    std::string msg = "the FLUX model " + printable(model, 200) + " lacks ";
    for (std::size_t i = 0; i < lines.size(); ++i) msg += (i ? "; " : "") + lines[i];
    throw Error(ErrorCode::kNotFound, msg, {.file = file});
  }
};

// The first existing name among dirs x names, or empty.
fs::path find_in(const std::vector<fs::path>& dirs, const std::vector<std::string>& names) {
  for (const fs::path& d : dirs) {
    for (const std::string& n : names) {
      if (present(d / n)) return d / n;
    }
  }
  return {};
}

std::string list(const std::vector<fs::path>& dirs) {
  std::string s;
  for (const fs::path& d : dirs) s += (s.empty() ? "" : ", ") + show(d);
  return s;
}

// t5xxl_fp16 (ComfyUI's usual file), then other plain types, then any t5xxl*.safetensors.
fs::path find_t5(const std::vector<fs::path>& dirs) {
  if (fs::path p = find_in(dirs, {"t5xxl_fp16.safetensors", "t5xxl_bf16.safetensors",
                                  "t5xxl_fp32.safetensors", "t5xxl.safetensors"});
      !p.empty()) {
    return p;
  }
  for (const fs::path& d : dirs) {
    std::error_code ec;
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      const std::string n = e.path().filename().string();
      if (n.starts_with("t5xxl") && n.ends_with(".safetensors")) found.push_back(e.path());
    }
    if (!found.empty()) return *std::min_element(found.begin(), found.end());
  }
  return {};
}

struct TransformerHeader {
  Shape img_in, txt_in, vec_in;
  bool guidance = false;
};

bool is_gguf(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

// A BFL transformer's input widths and guidance embedder from a safetensors or GGUF header
// (also under ComfyUI's "model.diffusion_model." prefix).
TransformerHeader read_header(const fs::path& path) {
  std::function<Shape(const std::string&)> shape;
  std::optional<formats::SafetensorsFile> st;
  std::optional<formats::GGUFFile> gg;
  if (is_gguf(path)) {
    gg = formats::GGUFFile::open(path);
    shape = [&](const std::string& n) {
      const auto* t = gg->find_tensor(n);
      return t != nullptr ? t->shape : Shape{};
    };
  } else {
    st = formats::SafetensorsFile::open(path);
    shape = [&](const std::string& n) { return header_shape(*st, n); };
  }
  std::string prefix;
  if (shape("img_in.weight").empty() && !shape("model.diffusion_model.img_in.weight").empty()) {
    prefix = "model.diffusion_model.";
  }
  TransformerHeader h{shape(prefix + "img_in.weight"), shape(prefix + "txt_in.weight"),
                      shape(prefix + "vector_in.in_layer.weight"),
                      !shape(prefix + "guidance_in.in_layer.weight").empty()};
  if (h.img_in.size() != 2 || h.txt_in.size() != 2 || h.vec_in.size() != 2) {
    throw Error(ErrorCode::kFormat,
                "not a FLUX transformer in Black Forest Labs' layout (img_in, txt_in and "
                "vector_in.in_layer weights expected)",
                {.file = path.string(), .key = prefix + "img_in.weight"});
  }
  return h;
}

// The transformer file in a folder of single files: flux1-schnell.safetensors or
// flux1-dev.safetensors, else the one flux1-*.safetensors or flux1-*.gguf.
fs::path find_transformer(const fs::path& dir) {
  if (fs::path p = find_in({dir}, {"flux1-schnell.safetensors", "flux1-dev.safetensors"});
      !p.empty()) {
    return p;
  }
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.starts_with("flux1-") && (n.ends_with(".safetensors") || n.ends_with(".gguf"))) {
      found.push_back(e.path());
    }
  }
  std::sort(found.begin(), found.end());
  if (found.size() == 1) return found.front();
  if (found.empty()) {
    throw Error(ErrorCode::kNotFound,
                "neither a diffusers FLUX folder (no model_index.json) nor a folder holding "
                "flux1-schnell.safetensors, flux1-dev.safetensors or one flux1-*.gguf; pass the "
                "transformer file itself if it is named otherwise",
                {.file = dir.string()});
  }
  std::string names;
  for (const fs::path& f : found) names += (names.empty() ? "" : ", ") + f.filename().string();
  throw Error(ErrorCode::kInvalidArgument,
              "holds several FLUX transformers (" + names + "): pass the one to use",
              {.file = dir.string()});
}

struct Rss {
  Rss() { reset_peak_rss(); }
  std::uint64_t peak() const {
    const std::uint64_t p = resettable_peak_rss_bytes();
    return p != 0 ? p : peak_rss_bytes();
  }
};

std::string size_text(i64 w, i64 h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

}  // namespace

const char* to_string(FluxLayout layout) {
  return layout == FluxLayout::kDiffusers ? "diffusers"
         : layout == FluxLayout::kBfl     ? "bfl"
                                          : "mflux";
}

FluxPipeline FluxPipeline::open(const std::string& model, const FluxOpenOptions& options) {
  FluxPipeline p;
  p.model_ = model;
  fs::path root = present(model) ? fs::path(model) : formats::resolve_model(repo_for(model));
  FluxFiles& f = p.files_;
  std::error_code ec;
  if (fs::is_directory(root, ec) && present(root / "model_index.json")) {
    const fs::path index = root / "model_index.json";
    const nlohmann::json j = formats::read_json_file(index);
    const std::string cls = j.is_object() ? j.value("_class_name", std::string()) : "";
    if (!cls.starts_with("Flux")) {
      throw Error(
          ErrorCode::kUnsupported,
          "_class_name is \"" + printable(cls, 80) + "\", not a FLUX pipeline (FluxPipeline)",
          {.file = index.string(), .key = "_class_name"});
    }
    f.layout = FluxLayout::kDiffusers;
    f.transformer = root / "transformer";
    f.clip = root / "text_encoder";
    f.t5 = root / "text_encoder_2";
    f.vae = root / "vae";
    f.clip_tokenizer = root / "tokenizer";
    f.t5_tokenizer = root / "tokenizer_2";
    f.scheduler = root / "scheduler" / "scheduler_config.json";
    Missing m;
    m.need(f.transformer / "config.json", "the transformer");
    m.need(f.clip / "config.json", "the CLIP text encoder");
    m.need(f.t5 / "config.json", "the T5 encoder");
    m.need(f.vae / "config.json", "the VAE");
    m.need(f.clip_tokenizer, "the CLIP tokenizer");
    m.need(f.t5_tokenizer, "the T5 tokenizer");
    m.need(f.scheduler, "the scheduler config");
    m.raise(model, index.string());
    const fs::path cfg_file = f.transformer / "config.json";
    const nlohmann::json cfg = formats::read_json_file(cfg_file);
    if (!cfg.is_object()) {
      throw Error(ErrorCode::kFormat, "config is not an object", {.file = cfg_file.string()});
    }
    const auto num = [&](const char* key, i64 fallback) {
      return detail::config_int(cfg, key, fallback, cfg_file.string());
    };
    p.joint_dim_ = num("joint_attention_dim", 4096);
    p.pooled_dim_ = num("pooled_projection_dim", 768);
    p.in_channels_ = num("in_channels", 64);
    if (const auto g = cfg.find("guidance_embeds"); g != cfg.end()) {
      if (!g->is_boolean()) {
        throw Error(ErrorCode::kFormat, "guidance_embeds must be true or false",
                    {.file = cfg_file.string(), .key = "guidance_embeds"});
      }
      p.dev_ = g->get<bool>();
    }
    p.schedule_ = FluxSchedule::load(f.scheduler);
  } else {
    // Black Forest Labs' single files, or mflux's saved transformer with them.
    f.layout = FluxLayout::kBfl;
    if (is_mflux_folder(root)) {
      f.layout = FluxLayout::kMflux;
      f.transformer = root;
    } else if (is_mflux_folder(root / "transformer")) {
      f.layout = FluxLayout::kMflux;
      f.transformer = root / "transformer";
    } else if (fs::is_directory(root, ec)) {
      f.transformer = find_transformer(root);
    } else {
      f.transformer = root;
    }
    const fs::path dir =
        f.transformer.parent_path().empty() ? fs::path(".") : f.transformer.parent_path();
    // Beside the transformer, and ComfyUI's models/{vae,clip,text_encoders} beside its
    // models/unet or models/diffusion_models.
    const std::vector<fs::path> dirs = {dir, dir / ".." / "vae", dir / ".." / "clip",
                                        dir / ".." / "text_encoders"};
    f.clip = !options.clip.empty() ? options.clip : find_in(dirs, {"clip_l.safetensors"});
    f.t5 = !options.t5.empty() ? options.t5 : find_t5(dirs);
    f.vae = !options.vae.empty() ? options.vae : find_in(dirs, {"ae.safetensors"});
    // mflux's own text_encoder/, text_encoder_2/ and vae/ (MLX layout) come before single files.
    if (f.layout == FluxLayout::kMflux) {
      if (options.clip.empty() && is_mflux_folder(dir / "text_encoder")) {
        f.clip = dir / "text_encoder";
      }
      if (options.t5.empty() && is_mflux_folder(dir / "text_encoder_2")) {
        f.t5 = dir / "text_encoder_2";
      }
      if (options.vae.empty() && is_mflux_folder(dir / "vae")) f.vae = dir / "vae";
    }
    if (!options.tokenizers.empty()) {
      f.clip_tokenizer = options.tokenizers / "tokenizer";
      f.t5_tokenizer = options.tokenizers / "tokenizer_2";
    } else {
      f.clip_tokenizer = find_in({dir, dir / ".."}, {"tokenizer"});
      f.t5_tokenizer = find_in({dir, dir / ".."}, {"tokenizer_2"});
      // FLUX.1's tokenizers are the same in both repositories: take them from a snapshot.
      for (const char* repo :
           {"black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev"}) {
        if (!f.clip_tokenizer.empty() && !f.t5_tokenizer.empty()) break;
        try {
          const fs::path snap = formats::resolve_model(repo);
          if (f.clip_tokenizer.empty() && present(snap / "tokenizer")) {
            f.clip_tokenizer = snap / "tokenizer";
          }
          if (f.t5_tokenizer.empty() && present(snap / "tokenizer_2")) {
            f.t5_tokenizer = snap / "tokenizer_2";
          }
        } catch (const Error& e) {
          if (e.code() != ErrorCode::kNotFound) throw;
        }
      }
    }
    Missing m;
    m.need(f.transformer, "the transformer");
    if (f.layout == FluxLayout::kMflux && (f.clip.empty() || f.t5.empty() || f.vae.empty())) {
      m.lines.push_back(
          "(mflux's own text_encoder/, text_encoder_2/ and vae/ are read where present; the "
          "single files below stand in for those missing)");
    }
    if (f.clip.empty()) {
      m.lines.push_back("clip_l.safetensors (looked in " + list(dirs) + "; or pass its path)");
    } else {
      m.need(f.clip, "the CLIP text encoder");
    }
    if (f.t5.empty()) {
      m.lines.push_back("t5xxl_*.safetensors (looked in " + list(dirs) + "; or pass its path)");
    } else {
      m.need(f.t5, "the T5 encoder");
    }
    if (f.vae.empty()) {
      m.lines.push_back("ae.safetensors (looked in " + list(dirs) + "; or pass its path)");
    } else {
      m.need(f.vae, "the VAE");
    }
    const std::string cache = show(formats::hf_hub_cache());
    if (f.clip_tokenizer.empty() || f.t5_tokenizer.empty()) {
      if (!options.tokenizers.empty()) {
        m.need(f.clip_tokenizer, "the CLIP tokenizer");
        m.need(f.t5_tokenizer, "the T5 tokenizer");
      } else {
        m.lines.push_back(
            "the tokenizer/ and tokenizer_2/ folders (looked beside the transformer, one folder "
            "up, and in a FLUX.1-schnell or -dev snapshot in " +
            cache + "; or name a folder holding both)");
      }
    } else {
      m.need(f.clip_tokenizer, "the CLIP tokenizer");
      m.need(f.t5_tokenizer, "the T5 tokenizer");
    }
    m.raise(model, f.transformer.string());
    // The shape the transformer takes, from its header only (safetensors or GGUF: the same names
    // and, outermost first, the same shapes).
    if (f.layout == FluxLayout::kMflux) {
      const FluxTransformerConfig c = mflux_transformer_config(f.transformer);
      p.in_channels_ = c.in_channels;
      p.joint_dim_ = c.joint_dim;
      p.pooled_dim_ = c.pooled_dim;
      p.dev_ = c.guidance_embeds;
    } else {
      const TransformerHeader h = read_header(f.transformer);
      p.in_channels_ = h.img_in[1];
      p.joint_dim_ = h.txt_in[1];
      p.pooled_dim_ = h.vec_in[1];
      p.dev_ = h.guidance;
    }
    p.schedule_ = p.dev_ ? FluxSchedule::dev() : FluxSchedule::schnell();
  }
  if (p.in_channels_ != 4 * kLatentChannels) {
    throw Error(ErrorCode::kUnsupported,
                "the transformer takes " + std::to_string(p.in_channels_) +
                    " input channels; FLUX.1's 2x2-packed 16-channel latents are 64",
                {.file = f.transformer.string()});
  }
  return p;
}

FluxRequest FluxPipeline::resolve(const FluxRequest& request) const {
  FluxRequest r = request;
  const auto bad = [](const std::string& what) { throw Error(ErrorCode::kInvalidArgument, what); };
  if (r.init_image) {
    if (r.width == 0) r.width = r.init_image->width;
    if (r.height == 0) r.height = r.init_image->height;
    if (r.init_image->width != r.width || r.init_image->height != r.height) {
      bad("the init image is " + size_text(r.init_image->width, r.init_image->height) +
          ", the request " + size_text(r.width, r.height) +
          " (hearth does not resize: give an image of the output size)");
    }
    if (!(r.strength > 0.0f && r.strength <= 1.0f)) bad("strength must be in (0, 1]");
  }
  if (r.width == 0) r.width = kDefaultSide;
  if (r.height == 0) r.height = kDefaultSide;
  for (const auto& [name, v] : {std::pair{"width", r.width}, std::pair{"height", r.height}}) {
    if (v < 16 || v > kFluxMaxSide) {
      bad(std::string(name) + " " + std::to_string(v) + " is out of range (16 to " +
          std::to_string(kFluxMaxSide) + " pixels)");
    }
    if (v % 16 != 0) {
      bad(std::string(name) + " " + std::to_string(v) +
          " is not a multiple of 16 (FLUX packs 8x-downscaled latents in 2x2 patches)");
    }
  }
  if (r.width * r.height > kFluxMaxPixels) {
    bad(size_text(r.width, r.height) + " is more than " + std::to_string(kFluxMaxPixels >> 20) +
        " megapixels (FLUX.1 is trained up to about 2)");
  }
  if (!r.steps) r.steps = dev_ ? 28 : 4;
  if (*r.steps < 1 || *r.steps > kFluxMaxSteps) {
    bad("steps must be 1 to " + std::to_string(kFluxMaxSteps));
  }
  if (dev_) {
    if (!r.guidance) r.guidance = kDefaultGuidance;
    if (!(*r.guidance >= 0.0f && *r.guidance <= 100.0f)) bad("guidance must be 0 to 100");
  } else if (r.guidance) {
    bad("guidance is for FLUX.1-dev; this transformer (schnell) has no guidance embedding");
  }
  if (!r.t5_max_length) r.t5_max_length = dev_ ? kFluxT5TokensDev : kFluxT5TokensSchnell;
  if (*r.t5_max_length < 2 || *r.t5_max_length > kMaxT5Length) {
    bad("the T5 length must be 2 to " + std::to_string(kMaxT5Length) + " tokens");
  }
  if (r.n_images < 1 || r.n_images > kFluxMaxImages) {
    bad("the image count must be 1 to " + std::to_string(kFluxMaxImages));
  }
  if (!r.noise.empty()) {
    if (r.seed) bad("a seed and given noise exclude each other (the noise replaces the seed)");
    if (static_cast<int>(r.noise.size()) != r.n_images) {
      bad("the noise holds " + std::to_string(r.noise.size()) + " latents for " +
          std::to_string(r.n_images) + " images");
    }
    for (const Latent& n : r.noise) {
      if (n.channels != kLatentChannels || n.height != r.height / kVaeScale ||
          n.width != r.width / kVaeScale ||
          n.data.size() != static_cast<std::size_t>(n.channels * n.height * n.width)) {
        bad("the noise is [" + std::to_string(n.channels) + ", " + std::to_string(n.height) + ", " +
            std::to_string(n.width) + "]; " + size_text(r.width, r.height) + " needs [16, " +
            std::to_string(r.height / kVaeScale) + ", " + std::to_string(r.width / kVaeScale) +
            "]");
      }
    }
  } else if (!r.seed) {
    r.seed = std::random_device{}();
  }
  return r;
}

FluxResult FluxPipeline::generate(
    const FluxRequest& request, const FluxRunOptions& run,
    const std::function<void(const FluxProgress&)>& on_progress) const {
  const FluxRequest r = resolve(request);
  const Timer clock;
  FluxResult out;
  out.width = r.width;
  out.height = r.height;
  out.steps = *r.steps;
  out.guidance = r.guidance;
  out.t5_max_length = *r.t5_max_length;
  const i64 lh = r.height / kVaeScale, lw = r.width / kVaeScale;
  const i64 tokens = (lh / 2) * (lw / 2);
  const auto report = [&](FluxProgress p) {
    p.elapsed = clock.seconds();
    if (on_progress) on_progress(p);
  };
  const auto stage = [&](const std::string& name) {
    report({.kind = FluxProgress::Kind::kStage, .stage = name, .images = r.n_images});
  };
  const auto end_stage = [&](const std::string& name, const Timer& t, const Rss& rss) {
    out.stages.push_back({name, t.seconds(), rss.peak()});
  };

  auto pool = std::make_shared<ThreadPool>(run.threads);
  const TextEncoderOptions topts{.threads = run.threads, .pool = pool, .level = run.level};
  const std::unique_ptr<kernels::Backend> backend = kernels::make_cpu_backend(*pool, run.level);
  const auto check_vae = [&](const Vae& vae) {
    if (vae.config().latent_channels != kLatentChannels || vae.config().downscale() != kVaeScale) {
      throw Error(ErrorCode::kFormat,
                  "the VAE has " + std::to_string(vae.config().latent_channels) +
                      " latent channels at 1/" + std::to_string(vae.config().downscale()) +
                      " scale; FLUX.1 needs 16 at 1/8",
                  {.file = vae.source()});
    }
  };

  std::vector<double> sigmas = flux_sigmas(schedule_, *r.steps, tokens);
  if (r.init_image) sigmas = flux_img2img_sigmas(sigmas, r.strength);
  out.sigmas = sigmas;
  out.denoise_steps = static_cast<int>(sigmas.size()) - 1;

  // Image-to-image: the start image's latents, before anything else is loaded.
  Latent init;
  if (r.init_image) {
    stage("vae encode");
    const Timer t;
    const Rss rss;
    const Vae vae = Vae::load(files_.vae, *backend);
    check_vae(vae);
    init = vae.encode(
        {r.init_image->height, r.init_image->width, image::to_f32_signed(*r.init_image)});
    end_stage("vae encode", t, rss);
  }
  throw_if_cancelled();

  // Text encoders, each released before the next part loads.
  std::vector<float> pooled, context;
  {
    stage("text encoders");
    const Timer t;
    const Rss rss;
    const auto clip_tok = tokenize::Tokenizer::load(files_.clip_tokenizer);
    const auto t5_tok = tokenize::Tokenizer::load(files_.t5_tokenizer);
    const PromptTokens c =
        flux_prompt_tokens(clip_tok, r.prompt, kFluxClipTokens,
                           tokenizer_pad_token(files_.clip_tokenizer, "<|endoftext|>"));
    const PromptTokens s = flux_prompt_tokens(t5_tok, r.prompt, *r.t5_max_length,
                                              tokenizer_pad_token(files_.t5_tokenizer, "<pad>"));
    if (c.truncated()) {
      out.notices.push_back("the prompt is " + std::to_string(c.needed) +
                            " CLIP tokens; CLIP reads the first " + std::to_string(c.used) +
                            " (the rest reaches the image through T5 only)");
    }
    if (s.truncated()) {
      out.notices.push_back("the prompt is " + std::to_string(s.needed) +
                            " T5 tokens; only the first " + std::to_string(s.used) +
                            " are used (the T5 length is " + std::to_string(*r.t5_max_length) +
                            ", at most 512)");
    }
    out.clip_ids = c.ids;
    out.t5_ids = s.ids;
    {
      auto clip = ClipTextModel::load(files_.clip, topts);
      if (clip->config().hidden != pooled_dim_) {
        throw Error(ErrorCode::kFormat,
                    "this CLIP text encoder is " + std::to_string(clip->config().hidden) +
                        " wide; the transformer (" + show(files_.transformer) + ") takes " +
                        std::to_string(pooled_dim_),
                    {.file = clip->source()});
      }
      pooled = clip->encode(c.ids).pooled;
    }
    throw_if_cancelled();
    {
      auto t5 = T5Encoder::load(files_.t5, topts);
      if (t5->config().d_model != joint_dim_) {
        throw Error(ErrorCode::kFormat,
                    "this T5 encoder is " + std::to_string(t5->config().d_model) +
                        " wide; the transformer (" + show(files_.transformer) + ") takes " +
                        std::to_string(joint_dim_) + " (FLUX.1: T5-XXL, 4096)",
                    {.file = t5->source()});
      }
      context = t5->encode(s.ids);
    }
    end_stage("text encoders", t, rss);
  }
  throw_if_cancelled();

  // The transformer: every image's denoising loop.
  std::vector<std::vector<float>> packed(static_cast<std::size_t>(r.n_images));
  {
    stage("transformer load");
    Timer t;
    Rss rss;
    FluxTransformerOptions dopts;
    static_cast<TextEncoderOptions&>(dopts) = topts;
    dopts.quantize_bits = run.quantize_bits;
    dopts.loras = run.loras;
    const std::unique_ptr<FluxTransformer> dit = FluxTransformer::load(files_.transformer, dopts);
    if (dit->config().joint_dim != joint_dim_ || dit->config().pooled_dim != pooled_dim_ ||
        dit->config().in_channels != in_channels_) {
      throw Error(ErrorCode::kInternal, "the transformer loaded differs from its header",
                  {.file = dit->source()});
    }
    end_stage("transformer load", t, rss);
    stage("denoise");
    t.reset();
    const Rss denoise_rss;
    const std::vector<std::int64_t> img_ids = flux_image_ids(lh, lw);
    const std::vector<std::int64_t> txt_ids =
        flux_text_ids(static_cast<std::int64_t>(*r.t5_max_length));
    for (int k = 0; k < r.n_images; ++k) {
      Latent x;
      if (!r.noise.empty()) {
        x = r.noise[static_cast<std::size_t>(k)];
      } else {
        x = flux_seeded_noise(*r.seed + static_cast<std::uint64_t>(k), kLatentChannels, lh, lw);
        out.seeds.push_back(*r.seed + static_cast<std::uint64_t>(k));
      }
      if (r.init_image) {
        const double s0 = sigmas.front();
        for (std::size_t i = 0; i < x.data.size(); ++i) {
          x.data[i] = static_cast<float>(s0 * x.data[i] + (1.0 - s0) * init.data[i]);
        }
      }
      std::vector<float>& lat = packed[static_cast<std::size_t>(k)];
      lat = pack_latents(x);
      for (int i = 0; i < out.denoise_steps; ++i) {
        throw_if_cancelled();
        const Timer step;
        const std::vector<float> v = dit->forward(
            {lat, img_ids, context, txt_ids, pooled, static_cast<float>(sigmas[i]), r.guidance});
        flux_euler_step(lat, v, sigmas[i], sigmas[i + 1]);
        out.step_seconds.push_back(step.seconds());
        report({.kind = FluxProgress::Kind::kStep,
                .stage = "denoise",
                .image = k,
                .images = r.n_images,
                .step = i + 1,
                .steps = out.denoise_steps,
                .step_seconds = out.step_seconds.back()});
      }
    }
    end_stage("denoise", t, denoise_rss);
  }
  throw_if_cancelled();

  {
    stage("vae decode");
    const Timer t;
    const Rss rss;
    const Vae vae = Vae::load(files_.vae, *backend);
    check_vae(vae);
    for (const std::vector<float>& lat : packed) {
      throw_if_cancelled();
      const FloatImage img = vae.decode(unpack_latents(lat.data(), kLatentChannels, lh, lw));
      out.images.push_back(image::to_u8_signed(img.data.data(), img.height, img.width));
    }
    end_stage("vae decode", t, rss);
  }
  out.peak_rss_bytes = peak_rss_bytes();
  for (const FluxStage& st : out.stages) {
    out.peak_rss_bytes = std::max(out.peak_rss_bytes, st.peak_rss_bytes);
  }
  return out;
}

Latent flux_seeded_noise(std::uint64_t seed, i64 channels, i64 height, i64 width) {
  if (channels <= 0 || height <= 0 || width <= 0) {
    throw Error(ErrorCode::kInvalidArgument, "a noise latent needs a positive shape");
  }
  Latent out{channels, height, width,
             std::vector<float>(static_cast<std::size_t>(channels * height * width))};
  std::mt19937_64 rng(seed);
  const auto unit = [&] { return static_cast<double>(rng() >> 11) * 0x1.0p-53; };
  for (std::size_t i = 0; i < out.data.size(); i += 2) {
    const double u1 = 1.0 - unit();  // (0, 1]
    const double u2 = unit();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    out.data[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < out.data.size()) out.data[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
  return out;
}

std::vector<Latent> read_flux_noise(const fs::path& npy, i64 height, i64 width) {
  formats::NpyF32 a = formats::read_npy_f32(npy);
  const i64 lh = height / kVaeScale, lw = width / kVaeScale;
  const auto shape_text = [](const std::vector<i64>& s) {
    std::string t = "[";
    for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
    return t + "]";
  };
  const bool one = a.shape.size() == 3;
  const bool many = a.shape.size() == 4 && a.shape[0] >= 1;
  const std::size_t off = many ? 1 : 0;
  if ((!one && !many) || a.shape[off] != kLatentChannels || a.shape[off + 1] != lh ||
      a.shape[off + 2] != lw) {
    throw Error(ErrorCode::kInvalidArgument,
                "the noise has shape " + shape_text(a.shape) + "; " + size_text(width, height) +
                    " needs [16, " + std::to_string(lh) + ", " + std::to_string(lw) +
                    "] (or [N, 16, " + std::to_string(lh) + ", " + std::to_string(lw) +
                    "] for N images)",
                {.file = npy.string()});
  }
  const i64 n = many ? a.shape[0] : 1;
  const auto per = static_cast<std::size_t>(kLatentChannels * lh * lw);
  std::vector<Latent> out;
  for (i64 k = 0; k < n; ++k) {
    const auto begin = a.data.begin() + static_cast<std::ptrdiff_t>(per * k);
    out.push_back({kLatentChannels, lh, lw, std::vector<float>(begin, begin + per)});
  }
  return out;
}

std::vector<double> flux_img2img_sigmas(const std::vector<double>& sigmas, float strength) {
  if (sigmas.size() < 2) throw Error(ErrorCode::kInvalidArgument, "a schedule needs a step");
  const double steps = static_cast<double>(sigmas.size() - 1);
  // diffusers: init_timestep = min(steps * strength, steps); t_start = int(max(steps - init, 0)).
  const double init = std::min(steps * static_cast<double>(strength), steps);
  const auto t_start = static_cast<std::size_t>(std::max(steps - init, 0.0));
  if (t_start >= sigmas.size() - 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "strength " + std::to_string(strength) + " over " +
                    std::to_string(sigmas.size() - 1) +
                    " steps leaves no step to run: raise the strength or the steps");
  }
  return {sigmas.begin() + static_cast<std::ptrdiff_t>(t_start), sigmas.end()};
}

namespace {

std::string number(float v) {
  std::string s = std::to_string(v);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

FluxImageMetadata flux_metadata(const FluxResult& r, std::string prompt, std::string model) {
  FluxImageMetadata m;
  m.prompt = std::move(prompt);
  m.steps = r.steps;
  m.width = r.width;
  m.height = r.height;
  m.model = std::move(model);
  m.guidance = r.guidance;
  m.t5_max_length = r.t5_max_length;
  return m;
}

image::PngText to_png_text(const FluxImageMetadata& m) {
  image::PngText t = {{"prompt", m.prompt}};
  if (m.seed) t.emplace_back("seed", std::to_string(*m.seed));
  if (!m.noise.empty()) t.emplace_back("noise", m.noise);
  t.emplace_back("steps", std::to_string(m.steps));
  t.emplace_back("size", size_text(m.width, m.height));
  t.emplace_back("model", m.model);
  if (m.guidance) t.emplace_back("guidance", number(*m.guidance));
  t.emplace_back("t5_max_length", std::to_string(m.t5_max_length));
  if (!m.init_image.empty()) {
    t.emplace_back("init_image", m.init_image);
    t.emplace_back("strength", number(m.strength));
  }
  if (!m.loras.empty()) {
    std::string l;
    for (const std::string& s : m.loras) l += (l.empty() ? "" : ", ") + s;
    t.emplace_back("loras", l);
  }
  t.emplace_back("Software", "hearth flux-cli " HEARTH_VERSION);
  return t;
}

nlohmann::json to_json(const FluxImageMetadata& m) {
  nlohmann::json j = {{"prompt", m.prompt}, {"steps", m.steps},
                      {"width", m.width},   {"height", m.height},
                      {"model", m.model},   {"t5_max_length", m.t5_max_length},
                      {"loras", m.loras},   {"software", "hearth flux-cli " HEARTH_VERSION}};
  j["seed"] = m.seed ? nlohmann::json(*m.seed) : nlohmann::json(nullptr);
  if (!m.noise.empty()) j["noise"] = m.noise;
  if (m.guidance) j["guidance"] = *m.guidance;
  if (!m.init_image.empty()) {
    j["init_image"] = m.init_image;
    j["strength"] = m.strength;
  }
  return j;
}

nlohmann::json to_json(const FluxResult& r) {
  nlohmann::json stages = nlohmann::json::array();
  for (const FluxStage& s : r.stages) {
    stages.push_back(
        {{"name", s.name}, {"seconds", s.seconds}, {"peak_rss_bytes", s.peak_rss_bytes}});
  }
  nlohmann::json j = {{"width", r.width},
                      {"height", r.height},
                      {"steps", r.steps},
                      {"denoise_steps", r.denoise_steps},
                      {"t5_max_length", r.t5_max_length},
                      {"images", r.images.size()},
                      {"seeds", r.seeds},
                      {"sigmas", r.sigmas},
                      {"stages", stages},
                      {"step_seconds", r.step_seconds},
                      {"peak_rss_bytes", r.peak_rss_bytes},
                      {"notices", r.notices}};
  if (r.guidance) j["guidance"] = *r.guidance;
  return j;
}

}  // namespace hearth::models
