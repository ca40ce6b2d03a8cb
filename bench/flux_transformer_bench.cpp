// hearth-bench-flux-transformer: one FLUX.1 transformer step (a single call, as every sampler step
// is) at FLUX.1's shape (3072 wide: 24 heads of 128, T5 4096, CLIP 768, 64 latent channels) with
// random weights made in memory, by default 4-bit (q4_0, quantized by hearth's quantizer as a
// GGUF file would hold them; the matrices whose rows are not whole blocks stay f32), or any of
// f32, f16, bf16, f8_e4m3, f8_e5m2 (every matrix, as a float8 checkpoint holds them). The full
// model is 19 double-stream and 38 single-stream blocks (6.7 GB at q4_0); by default three models
// are built and timed, without blocks, with one double block and with one single block, and the
// step is scaled to the full depth: t(none) + 19 (t(double) - t(none)) + 38 (t(single) - t(none))
// (every block of a kind is the same work). --full builds and times the whole model instead.
// Prints seconds per step, achieved GFLOP/s (everything, and the matrix products alone, counted
// by the backend) beside the FMA peak measured in the same run, and the peak resident memory of
// a full step (when scaled: the parts' resident weights combined as their times are, plus the
// largest growth of the resident set during a step).
// --load FILE [--quantize 4|8] times a model file instead (for --quantize's memory figures).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/peak.hpp"
#include "hearth/models/flux_sampler.hpp"
#include "hearth/models/flux_transformer.hpp"

namespace {

using hearth::models::FluxTransformer;
using hearth::models::FluxTransformerConfig;

struct Timing {
  double seconds = 1e30;  // best of the repeats
  double linear_seconds = 0.0;
  double linear_flops = 0.0;
};

struct Inputs {
  std::vector<float> image, context, pooled;
  std::vector<std::int64_t> img_ids, txt_ids;
};

Inputs make_inputs(const FluxTransformerConfig& c, int size, int text_tokens) {
  Inputs in;
  const int side = size / 16;  // packed tokens per side
  const auto tokens = static_cast<std::size_t>(side * side);
  in.image.assign(tokens * static_cast<std::size_t>(c.in_channels), 0.0f);
  for (std::size_t i = 0; i < in.image.size(); ++i) {
    in.image[i] = static_cast<float>(static_cast<int>((i * 2654435761u) % 2001) - 1000) / 577.0f;
  }
  in.img_ids = hearth::models::flux_image_ids(size / 8, size / 8);
  in.context.assign(static_cast<std::size_t>(text_tokens * c.joint_dim), 0.0f);
  for (std::size_t i = 0; i < in.context.size(); ++i) {
    in.context[i] = static_cast<float>(static_cast<int>((i * 40503u) % 2001) - 1000) / 5000.0f;
  }
  in.txt_ids = hearth::models::flux_text_ids(text_tokens);
  in.pooled.assign(static_cast<std::size_t>(c.pooled_dim), 0.1f);
  return in;
}

Timing time_step(FluxTransformer& m, const Inputs& in, int repeats) {
  const FluxTransformerConfig& c = m.config();
  Timing best;
  for (int r = 0; r < repeats; ++r) {
    auto& be = m.backend();
    be.reset_linear_stats();
    be.count_linear(true);
    hearth::Timer t;
    m.forward({in.image, in.img_ids, in.context, in.txt_ids, in.pooled, 1.0f,
               c.guidance_embeds ? std::optional<float>(3.5f) : std::nullopt});
    const double s = t.seconds();
    be.count_linear(false);
    if (s < best.seconds) {
      best.seconds = s;
      best.linear_seconds = be.linear_stats().seconds;
      best.linear_flops = be.linear_stats().flops;
    }
  }
  return best;
}

// The matrix products and attention of one step at n = text + image tokens (FLUX.1 widths).
struct Work {
  double doubles, singles, rest;  // per double block, per single block, outside the blocks
};

Work step_flops(const FluxTransformerConfig& c, double txt, double img) {
  const double d = static_cast<double>(c.inner()), n = txt + img;
  const double attention = 4.0 * n * n * d;  // q k^T and p v
  Work w;
  w.doubles = 2.0 * n * (3 * d * d + d * d + 8 * d * d) + 2.0 * 12 * d * d + attention;
  w.singles = 2.0 * n * (3 * d * d + 4 * d * d + 5 * d * d) + 2.0 * 3 * d * d + attention;
  w.rest = 2.0 * (txt * c.joint_dim * d + img * c.in_channels * d + img * d * c.out_channels) +
           2.0 * (256 * d + c.pooled_dim * d + 3 * d * d + 2 * d * d);
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("One FLUX.1 transformer step at the full width, random weights (scaled to depth)");
  std::size_t threads = 2;
  int repeats = 1, text_tokens = 256;
  std::vector<int> sizes = {512, 1024};
  std::string dtype_name = "q4_0";
  std::string load;
  int quantize = 0;
  bool full = false, dev = false;
  app.add_option("--threads", threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("--sizes", sizes, "image sizes in pixels (square; multiples of 16)");
  app.add_option("--text-tokens", text_tokens, "T5 tokens (256 schnell, 512 dev)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--dtype", dtype_name,
                 "random weights: q4_0, q4_k, q8_0, bf16, f8_e4m3, f8_e5m2, ...");
  app.add_option("--repeat", repeats, "steps per size (best reported)")->check(CLI::Range(1, 100));
  app.add_flag("--full", full, "build all 19 + 38 blocks (6.7 GB at q4_0) instead of scaling");
  app.add_flag("--dev", dev, "dev's guidance embedding");
  app.add_option("--load", load, "time this transformer file or folder instead of random weights");
  app.add_option("--quantize", quantize, "with --load: quantize to 4 or 8 bits at load")
      ->check(CLI::IsMember({0, 4, 8}));
  CLI11_PARSE(app, argc, argv);
  try {
    const auto dtype = hearth::dtype_from_name(dtype_name);
    if (!dtype) throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "unknown --dtype");
    for (const int s : sizes) {
      if (s <= 0 || s % 16 != 0) {
        throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "sizes are multiples of 16");
      }
    }
    auto pool = std::make_shared<hearth::ThreadPool>(threads);
    hearth::models::FluxTransformerOptions o;
    o.pool = pool;
    o.quantize_bits = quantize;
    const double peak = hearth::kernels::measure_fma_peak_gflops(*pool);
    std::printf("threads %zu, FMA peak %.1f GFLOP/s (measured now)\n", threads, peak);
    FluxTransformerConfig c;  // FLUX.1: 19 + 38 blocks, 24 heads of 128
    c.guidance_embeds = dev;
    // Models timed and how their times combine into a full step.
    struct Part {
      FluxTransformerConfig config;
      double weight;  // coefficient in the full step
    };
    std::vector<Part> parts;
    std::string what;
    if (!load.empty() || full) {
      parts.push_back({c, 1.0});
      what = !load.empty() ? load : "full depth";
    } else {
      FluxTransformerConfig none = c, one_double = c, one_single = c;
      none.layers = none.single_layers = 0;
      one_double.layers = 1;
      one_double.single_layers = 0;
      one_single.layers = 0;
      one_single.single_layers = 1;
      parts = {{none, 1.0 - c.layers - c.single_layers},
               {one_double, static_cast<double>(c.layers)},
               {one_single, static_cast<double>(c.single_layers)}};
      what = "1 block of each kind, scaled to 19 + 38";
    }
    std::printf("FLUX.1 transformer, %s weights, %s, %d text tokens\n",
                load.empty() ? dtype_name.c_str() : (quantize ? "quantized at load" : "stored"),
                what.c_str(), text_tokens);
    std::vector<Timing> total(sizes.size());
    for (auto& t : total) t.seconds = 0.0;
    // Peak memory of a full step: the parts' resident weights combined as their times are, plus
    // the largest growth during a step (activations and scratch).
    double resident = 0.0;
    std::vector<double> growth(sizes.size(), 0.0);
    for (const Part& p : parts) {
      hearth::reset_peak_rss();
      hearth::Timer build;
      auto m = !load.empty() ? FluxTransformer::load(load, o)
                             : FluxTransformer::random(p.config, *dtype, 1, o);
      if (!load.empty()) c = m->config();
      const auto built = static_cast<double>(hearth::resettable_peak_rss_bytes());
      resident += p.weight * built;
      std::printf(
          "(%lld double + %lld single blocks: %.2f G parameters, made in %.1f s, "
          "resident %s)\n",
          static_cast<long long>(m->config().layers),
          static_cast<long long>(m->config().single_layers),
          static_cast<double>(m->parameters()) / 1e9, build.seconds(),
          hearth::format_bytes(hearth::resettable_peak_rss_bytes()).c_str());
      for (std::size_t s = 0; s < sizes.size(); ++s) {
        const Inputs in = make_inputs(m->config(), sizes[s], text_tokens);
        hearth::reset_peak_rss();
        const Timing t = time_step(*m, in, repeats);
        growth[s] =
            std::max(growth[s], static_cast<double>(hearth::resettable_peak_rss_bytes()) - built);
        std::printf("  %4d x %-4d  %8.2f s  (products %.2f s, %.1f GFLOP/s)  peak RSS %s\n",
                    sizes[s], sizes[s], t.seconds, t.linear_seconds,
                    t.linear_flops / t.linear_seconds / 1e9,
                    hearth::format_bytes(hearth::resettable_peak_rss_bytes()).c_str());
        total[s].seconds += p.weight * t.seconds;
        total[s].linear_seconds += p.weight * t.linear_seconds;
        total[s].linear_flops += p.weight * t.linear_flops;
      }
    }
    std::printf("%-11s %8s %9s %9s %12s %12s %7s\n", "size", "tokens", "s/step", "TFLOP", "GFLOP/s",
                "GEMM GFLOP/s", "% peak");
    for (std::size_t s = 0; s < sizes.size(); ++s) {
      const double img = (sizes[s] / 16.0) * (sizes[s] / 16.0);
      const Work w = step_flops(c, text_tokens, img);
      const double flops =
          w.rest + static_cast<double>(c.layers) * w.doubles + c.single_layers * w.singles;
      const double gemm = total[s].linear_flops / total[s].linear_seconds / 1e9;
      std::printf("%4d x %-4d %8.0f %9.2f %9.2f %9.1f %12.1f %6.0f%% %10s\n", sizes[s], sizes[s],
                  text_tokens + img, total[s].seconds, flops / 1e12, flops / total[s].seconds / 1e9,
                  gemm, 100.0 * gemm / peak,
                  hearth::format_bytes(static_cast<std::uint64_t>(resident + growth[s])).c_str());
    }
  } catch (const hearth::Error& e) {
    std::fprintf(stderr, "hearth-bench-flux-transformer: error: %s\n", e.what());
    return hearth::exit_code_for(e.code());
  }
  return 0;
}
