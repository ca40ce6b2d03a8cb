#include "hearth/serve/server.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"
#include "hearth/models/decoder.hpp"
#include "hearth/models/flux_pipeline.hpp"
#include "hearth/rag/answer.hpp"
#include "hearth/rag/bank.hpp"
#include "hearth/rag/neural.hpp"
#include "hearth/rag/search.hpp"
#include "hearth/serve/image_jobs.hpp"
#include "hearth/serve/scheduler.hpp"

namespace hearth::serve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// An ApiError thrown through code that cannot return one (the ChatModel seam).
struct ApiFailure {
  ApiError error;
};

// Thrown from a streaming callback when the client is gone.
struct ClientGone {};

std::int64_t unix_now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(error_body(e), "application/json");
}

void send_json(httplib::Response& res, const json& j, int status = 200) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (b.empty() ? 0 : b[i % b.size()]));
  }
  return diff == 0;
}

ApiError from_hearth_error(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kFormat:
    case ErrorCode::kUnsupported:
      return bad_request(e.what());
    case ErrorCode::kNotFound:
      return not_found(e.what());
    default:
      return internal_error(e.what());
  }
}

// A bank given with --bank: its folder, the open bank (one connection, so one user at a time) and
// its uploads.
struct BankEntry {
  std::string name;
  fs::path folder;
  std::unique_ptr<rag::Bank> bank;
  std::mutex mutex;
  fs::path uploads() const { return folder / "uploads"; }
};

struct Upload {
  std::string id;
  std::string bank;
  std::vector<std::string> files;
  std::string status = "queued";  // queued, running, done, failed
  rag::IngestProgress progress;
  rag::IngestReport report;
  std::vector<std::string> messages;
  std::string error;
};

json upload_json(const Upload& u) {
  json j = {{"id", u.id},
            {"object", "bank.upload"},
            {"bank", u.bank},
            {"files", u.files},
            {"status", u.status},
            {"progress",
             {{"files_done", u.progress.files_done},
              {"files_total", u.progress.files_total},
              {"bytes_done", u.progress.bytes_done},
              {"bytes_total", u.progress.bytes_total},
              {"chunks", u.progress.chunks},
              {"current", fs::path(u.progress.current).filename().string()}}},
            {"messages", u.messages}};
  if (u.status == "done") {
    j["report"] = {{"added", u.report.added},         {"updated", u.report.updated},
                   {"unchanged", u.report.unchanged}, {"failed", u.report.failed},
                   {"skipped", u.report.skipped},     {"chunks", u.report.chunks},
                   {"seconds", u.report.seconds}};
  }
  if (!u.error.empty()) j["error"] = u.error;
  return j;
}

json chunk_json(const rag::ChunkInfo& c) {
  return {{"chunk_id", c.id},
          {"path", c.path},
          {"file", fs::path(c.path).filename().string()},
          {"page_first", c.page_first},
          {"page_last", c.page_last},
          {"heading", c.heading},
          {"byte_begin", c.byte_begin},
          {"byte_end", c.byte_end},
          {"text", c.text}};
}

// httplib's server with a deep accept queue and a draining stop.
class HttpServer : public httplib::Server {
 public:
  // httplib listens with a backlog of 5, so a burst of connections would have the kernel drop
  // SYNs (clients then wait seconds to retry). Linux lets listen() be called again on a listening
  // socket to change its backlog.
  void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }
  // httplib's stop() marks the server socket invalid, which also cuts every chunked (streamed)
  // response short. Shutting the listening socket down instead ends the accept loop (accept()
  // fails), after which listen returns once the connection threads have finished their
  // requests, streams included.
  void stop_accepting() { ::shutdown(svr_sock_, SHUT_RDWR); }
};

}  // namespace

struct Server::State {
  ServerOptions options;
  HttpServer http;
  std::atomic<bool> ready{false};
  std::atomic<bool> stopping{false};
  std::string load_error;
  int bound_port = -1;
  std::atomic<std::uint64_t> next_id{1};
  std::string id_salt;

  std::unique_ptr<models::LanguageModel> llm;
  std::unique_ptr<rag::LanguageChatModel> renderer;  // templates and token counts (no cache)
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<rag::BertEmbedding> embedding;
  std::unique_ptr<rag::CrossEncoderReranker> reranker;
  std::unique_ptr<models::FluxPipeline> flux;
  std::unique_ptr<ImageQueue> images;
  std::map<std::string, std::unique_ptr<BankEntry>> banks;

  std::mutex uploads_mutex;
  std::map<std::string, std::shared_ptr<Upload>> uploads;
  std::vector<std::thread> ingest_threads;
  std::size_t ingests_running = 0;

  std::string new_id(const char* prefix) {
    return std::string(prefix) + id_salt + std::to_string(next_id++);
  }
  Clock::time_point deadline() const {
    return Clock::now() +
           std::chrono::milliseconds(static_cast<std::int64_t>(options.timeout_seconds * 1000.0));
  }

  void routes();
  bool authorized(const httplib::Request& req) const;
  // Shared checks: ready, body size. False when res holds the error.
  bool admit(const httplib::Request& req, httplib::Response& res, std::size_t max_bytes);
  // Whether a model of the kind is loaded (with one, any requested name selects it, as
  // llama-server does); else res holds the 404.
  bool pick(const std::string& requested, bool loaded, const char* kind, const char* flag,
            httplib::Response& res) const;
  BankEntry* find_bank(const std::string& name, httplib::Response& res);

  void chat(const httplib::Request& req, httplib::Response& res);
  void chat_over_bank(ChatRequest r, BankEntry& bank, httplib::Response& res);
  void completion(const httplib::Request& req, httplib::Response& res);
  // Admits a prompt to the scheduler and answers (streamed or not) as chat or text completion.
  void generate(const GenerationRequest& r, std::vector<std::int32_t> ids, bool chat,
                httplib::Response& res);
  void embeddings(const httplib::Request& req, httplib::Response& res);
  void rerank(const httplib::Request& req, httplib::Response& res);
  void generate_images(const httplib::Request& req, httplib::Response& res);
  void models(httplib::Response& res) const;
  void list_banks(httplib::Response& res);
  void search(const httplib::Request& req, httplib::Response& res, BankEntry& bank);
  void upload(const httplib::Request& req, httplib::Response& res, BankEntry& bank);
  void remove(const httplib::Request& req, httplib::Response& res, BankEntry& bank);
  models::GenerateOptions generate_options(const GenerationRequest& r, std::size_t prompt) const;
  std::int64_t max_new_tokens(const GenerationRequest& r, std::size_t prompt) const;
};

namespace {

// The decoder behind rag::Answerer, running through the scheduler's slots.
class SlotChatModel final : public rag::ChatModel {
 public:
  SlotChatModel(Server::State& s, const std::string& name) : s_(s), name_(name) {}
  std::string name() const override { return name_; }
  std::int64_t context() const override;
  std::vector<std::int32_t> render(std::span<const tokenize::ChatMessage> m) const override;
  std::size_t count_tokens(std::string_view text) const override;
  models::Generation generate(std::span<const tokenize::ChatMessage> messages,
                              const models::GenerateOptions& options,
                              const std::function<void(std::string_view)>& on_text) override;

 private:
  Server::State& s_;
  std::string name_;
};

}  // namespace

std::int64_t SlotChatModel::context() const {
  return s_.scheduler->context();
}

std::vector<std::int32_t> SlotChatModel::render(std::span<const tokenize::ChatMessage> m) const {
  return s_.renderer->render(m);
}

std::size_t SlotChatModel::count_tokens(std::string_view text) const {
  return s_.renderer->count_tokens(text);
}

models::Generation SlotChatModel::generate(std::span<const tokenize::ChatMessage> messages,
                                           const models::GenerateOptions& options,
                                           const std::function<void(std::string_view)>& on_text) {
  std::shared_ptr<Job> job = s_.scheduler->submit(render(messages), options, s_.deadline());
  if (!job) throw ApiFailure{busy("every generation slot is busy and the queue is full")};
  std::string text;
  try {
    for (;;) {
      std::string piece;
      const Job::Poll p = job->wait(&piece, std::chrono::milliseconds(500));
      if (!piece.empty() && on_text) on_text(piece);
      if (p == Job::Poll::kDone) break;
    }
  } catch (...) {
    job->cancel();
    throw;
  }
  if (!job->error().empty()) throw Error(ErrorCode::kInternal, job->error());
  return job->result();
}

bool Server::State::authorized(const httplib::Request& req) const {
  if (options.api_key.empty()) return true;
  const std::string h = req.get_header_value("Authorization");
  const std::string_view prefix = "Bearer ";
  if (h.size() <= prefix.size() || h.compare(0, prefix.size(), prefix) != 0) return false;
  return equal_constant_time(std::string_view(h).substr(prefix.size()), options.api_key);
}

bool Server::State::admit(const httplib::Request& req, httplib::Response& res,
                          std::size_t max_bytes) {
  if (req.body.size() > max_bytes) {
    send_error(res, too_large(max_bytes));
    return false;
  }
  if (!ready) {
    send_error(res, unavailable(load_error.empty() ? "the models are loading; retry shortly"
                                                   : "loading failed: " + load_error));
    return false;
  }
  return true;
}

bool Server::State::pick(const std::string& requested, bool loaded, const char* kind,
                         const char* flag, httplib::Response& res) const {
  if (loaded) return true;
  send_error(
      res, not_found(std::string("no ") + kind + " model is loaded (start the server with " + flag +
                         ")" + (requested.empty() ? "" : ": '" + printable(requested, 80) + "'"),
                     "model_not_found"));
  return false;
}

BankEntry* Server::State::find_bank(const std::string& name, httplib::Response& res) {
  const auto it = is_safe_name(name) ? banks.find(name) : banks.end();
  if (it == banks.end()) {
    send_error(res,
               not_found("no bank named '" + printable(name, 80) + "' (GET /v1/banks lists them)",
                         "bank_not_found"));
    return nullptr;
  }
  return it->second.get();
}

std::int64_t Server::State::max_new_tokens(const GenerationRequest& r, std::size_t prompt) const {
  const std::int64_t room = scheduler->context() - static_cast<std::int64_t>(prompt);
  const std::int64_t asked = r.max_tokens.value_or(options.limits.max_tokens);
  return std::max<std::int64_t>(1, std::min(asked, room));
}

models::GenerateOptions Server::State::generate_options(const GenerationRequest& r,
                                                        std::size_t prompt) const {
  models::GenerateOptions g;
  g.sampling = r.sampling;
  if (!r.seeded) g.sampling.seed = std::random_device{}();
  g.max_tokens = max_new_tokens(r, prompt);
  g.stop = r.stop;
  return g;
}

void Server::State::chat(const httplib::Request& req, httplib::Response& res) {
  if (!admit(req, res, options.max_body_bytes)) return;
  Parsed<ChatRequest> p = parse_chat_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  ChatRequest& r = *p.value;
  if (!pick(r.model, llm != nullptr, "chat", "--model-id", res)) return;
  if (!r.bank.empty()) {
    BankEntry* bank = find_bank(r.bank, res);
    if (bank == nullptr) return;
    return chat_over_bank(std::move(r), *bank, res);
  }
  std::vector<std::int32_t> ids;
  try {
    ids = renderer->render(r.messages);
  } catch (const Error& e) {
    return send_error(
        res, bad_request(std::string("the chat template refused the messages: ") + e.what(),
                         "messages"));
  }
  generate(r, std::move(ids), true, res);
}

void Server::State::completion(const httplib::Request& req, httplib::Response& res) {
  if (!admit(req, res, options.max_body_bytes)) return;
  Parsed<CompletionRequest> p = parse_completion_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  CompletionRequest& r = *p.value;
  if (!pick(r.model, llm != nullptr, "text", "--model-id", res)) return;
  std::vector<std::int32_t> ids = r.prompt_ids;
  if (ids.empty()) {
    if (llm->add_bos() && llm->bos_id() >= 0) ids.push_back(llm->bos_id());
    const std::vector<std::int32_t> text = llm->tokenizer().encode(r.prompt, false).ids;
    ids.insert(ids.end(), text.begin(), text.end());
  }
  const auto vocab = llm->config().vocab;
  for (const std::int32_t id : ids) {
    if (id >= vocab) {
      return send_error(
          res, bad_request("token id " + std::to_string(id) + " is outside the vocabulary of " +
                               std::to_string(vocab),
                           "prompt"));
    }
  }
  if (ids.empty()) return send_error(res, bad_request("the prompt has no tokens", "prompt"));
  generate(r, std::move(ids), false, res);
}

void Server::State::generate(const GenerationRequest& r, std::vector<std::int32_t> ids, bool chat,
                             httplib::Response& res) {
  if (static_cast<std::int64_t>(ids.size()) >= scheduler->context()) {
    ApiError e =
        bad_request("the prompt is " + std::to_string(ids.size()) +
                        " tokens and the context holds " + std::to_string(scheduler->context()) +
                        " (with room for at least one new token); shorten it or start "
                        "the server with a larger --ctx",
                    chat ? "messages" : "prompt");
    e.code = "context_length_exceeded";
    return send_error(res, e);
  }
  const std::size_t prompt_tokens = ids.size();
  std::shared_ptr<Job> job =
      scheduler->submit(std::move(ids), generate_options(r, prompt_tokens), deadline());
  if (!job) {
    return send_error(res, stopping ? unavailable("the server is shutting down")
                                    : busy("every generation slot is busy and the queue is full; "
                                           "retry later"));
  }
  const std::string id = new_id(chat ? "chatcmpl-" : "cmpl-");
  const std::int64_t created = unix_now();
  const std::string model = options.model.name;
  const bool stream = r.stream;
  const bool include_usage = r.include_usage;
  const auto releaser = [job](bool success) {
    if (!success) job->cancel();
  };
  if (!stream) {
    // The answer is written once it is complete; while waiting, a newline every second (JSON
    // allows leading whitespace) notices a client that went away and cancels its generation.
    res.set_chunked_content_provider(
        "application/json",
        [job, id, created, model, chat](std::size_t, httplib::DataSink& sink) {
          std::string text;
          auto last_write = Clock::now();
          for (;;) {
            const Job::Poll poll = job->wait(&text, std::chrono::milliseconds(250));
            if (poll == Job::Poll::kDone) break;
            if (Clock::now() - last_write >= std::chrono::seconds(1)) {
              if (!sink.write("\n", 1)) {
                job->cancel();
                return false;
              }
              last_write = Clock::now();
            }
          }
          std::string body;
          if (!job->error().empty()) {
            body = error_body(internal_error(job->error()));
          } else {
            const models::Generation& g = job->result();
            const Usage usage{g.prompt_tokens, g.token_ids.size()};
            const char* finish = finish_reason(g.finish);
            body = (chat ? chat_completion_json(id, created, model, g.text, finish, usage)
                         : completion_json(id, created, model, g.text, finish, usage))
                       .dump(-1, ' ', false, json::error_handler_t::replace);
          }
          if (!sink.write(body.data(), body.size())) return false;
          sink.done();
          return true;
        },
        releaser);
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, id, created, model, chat, include_usage](std::size_t, httplib::DataSink& sink) {
        const auto send = [&](const std::string& event) {
          if (!sink.write(event.data(), event.size())) {
            job->cancel();
            return false;
          }
          return true;
        };
        const std::string role = "assistant";
        if (chat && !send(sse(chat_chunk_json(id, created, model, &role, nullptr, nullptr)))) {
          return false;
        }
        for (;;) {
          std::string text;
          const Job::Poll poll = job->wait(&text, std::chrono::milliseconds(1000));
          if (!text.empty()) {
            const std::string event =
                sse(chat ? chat_chunk_json(id, created, model, nullptr, &text, nullptr)
                         : completion_chunk_json(id, created, model, text, nullptr));
            if (!send(event)) return false;
          }
          if (poll == Job::Poll::kDone) break;
          if (poll == Job::Poll::kTimeout && !send(": keep-alive\n\n")) return false;
        }
        if (!job->error().empty()) {
          if (!send("data: " + error_body(internal_error(job->error())) + "\n\n")) return false;
        } else {
          const models::Generation& g = job->result();
          const char* finish = finish_reason(g.finish);
          const std::string empty;
          if (!send(sse(chat ? chat_chunk_json(id, created, model, nullptr, nullptr, finish)
                             : completion_chunk_json(id, created, model, empty, finish)))) {
            return false;
          }
          if (include_usage && !send(sse(usage_chunk_json(
                                   id, chat ? "chat.completion.chunk" : "text_completion", created,
                                   model, Usage{g.prompt_tokens, g.token_ids.size()})))) {
            return false;
          }
        }
        if (!send("data: [DONE]\n\n")) return false;
        sink.done();
        return true;
      },
      releaser);
}

void Server::State::chat_over_bank(ChatRequest r, BankEntry& bank, httplib::Response& res) {
  if (!scheduler->has_room()) {
    return send_error(res, busy("every generation slot is busy and the queue is full"));
  }
  rag::AnswerOptions ao;
  ao.sampling = r.sampling;
  if (!r.seeded) ao.sampling.seed = std::random_device{}();
  ao.max_tokens = r.max_tokens.value_or(std::min<std::int64_t>(512, options.limits.max_tokens));
  ao.stop = r.stop;
  // Earlier turns are context for the model's own session; the question is the last message.
  const std::string question = r.messages.back().content;
  const std::size_t top_k = r.bank_top_k;
  BankEntry* entry = &bank;
  rag::Reranker* rr = reranker.get();
  const rag::Retriever retrieve = [entry, top_k, rr](const std::string& query) {
    std::lock_guard lock(entry->mutex);
    rag::SearchOptions so;
    so.top_k = top_k;
    so.reranker = rr;
    return rag::search({entry->bank.get()}, query, so);
  };
  const std::string id = new_id("chatcmpl-");
  const std::int64_t created = unix_now();
  const std::string model = options.model.name;
  const auto citations = [](const rag::Answer& a) {
    json list = json::array();
    for (const rag::AnswerSource& s : a.sources) {
      json c = chunk_json(s.hit.chunk);
      c["number"] = s.number;
      c["cited"] = s.cited;
      c["score"] = s.hit.score;
      list.push_back(std::move(c));
    }
    return list;
  };
  if (!r.stream) {
    try {
      SlotChatModel chat_model(*this, model);
      rag::Answerer answerer(chat_model, ao);
      const rag::Answer a = answerer.ask(question, retrieve);
      json j = chat_completion_json(id, created, model, a.text, finish_reason(a.finish),
                                    Usage{a.prompt_tokens, a.generated_tokens});
      j["citations"] = citations(a);
      j["invalid_citations"] = a.invalid_citations;
      return send_json(res, j);
    } catch (const ApiFailure& f) {
      return send_error(res, f.error);
    } catch (const Error& e) {
      return send_error(res, from_hearth_error(e));
    }
  }
  State* self = this;
  const bool include_usage = r.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider("text/event-stream", [self, ao, question, retrieve, id, created,
                                                         model, include_usage, citations](
                                                            std::size_t, httplib::DataSink& sink) {
    const auto send = [&](const std::string& event) {
      if (!sink.write(event.data(), event.size())) throw ClientGone{};
    };
    try {
      const std::string role = "assistant";
      send(sse(chat_chunk_json(id, created, model, &role, nullptr, nullptr)));
      SlotChatModel chat_model(*self, model);
      rag::Answerer answerer(chat_model, ao);
      const rag::Answer a = answerer.ask(question, retrieve, [&](std::string_view text) {
        const std::string piece(text);
        send(sse(chat_chunk_json(id, created, model, nullptr, &piece, nullptr)));
      });
      if (a.nothing_found) {
        send(sse(chat_chunk_json(id, created, model, nullptr, &a.text, nullptr)));
      }
      json last = chat_chunk_json(id, created, model, nullptr, nullptr, finish_reason(a.finish));
      last["citations"] = citations(a);
      last["invalid_citations"] = a.invalid_citations;
      send(sse(last));
      if (include_usage) {
        send(sse(usage_chunk_json(id, "chat.completion.chunk", created, model,
                                  Usage{a.prompt_tokens, a.generated_tokens})));
      }
      send("data: [DONE]\n\n");
    } catch (const ClientGone&) {
      return false;  // the job was cancelled on the way out of SlotChatModel::generate
    } catch (const ApiFailure& f) {
      const std::string event = "data: " + error_body(f.error) + "\n\n";
      if (!sink.write(event.data(), event.size())) return false;
    } catch (const Error& e) {
      const std::string event = "data: " + error_body(from_hearth_error(e)) + "\n\n";
      if (!sink.write(event.data(), event.size())) return false;
    }
    sink.done();
    return true;
  });
}

void Server::State::embeddings(const httplib::Request& req, httplib::Response& res) {
  if (!admit(req, res, options.max_body_bytes)) return;
  Parsed<EmbeddingRequest> p = parse_embedding_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  const EmbeddingRequest& r = *p.value;
  if (!pick(r.model, embedding != nullptr, "embedding", "--embedding-model", res)) {
    return;
  }
  std::size_t tokens = 0;
  for (const std::string& text : r.input) {
    if (text.empty())
      return send_error(res, bad_request("'input' strings must not be empty", "input"));
    tokens += embedding->count_tokens(text);
  }
  std::vector<float> vectors;
  try {
    vectors = embedding->embed(r.input);
  } catch (const Error& e) {
    return send_error(res, from_hearth_error(e));
  }
  const std::size_t dim = embedding->dim();
  json data = json::array();
  for (std::size_t i = 0; i < r.input.size(); ++i) {
    const float* row = vectors.data() + i * dim;
    json item = {{"object", "embedding"}, {"index", i}};
    if (r.base64) {
      item["embedding"] =
          base64_encode(std::string_view(reinterpret_cast<const char*>(row), dim * sizeof(float)));
    } else {
      item["embedding"] = std::vector<float>(row, row + dim);
    }
    data.push_back(std::move(item));
  }
  send_json(res, {{"object", "list"},
                  {"data", data},
                  {"model", options.embedding.name},
                  {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

void Server::State::rerank(const httplib::Request& req, httplib::Response& res) {
  if (!admit(req, res, options.max_body_bytes)) return;
  Parsed<RerankRequest> p = parse_rerank_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  const RerankRequest& r = *p.value;
  if (!pick(r.model, reranker != nullptr, "reranking", "--reranker", res)) return;
  std::vector<float> scores;
  try {
    scores = reranker->score(r.query, r.documents);
  } catch (const Error& e) {
    return send_error(res, from_hearth_error(e));
  }
  std::vector<std::size_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  if (r.top_n && *r.top_n < order.size()) order.resize(*r.top_n);
  const tokenize::Tokenizer& tok = reranker->encoder().tokenizer();
  std::size_t tokens = 0;
  for (const std::string& d : r.documents) tokens += tok.encode_pair(r.query, d).ids.size();
  json results = json::array();
  for (const std::size_t i : order) {
    json item = {{"index", i}, {"relevance_score", scores[i]}};
    if (r.return_documents) item["document"] = {{"text", r.documents[i]}};
    results.push_back(std::move(item));
  }
  send_json(res, {{"object", "list"},
                  {"model", options.reranker.name},
                  {"results", results},
                  {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
}

void Server::State::generate_images(const httplib::Request& req, httplib::Response& res) {
  if (!admit(req, res, options.max_body_bytes)) return;
  Parsed<ImageRequest> p = parse_image_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  const ImageRequest& r = *p.value;
  if (!pick(r.model, flux != nullptr, "image", "--flux-model", res)) return;
  if (r.guidance && !flux->dev()) {
    return send_error(res, bad_request("'guidance' is for FLUX.1-dev; '" + options.flux.name +
                                           "' (schnell) has no guidance embedding",
                                       "guidance"));
  }
  models::FluxRequest fr;
  fr.prompt = r.prompt;
  fr.width = r.width;
  fr.height = r.height;
  fr.n_images = r.n;
  fr.steps = r.steps;
  fr.seed = r.seed;
  fr.guidance = r.guidance;
  fr.t5_max_length = r.t5_max_length;
  try {
    fr = flux->resolve(fr);  // the defaults (steps, seed) filled in; every field checked
  } catch (const Error& e) {
    return send_error(res, from_hearth_error(e));
  }
  if (stopping) return send_error(res, unavailable("the server is shutting down"));
  const auto deadline =
      Clock::now() +
      std::chrono::milliseconds(static_cast<std::int64_t>(options.image_timeout_seconds * 1000.0));
  std::shared_ptr<ImageJob> job = images->submit(std::move(fr), options.flux.name, deadline);
  if (!job) {
    return send_error(
        res, busy("an image is being generated and " + std::to_string(images->queue_limit()) +
                  " more wait; retry when one has finished"));
  }
  const std::int64_t created = unix_now();
  // As a non-streamed completion: the answer is written once the images are made; while they
  // are, a newline every second (JSON allows leading whitespace) notices a client that went away
  // and cancels its job.
  res.set_chunked_content_provider(
      "application/json",
      [job, created](std::size_t, httplib::DataSink& sink) {
        auto last_write = Clock::now();
        while (!job->wait(std::chrono::milliseconds(250))) {
          if (Clock::now() - last_write >= std::chrono::seconds(1)) {
            if (!sink.write("\n", 1)) {
              job->cancel();
              return false;
            }
            last_write = Clock::now();
          }
        }
        const models::FluxRequest& q = job->request();
        const std::string body = job->ok() ? images_json(created, job->b64_png(), job->seeds(),
                                                         q.width, q.height, job->timings())
                                                 .dump()
                                           : error_body(job->error());
        if (!sink.write(body.data(), body.size())) return false;
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancel();
      });
}

void Server::State::models(httplib::Response& res) const {
  json data = json::array();
  const auto add = [&](const ModelSpec& spec, bool loaded, const char* kind) {
    if (!loaded) return;
    data.push_back({{"id", spec.name},
                    {"object", "model"},
                    {"created", 0},
                    {"owned_by", "hearth"},
                    {"kind", kind}});
  };
  add(options.model, llm != nullptr, "chat");
  add(options.embedding, embedding != nullptr, "embedding");
  add(options.reranker, reranker != nullptr, "rerank");
  add(options.flux, flux != nullptr, "image");
  send_json(res, {{"object", "list"}, {"data", data}});
}

void Server::State::list_banks(httplib::Response& res) {
  json data = json::array();
  for (auto& [name, entry] : banks) {
    std::lock_guard lock(entry->mutex);
    const rag::BankStats st = entry->bank->stats();
    const rag::BankManifest& m = entry->bank->manifest();
    data.push_back({{"name", name},
                    {"object", "bank"},
                    {"documents", st.documents},
                    {"chunks", st.chunks},
                    {"embedding_model", m.embedding_id.empty() ? json() : json(m.embedding_id)},
                    {"dense", entry->bank->model() != nullptr},
                    {"writable", !entry->bank->read_only()}});
  }
  send_json(res, {{"object", "list"}, {"data", data}});
}

void Server::State::search(const httplib::Request& req, httplib::Response& res, BankEntry& bank) {
  Parsed<BankSearchRequest> p = parse_bank_search_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  const BankSearchRequest& r = *p.value;
  std::vector<rag::Hit> hits;
  try {
    std::lock_guard lock(bank.mutex);
    rag::SearchOptions so;
    so.mode = rag::parse_search_mode(r.mode);
    so.top_k = r.top_k;
    so.candidates = std::max<std::size_t>(so.candidates, r.top_k);
    so.reranker = reranker.get();
    hits = rag::search({bank.bank.get()}, r.query, so);
  } catch (const Error& e) {
    return send_error(res, from_hearth_error(e));
  }
  json data = json::array();
  for (std::size_t i = 0; i < hits.size(); ++i) {
    json h = chunk_json(hits[i].chunk);
    h["rank"] = i + 1;
    h["score"] = hits[i].score;
    data.push_back(std::move(h));
  }
  send_json(res, {{"object", "list"}, {"bank", bank.name}, {"data", data}});
}

void Server::State::upload(const httplib::Request& req, httplib::Response& res, BankEntry& bank) {
  Parsed<UploadRequest> p = parse_upload_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  if (bank.bank->read_only()) {
    return send_error(res, bad_request("bank '" + bank.name + "' is read-only"));
  }
  auto job = std::make_shared<Upload>();
  {
    std::lock_guard lock(uploads_mutex);
    if (stopping) return send_error(res, unavailable("the server is shutting down"));
    if (ingests_running >= 4) {
      return send_error(res, busy("4 uploads are being ingested; retry when one has finished"));
    }
    ++ingests_running;
  }
  job->id = new_id("upload-");
  job->bank = bank.name;
  // The files go into the bank's own uploads folder, by plain name (no path can leave it), never
  // through a symbolic link.
  std::vector<fs::path> paths;
  std::string failure;
  std::error_code ec;
  fs::create_directories(bank.uploads(), ec);
  for (const UploadedFile& f : p.value->files) {
    const fs::path path = bank.uploads() / f.name;
    const int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    bool ok = fd >= 0;
    for (std::size_t off = 0; ok && off < f.bytes.size();) {
      const ssize_t n = ::write(fd, f.bytes.data() + off, f.bytes.size() - off);
      if (n <= 0) ok = false;
      off += n > 0 ? static_cast<std::size_t>(n) : 0;
    }
    if (fd >= 0 && ::close(fd) != 0) ok = false;
    if (!ok) {
      failure = "cannot write " + f.name + " into the bank's uploads folder";
      break;
    }
    paths.push_back(path);
    job->files.push_back(f.name);
  }
  if (!failure.empty()) {
    std::lock_guard lock(uploads_mutex);
    --ingests_running;
    return send_error(res, internal_error(failure));
  }
  json accepted;
  {
    std::lock_guard lock(uploads_mutex);
    uploads[job->id] = job;
    accepted = upload_json(*job);
    ingest_threads.emplace_back([this, job, paths, entry = &bank] {
      {
        std::lock_guard lock(uploads_mutex);
        job->status = "running";
      }
      rag::IngestOptions io;
      io.on_progress = [&](const rag::IngestProgress& pr) {
        std::lock_guard lock(uploads_mutex);
        job->progress = pr;
      };
      io.on_message = [&](const std::string& m) {
        std::lock_guard lock(uploads_mutex);
        if (job->messages.size() < 100) job->messages.push_back(m);
      };
      try {
        std::lock_guard bank_lock(entry->mutex);
        const rag::IngestReport report = entry->bank->ingest(paths, io);
        std::lock_guard lock(uploads_mutex);
        job->report = report;
        job->status = "done";
      } catch (const std::exception& e) {
        std::lock_guard lock(uploads_mutex);
        job->status = "failed";
        job->error = e.what();
      }
      std::lock_guard lock(uploads_mutex);
      --ingests_running;
    });
  }
  send_json(res, accepted, 202);
}

void Server::State::remove(const httplib::Request& req, httplib::Response& res, BankEntry& bank) {
  Parsed<RemoveRequest> p = parse_remove_request(req.body, options.limits);
  if (!p.ok()) return send_error(res, p.error);
  if (bank.bank->read_only()) {
    return send_error(res, bad_request("bank '" + bank.name + "' is read-only"));
  }
  std::lock_guard lock(bank.mutex);
  for (const std::string& path : p.value->paths) {
    if (!bank.bank->document(path)) {
      return send_error(res, not_found("bank '" + bank.name + "' holds no document '" +
                                           printable(path, 120) + "'",
                                       "document_not_found"));
    }
  }
  std::size_t removed = 0;
  try {
    removed = bank.bank->remove(p.value->paths);
  } catch (const Error& e) {
    return send_error(res, from_hearth_error(e));
  }
  // An uploaded file goes too (only inside the bank's uploads folder, by its plain name).
  for (const std::string& path : p.value->paths) {
    const fs::path file(path);
    if (file.parent_path() == bank.uploads() && is_safe_name(file.filename().string())) {
      std::error_code ec;
      fs::remove(bank.uploads() / file.filename(), ec);
    }
  }
  send_json(res, {{"object", "bank.documents.deleted"}, {"bank", bank.name}, {"removed", removed}});
}

void Server::State::routes() {
  httplib::Server& s = http;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // A declared body over the route's limit is refused before a byte of it is read.
    const bool upload = req.method == "POST" && req.path.ends_with("/documents");
    const std::size_t limit = upload ? options.max_upload_bytes : options.max_body_bytes;
    if (req.get_header_value<std::uint64_t>("Content-Length") > limit) {
      send_error(res, too_large(limit));
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.path == "/health" || authorized(req))
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.method == "GET" && options.assets && options.assets(req.path)) {
      return httplib::Server::HandlerResponse::Unhandled;  // the page itself holds no data
    }
    send_error(res, unauthorized());
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& res) -> httplib::Server::HandlerResponse {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        ApiError e;
        switch (res.status) {
          case 413:
            e = {413, "the request is too large", "invalid_request_error", "", "request_too_large"};
            break;
          case 404:
            e = not_found("no such route");
            break;
          case 405:
            e = {405, "method not allowed", "invalid_request_error", "", "method_not_allowed"};
            break;
          default:
            e = {res.status, "the request could not be read", "invalid_request_error", "", ""};
        }
        send_error(res, e);
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown failure";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, internal_error(what));
      });

  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (!ready) {
      return send_error(
          res, unavailable(load_error.empty() ? "loading" : "loading failed: " + load_error));
    }
    json j = {{"status", "ok"}};
    if (scheduler) {
      const Scheduler::Counts c = scheduler->counts();
      j["slots"] = {{"total", scheduler->parallel()},
                    {"processing", c.running},
                    {"queued", c.queued},
                    {"completed", c.completed},
                    {"prompt_tokens", c.prompt_tokens},
                    {"reused_tokens", c.reused_tokens}};
    }
    if (images) {
      const ImageQueue::Counts c = images->counts();
      j["images"] = {{"processing", c.running},
                     {"queued", c.queued},
                     {"completed", c.completed},
                     {"cancelled", c.cancelled},
                     {"failed", c.failed}};
    }
    send_json(res, j);
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    if (!ready) return send_error(res, unavailable("the models are loading"));
    models(res);
  });
  s.Post("/v1/chat/completions",
         [this](const httplib::Request& req, httplib::Response& res) { chat(req, res); });
  s.Post("/v1/completions",
         [this](const httplib::Request& req, httplib::Response& res) { completion(req, res); });
  s.Post("/v1/embeddings",
         [this](const httplib::Request& req, httplib::Response& res) { embeddings(req, res); });
  s.Post("/v1/images/generations", [this](const httplib::Request& req, httplib::Response& res) {
    generate_images(req, res);
  });
  for (const char* path : {"/v1/rerank", "/v1/reranking", "/rerank"}) {
    s.Post(path, [this](const httplib::Request& req, httplib::Response& res) { rerank(req, res); });
  }
  s.Get("/v1/banks", [this](const httplib::Request& req, httplib::Response& res) {
    if (admit(req, res, options.max_body_bytes)) list_banks(res);
  });
  const auto bank_route = [this](std::size_t max_bytes, auto body) {
    return [this, max_bytes, body](const httplib::Request& req, httplib::Response& res) {
      if (!admit(req, res, max_bytes)) return;
      BankEntry* bank = find_bank(req.matches[1].str(), res);
      if (bank != nullptr) body(req, res, *bank);
    };
  };
  const std::size_t body_limit = options.max_body_bytes;
  s.Post(R"(/v1/banks/([^/]+)/search)",
         bank_route(body_limit,
                    [this](const auto& req, auto& res, BankEntry& b) { search(req, res, b); }));
  s.Get(R"(/v1/banks/([^/]+)/documents)",
        bank_route(body_limit, [](const auto&, auto& res, BankEntry& b) {
          json data = json::array();
          std::lock_guard lock(b.mutex);
          for (const rag::DocumentInfo& d : b.bank->documents()) {
            data.push_back({{"path", d.path},
                            {"file", fs::path(d.path).filename().string()},
                            {"title", d.title},
                            {"kind", d.kind},
                            {"pages", d.pages},
                            {"chunks", d.chunks},
                            {"size", d.size}});
          }
          send_json(res, {{"object", "list"}, {"bank", b.name}, {"data", data}});
        }));
  s.Post(R"(/v1/banks/([^/]+)/documents)",
         bank_route(options.max_upload_bytes,
                    [this](const auto& req, auto& res, BankEntry& b) { upload(req, res, b); }));
  s.Delete(R"(/v1/banks/([^/]+)/documents)",
           bank_route(body_limit,
                      [this](const auto& req, auto& res, BankEntry& b) { remove(req, res, b); }));
  s.Get(R"(/v1/banks/([^/]+)/uploads/([^/]+))",
        bank_route(body_limit, [this](const auto& req, auto& res, BankEntry& b) {
          std::lock_guard lock(uploads_mutex);
          const auto it = uploads.find(req.matches[2].str());
          if (it == uploads.end() || it->second->bank != b.name) {
            return send_error(res, not_found("no such upload", "upload_not_found"));
          }
          send_json(res, upload_json(*it->second));
        }));
  s.Get(R"(/v1/banks/([^/]+)/chunks/([0-9]{1,18}))",
        bank_route(body_limit, [](const auto& req, auto& res, BankEntry& b) {
          std::lock_guard lock(b.mutex);
          const auto c = b.bank->chunk(std::stoll(req.matches[2].str()));
          if (!c) return send_error(res, not_found("no such chunk", "chunk_not_found"));
          send_json(res, chunk_json(*c));
        }));
  s.Get(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
    const auto asset = options.assets ? options.assets(req.path) : std::nullopt;
    if (!asset) return send_error(res, not_found("no such route"));
    res.set_content(std::string(asset->body), std::string(asset->content_type));
  });
}

Server::Server(ServerOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
  ServerOptions& o = state_->options;
  std::random_device rd;
  char salt[16];
  std::snprintf(salt, sizeof salt, "%08x-", rd());
  state_->id_salt = salt;
  // Every waiting image request holds a connection thread too.
  const std::size_t image_waiters = o.flux.path.empty() ? 0 : o.image_queue + 1;
  const std::size_t threads =
      o.http_threads > 0 ? o.http_threads : o.parallel + o.queue + image_waiters + 8;
  state_->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  state_->http.set_payload_max_length(std::max(o.max_body_bytes, o.max_upload_bytes));
  state_->http.set_read_timeout(10, 0);
  state_->http.set_write_timeout(10, 0);
  state_->http.set_keep_alive_timeout(5);
  state_->http.set_keep_alive_max_count(100);
  state_->routes();
}

Server::~Server() {
  stop();
  for (std::thread& t : state_->ingest_threads) t.join();
}

int Server::bind() {
  const int port = state_->options.port;
  if (port == 0) {
    state_->bound_port = state_->http.bind_to_any_port(state_->options.host);
  } else if (state_->http.bind_to_port(state_->options.host, port)) {
    state_->bound_port = port;
  }
  if (state_->bound_port > 0) state_->http.widen_backlog();
  if (state_->bound_port <= 0) {
    throw Error(ErrorCode::kIo, "cannot listen on " + state_->options.host + ":" +
                                    std::to_string(port) + " (in use, or not an address here)");
  }
  return state_->bound_port;
}

void Server::load() {
  State& s = *state_;
  const ServerOptions& o = s.options;
  try {
    if (!o.model.path.empty()) {
      models::LlmOptions lo;
      lo.threads = o.threads;
      lo.context = o.context;
      s.llm = models::LanguageModel::load(o.model.path, lo);
      s.renderer = std::make_unique<rag::LanguageChatModel>(*s.llm, 1);
      s.scheduler = std::make_unique<Scheduler>(*s.llm, o.parallel, o.queue, o.context);
    }
    models::BertOptions bo;
    bo.threads = o.threads;
    if (!o.embedding.path.empty()) s.embedding = rag::BertEmbedding::load(o.embedding.path, bo);
    if (!o.reranker.path.empty()) s.reranker = rag::CrossEncoderReranker::load(o.reranker.path, bo);
    if (!o.flux.path.empty()) {
      s.flux = std::make_unique<models::FluxPipeline>(models::FluxPipeline::open(o.flux.path));
      models::FluxRunOptions run;
      run.threads = o.threads;
      s.images = std::make_unique<ImageQueue>(*s.flux, run, o.image_queue);
    }
    for (const BankSpec& b : o.banks) {
      if (!is_safe_name(b.name)) {
        throw Error(ErrorCode::kInvalidArgument, "--bank " + printable(b.name, 60) +
                                                     ": not a plain name (letters, digits, ...)");
      }
      if (s.banks.count(b.name) != 0) {
        throw Error(ErrorCode::kInvalidArgument, "--bank " + b.name + " is given twice");
      }
      auto entry = std::make_unique<BankEntry>();
      entry->name = b.name;
      entry->folder = fs::absolute(b.folder).lexically_normal();
      if (rag::Bank::exists(entry->folder)) {
        entry->bank = rag::Bank::open(entry->folder, nullptr, false);
        if (s.embedding && entry->bank->has_vectors()) entry->bank->attach_model(s.embedding.get());
      } else {
        entry->bank = rag::Bank::open(entry->folder, s.embedding.get(), true);
      }
      s.banks[b.name] = std::move(entry);
    }
  } catch (const std::exception& e) {
    s.load_error = e.what();
    throw;
  }
  s.ready = true;
}

void Server::run() {
  if (state_->bound_port <= 0) bind();
  if (!state_->stopping) state_->http.listen_after_bind();
  if (state_->scheduler) state_->scheduler->drain();
  if (state_->images) state_->images->drain();
}

void Server::stop() {
  State& s = *state_;
  if (s.stopping.exchange(true)) return;
  s.http.stop_accepting();
}

int Server::port() const {
  return state_->bound_port;
}
bool Server::ready() const {
  return state_->ready;
}

}  // namespace hearth::serve
