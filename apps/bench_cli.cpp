// bench-cli: look inside model files and measure this machine.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "bench_llm.hpp"
#include "hearth/cli/app.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/inspect.hpp"
#include "hearth/models/embed_bench.hpp"
#include "hearth/rag/bench_rag.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace {

void print_tokens(const hearth::tokenize::Tokenizer& tok, const std::string& text,
                  const std::optional<std::string>& pair, bool add_special, bool json) {
  const auto e = pair ? tok.encode_pair(text, *pair, add_special) : tok.encode(text, add_special);
  if (json) {
    nlohmann::json out = {{"ids", e.ids}, {"type_ids", e.type_ids}};
    nlohmann::json pieces = nlohmann::json::array();
    for (const auto id : e.ids) pieces.push_back(tok.id_to_token(id));
    out["pieces"] = pieces;
    out["decoded"] = tok.decode(e.ids, false);
    std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return;
  }
  std::cout << e.ids.size() << " tokens (" << tok.model_type() << ")\n";
  for (std::size_t i = 0; i < e.ids.size(); ++i) {
    std::cout << e.ids[i] << "\t" << e.type_ids[i] << "\t"
              << hearth::printable(tok.id_to_token(e.ids[i])) << "\n";
  }
}

}  // namespace

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

  std::string tok_model, tok_text;
  std::optional<std::string> tok_pair;
  bool tok_json = false, tok_no_special = false;
  CLI::App* tokenize = app.add_subcommand("tokenize", "Print token ids and pieces for a text");
  tokenize->add_option("--model", tok_model, "tokenizer.json, vocab.txt, model folder or .gguf")
      ->required();
  tokenize->add_option("--pair", tok_pair, "Second sequence (token_type_ids 1)");
  tokenize->add_flag("--json", tok_json, "Print JSON");
  tokenize->add_flag("--no-special", tok_no_special, "Add no [CLS]/[SEP]/BOS tokens");
  tokenize->add_option("text", tok_text, "Text to tokenize")->required();
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
  hearth::apps::BenchLlmFlags llm_flags;
  CLI::App* llm = hearth::apps::add_bench_llm(app, llm_flags);
  hearth::cli::add_planned(app, "flux", "FLUX image generation speed and peak memory", "FLUX");
  hearth::cli::add_planned(
      app, "prompt", "Subject x style prompt matrix with a markdown report of images", "FLUX");

  return hearth::cli::run(app, argc, argv, [&] {
    if (tokenize->parsed()) {
      print_tokens(hearth::tokenize::Tokenizer::load(tok_model), tok_text, tok_pair,
                   !tok_no_special, tok_json);
    }
    if (llm->parsed()) return hearth::apps::run_bench_llm(llm_flags, common.threads);
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
