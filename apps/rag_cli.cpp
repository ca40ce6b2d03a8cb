// rag-cli: knowledge banks over your own documents, answered by a local model with citations.
#include "hearth/cli/app.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Ask questions over your own documents; nothing leaves this machine", "rag-cli"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  app.require_subcommand(0, 1);

  const char* banks = "knowledge banks issue";
  hearth::cli::add_planned(app, "ingest", "Add .txt/.md/.html/.pdf files or folders to a bank",
                           banks);
  hearth::cli::add_planned(app, "search", "BM25, dense or hybrid search of one or more banks",
                           banks);
  hearth::cli::add_planned(app, "ask", "Answer a question from a bank, citing sources", banks);
  hearth::cli::add_planned(app, "list", "List a bank's documents", banks);
  hearth::cli::add_planned(app, "show", "Show a document or chunk", banks);
  hearth::cli::add_planned(app, "rm", "Remove documents from a bank", banks);
  hearth::cli::add_planned(app, "stats", "Counts and sizes of a bank", banks);
  hearth::cli::add_planned(app, "import", "Import the original lab's vdb.npz index", banks);
  hearth::cli::add_planned(app, "embed", "Print sentence embeddings for texts",
                           "compute core + BERT issue");
  hearth::cli::add_planned(app, "rerank", "Score passages against a query with a cross-encoder",
                           "compute core + BERT issue");

  return hearth::cli::run(app, argc, argv, [&] {
    std::fprintf(stderr,
                 "rag-cli: the interactive question loop is not implemented yet (planned: "
                 "knowledge banks issue). See 'rag-cli --help'.\n");
    return 2;
  });
}
