// hearth-bench-image: the CPU backend's NHWC convolution (implicit GEMM) at the FLUX.1 VAE's and
// TAEF2's layer shapes, beside hearth's packed GEMM of the same M x N x K (pixels x out x k*k*in,
// the A matrix already gathered) and the FMA peak measured in the same run. Windows alternate
// conv / GEMM and each figure is the best window, so other work on the machine slows both alike.
//
//   hearth-bench-image [--threads N] [--repeat R]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hearth/core/thread_pool.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/kernels/backend.hpp"
#include "hearth/kernels/peak.hpp"

namespace {

using i64 = std::int64_t;

struct Layer {
  const char* what;
  i64 size, in, out, kernel;
};

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.1f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Best seconds of one call of f over windows of at least 0.3 s.
template <class F>
double best_call(const F& f) {
  const hearth::Timer t;
  int calls = 0;
  double best = 1e30;
  while (calls < 2 || t.seconds() < 0.3) {
    const hearth::Timer one;
    f();
    best = std::min(best, one.seconds());
    ++calls;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("NHWC conv2d vs the packed GEMM of the same shape, beside the FMA peak");
  std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  int repeat = 3;
  app.add_option("--threads", threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("--repeat", repeat, "alternating windows per layer")->check(CLI::Range(1, 50));
  CLI11_PARSE(app, argc, argv);
  hearth::ThreadPool pool(threads);
  auto be = hearth::kernels::make_cpu_backend(pool);
  const double peak = hearth::kernels::measure_fma_peak_gflops(pool);
  std::printf("%s, %zu threads, FMA peak %.0f GFLOP/s\n\n", be->name().c_str(), threads, peak);
  std::printf("%-44s %9s %9s %9s %7s\n", "layer (NHWC, 3x3 pad 1 unless 1x1)", "conv", "GEMM",
              "conv/GEMM", "% peak");
  const std::vector<Layer> layers = {
      {"FLUX VAE mid/up0, 512 ch @ 64x64 (512 px)", 64, 512, 512, 3},
      {"FLUX VAE up2, 256 ch @ 256x256", 256, 256, 256, 3},
      {"FLUX VAE up3, 128 ch @ 256x256", 256, 128, 128, 3},
      {"FLUX VAE shortcut 1x1 256->128 @ 256x256", 256, 256, 128, 1},
      {"TAEF2 block, 64 ch @ 256x256", 256, 64, 64, 3},
  };
  for (const Layer& l : layers) {
    const i64 px = l.size * l.size, depth = l.kernel * l.kernel * l.in;
    const hearth::kernels::ConvShape shape{l.kernel, 1, l.kernel / 2, l.kernel / 2};
    const auto w = random_floats(static_cast<std::size_t>(l.out * depth), 1);
    const auto b = random_floats(static_cast<std::size_t>(l.out), 2);
    const auto x = random_floats(static_cast<std::size_t>(px * l.in), 3);
    const auto a = random_floats(static_cast<std::size_t>(px * depth), 4);  // gathered A
    std::vector<float> y(static_cast<std::size_t>(px * l.out));
    const auto conv = be->make_conv2d(w.data(), b.data(), l.out, l.in, shape);
    const auto lin = be->make_linear(w.data(), b.data(), l.out, depth);
    double conv_s = 1e30, gemm_s = 1e30;
    for (int r = 0; r < repeat; ++r) {
      conv_s = std::min(conv_s,
                        best_call([&] { be->conv2d(*conv, x.data(), l.size, l.size, y.data()); }));
      gemm_s = std::min(gemm_s, best_call([&] { be->linear(*lin, a.data(), px, y.data()); }));
    }
    const double gflop = 2.0 * static_cast<double>(px) * l.out * depth / 1e9;
    std::printf("%-44s %9.1f %9.1f %9.2f %6.0f%%\n", l.what, gflop / conv_s, gflop / gemm_s,
                gemm_s / conv_s, 100.0 * gflop / conv_s / peak);
  }
  std::printf("\nGFLOP/s; conv/GEMM is the conv's speed as a fraction of the GEMM's.\n");
  return 0;
}
