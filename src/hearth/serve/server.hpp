// hearth-server: an OpenAI-compatible HTTP server (cpp-httplib) over hearth's models and
// knowledge banks. Routes (docs/serve.md has the shapes and curl examples):
//
//   GET  /health                      200 {"status":"ok"}; 503 while the models load
//   GET  /v1/models                   the loaded models, named by folder or file name
//   POST /v1/chat/completions         OpenAI chat (stream: server-sent events); "bank": NAME
//                                     answers over that bank with "citations"
//   POST /v1/completions              OpenAI text completion
//   POST /v1/embeddings               string or list input, float or base64
//   POST /v1/rerank (/v1/reranking)   llama-server / Jina / Cohere rerank
//   POST /v1/images/generations       OpenAI images (FLUX; b64_json PNGs), one at a time
//   GET  /v1/banks                    the banks given with --bank
//   POST /v1/banks/{name}/search      retrieval (bm25, dense, hybrid; reranked with --reranker)
//   GET  /v1/banks/{name}/documents   the bank's documents
//   POST /v1/banks/{name}/documents   upload (JSON); ingested in the background: 202 + job
//   GET  /v1/banks/{name}/uploads/{id}  an upload's progress and report
//   DELETE /v1/banks/{name}/documents   remove documents by exact path
//   GET  /v1/banks/{name}/chunks/{id}   one passage (what a citation points at)
//   GET  / and the page's files       through ServerOptions::assets (the web page)
//
// With an API key every route but /health (and the page's static files) needs
// "Authorization: Bearer KEY". Every error is OpenAI's error object with its status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/serve/api.hpp"

namespace hearth::serve {

// A file the server hands out as it is (the web page).
struct StaticAsset {
  std::string_view content_type;
  std::string_view body;
};
// The asset a GET of path serves, or nullopt (then 404).
using AssetLookup = std::function<std::optional<StaticAsset>(std::string_view path)>;

struct ModelSpec {
  std::filesystem::path path;  // resolved folder or file; empty = none
  std::string name;            // what /v1/models lists and requests may name
};

struct BankSpec {
  std::string name;  // is_safe_name
  std::filesystem::path folder;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (port() says which)
  std::string api_key;
  ModelSpec model;      // decoder (chat, completions)
  ModelSpec embedding;  // embeddings, dense bank search
  ModelSpec reranker;   // rerank, bank search reranking
  // FLUX (images): path is what models::FluxPipeline::open takes (a folder, a file, or
  // "schnell" / "dev" / a repo id in the local Hugging Face cache).
  ModelSpec flux;
  std::size_t image_queue = 4;          // image requests waiting beyond the one running (429 past)
  double image_timeout_seconds = 3600;  // an image request's whole time (queue + generation)
  std::vector<BankSpec> banks;
  std::size_t parallel = 1;                           // generation slots
  std::size_t queue = 16;                             // requests waiting beyond them (429 past it)
  std::int64_t context = 0;                           // tokens per slot; 0 = the model's default
  std::size_t threads = 0;                            // compute threads; 0 = every core
  std::size_t max_body_bytes = std::size_t{8} << 20;  // every route but uploads
  std::size_t max_upload_bytes = std::size_t{64} << 20;  // POST .../documents
  double timeout_seconds = 600;  // a request's whole time (queue + generation)
  std::size_t http_threads = 0;  // connections served at once; 0 = parallel + queue + 8
  Limits limits;
  AssetLookup assets;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; throws Error(kIo) when it cannot. Returns the port.
  int bind();
  // Loads the models and opens the banks (until then model routes answer 503); throws on a bad
  // model or bank. Call before or while run() serves.
  void load();
  // Serves until stop(); returns once the requests in flight have finished.
  void run();
  // Stops accepting, lets the requests in flight (and background ingests) finish, and makes run()
  // return. Safe from any thread, any number of times.
  void stop();
  int port() const;
  bool ready() const;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace hearth::serve
