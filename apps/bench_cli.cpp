// bench-cli: look inside model files and measure this machine.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "bench_llm.hpp"
#include "hearth/bench/flux_bench.hpp"
#include "hearth/bench/report.hpp"
#include "hearth/bench/reports.hpp"
#include "hearth/cli/app.hpp"
#include "hearth/cli/console.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/file_io.hpp"
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

// --out and the machine probe's size, on every measuring subcommand.
struct ReportFlags {
  std::string out;
  std::size_t probe_mib = 512;
};

void add_report_flags(CLI::App& sub, ReportFlags& f, bool probe = true) {
  sub.add_option("--out", f.out,
                 "Folder for report.md, results.json and the charts (default: a new "
                 "bench-<subcommand>-<date>-<time> folder here)");
  if (probe) {
    sub.add_option("--probe-mib", f.probe_mib,
                   "Read-bandwidth probe buffer in MiB (far larger than the caches)")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
  }
}

// Writes the report into its folder and names it on stderr (stdout keeps the tables or JSON).
void write(hearth::bench::Report report, const ReportFlags& f, bool probe = true) {
  const auto folder = hearth::bench::output_folder(f.out, report.subcommand);
  if (probe) hearth::bench::probe_machine(report.machine, std::uint64_t{f.probe_mib} << 20);
  hearth::bench::write_report(report, folder);
  std::cerr << "bench-cli: wrote " << (folder / "report.md").string() << " and results.json\n";
}

hearth::bench::Report load_results(const std::string& spec) {
  std::filesystem::path p = spec;
  if (std::filesystem::is_directory(p)) p /= "results.json";
  const std::string text = hearth::formats::read_text_file(p);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    throw hearth::Error(hearth::ErrorCode::kFormat, "not valid JSON", {.file = p.string()});
  }
  return hearth::bench::report_from_json(j, p.string());
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
  double tok_seconds = 0.2;
  tokenize->add_option("--seconds", tok_seconds, "Seconds of repeated encode calls for the timing")
      ->check(CLI::Range(0.0, 600.0))
      ->capture_default_str();
  ReportFlags tok_out, embed_out, rag_out, llm_out, compare_out;
  add_report_flags(*tokenize, tok_out);
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
  add_report_flags(*embed, embed_out);
  hearth::rag::BenchRagOptions rag_options;
  CLI::App* rag = app.add_subcommand(
      "rag", "Retrieval quality (nDCG@10, recall, MRR) and latency on a BEIR dataset");
  hearth::rag::add_bench_rag_options(*rag, rag_options);
  add_report_flags(*rag, rag_out);
  hearth::apps::BenchLlmFlags llm_flags;
  CLI::App* llm = hearth::apps::add_bench_llm(app, llm_flags);
  add_report_flags(*llm, llm_out, false);  // it probes between its repetitions
  std::vector<std::string> compare_files;
  CLI::App* compare = app.add_subcommand(
      "compare",
      "Set the figures of several runs (results.json files or their folders) side by side, "
      "with each run's ratio to the first");
  compare->add_option("results", compare_files, "results.json files or report folders")
      ->required()
      ->expected(1, 64);
  add_report_flags(*compare, compare_out, false);
  hearth::bench::FluxBenchOptions flux_opts;
  std::vector<std::string> flux_loras;
  ReportFlags flux_out, prompt_out;
  CLI::App* flux = app.add_subcommand(
      "flux",
      "FLUX.1 generation timed: a warm-up, then N runs per size; per-stage and per-step "
      "seconds, images/min, peak RSS and their spread");
  flux->add_option("-m,--model", flux_opts.model,
                   "FLUX.1 diffusers folder, BFL single file or folder, or a cached repo id")
      ->required();
  flux->add_option("--sizes", flux_opts.sizes, "Square sizes, each a multiple of 16")
      ->delimiter(',')
      ->capture_default_str();
  flux->add_option("--steps", flux_opts.steps, "Denoising steps (default: the model's)");
  flux->add_option("-p,--prompt", flux_opts.prompt, "Prompt")->capture_default_str();
  flux->add_option("--seed", flux_opts.seed, "Seed")->capture_default_str();
  flux->add_option("--warmup", flux_opts.warmup, "Untimed runs per size first")
      ->capture_default_str();
  flux->add_option("-r,--runs", flux_opts.runs, "Timed runs per size")->capture_default_str();
  flux->add_option("--quantize", flux_opts.quantize,
                   "Transformer weight bits to sweep: 0 (as stored), 4 (q4_0) or 8 (q8_0) "
                   "quantized at load, e.g. 4,8")
      ->delimiter(',')
      ->capture_default_str();
  flux->add_option("--lora", flux_loras, "A LoRA adapter PATH[:SCALE] for every run; repeatable");
  add_report_flags(*flux, flux_out);

  hearth::bench::PromptMatrixOptions prompt_opts;
  std::string prompt_subjects, prompt_styles;
  CLI::App* prompt = app.add_subcommand(
      "prompt",
      "Subject x style prompt matrix rendered with one seed: cell PNGs, a labelled contact sheet "
      "and report.md; cells already rendered with the same settings are kept");
  prompt
      ->add_option("-m,--model", prompt_opts.model,
                   "FLUX.1 diffusers folder, BFL single file or folder, or a cached repo id")
      ->required();
  prompt->add_option("--subjects", prompt_subjects,
                     "A file of subjects, one a line, or a comma-separated list (default: a "
                     "bundled set of 4)");
  prompt->add_option("--styles", prompt_styles,
                     "A file of styles, one a line, or a comma-separated list (default: a bundled "
                     "set of 4)");
  prompt->add_option("--pattern", prompt_opts.pattern, "Each cell's prompt")->capture_default_str();
  prompt->add_option("--size", prompt_opts.size, "Square size of each cell (multiple of 16)")
      ->capture_default_str();
  prompt->add_option("--steps", prompt_opts.steps, "Denoising steps (default: the model's)");
  prompt->add_option("--seed", prompt_opts.seed, "The seed of every cell")->capture_default_str();
  add_report_flags(*prompt, prompt_out);

  return hearth::cli::run(app, argc, argv, [&] {
    if (tokenize->parsed()) {
      const auto tok = hearth::tokenize::Tokenizer::load(tok_model);
      print_tokens(tok, tok_text, tok_pair, !tok_no_special, tok_json);
      write(hearth::bench::tokenize_report(
                hearth::bench::run_tokenize_bench(tok, tok_model, tok_text, tok_pair,
                                                  !tok_no_special, tok_seconds),
                hearth::bench::describe_machine(common.threads)),
            tok_out);
    }
    if (llm->parsed()) {
      write(hearth::bench::llm_report(hearth::apps::run_bench_llm(llm_flags, common.threads)),
            llm_out, false);
    }
    if (rag->parsed()) {
      rag_options.threads = common.threads;
      const auto result = hearth::rag::run_bench_rag(rag_options);
      write(hearth::bench::rag_report(result, rag_options,
                                      hearth::bench::describe_machine(common.threads)),
            rag_out);
    }
    if (flux->parsed()) {
      for (const std::string& l : flux_loras) {
        flux_opts.loras.push_back(hearth::models::parse_flux_lora(l));
      }
      flux_opts.threads = common.threads;
      hearth::cli::Progress progress("bench-cli");
      flux_opts.progress = [&](const std::string& what, std::size_t done, std::size_t total) {
        progress.update(done, total, what, 0, 0);
      };
      const auto result = hearth::bench::run_flux_bench(flux_opts);
      progress.clear();
      auto report = hearth::bench::flux_report(result, flux_opts,
                                               hearth::bench::describe_machine(common.threads));
      std::cout << report.sections.front().markdown;
      write(std::move(report), flux_out);
    }
    if (prompt->parsed()) {
      prompt_opts.subjects = prompt_subjects.empty()
                                 ? hearth::bench::default_subjects()
                                 : hearth::bench::read_list(prompt_subjects, "--subjects");
      prompt_opts.styles = prompt_styles.empty()
                               ? hearth::bench::default_styles()
                               : hearth::bench::read_list(prompt_styles, "--styles");
      prompt_opts.threads = common.threads;
      prompt_opts.out = hearth::bench::output_folder(prompt_out.out, "prompt");
      hearth::cli::Progress progress("bench-cli");
      prompt_opts.progress = [&](const std::string& what, std::size_t done, std::size_t total) {
        progress.update(done, total, what, 0, 0);
      };
      const auto result = hearth::bench::run_prompt_matrix(prompt_opts);
      progress.clear();
      std::size_t rendered = 0;
      for (const auto& c : result.cells) rendered += c.rendered ? 1 : 0;
      std::cout << "rendered " << rendered << " of " << result.cells.size() << " cells, kept "
                << result.cells.size() - rendered << "; contact sheet "
                << (prompt_opts.out / result.sheet_file).string() << "\n";
      ReportFlags into = prompt_out;
      into.out = prompt_opts.out.string();
      write(hearth::bench::prompt_report(result, prompt_opts,
                                         hearth::bench::describe_machine(common.threads)),
            into);
    }
    if (compare->parsed()) {
      std::vector<hearth::bench::Report> runs;
      for (const std::string& f : compare_files) runs.push_back(load_results(f));
      const auto c = hearth::bench::compare(runs, compare_files);
      hearth::bench::Report report = hearth::bench::comparison_report(c, runs);
      std::cout << report.sections.front().markdown;
      write(std::move(report), compare_out, false);
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
      write(hearth::bench::embed_report(report, embed_opts,
                                        hearth::bench::describe_machine(embed_opts.threads)),
            embed_out);
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
