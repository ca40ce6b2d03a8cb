// rag-cli: knowledge banks over your own documents, answered by a local model with citations.
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "hearth/cli/app.hpp"
#include "hearth/cli/console.hpp"
#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/formats/hf_cache.hpp"
#include "hearth/models/decoder.hpp"
#include "hearth/rag/answer.hpp"
#include "hearth/rag/bank.hpp"
#include "hearth/rag/config.hpp"
#include "hearth/rag/neural.hpp"
#include "hearth/rag/npz_import.hpp"
#include "hearth/rag/search.hpp"
#include "llm_commands.hpp"

namespace fs = std::filesystem;
using hearth::Error;
using hearth::ErrorCode;
namespace rag = hearth::rag;

namespace {

constexpr std::size_t kDefaultMaxTokens = 512;

struct Options {
  std::vector<std::string> banks;
  std::size_t top_k = 5;
  std::size_t candidates = 20;
  bool no_reranker = false;
  std::string reranker;
  std::string embedding_model;
  std::string model_id;
  std::size_t max_tokens = kDefaultMaxTokens;
  float temperature = 0.0f;
  std::uint64_t seed = 0;
  std::int64_t context = 0;
  bool json = false;
  bool verbose = false;
  bool banks_given = false;  // --bank on the command line (not from the config file)
  std::string mode = "auto";
  std::string filter;
};

// Where each effective setting came from: "flag --model-id", "env HEARTH_MODEL",
// "config FILE:LINE" or "default".
struct Setting {
  std::string name;
  std::string value;
  std::string source;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

fs::path home() {
  return env_or("HOME", "/tmp");
}

fs::path default_bank() {
  return fs::path(env_or("XDG_DATA_HOME", (home() / ".local/share").string())) / "hearth" /
         "banks" / "default";
}

// The banks named, each once: the same folder given twice (or through a link) is one bank.
std::vector<fs::path> bank_paths(const Options& o) {
  std::vector<fs::path> out;
  std::vector<fs::path> seen;
  for (const std::string& b : o.banks) {
    if (b.empty()) throw Error(ErrorCode::kInvalidArgument, "--bank needs a folder");
    std::error_code ec;
    fs::path real = fs::weakly_canonical(fs::absolute(b), ec);
    if (ec) real = fs::absolute(b).lexically_normal();
    if (std::find(seen.begin(), seen.end(), real) != seen.end()) continue;
    seen.push_back(real);
    out.emplace_back(b);
  }
  if (out.empty()) out.push_back(default_bank());
  return out;
}

std::string dump(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The neural models the options name, loaded once per run.
struct Models {
  std::unique_ptr<rag::BertEmbedding> embedding;
  std::unique_ptr<rag::CrossEncoderReranker> reranker;
};

hearth::models::BertOptions bert_options(const hearth::cli::CommonOptions& common) {
  hearth::models::BertOptions b;
  b.threads = common.threads;
  return b;
}

Models load_models(const Options& o, const hearth::cli::CommonOptions& common, bool reranker) {
  Models m;
  if (!o.embedding_model.empty()) {
    m.embedding = rag::BertEmbedding::load(o.embedding_model, bert_options(common));
  }
  if (reranker && !o.reranker.empty() && !o.no_reranker) {
    m.reranker = rag::CrossEncoderReranker::load(o.reranker, bert_options(common));
  }
  return m;
}

// The banks to read; searching ones get the embedding model (and a note when they lack it).
std::vector<std::unique_ptr<rag::Bank>> open_banks(const Options& o, const Models& models,
                                                   bool searching = true) {
  std::vector<std::unique_ptr<rag::Bank>> banks;
  for (const fs::path& p : bank_paths(o)) {
    banks.push_back(rag::Bank::open_read_only(p));
    rag::Bank& bank = *banks.back();
    // A lexical bank stays searchable beside dense ones: it simply gets no model.
    if (models.embedding && bank.has_vectors()) bank.attach_model(models.embedding.get());
    const rag::BankManifest& m = bank.manifest();
    if (searching && bank.model() == nullptr && m.dim > 0 && o.mode == "auto") {
      std::fprintf(stderr,
                   "rag-cli: note: %s holds %s embeddings; pass --embedding-model with that "
                   "model for hybrid search (BM25 only now)\n",
                   hearth::printable(p.string(), 200).c_str(), m.embedding_id.c_str());
    }
  }
  return banks;
}

std::vector<rag::Hit> run_search(const std::vector<std::unique_ptr<rag::Bank>>& banks,
                                 const std::string& query, const Options& o, const Models& models) {
  std::vector<const rag::Bank*> ptrs;
  for (const auto& b : banks) ptrs.push_back(b.get());
  rag::SearchOptions so;
  so.mode = rag::parse_search_mode(o.mode);
  so.top_k = o.top_k;
  so.candidates = o.candidates;
  so.path_glob = o.filter;
  so.reranker = models.reranker.get();
  return rag::search(ptrs, query, so);
}

nlohmann::json hit_json(const rag::Hit& h, std::size_t rank,
                        const std::vector<std::unique_ptr<rag::Bank>>& banks) {
  return {{"rank", rank},
          {"score", h.score},
          {"bank", banks[h.bank]->folder().string()},
          {"path", h.chunk.path},
          {"page_first", h.chunk.page_first},
          {"page_last", h.chunk.page_last},
          {"heading", h.chunk.heading},
          {"chunk_id", h.chunk.id},
          {"byte_begin", h.chunk.byte_begin},
          {"byte_end", h.chunk.byte_end},
          {"text", h.chunk.text}};
}

std::string one_line(std::string_view s, std::size_t max) {
  std::string out = hearth::collapse_whitespace(s);
  if (out.size() > max) {
    std::size_t cut = max;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return hearth::printable(out, max + 3);
}

int do_search(const std::string& query, const Options& o, const Models& models) {
  const auto banks = open_banks(o, models);
  const hearth::Timer t;
  const auto hits = run_search(banks, query, o, models);
  if (o.json) {
    nlohmann::json j{{"query", query}, {"mode", o.mode}, {"ms", t.millis()}, {"hits", {}}};
    j["hits"] = nlohmann::json::array();
    for (std::size_t i = 0; i < hits.size(); ++i)
      j["hits"].push_back(hit_json(hits[i], i + 1, banks));
    std::cout << dump(j) << "\n";
    return 0;
  }
  if (hits.empty()) std::cout << "No matches.\n";
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const auto& c = hits[i].chunk;
    rag::Citation cite{0, c.path, c.page_first, c.page_last, c.heading};
    std::printf("%zu. [%.3f] %s%s\n   %s\n", i + 1, hits[i].score,
                hearth::printable(rag::format_citation(cite), 200).c_str(),
                c.heading.empty() ? "" : ("  (" + hearth::printable(c.heading, 80) + ")").c_str(),
                one_line(c.text, 240).c_str());
  }
  return 0;
}

void print_answer(const rag::ExtractiveAnswer& a, const std::string& question, const Options& o) {
  if (o.json) {
    nlohmann::json j{{"question", question}, {"kind", "extractive"}};
    j["sentences"] = nlohmann::json::array();
    for (const auto& s : a.sentences)
      j["sentences"].push_back({{"text", s.text}, {"citation", s.citation}});
    j["citations"] = nlohmann::json::array();
    for (const auto& c : a.citations) {
      j["citations"].push_back({{"number", c.number},
                                {"path", c.path},
                                {"page_first", c.page_first},
                                {"page_last", c.page_last},
                                {"heading", c.heading}});
    }
    std::cout << dump(j) << "\n";
    return;
  }
  if (a.sentences.empty()) {
    std::cout << "No supporting sentences for this question were found in the bank.\n";
    return;
  }
  std::cout << "Extractive answer (no language model configured; these sentences are quoted "
               "from your documents):\n";
  for (const auto& s : a.sentences) {
    std::cout << "  " << hearth::printable(s.text, 600) << " [" << s.citation << "]\n";
  }
  std::cout << "Sources:\n";
  for (const auto& c : a.citations) {
    std::cout << "  [" << c.number << "] " << hearth::printable(rag::format_citation(c), 300);
    if (!c.heading.empty()) std::cout << " - " << hearth::printable(c.heading, 120);
    std::cout << "\n";
  }
}

// The model named by the settings, with the chat session its answers run in.
struct Llm {
  std::unique_ptr<hearth::models::LanguageModel> model;
  std::unique_ptr<rag::LanguageChatModel> chat;
  std::unique_ptr<rag::Answerer> answerer;
  double load_seconds = 0;
};

Llm load_llm(const Options& o, const hearth::cli::CommonOptions& common) {
  Llm l;
  if (o.model_id.empty()) return l;
  rag::AnswerOptions ao;
  ao.sampling.temperature = o.temperature;
  ao.sampling.seed = o.seed;
  ao.max_tokens = static_cast<std::int64_t>(o.max_tokens);
  ao.sampling.validate();  // before the model loads
  const hearth::Timer t;
  hearth::models::LlmOptions lo;
  lo.threads = common.threads;
  lo.context = o.context;
  l.model = hearth::models::LanguageModel::load(hearth::formats::resolve_model(o.model_id), lo);
  if (!l.model->context_note().empty()) {
    std::fprintf(stderr, "rag-cli: note: %s\n", l.model->context_note().c_str());
  }
  l.chat = std::make_unique<rag::LanguageChatModel>(*l.model, o.context);
  l.answerer = std::make_unique<rag::Answerer>(*l.chat, std::move(ao));
  l.load_seconds = t.seconds();
  return l;
}

// Seconds a run spent before its first question: loading the banks and the model.
struct LoadTimes {
  double bank_seconds = 0;
  double model_seconds = 0;
};

nlohmann::json answer_json(const rag::Answer& a, const Llm& llm, const LoadTimes& load,
                           const std::vector<std::unique_ptr<rag::Bank>>& banks) {
  nlohmann::json j{{"question", a.question},
                   {"query", a.query},
                   {"kind", a.nothing_found ? "nothing_found" : "generated"},
                   {"model", llm.model->name()},
                   {"text", a.text}};
  j["citations"] = nlohmann::json::array();
  for (const rag::AnswerSource& s : a.sources) {
    const rag::ChunkInfo& c = s.hit.chunk;
    j["citations"].push_back({{"number", s.number},
                              {"cited", s.cited},
                              {"this_turn", s.this_turn},
                              {"bank", banks[s.hit.bank]->folder().string()},
                              {"path", c.path},
                              {"page_first", c.page_first},
                              {"page_last", c.page_last},
                              {"heading", c.heading},
                              {"chunk_id", c.id},
                              {"score", s.hit.score},
                              {"tokens", s.tokens}});
  }
  j["invalid_citations"] = a.invalid_citations;
  j["left_out"] = nlohmann::json::array();
  for (const rag::LeftOut& l : a.left_out) {
    j["left_out"].push_back({{"path", l.hit.chunk.path},
                             {"chunk_id", l.hit.chunk.id},
                             {"score", l.hit.score},
                             {"tokens", l.tokens},
                             {"reason", "does not fit in the context"}});
  }
  const rag::AnswerTimings& t = a.timings;
  j["prompt"] = {{"tokens", a.prompt_tokens},
                 {"reused_tokens", a.reused_tokens},
                 {"context", a.context},
                 {"dropped_turns", a.dropped_turns}};
  j["finish_reason"] = a.nothing_found ? "nothing_found" : hearth::models::to_string(a.finish);
  j["generated_tokens"] = a.generated_tokens;
  j["timings"] = {{"bank_load_seconds", load.bank_seconds},
                  {"model_load_seconds", load.model_seconds},
                  {"retrieval_seconds", t.retrieval_seconds},
                  {"prompt_seconds", t.prompt_seconds},
                  {"prefill_tokens", t.prefill_tokens},
                  {"prefill_seconds", t.prefill_seconds},
                  {"first_token_seconds", t.first_token_seconds},
                  {"decode_tokens", t.decode_tokens},
                  {"decode_seconds", t.decode_seconds},
                  {"decode_tokens_per_second", t.decode_tokens_per_second()},
                  {"answer_seconds", t.total_seconds}};
  return j;
}

std::string source_line(const rag::AnswerSource& s) {
  const rag::ChunkInfo& c = s.hit.chunk;
  const rag::Citation cite{s.number, c.path, c.page_first, c.page_last, c.heading};
  std::string line =
      "  [" + std::to_string(s.number) + "] " + hearth::printable(rag::format_citation(cite), 300);
  if (!c.heading.empty()) line += " - " + hearth::printable(c.heading, 120);
  line += "  #" + std::to_string(c.id);
  if (!s.cited) line += "  (not cited)";
  return line + "\n";
}

// After the streamed answer: the invalid citations, the sources (cited first), and with
// --verbose what was left out and the timings.
void print_generated(const rag::Answer& a, const Options& o, const LoadTimes& load) {
  if (a.nothing_found) {
    std::cout << a.text << "\n";
    return;
  }
  std::cout << (a.finish == hearth::models::FinishReason::kCancelled ? " (stopped)\n" : "\n");
  if (!a.invalid_citations.empty()) {
    std::string nums;
    for (const int n : a.invalid_citations)
      nums += (nums.empty() ? "[" : ", [") + std::to_string(n) + "]";
    std::cout << "Invalid citations: " << nums
              << " name no source given to the model (marked in the answer).\n";
  }
  std::cout << "Sources (rag-cli show '#ID' opens one):\n";
  for (const rag::AnswerSource& s : a.sources) std::cout << source_line(s);
  if (a.finish == hearth::models::FinishReason::kContext) {
    std::cout << "(the context is full: /reset forgets the conversation)\n";
  }
  if (!o.verbose) return;
  std::cout.flush();  // the answer before the notes on stderr
  if (a.dropped_turns > 0) {
    std::fprintf(stderr, "rag-cli: %zu earlier turn(s) forgotten to make room\n", a.dropped_turns);
  }
  for (const rag::LeftOut& l : a.left_out) {
    std::fprintf(stderr, "rag-cli: left out (does not fit in the context): %s #%lld, %zu tokens\n",
                 hearth::printable(l.hit.chunk.path, 200).c_str(),
                 static_cast<long long>(l.hit.chunk.id), l.tokens);
  }
  const rag::AnswerTimings& t = a.timings;
  if (load.model_seconds > 0 || load.bank_seconds > 0) {
    std::fprintf(stderr, "rag-cli: model load %.2f s, bank load %.3f s\n", load.model_seconds,
                 load.bank_seconds);
  }
  std::fprintf(stderr,
               "rag-cli: retrieval %.3f s; prompt %zu tokens (%zu reused), prefill %.2f s; first "
               "token after %.2f s; %lld tokens in %.2f s (%.1f tokens/s)\n",
               t.retrieval_seconds, a.prompt_tokens, a.reused_tokens, t.prefill_seconds,
               t.first_token_seconds, static_cast<long long>(t.decode_tokens), t.decode_seconds,
               t.decode_tokens_per_second());
}

// One generated answer: streamed to stdout (unless --json), then its sources.
void generated_answer(const std::string& question, const Options& o,
                      const std::vector<std::unique_ptr<rag::Bank>>& banks, const Models& models,
                      Llm& llm, const LoadTimes& load) {
  const rag::Answer a = llm.answerer->ask(
      question, [&](const std::string& q) { return run_search(banks, q, o, models); },
      [&](std::string_view piece) {
        if (o.json) return;
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
  if (o.json) {
    std::cout << dump(answer_json(a, llm, load, banks)) << "\n";
  } else {
    print_generated(a, o, load);
  }
}

// With --json, an error is also one object on stdout, so a caller always reads JSON.
template <typename F>
int json_errors(const std::string& question, const Options& o, F&& body) {
  try {
    return body();
  } catch (const Error& e) {
    if (o.json) {
      std::cout << dump({{"question", question},
                         {"kind", "error"},
                         {"error", e.what()},
                         {"code", hearth::to_string(e.code())}})
                << "\n";
    }
    throw;
  }
}

const char* const kAddModelHint =
    "To have a local model write the answer with citations, name one: rag-cli --model-id "
    "PATH|ORG/NAME ..., HEARTH_MODEL=..., or model = \"...\" in ";

int do_ask(const std::string& question, const Options& o,
           const std::vector<std::unique_ptr<rag::Bank>>& banks, const Models& models, Llm& llm,
           const LoadTimes& load) {
  if (llm.answerer) {
    generated_answer(question, o, banks, models, llm, load);
    return 0;
  }
  const auto hits = run_search(banks, question, o, models);
  print_answer(rag::extractive_answer(question, hits), question, o);
  return 0;
}

// ask and demo: the banks and the model loaded (and timed), then one answer.
int ask_once(const std::string& question, const Options& o, const Models& models,
             const hearth::cli::CommonOptions& common) {
  return json_errors(question, o, [&] {
    LoadTimes load;
    const hearth::Timer t;
    const auto banks = open_banks(o, models);
    load.bank_seconds = t.seconds();
    Llm llm = load_llm(o, common);
    load.model_seconds = llm.load_seconds;
    return do_ask(question, o, banks, models, llm, load);
  });
}

int do_ingest(const std::vector<std::string>& paths, const Options& o, const Models& models,
              const rag::IngestOptions& base, const rag::ChunkingOptions& chunking,
              bool chunking_given = false, const std::string& vectors = "") {
  const auto folders = bank_paths(o);
  if (folders.size() != 1) {
    throw Error(ErrorCode::kInvalidArgument, "ingest writes to exactly one --bank");
  }
  // A path that is not there (a typo, a drive not mounted) stops the run before a bank is
  // created or anything is ingested or pruned.
  for (const std::string& p : paths) {
    std::error_code ec;
    if (!fs::exists(fs::status(p, ec))) {
      throw Error(
          ErrorCode::kNotFound,
          (ec && ec != std::errc::no_such_file_or_directory ? "cannot access: " + ec.message()
                                                            : std::string("not found")) +
              "; nothing was ingested or pruned",
          {.file = p});
    }
  }
  const rag::VectorType vector_type =
      vectors.empty() ? rag::VectorType::kF32 : rag::parse_vector_type(vectors);
  if (!vectors.empty() && !models.embedding) {
    throw Error(ErrorCode::kInvalidArgument, "--vectors needs --embedding-model");
  }
  // What is fixed when a bank is created cannot be changed by a later ingest: saying so beats
  // ignoring the option.
  const std::string new_bank =
      "; to use it, make a new bank (rag-cli --bank NEW_FOLDER ingest ...)"
      " or leave the option out";
  auto bank = rag::Bank::open(folders[0], models.embedding.get(), true, chunking, vector_type);
  const rag::BankManifest& m = bank->manifest();
  if (chunking_given && m.chunking.describe() != chunking.describe()) {
    throw Error(ErrorCode::kInvalidArgument,
                "this bank chunks " + m.chunking.describe() + " (set when it was created), not " +
                    chunking.describe() + new_bank,
                {.file = folders[0].string()});
  }
  if (!vectors.empty() && m.dim > 0 && m.vector_type != vector_type) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("this bank stores ") + rag::to_string(m.vector_type) +
                    " vectors (set when it was created), not " + vectors + new_bank,
                {.file = folders[0].string()});
  }
  hearth::cli::Progress printer("rag-cli");
  rag::IngestOptions opts = base;
  opts.on_progress = [&](const rag::IngestProgress& p) {
    printer.update(p.files_done, p.files_total, std::to_string(p.chunks) + " chunks", p.bytes_done,
                   p.bytes_total);
  };
  opts.on_message = [&](const std::string& m) { printer.message(m); };
  std::vector<fs::path> roots(paths.begin(), paths.end());
  const rag::IngestReport r = bank->ingest(roots, opts);
  printer.clear();
  std::fprintf(stderr,
               "rag-cli: %zu added, %zu updated, %zu unchanged, %zu failed, %zu skipped, %zu "
               "pruned; %zu chunks; %.1f MB in %.2f s (%.1f MB/s) into %s\n",
               r.added, r.updated, r.unchanged, r.failed, r.skipped, r.pruned, r.chunks,
               static_cast<double>(r.bytes) / 1e6, r.seconds,
               static_cast<double>(r.bytes) / 1e6 / std::max(r.seconds, 1e-9),
               hearth::printable(folders[0].string(), 200).c_str());
  return r.failed > 0 || r.prune_refused ? 1 : 0;
}

int interactive(const Options& o, const Models& models, const hearth::cli::CommonOptions& common) {
  LoadTimes load;
  const hearth::Timer t;
  const auto banks = open_banks(o, models);
  load.bank_seconds = t.seconds();
  Llm llm = load_llm(o, common);
  load.model_seconds = llm.load_seconds;
  std::fprintf(
      stderr,
      "Ask a question about your documents (Ctrl+D or Ctrl+C to quit; Ctrl+C during an "
      "answer cancels it%s).\n",
      llm.answerer ? "; follow-up questions keep the conversation, /reset forgets it" : "");
  hearth::cli::LineReader reader(hearth::cli::history_file("rag-cli"));
  for (;;) {
    const auto line = reader.read("\xE2\x9D\x93> ");
    if (!line) {
      std::fputs("\n", stdout);
      // Ctrl+C at the prompt ends the loop as an interrupt (130), Ctrl+D as a normal end.
      return hearth::cancel_requested() ? 130 : 0;
    }
    const std::string q(line->begin(), line->end());
    if (q.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (q == "/reset" && llm.answerer) {
      llm.answerer->reset();
      std::fputs("(conversation forgotten)\n", stdout);
      continue;
    }
    try {
      json_errors(q, o, [&] { return do_ask(q, o, banks, models, llm, load); });
      load = {};  // loading is counted once, with the first answer
    } catch (const Error& e) {
      // A cancelled answer, or one that cannot be given (the context too small for a source),
      // returns to the prompt; the bank was only read.
      if (e.code() != ErrorCode::kCancelled && e.code() != ErrorCode::kInvalidArgument) throw;
      if (e.code() == ErrorCode::kCancelled) {
        std::fputs("(cancelled)\n", stdout);
      } else {
        std::fprintf(stderr, "rag-cli: %s\n", e.what());
      }
    }
    hearth::reset_cancel();
    std::fflush(stdout);
  }
}

int do_embed(const std::string& path, const std::vector<std::string>& texts, const Options& o,
             const hearth::cli::CommonOptions& common) {
  hearth::models::Embedder e = hearth::models::Embedder::load(path, bert_options(common));
  const auto vectors = e.embed(texts);
  if (o.json) {
    nlohmann::json j{{"model", e.name()}, {"dim", e.dimension()}, {"embeddings", vectors}};
    std::cout << j.dump() << "\n";
    return 0;
  }
  for (const auto& v : vectors) {
    std::string line;
    for (const float x : v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, line.empty() ? "%.7g" : " %.7g", static_cast<double>(x));
      line += buf;
    }
    std::cout << line << "\n";
  }
  return 0;
}

int do_rerank(const std::string& path, const std::string& query,
              const std::vector<std::string>& passages, const Options& o,
              const hearth::cli::CommonOptions& common) {
  hearth::models::CrossEncoder ce = hearth::models::CrossEncoder::load(path, bert_options(common));
  const std::vector<float> scores = ce.score(query, passages);
  std::vector<std::size_t> order(passages.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  if (o.json) {
    nlohmann::json j{{"model", ce.name()}, {"query", query}, {"results", nlohmann::json::array()}};
    for (const std::size_t i : order) {
      j["results"].push_back({{"index", i}, {"score", scores[i]}, {"passage", passages[i]}});
    }
    std::cout << dump(j) << "\n";
    return 0;
  }
  for (std::size_t r = 0; r < order.size(); ++r) {
    std::printf("%zu. [%.4f] %s\n", r + 1, static_cast<double>(scores[order[r]]),
                one_line(passages[order[r]], 200).c_str());
  }
  return 0;
}

// Fills the settings the command line left out from the environment, then the config file, and
// says where each came from.
std::vector<Setting> resolve_settings(CLI::App& app, Options& o, const rag::RagConfig& cfg) {
  std::vector<Setting> out;
  const auto given = [&](const char* flag) { return app.get_option(flag)->count() > 0; };
  const auto from_file = [&](const char* key) { return "config file " + cfg.where(key); };
  const auto text = [&](const char* key, const char* flag, const char* env,
                        const std::optional<std::string>& file, std::string& value,
                        const char* none) {
    std::string source = "default";
    const char* e = std::getenv(env);
    if (given(flag)) {
      source = std::string("flag ") + flag;
    } else if (e != nullptr && *e != '\0') {
      value = e;
      source = std::string("env ") + env;
    } else if (file) {
      value = *file;
      source = from_file(key);
    }
    out.push_back({key, value.empty() ? none : value, source});
  };
  text("model", "--model-id", "HEARTH_MODEL", cfg.model, o.model_id,
       "(none: answers are extractive)");
  text("embedding_model", "--embedding-model", "HEARTH_EMBEDDING_MODEL", cfg.embedding_model,
       o.embedding_model, "(none: BM25 only)");
  text("reranker", "--reranker", "HEARTH_RERANKER", cfg.reranker, o.reranker, "(none)");

  o.banks_given = given("--bank");
  if (o.banks_given) {
    std::string all;
    for (const std::string& b : o.banks) all += (all.empty() ? "" : ", ") + b;
    out.push_back({"bank", all, "flag --bank"});
  } else if (cfg.bank) {
    o.banks = {*cfg.bank};
    out.push_back({"bank", *cfg.bank, from_file("bank")});
  } else {
    out.push_back({"bank", default_bank().string(), "default"});
  }

  const auto number = [&](const char* key, const char* flag, const auto& file, auto& value,
                          const std::string& shown_default) {
    std::string source = "default";
    if (given(flag)) {
      source = std::string("flag ") + flag;
    } else if (file) {
      value = static_cast<std::remove_reference_t<decltype(value)>>(*file);
      source = from_file(key);
    }
    std::ostringstream shown;
    shown << value;
    out.push_back({key, source == "default" ? shown_default : shown.str(), source});
  };
  number("top_k", "--top-k", cfg.top_k, o.top_k, "5");
  number("max_tokens", "--max-tokens", cfg.max_tokens, o.max_tokens,
         std::to_string(kDefaultMaxTokens));
  number("temperature", "--temp", cfg.temperature, o.temperature, "0 (greedy)");
  number("context", "--ctx", cfg.context, o.context, "0 (the model's, capped by memory)");
  number("seed", "--seed", cfg.seed, o.seed, "0");
  return out;
}

int show_settings(const std::vector<Setting>& settings, const rag::RagConfig& cfg,
                  const Options& o) {
  if (o.json) {
    nlohmann::json j{{"config_file", cfg.file.string()}, {"config_file_found", cfg.exists}};
    j["settings"] = nlohmann::json::object();
    for (const Setting& s : settings) {
      j["settings"][s.name] = {{"value", s.value}, {"source", s.source}};
    }
    std::cout << dump(j) << "\n";
    return 0;
  }
  std::printf("config file: %s (%s)\n", hearth::printable(cfg.file.string(), 300).c_str(),
              cfg.exists ? "read" : "not found");
  for (const Setting& s : settings) {
    std::printf("  %-16s %s  [%s]\n", s.name.c_str(), hearth::printable(s.value, 300).c_str(),
                hearth::printable(s.source, 300).c_str());
  }
  return 0;
}

fs::path find_sample_corpus(const std::string& given) {
  if (!given.empty()) return given;
  std::error_code ec;
  std::vector<fs::path> starts{fs::current_path(ec)};
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  for (fs::path dir : starts) {
    for (int up = 0; up < 6 && !dir.empty(); ++up, dir = dir.parent_path()) {
      const fs::path c = dir / "data" / "sample-corpus";
      if (fs::is_directory(c, ec)) return c;
      if (dir == dir.parent_path()) break;
    }
  }
  throw Error(ErrorCode::kNotFound,
              "cannot find data/sample-corpus beside this checkout; pass --corpus DIR");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Ask questions over your own documents; nothing leaves this machine.\nWith no "
      "subcommand, rag-cli starts the interactive loop: type questions at the \xE2\x9D\x93> "
      "prompt (history and line editing on a terminal; Ctrl+D ends it).",
      "rag-cli"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  app.require_subcommand(0, 1);
  app.fallthrough();

  Options o;
  app.add_option("--bank,--vdb-path", o.banks,
                 "Bank folder, one per --bank (repeat it to search several); default "
                 "$XDG_DATA_HOME/hearth/banks/default")
      ->allow_extra_args(false);
  app.add_option("--top-k", o.top_k, "Chunks used for an answer or shown by search (1-10000)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--candidates", o.candidates,
                 "Candidates per retriever (and for the reranker) (1-100000)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_flag("--no-reranker", o.no_reranker, "Do not rerank the candidates");
  app.add_option("--reranker", o.reranker,
                 "Cross-encoder (HF folder or GGUF, e.g. ms-marco-MiniLM-L-6-v2) that reranks "
                 "the candidates (or HEARTH_RERANKER, or reranker in the config file)");
  app.add_option("--embedding-model", o.embedding_model,
                 "Sentence-transformers embedder (HF folder or GGUF, e.g. all-MiniLM-L6-v2): "
                 "new banks store its vectors and chunk to its tokens; search becomes hybrid (or "
                 "HEARTH_EMBEDDING_MODEL, or embedding_model in the config file)");
  app.add_option("--model-id", o.model_id,
                 "LLM that writes cited answers (ask, the interactive loop, demo) and runs "
                 "generate and chat: a Hugging Face folder, a .gguf file, or a repo id in the "
                 "local Hugging Face cache (mlx-community/Phi-3-mini-4k-instruct-4bit); or "
                 "HEARTH_MODEL, or model in the config file");
  app.add_option("--max-tokens", o.max_tokens,
                 "Most tokens an LLM answer may have, reserved in the context (default 512)")
      ->check(CLI::PositiveNumber);
  app.add_option("--temp", o.temperature, "LLM answers: sampling temperature; 0 is greedy")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "LLM answers: random seed");
  app.add_option("--ctx", o.context,
                 "LLM answers: context length in tokens (default: the model's, capped by memory)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--verbose", o.verbose,
               "ask: say which sources were left out and print the timings on stderr");
  app.add_option("--mode", o.mode, "Retrieval: auto, bm25, dense or hybrid")->capture_default_str();
  app.add_option("--filter", o.filter, "Only documents whose path matches this glob");
  app.add_flag("--json", o.json, "JSON output (search, ask, list, stats, config, generate)");

  std::vector<std::string> ingest_paths;
  rag::IngestOptions ingest_opts;
  std::string chunker = "structural";
  std::size_t chunk_size = 0;
  std::size_t chunk_overlap = 50;
  std::uint64_t max_file_mb = 64;
  CLI::App* ingest =
      app.add_subcommand("ingest", "Add .txt/.md/.html/.pdf/.rst/.csv files or folders to a bank");
  ingest->add_option("paths", ingest_paths, "Files or folders (recursive)")->required();
  ingest->add_option("--include", ingest_opts.collect.include, "Only files matching this glob");
  ingest->add_option("--exclude", ingest_opts.collect.exclude, "Skip files matching this glob");
  ingest->add_flag("--prune", ingest_opts.prune,
                   "Drop documents whose files are gone (refused when a path is missing, "
                   "unreadable or empty)");
  ingest->add_flag("--follow-symlinks", ingest_opts.collect.follow_symlinks,
                   "Read symlinked files whose targets are outside the folder");
  ingest->add_option("--chunker", chunker, "structural, or characters (the original 256/50)")
      ->capture_default_str();
  ingest
      ->add_option("--chunk-size", chunk_size,
                   "Chunk budget for a new bank: characters (structural 1000, characters 256), "
                   "or the embedding model's tokens with --embedding-model (default 256, at "
                   "most its maximum length)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30));
  ingest->add_option("--chunk-overlap", chunk_overlap, "Overlap for --chunker characters")
      ->capture_default_str();
  ingest->add_option("--max-file-size", max_file_mb, "Skip files larger than this many MiB")
      ->capture_default_str();
  std::string vectors;
  ingest
      ->add_option("--vectors", vectors,
                   "How a new bank stores its embeddings: f32 (default), f16 (half the disk, "
                   "scores within ~1e-3) or int8 (a quarter, within ~3e-2)")
      ->check(CLI::IsMember({"f32", "f16", "int8"}));

  std::string query;
  CLI::App* search =
      app.add_subcommand("search", "BM25, dense or hybrid search of one or more banks");
  search->add_option("query", query, "What to look for")->required();
  CLI::App* ask = app.add_subcommand("ask", "Answer a question from a bank, citing sources");
  ask->add_option("question", query, "The question")->required();

  CLI::App* list = app.add_subcommand("list", "List a bank's documents");
  std::string show_target;
  CLI::App* show = app.add_subcommand("show", "Show a document's chunks, or one chunk by #id");
  show->add_option("target", show_target, "Document path, or #ID for a chunk")->required();
  std::vector<std::string> rm_patterns;
  CLI::App* rm = app.add_subcommand("rm", "Remove documents (paths or globs) from a bank");
  rm->add_option("patterns", rm_patterns, "Document paths or globs")->required();
  CLI::App* stats = app.add_subcommand("stats", "Counts and sizes of a bank");
  CLI::App* compact = app.add_subcommand(
      "compact",
      "Reclaim the space of removed chunks (vectors are compacted on their own once half are "
      "dead; this also rebuilds the database)");

  std::string npz_path;
  CLI::App* import = app.add_subcommand("import", "Import the original lab's vdb.npz index");
  import->add_option("npz", npz_path, "The .npz file")->required();
  import->footer(
      "The .npz is a zip (stored or deflated) of little-endian .npy arrays, sizes checked from "
      "their headers before anything is read:\n"
      "  embeddings        N x D float32/float64, one finite, non-zero vector per chunk\n"
      "  chunk_data        1-D integers: the Unicode code points of every chunk text, end to end\n"
      "  chunk_lengths     N integers: code points per chunk (chunk i starts at the sum of the "
      "lengths before it)\n"
      "  source_data, source_lengths   the same for each chunk's source (file path); chunks with "
      "one source become one document\n"
      "  metadata_data, metadata_lengths   optional: one JSON object per chunk; \"page\" is kept\n"
      "The bank (--bank) must be new. With --embedding-model (dimension D) it can be searched "
      "densely and extended; without, its vectors are labelled 'imported'.");

  std::string corpus;
  std::string demo_question = "How do I keep a bank up to date when my files change?";
  CLI::App* demo = app.add_subcommand(
      "demo", "Ingest the bundled sample corpus (hearth's guide) and answer a sample question");
  demo->add_option("--corpus", corpus, "Sample corpus folder (default: data/sample-corpus)");
  demo->add_option("--question", demo_question, "Question to answer")->capture_default_str();

  std::string model_path;
  std::vector<std::string> texts;
  CLI::App* embed = app.add_subcommand(
      "embed", "Print sentence embeddings, one line of floats per text (--json: an object)");
  embed->add_option("--model", model_path, "Sentence-transformers folder or GGUF")->required();
  embed->add_option("texts", texts, "Texts to embed")->required();
  CLI::App* rerank =
      app.add_subcommand("rerank", "Score passages against a query with a cross-encoder");
  rerank->add_option("--model", model_path, "Cross-encoder folder or GGUF")->required();
  rerank->add_option("query", query, "The query")->required();
  rerank->add_option("passages", texts, "Passages to score")->required();

  CLI::App* config =
      app.add_subcommand("config",
                         "Show the effective settings and where each came from (flag, environment, "
                         "config file, default)");
  config->footer(
      "The config file is $XDG_CONFIG_HOME/hearth/config.toml (else ~/.config/hearth/config.toml), "
      "TOML with these top-level keys: model, embedding_model, reranker, bank (strings; ~/ is "
      "the home folder), top_k, max_tokens, context, seed (whole numbers), temperature. Flags "
      "override the environment (HEARTH_MODEL, HEARTH_EMBEDDING_MODEL, HEARTH_RERANKER), which "
      "overrides the file.");

  // Each subcommand's help names the options given before or after it that apply to it.
  const std::string reading = "--bank DIR (repeatable), --json";
  const std::string retrieval =
      "--bank DIR (repeatable), --top-k N, --candidates N, --mode auto|bm25|dense|hybrid, "
      "--filter GLOB, --json, --embedding-model PATH, --reranker PATH, --no-reranker, --threads N";
  const std::string llm_options =
      ", --model-id PATH|ORG/NAME, --max-tokens N, --temp T, --seed N, --ctx N, --verbose";
  const auto applies = [](CLI::App* sub, const std::string& options, const std::string& extra) {
    sub->footer("Options of rag-cli that apply (before or after the subcommand): " + options +
                extra);
  };
  const std::string dash = ". A query that starts with '-' goes after '--' (rag-cli search -- -q).";
  applies(search, retrieval, dash);
  applies(ask, retrieval + llm_options, dash);
  applies(list, reading + ", --filter GLOB", "");
  applies(show, "--bank DIR (repeatable)", "");
  applies(rm, "--bank DIR (repeatable)", "");
  applies(stats, reading, "");
  applies(compact, "--bank DIR (repeatable)", "");
  applies(ingest, "--bank DIR (one), --embedding-model PATH, --threads N", "");
  applies(demo,
          "--bank DIR, --top-k N, --json, --embedding-model PATH, --reranker PATH, --model-id "
          "PATH, --max-tokens N, --temp T, --seed N, --ctx N, --verbose",
          "");
  applies(config, "--json and every setting it shows", "");
  applies(embed, "--json, --threads N", "");
  applies(rerank, "--json, --threads N", "");
  app.footer(
      "Globs (--filter, rm, --include, --exclude) match paths relative to the folder given to "
      "ingest, or absolute paths; a glob without '/' matches the file name.");
  const std::string hint =
      "Each --bank takes one folder. Words that start with '-' are read as options: put '--' "
      "before a query that starts with '-' (rag-cli search -- -q).";

  hearth::apps::LlmCommands llm;
  hearth::apps::add_llm_commands(app, llm);

  return hearth::cli::run(app, argc, argv, hint, [&]() -> int {
    const rag::RagConfig cfg = rag::RagConfig::load(rag::RagConfig::default_path());
    const std::vector<Setting> settings = resolve_settings(app, o, cfg);
    if (config->parsed()) return show_settings(settings, cfg, o);
    hearth::apps::LlmGlobals globals{o.model_id, o.max_tokens, o.json, common};
    if (app.get_option("--temp")->count() > 0 || cfg.temperature)
      globals.temperature = o.temperature;
    if (app.get_option("--seed")->count() > 0 || cfg.seed) globals.seed = o.seed;
    if (app.get_option("--ctx")->count() > 0 || cfg.context) globals.context = o.context;
    if (const int rc = hearth::apps::run_llm_command(llm, globals); rc >= 0) {
      return rc;
    }
    if (embed->parsed()) return do_embed(model_path, texts, o, common);
    if (rerank->parsed()) return do_rerank(model_path, query, texts, o, common);
    if (import->parsed()) {
      const auto folders = bank_paths(o);
      const Models models = load_models(o, common, false);
      const rag::ImportReport r = rag::import_npz(npz_path, folders.at(0), models.embedding.get());
      std::fprintf(stderr, "rag-cli: imported %zu chunks from %zu sources (dim %zu) into %s\n",
                   r.chunks, r.documents, r.dim,
                   hearth::printable(folders[0].string(), 200).c_str());
      return 0;
    }
    if (app.get_option("--max-tokens")->count() > 0 && o.model_id.empty() &&
        (ask->parsed() || demo->parsed() || app.get_subcommands().empty())) {
      std::fprintf(stderr,
                   "rag-cli: note: --max-tokens applies to LLM answers; no LLM is configured "
                   "(--model-id, HEARTH_MODEL or the config file), so answers are extractive\n");
    }
    // Models are loaded only by the commands that embed or rerank.
    const bool bookkeeping =
        list->parsed() || stats->parsed() || show->parsed() || rm->parsed() || compact->parsed();
    const Models models = bookkeeping ? Models{} : load_models(o, common, !ingest->parsed());
    if (ingest->parsed()) {
      rag::ChunkingOptions c;
      if (chunker == "characters") {
        c = rag::ChunkingOptions::original();
      } else if (chunker != "structural") {
        throw Error(ErrorCode::kInvalidArgument, "--chunker must be structural or characters");
      } else if (models.embedding) {
        const std::size_t limit = models.embedding->max_text_tokens();
        if (chunk_size > limit) {
          throw Error(ErrorCode::kInvalidArgument,
                      "--chunk-size " + std::to_string(chunk_size) + " is more than " +
                          models.embedding->id() + " reads (" + std::to_string(limit) + " tokens)");
        }
        c = rag::ChunkingOptions::tokens(std::min<std::size_t>(256, limit));
      }
      if (chunk_size > 0) c.budget = chunk_size;
      c.overlap = chunk_overlap;
      ingest_opts.load.max_file_bytes = max_file_mb << 20;
      const bool given = ingest->count("--chunker") + ingest->count("--chunk-size") +
                             ingest->count("--chunk-overlap") >
                         0;
      return do_ingest(ingest_paths, o, models, ingest_opts, c, given, vectors);
    }
    if (search->parsed()) return do_search(query, o, models);
    if (ask->parsed()) return ask_once(query, o, models, common);
    if (list->parsed() || stats->parsed()) {
      const auto banks = open_banks(o, {}, false);
      nlohmann::json j = nlohmann::json::array();
      for (const auto& b : banks) {
        if (list->parsed()) {
          for (const auto& d : b->documents(o.filter)) {
            if (o.json) {
              j.push_back({{"bank", b->folder().string()},
                           {"path", d.path},
                           {"kind", d.kind},
                           {"title", d.title},
                           {"size", d.size},
                           {"pages", d.pages},
                           {"chunks", d.chunks},
                           {"hash", d.hash}});
            } else {
              std::printf("%-4s %6lld chunks %9s  %s\n", d.kind.c_str(),
                          static_cast<long long>(d.chunks), hearth::format_bytes(d.size).c_str(),
                          hearth::printable(d.path, 300).c_str());
            }
          }
        } else {
          const rag::BankStats s = b->stats();
          const auto& m = b->manifest();
          if (o.json) {
            j.push_back({{"bank", b->folder().string()},
                         {"documents", s.documents},
                         {"chunks", s.chunks},
                         {"vectors", s.vectors},
                         {"vector_rows", s.vector_rows},
                         {"text_bytes", s.text_bytes},
                         {"disk_bytes", s.disk_bytes},
                         {"chunking", m.chunking.describe()},
                         {"embedding_model", m.embedding_id},
                         {"dim", m.dim},
                         {"vector_dtype", m.dim > 0 ? rag::to_string(m.vector_type) : ""}});
          } else {
            std::printf(
                "%s\n  documents %lld, chunks %lld, vectors %lld (rows %lld)\n  text %s, "
                "on disk %s\n  chunking %s, embedding %s\n",
                hearth::printable(b->folder().string(), 300).c_str(),
                static_cast<long long>(s.documents), static_cast<long long>(s.chunks),
                static_cast<long long>(s.vectors), static_cast<long long>(s.vector_rows),
                hearth::format_bytes(s.text_bytes).c_str(),
                hearth::format_bytes(s.disk_bytes).c_str(), m.chunking.describe().c_str(),
                m.embedding_id.empty() ? "none (BM25 only)"
                                       : (m.embedding_id + " dim " + std::to_string(m.dim) + " " +
                                          rag::to_string(m.vector_type))
                                             .c_str());
          }
        }
      }
      if (o.json) std::cout << dump(j) << "\n";
      return 0;
    }
    if (show->parsed()) {
      if (show_target.empty()) {
        throw Error(ErrorCode::kInvalidArgument, "show needs a document path or #ID, not ''");
      }
      const auto banks = open_banks(o, {}, false);
      for (const auto& b : banks) {
        if (show_target.starts_with("#")) {
          std::int64_t id = 0;
          const std::string digits = show_target.substr(1);
          const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
          if (ec != std::errc() || end != digits.data() + digits.size()) {
            throw Error(ErrorCode::kInvalidArgument,
                        "'" + show_target + "' is not a chunk id (#NUMBER)");
          }
          const auto c = b->chunk(id);
          if (!c) continue;
          std::printf("%s  chunk #%lld  pages %d-%d  bytes %llu-%llu\n%s%s\n\n%s\n",
                      hearth::printable(c->path, 300).c_str(), static_cast<long long>(c->id),
                      c->page_first, c->page_last, static_cast<unsigned long long>(c->byte_begin),
                      static_cast<unsigned long long>(c->byte_end),
                      c->heading.empty() ? "" : "heading: ", c->heading.c_str(), c->text.c_str());
          return 0;
        }
        auto d = b->document(show_target);
        if (!d) d = b->document(fs::absolute(show_target).lexically_normal().string());
        if (!d) continue;
        std::printf("%s  (%s, %d pages, %lld chunks, hash %s)\n",
                    hearth::printable(d->path, 300).c_str(), d->kind.c_str(), d->pages,
                    static_cast<long long>(d->chunks), d->hash.c_str());
        for (const auto& c : b->chunks_of(d->id)) {
          std::printf("  #%lld p.%d-%d %s: %s\n", static_cast<long long>(c.id), c.page_first,
                      c.page_last, hearth::printable(c.heading, 60).c_str(),
                      one_line(c.text, 100).c_str());
        }
        return 0;
      }
      throw Error(ErrorCode::kNotFound, "no such document or chunk in the bank: " + show_target);
    }
    if (rm->parsed()) {
      for (const std::string& p : rm_patterns) {
        if (p.empty()) throw Error(ErrorCode::kInvalidArgument, "rm needs paths or globs, not ''");
      }
      const auto folders = bank_paths(o);
      std::size_t removed = 0;
      for (const auto& f : folders) {
        auto bank = rag::Bank::open(f, nullptr, false);
        std::vector<std::string> patterns = rm_patterns;
        for (const std::string& p : rm_patterns) {
          patterns.push_back(fs::absolute(p).lexically_normal().string());
        }
        removed += bank->remove(patterns);
      }
      std::fprintf(stderr, "rag-cli: removed %zu document(s)\n", removed);
      return removed > 0 ? 0 : 1;
    }
    if (compact->parsed()) {
      for (const auto& f : bank_paths(o)) {
        auto bank = rag::Bank::open(f, nullptr, false);
        const std::uint64_t before = bank->stats().disk_bytes;
        const std::size_t rows = bank->compact(true);
        std::fprintf(stderr, "rag-cli: %s: %zu dead vector rows reclaimed; on disk %s -> %s\n",
                     hearth::printable(f.string(), 200).c_str(), rows,
                     hearth::format_bytes(before).c_str(),
                     hearth::format_bytes(bank->stats().disk_bytes).c_str());
      }
      return 0;
    }
    if (demo->parsed()) {
      const fs::path src = find_sample_corpus(corpus);
      Options d = o;
      if (!o.banks_given) {
        d.banks.clear();
        d.banks.push_back((fs::path(env_or("XDG_CACHE_HOME", (home() / ".cache").string())) /
                           "hearth" / "demo-bank")
                              .string());
      }
      rag::IngestOptions io;
      io.prune = true;
      do_ingest({src.string()}, d, models, io, {});
      std::printf("\xE2\x9D\x93> %s\n", demo_question.c_str());
      const int rc = ask_once(demo_question, d, models, common);
      if (o.model_id.empty() && !o.json) {
        std::cout << "\n" << kAddModelHint << rag::RagConfig::default_path().string() << ".\n";
      }
      return rc;
    }
    return interactive(o, models, common);
  });
}
