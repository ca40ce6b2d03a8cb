// hearth-bench-llm: decoder prefill and decode tokens/s beside the memory-bandwidth limit measured
// in the same run (see src/hearth/models/llm_bench.hpp). Without --model: the Phi-3-mini shape
// with random f16 and bf16 weights made in memory (7.6 GB each at 32 layers).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "hearth/core/error.hpp"
#include "hearth/models/llm_bench.hpp"

int main(int argc, char** argv) {
  CLI::App app("decoder prefill / decode speed beside the measured memory bandwidth");
  hearth::models::LlmBenchOptions o;
  std::string model;
  std::vector<std::string> dtypes = {"f16", "bf16"};
  std::string kv = "f16";
  bool json = false;
  app.add_option("--model", model, "HF folder or GGUF file (default: random Phi-3-mini shape)");
  app.add_option("--dtype", dtypes, "random weights: f16, bf16 and/or f32");
  app.add_option("--layers", o.layers, "random weights: layers (Phi-3-mini: 32)")
      ->check(CLI::Range(1, 256));
  app.add_option("--threads", o.threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("--prompt", o.prompt, "prefill tokens")->check(CLI::Range(2, 8192));
  app.add_option("--decode", o.decode, "decode steps per window")->check(CLI::Range(1, 4096));
  app.add_option("--repeat", o.repeats, "windows (best reported)")->check(CLI::Range(1, 100));
  app.add_option("--kv", kv, "KV cache: f16 or f32")->check(CLI::IsMember({"f16", "f32"}));
  app.add_flag("--json", json, "print JSON after the table");
  CLI11_PARSE(app, argc, argv);
  try {
    o.model = model;
    o.dtypes.clear();
    for (const auto& d : dtypes) {
      const auto t = hearth::dtype_from_name(d);
      if (!t) throw hearth::Error(hearth::ErrorCode::kInvalidArgument, "unknown dtype " + d);
      o.dtypes.push_back(*t);
    }
    o.kv_dtype = kv == "f32" ? hearth::DType::kF32 : hearth::DType::kF16;
    const auto report = hearth::models::run_llm_bench(o);
    std::cout << hearth::models::to_text(report);
    if (json) std::cout << hearth::models::to_json(report).dump(2) << "\n";
  } catch (const hearth::Error& e) {
    std::fprintf(stderr, "hearth-bench-llm: error: %s\n", e.what());
    return hearth::exit_code_for(e.code());
  }
  return 0;
}
