// hearth-server: an OpenAI-compatible HTTP server over hearth's models and knowledge banks
// (src/hearth/serve/server.hpp; docs/serve.md).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "hearth/cli/app.hpp"
#include "hearth/core/error.hpp"
#include "hearth/formats/hf_cache.hpp"
#include "hearth/models/flux_pipeline.hpp"
#include "hearth/serve/server.hpp"
#include "hearth/serve/web_assets.hpp"

namespace {

namespace fs = std::filesystem;

// A model's name: the alias, else its folder or file name (an HF id as given).
std::string model_name(const std::string& spec, const std::string& alias) {
  fs::path given = fs::path(spec).lexically_normal();
  if (given.filename().empty()) given = given.parent_path();
  return !alias.empty() ? alias : fs::exists(spec) ? given.filename().string() : spec;
}

// A model named on the command line, resolved (a folder, a file or a cached HF id).
hearth::serve::ModelSpec model_spec(const std::string& spec, const std::string& alias) {
  if (spec.empty()) return {};
  return {hearth::formats::resolve_model(spec), model_name(spec, alias)};
}

// The FLUX model as given: FluxPipeline::open resolves it (a folder, a file, or schnell / dev /
// a repo id in the local Hugging Face cache). Named by its folder or file name, else as given.
hearth::serve::ModelSpec flux_spec(const std::string& spec, const std::string& alias) {
  if (spec.empty()) return {};
  return {spec, model_name(spec, alias)};
}

int g_signal_pipe[2] = {-1, -1};
std::atomic<int> g_signals{0};

void wake(char why) {
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &why, 1);
}

void on_signal(int) {
  if (g_signals.fetch_add(1) > 0) ::_exit(130);
  wake('s');
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hearth-server: an OpenAI-compatible HTTP server for hearth's models and banks",
               "hearth-server"};
  hearth::cli::CommonOptions common;
  hearth::cli::add_common_options(app, common);
  hearth::serve::ServerOptions o;
  std::string model_id, embedding_model, reranker, model_alias, embedding_alias, reranker_alias;
  std::string flux_model, flux_alias;
  std::vector<std::string> banks;
  auto* host = app.add_option("--host", o.host,
                              "address to listen on (default 127.0.0.1; without --api-key a "
                              "non-loopback address is warned about)");
  app.add_option("--port", o.port, "port (default 8080; 0: any free port, printed)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--api-key", o.api_key,
                 "require 'Authorization: Bearer KEY' on every route but /health")
      ->envname("HEARTH_API_KEY");
  app.add_option("--model-id", model_id,
                 "chat model: HF folder, .gguf file or cached HF id (chat, completions)");
  app.add_option("--model-alias", model_alias, "the chat model's name in /v1/models");
  app.add_option("--embedding-model", embedding_model,
                 "sentence-transformers model (embeddings, dense bank search)");
  app.add_option("--embedding-alias", embedding_alias, "the embedding model's name");
  app.add_option("--reranker", reranker, "cross-encoder (rerank, bank search reranking)");
  app.add_option("--reranker-alias", reranker_alias, "the reranker's name");
  app.add_option("--flux-model", flux_model,
                 "FLUX.1 model (images): diffusers folder, flux1-*.safetensors / .gguf file, or "
                 "schnell / dev / a repo id in the local Hugging Face cache");
  app.add_option("--flux-alias", flux_alias, "the FLUX model's name");
  app.add_option("--max-images", o.limits.max_images,
                 "the most images one request may ask for (\"n\", default 4)")
      ->check(CLI::Range(1, hearth::models::kFluxMaxImages));
  app.add_option("--image-queue", o.image_queue,
                 "image requests waiting beyond the one running before 429 (default 4)")
      ->check(CLI::Range(0, 256));
  app.add_option("--image-timeout", o.image_timeout_seconds,
                 "seconds an image request may take, queue included (default 3600)")
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--bank", banks,
                 "NAME=FOLDER: a knowledge bank served as NAME (repeatable; created when missing)");
  app.add_option("--parallel", o.parallel, "generations at once (default 1)")
      ->check(CLI::Range(1, 64));
  app.add_option("--queue", o.queue, "requests waiting beyond them before 429 (default 16)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--ctx", o.context, "tokens per generation slot (default: the model's)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--max-tokens", o.limits.max_tokens,
                 "the most new tokens a request may ask for (default 4096)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--timeout", o.timeout_seconds,
                 "seconds a request may take, queue included (default 600)")
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--max-body", o.max_body_bytes, "largest request body in bytes (default 8 MiB)")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 30));
  app.add_option("--max-upload", o.max_upload_bytes,
                 "largest document upload body in bytes (default 64 MiB)")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 32));

  return hearth::cli::run(app, argc, argv, [&]() -> int {
    o.threads = common.threads;
    o.model = model_spec(model_id, model_alias);
    o.embedding = model_spec(embedding_model, embedding_alias);
    o.reranker = model_spec(reranker, reranker_alias);
    o.flux = flux_spec(flux_model, flux_alias);
    // The web page at / (src/hearth/serve/web, embedded at build time).
    o.assets = [](std::string_view path) -> std::optional<hearth::serve::StaticAsset> {
      const auto asset = hearth::serve::web_asset(path);
      if (!asset) return std::nullopt;
      return hearth::serve::StaticAsset{asset->content_type, asset->body};
    };
    for (const std::string& b : banks) {
      const auto eq = b.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == b.size()) {
        throw hearth::Error(hearth::ErrorCode::kInvalidArgument,
                            "--bank " + b + ": expected NAME=FOLDER");
      }
      o.banks.push_back({b.substr(0, eq), b.substr(eq + 1)});
    }
    if (o.api_key.empty() && host->count() > 0 && !is_loopback(o.host)) {
      std::fprintf(stderr,
                   "hearth-server: warning: listening on %s without --api-key: anyone who can "
                   "reach this address can use the models and change the banks\n",
                   o.host.c_str());
    }
    // SIGINT / SIGTERM drain the server (instead of cancelling the generations in flight, as
    // the CLI's handler would): the handler writes to a pipe that a thread waits on, which stops
    // accepting and lets the requests in flight finish. A second signal exits at once.
    if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
      throw hearth::Error(hearth::ErrorCode::kIo, "cannot create the signal pipe");
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    hearth::serve::Server server(o);
    const int port = server.bind();
    std::fprintf(stderr, "hearth-server: listening on http://%s:%d\n", o.host.c_str(), port);
    std::thread waiter([&] {
      char c = 0;
      while (::read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
      }
      if (c == 's') std::fprintf(stderr, "hearth-server: draining the requests in flight\n");
      server.stop();
    });
    std::string load_error;
    std::thread loader([&] {
      try {
        server.load();
        std::fprintf(stderr, "hearth-server: ready\n");
      } catch (const std::exception& e) {
        load_error = e.what();
        wake('e');
      }
    });
    server.run();
    loader.join();
    wake('e');
    waiter.join();
    if (!load_error.empty()) throw hearth::Error(hearth::ErrorCode::kInvalidArgument, load_error);
    std::fprintf(stderr, "hearth-server: stopped\n");
    return 0;
  });
}
