#include "bench_llm.hpp"

#include <cstdio>
#include <iostream>

#include "hearth/cli/console.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/hf_cache.hpp"
#include "hearth/models/llm_peer.hpp"

namespace hearth::apps {

CLI::App* add_bench_llm(CLI::App& app, BenchLlmFlags& f) {
  std::string shapes, weights;
  for (const models::RandomShape& s : models::random_shapes()) {
    shapes += std::string(shapes.empty() ? "" : "; ") + s.name + ": " + s.description;
  }
  for (const models::RandomWeights& w : models::random_weights()) {
    weights += std::string(weights.empty() ? "" : "; ") + w.name + ": " + w.description +
               (w.make == nullptr ? " (not in this build)" : "");
  }
  CLI::App* llm = app.add_subcommand(
      "llm",
      "LLM prefill (ppN) and decode (tgN) tokens/s as llama-bench measures them, beside the "
      "memory-bandwidth and FMA-peak limits measured in the same run");
  llm->add_option("path", f.positional, "GGUF file, Hugging Face folder or cached repo id");
  llm->add_option("-m,--model", f.model, "GGUF file, Hugging Face folder or cached repo id");
  llm->add_option("--random", f.options.random_shape,
                  "Random weights made in memory, of a real model's shape: " + shapes);
  llm->add_option("--weights", f.options.weights,
                  "Random weights' formats, one row set each (default f16): " + weights)
      ->delimiter(',');
  llm->add_option("--layers", f.options.layers, "Random weights: layers (default: the shape's)");
  llm->add_option("-p,--n-prompt", f.options.prompts,
                  "Prefill tests: prompt lengths (default 512; 0 skips)")
      ->delimiter(',');
  llm->add_option("-n,--n-gen", f.options.gens,
                  "Decode tests: tokens generated (default 128; 0 skips)")
      ->delimiter(',');
  llm->add_option("-r,--repetitions", f.options.repetitions,
                  "Repetitions of each test after its warm-up (default 5)");
  llm->add_option("-t,--threads", f.threads, "Threads (default: bench-cli --threads, every core)")
      ->check(CLI::Range(1, 4096));
  llm->add_option("--kv-cache", f.kv_cache, "KV cache type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}))
      ->capture_default_str();
  llm->add_option("--probe-mib", f.probe_mib,
                  "Read-bandwidth probe buffer in MiB (far larger than the caches)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  llm->add_option("--peer", f.peers,
                  "llama-bench=PATH: run llama.cpp's llama-bench on the same GGUF file with the "
                  "same tests and show hearth / peer");
  llm->add_flag("--json", f.json, "Print one JSON object instead of the tables");
  return llm;
}

models::LlmBenchReport run_bench_llm(BenchLlmFlags& f, std::size_t global_threads) {
  models::LlmBenchOptions& o = f.options;
  if (!f.model.empty() && !f.positional.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "give the model once (--model or a path)");
  }
  const std::string spec = f.model.empty() ? f.positional : f.model;
  o.threads = f.threads != 0 ? f.threads : global_threads;
  o.kv_dtype = f.kv_cache == "f32" ? DType::kF32 : DType::kF16;
  o.probe_bytes = static_cast<std::uint64_t>(f.probe_mib) << 20;
  std::vector<models::LlmPeer> peers;
  for (const std::string& p : f.peers) peers.push_back(models::parse_peer_spec(p));
  if (peers.size() > 1) throw Error(ErrorCode::kInvalidArgument, "one --peer at a time");
  // Everything is checked before the first (long) measurement.
  if (!spec.empty()) o.model = formats::resolve_model(spec);
  models::check_llm_bench_options(o);
  for (const models::LlmPeer& p : peers) models::check_peer(p, o);

  cli::Progress progress("bench-cli");
  o.progress = [&](const std::string& what, std::size_t done, std::size_t total) {
    progress.update(done, total, what, 0, 0);
  };
  struct Clear {
    cli::Progress& p;
    ~Clear() { p.clear(); }
  } clear{progress};
  models::LlmBenchReport report = models::run_llm_bench(o);
  for (const models::LlmPeer& p : peers) {
    progress.message("running " + p.name + " on the same file");
    models::run_peer(p, o, report);
  }
  progress.clear();
  if (f.json) {
    std::cout << models::to_json(report).dump(2) << "\n";
  } else {
    std::cout << models::to_text(report);
  }
  return report;
}

}  // namespace hearth::apps
