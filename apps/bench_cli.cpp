// bench-cli: look inside model files and measure this machine.
#include <cstdio>
#include <iostream>

#include "hearth/cli/app.hpp"
#include "hearth/formats/inspect.hpp"
#include "hearth/models/embed_bench.hpp"
#include "hearth/rag/bench_rag.hpp"

int main(int argc, char** argv) {
  CLI::App app{"hearth benchmarks and model inspection", "bench-cli"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  app.require_subcommand(1);

  std::string inspect_path;
  bool inspect_json = false;
  std::size_t inspect_items = 8;
  CLI::App* inspect =
      app.add_subcommand("inspect",
                         "Describe a GGUF file, a safetensors file or a Hugging Face model folder: "
                         "format, architecture, metadata and a tensor table");
  inspect->add_option("path", inspect_path, "Model file or folder")->required();
  inspect->add_flag("--json", inspect_json, "Print JSON instead of a table");
  inspect->add_option("--max-items", inspect_items, "Array elements shown per metadata value")
      ->check(CLI::Range(std::size_t{0}, std::size_t{1} << 20));

  hearth::cli::add_planned(app, "tokenize", "Print token ids and pieces for a text",
                           "tokenizers issue");
  hearth::models::EmbedBenchOptions embed_opts;
  std::string embed_gemm = "auto";
  bool embed_json = false;
  CLI::App* embed =
      app.add_subcommand("embed", "Sentence-embedding throughput against measured peak");
  embed->add_option("--model", embed_opts.model,
                    "BERT folder or .gguf (default: MiniLM-shape random weights)");
  embed->add_option("--batch", embed_opts.batches, "Batch sizes")->expected(1, 16);
  embed->add_option("--length", embed_opts.lengths, "Input lengths in tokens")->expected(1, 16);
  embed->add_option("--seconds", embed_opts.seconds, "Seconds per measurement")
      ->check(CLI::Range(0.01, 600.0));
  embed->add_option("--repeat", embed_opts.repeats, "Windows per measurement (best is shown)")
      ->check(CLI::Range(1, 100));
  embed->add_option("--gemm", embed_gemm, "f32 GEMM: auto, hearth or openblas")
      ->check(CLI::IsMember({"auto", "hearth", "openblas"}));
  embed->add_flag("--json", embed_json, "Print JSON");
  hearth::rag::BenchRagOptions rag_options;
  CLI::App* rag = app.add_subcommand(
      "rag", "Retrieval quality (nDCG@10, recall, MRR) and latency on a BEIR dataset");
  hearth::rag::add_bench_rag_options(*rag, rag_options);
  hearth::cli::add_planned(app, "llm", "LLM prompt and generation speed", "LLM engine");
  hearth::cli::add_planned(app, "flux", "FLUX image generation speed and peak memory", "FLUX");
  hearth::cli::add_planned(
      app, "prompt", "Subject x style prompt matrix with a markdown report of images", "FLUX");

  return hearth::cli::run(app, argc, argv, [&] {
    if (rag->parsed()) {
      rag_options.threads = common.threads;
      return hearth::rag::run_bench_rag(rag_options);
    }
    if (embed->parsed()) {
      embed_opts.threads =
          common.threads == 0 ? hearth::ThreadPool::hardware_threads() : common.threads;
      embed_opts.gemm = embed_gemm == "hearth"     ? hearth::kernels::GemmImpl::kOwn
                        : embed_gemm == "openblas" ? hearth::kernels::GemmImpl::kOpenBlas
                                                   : hearth::kernels::GemmImpl::kAuto;
      const auto report = hearth::models::run_embed_bench(embed_opts);
      if (embed_json) {
        std::cout << hearth::models::to_json(report).dump(2) << "\n";
      } else {
        std::cout << hearth::models::to_text(report);
      }
    }
    if (inspect->parsed()) {
      const auto summary = hearth::formats::summarize(inspect_path, inspect_items);
      if (inspect_json) {
        std::cout << hearth::formats::to_json(summary).dump(2) << "\n";
      } else {
        std::cout << hearth::formats::to_text(summary);
      }
    }
    return 0;
  });
}
