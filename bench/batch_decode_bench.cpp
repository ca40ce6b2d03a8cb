// hearth-bench-batch-decode: aggregate decode tokens/s of 1, 2, 4 ... sessions decoding together
// through decode_step() (one weight read per step for the whole batch), on a named real shape
// with random weights made in memory (bench-cli llm's --random shapes and --weights formats).
//
// Each session holds a prompt of its own length (so the batch decodes at different positions).
// A round times --steps steps of every batch size in turn (the order reversed every other round,
// so that drift of a loaded machine falls on each size alike), the sessions cut back to their
// prompts before each; the ratio of a batch's aggregate tokens/s to one session's is taken within
// each round. Prints the median and range over the rounds, of wall time and of the process's CPU
// time (every thread's: on a loaded machine, the work a step costs however long it waited).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/models/decoder.hpp"
#include "hearth/models/llm_bench.hpp"

namespace {

using hearth::models::Session;

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// "median (min-max)" of v; "-" when empty.
std::string cell(std::vector<double> v) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  const double median = n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f (%.2f-%.2f)", median, v.front(), v.back());
  return buf;
}

// Per batch size, one figure per round: aggregate tokens/s and its ratio to batch 1's.
struct Series {
  std::vector<double> rate, ratio;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Batched decode: aggregate tokens/s of several sessions decoding together");
  std::string shape_name = "phi3-mini";
  std::vector<std::string> weights = {"q4_0", "mlx4"};
  std::vector<int> batches = {1, 2, 4};
  std::int64_t layers = 0;
  std::size_t threads = 2;
  int steps = 16, rounds = 5, prompt = 32;
  app.add_option("--shape", shape_name, "a bench-cli llm --random shape");
  app.add_option("--weights", weights, "weight formats (bench-cli llm --weights names)")
      ->delimiter(',');
  app.add_option("--batch", batches, "batch sizes (sessions decoding together)")
      ->delimiter(',')
      ->check(CLI::Range(1, 64));
  app.add_option("--layers", layers, "layers built (0 = the shape's)")->check(CLI::Range(0, 1024));
  app.add_option("--threads", threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("--steps", steps, "decode steps per timing")->check(CLI::Range(1, 4096));
  app.add_option("--rounds", rounds, "timed rounds of every batch size")->check(CLI::Range(1, 100));
  app.add_option("--prompt", prompt, "prompt tokens of the first session (the n-th has 5 n more)")
      ->check(CLI::Range(1, 4096));
  CLI11_PARSE(app, argc, argv);
  hearth::install_cancel_handler();
  try {
    hearth::models::DecoderConfig config = hearth::models::random_shape(shape_name);
    if (layers > 0) config.layers = layers;
    hearth::models::LlmOptions options;
    options.threads = threads;
    const int most = *std::max_element(batches.begin(), batches.end());
    const auto one =
        static_cast<std::size_t>(std::find(batches.begin(), batches.end(), 1) - batches.begin());
    std::printf("shape %s, %lld layers, %zu threads, %d steps x %d rounds, prompts %d..%d\n",
                shape_name.c_str(), static_cast<long long>(config.layers), threads, steps, rounds,
                prompt, prompt + 5 * (most - 1));
    std::printf(
        "| weights | batch | aggregate tok/s | x batch 1 | tok per CPU-s | x batch 1 (CPU) | "
        "weights GB/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (const std::string& w : weights) {
      const hearth::models::RandomWeights& format = hearth::models::find_random_weights(w);
      const hearth::Timer make_timer;
      const auto model = format.make(config, 1, options);
      const double make_seconds = make_timer.seconds();
      const std::int64_t vocab = model->config().vocab;
      std::vector<std::unique_ptr<Session>> sessions;
      std::vector<std::size_t> lengths;
      for (int i = 0; i < most; ++i) {
        lengths.push_back(static_cast<std::size_t>(prompt + 5 * i));
        sessions.push_back(std::make_unique<Session>(
            *model, static_cast<std::int64_t>(lengths.back()) + steps + 1));
        std::vector<std::int32_t> ids(lengths.back());
        for (std::size_t t = 0; t < ids.size(); ++t) {
          ids[t] = static_cast<std::int32_t>((t * 131 + static_cast<std::size_t>(i) * 17 + 1) %
                                             static_cast<std::size_t>(vocab));
        }
        sessions.back()->feed(ids);
      }
      // Wall and CPU seconds of steps decode steps of the first b sessions from their prompts.
      const auto run = [&](int b) {
        std::vector<Session*> batch;
        for (int i = 0; i < b; ++i) {
          const auto u = static_cast<std::size_t>(i);
          sessions[u]->truncate(lengths[u]);
          batch.push_back(sessions[u].get());
        }
        std::vector<std::int32_t> tokens(static_cast<std::size_t>(b));
        const hearth::Timer timer;
        const double cpu0 = cpu_seconds();
        for (int s = 0; s < steps; ++s) {
          for (int i = 0; i < b; ++i) {
            tokens[static_cast<std::size_t>(i)] =
                static_cast<std::int32_t>((s * 7 + i * 3 + 2) % vocab);
          }
          hearth::models::decode_step(batch, tokens);
        }
        return std::pair{timer.seconds(), cpu_seconds() - cpu0};
      };
      for (const int b : batches) run(b);  // warm-up
      std::vector<Series> wall(batches.size()), cpu(batches.size());
      for (int r = 0; r < rounds; ++r) {
        std::vector<std::pair<double, double>> seconds(batches.size());
        for (std::size_t k = 0; k < batches.size(); ++k) {
          const std::size_t j = r % 2 == 0 ? k : batches.size() - 1 - k;
          seconds[j] = run(batches[j]);
        }
        for (std::size_t j = 0; j < batches.size(); ++j) {
          const double tokens = batches[j] * steps;
          wall[j].rate.push_back(tokens / seconds[j].first);
          cpu[j].rate.push_back(tokens / seconds[j].second);
          if (one < batches.size()) {
            wall[j].ratio.push_back(wall[j].rate.back() * seconds[one].first / steps);
            cpu[j].ratio.push_back(cpu[j].rate.back() * seconds[one].second / steps);
          }
        }
      }
      const double gb = static_cast<double>(model->weight_bytes_per_token()) / 1e9;
      for (std::size_t j = 0; j < batches.size(); ++j) {
        std::vector<double> bandwidth;
        for (const double t : wall[j].rate) bandwidth.push_back(t / batches[j] * gb);
        std::printf("| %s | %d | %s | %s | %s | %s | %s |\n", w.c_str(), batches[j],
                    cell(wall[j].rate).c_str(), cell(wall[j].ratio).c_str(),
                    cell(cpu[j].rate).c_str(), cell(cpu[j].ratio).c_str(), cell(bandwidth).c_str());
      }
      std::printf("(%s: %.2f GB of weights per step, made in %.1f s)\n", w.c_str(), gb,
                  make_seconds);
    }
  } catch (const hearth::Error& e) {
    std::fprintf(stderr, "hearth-bench-batch-decode: %s\n", e.what());
    return e.code() == hearth::ErrorCode::kCancelled ? 130 : 1;
  }
  return 0;
}
