// hearth-bench-text-encoder: FLUX.1's text encoders at their real shapes with random weights made
// in memory (no file): T5 v1.1 XXL (d_model 4096, 64 heads, FFN 10240; 256 tokens for schnell,
// 512 for dev) and CLIP ViT-L/14 text (768 wide, 12 layers, 77 tokens). T5-XXL is 24 layers and
// 9.5 GB in bf16: by default only --t5-layers of them are built and timed, and the time is scaled
// to the full depth (every block is the same work). Prints seconds, achieved GFLOP/s (all of it,
// and the matrix products alone) beside the FMA peak measured in the same run.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/peak.hpp"
#include "hearth/models/clip_text.hpp"
#include "hearth/models/t5_encoder.hpp"

namespace {

using hearth::models::ClipTextConfig;
using hearth::models::T5EncoderConfig;

struct Timing {
  double seconds = 0.0;  // best of the repeats
  double linear_seconds = 0.0;
  double linear_flops = 0.0;
};

template <class Encode>
Timing time_best(hearth::kernels::Backend& be, int repeats, const Encode& encode) {
  Timing best;
  best.seconds = 1e30;
  for (int r = 0; r < repeats; ++r) {
    be.reset_linear_stats();
    be.count_linear(true);
    hearth::Timer t;
    encode();
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("FLUX text encoders (T5-XXL, CLIP-L) at their real shapes, random weights");
  std::size_t threads = 2;
  int t5_layers = 2, repeats = 2;
  std::vector<int> t5_tokens = {256};
  std::string dtype_name = "bf16";
  bool no_clip = false;
  app.add_option("--threads", threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("--t5-layers", t5_layers, "T5 blocks built and timed (24 = the full depth)")
      ->check(CLI::Range(1, 24));
  app.add_option("--t5-tokens", t5_tokens, "T5 sequence lengths (256 schnell, 512 dev)");
  app.add_option("--dtype", dtype_name, "weights: bf16, f16 or f32")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}));
  app.add_option("--repeat", repeats, "runs per shape (best reported)")->check(CLI::Range(1, 100));
  app.add_flag("--no-clip", no_clip, "leave out CLIP");
  CLI11_PARSE(app, argc, argv);
  try {
    const hearth::DType dtype = *hearth::dtype_from_name(dtype_name);
    auto pool = std::make_shared<hearth::ThreadPool>(threads);
    hearth::models::TextEncoderOptions o;
    o.pool = pool;
    const double peak = hearth::kernels::measure_fma_peak_gflops(*pool);
    std::printf("threads %zu, %s weights, FMA peak %.1f GFLOP/s (measured now)\n", threads,
                dtype_name.c_str(), peak);
    std::printf("%-28s %7s %10s %10s %9s %12s %9s\n", "encoder", "tokens", "seconds", "GFLOP",
                "GFLOP/s", "GEMM GFLOP/s", "% peak");
    T5EncoderConfig t5;
    t5.layers = t5_layers;
    {
      hearth::Timer build;
      auto m = hearth::models::T5Encoder::random(t5, dtype, 1, o);
      std::printf("(T5 %d of 24 blocks built in %.1f s, %.2f G parameters)\n", t5_layers,
                  build.seconds(), static_cast<double>(m->parameters()) / 1e9);
      for (const int n : t5_tokens) {
        std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = (i * 7919) % 32000;
        const Timing t = time_best(m->backend(), repeats, [&] { m->encode(ids); });
        // Per block: the seven matrix products and the two attention products.
        const double per_block =
            2.0 * n * (4.0 * t5.d_model * t5.heads * t5.d_kv + 3.0 * t5.d_model * t5.d_ff) +
            4.0 * t5.heads * static_cast<double>(n) * n * t5.d_kv;
        const double scale = 24.0 / t5_layers;
        std::printf("%-28s %7d %10.2f %10.1f %9.1f %12.1f %8.0f%%\n",
                    ("T5-XXL (24 blocks, scaled)"), n, t.seconds * scale, per_block * 24 / 1e9,
                    per_block * t5_layers / t.seconds / 1e9,
                    t.linear_flops / t.linear_seconds / 1e9,
                    100.0 * t.linear_flops / t.linear_seconds / 1e9 / peak);
      }
    }
    if (!no_clip) {
      const ClipTextConfig clip;
      auto m = hearth::models::ClipTextModel::random(clip, dtype, 2, o);
      std::vector<std::int32_t> ids(77, 49407);
      for (int i = 0; i < 12; ++i) ids[static_cast<std::size_t>(i)] = 320 + i;
      ids[0] = 49406;
      const Timing t = time_best(m->backend(), repeats, [&] { m->encode(ids); });
      const double per_layer =
          2.0 * 77 * (4.0 * clip.hidden * clip.hidden + 2.0 * clip.hidden * clip.ffn) +
          4.0 * 77.0 * 77.0 * clip.hidden;
      std::printf("%-28s %7d %10.3f %10.1f %9.1f %12.1f %8.0f%%\n", "CLIP-L text (12 layers)", 77,
                  t.seconds, per_layer * clip.layers / 1e9,
                  per_layer * clip.layers / t.seconds / 1e9,
                  t.linear_flops / t.linear_seconds / 1e9,
                  100.0 * t.linear_flops / t.linear_seconds / 1e9 / peak);
    }
  } catch (const hearth::Error& e) {
    std::fprintf(stderr, "hearth-bench-text-encoder: error: %s\n", e.what());
    return hearth::exit_code_for(e.code());
  }
  return 0;
}
