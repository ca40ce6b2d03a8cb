// Test support for hearth-server: tiny random models from hearth-make-model (a Phi-3 with the
// real Phi-3 vocabulary and chat template, a BERT embedder, a BERT cross-encoder, a FLUX.1
// pipeline), a Server run
// in this process on a free loopback port, and raw-socket requests for what an HTTP client
// library hides (partial requests, disconnects, byte-exact bodies).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "hearth/serve/server.hpp"
#include "support/fixtures.hpp"

namespace hearth::serve::testing {

namespace fs = std::filesystem;
using nlohmann::json;

inline constexpr const char* kPhi3Vocab = "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf";

struct TinyModels {
  fs::path chat, embedding, reranker;
};

// Made once per test program (in a temp folder removed at exit); a failure is fatal.
inline const TinyModels& tiny_models() {
  static hearth::testing::TempDir dir;
  static TinyModels models;
  if (models.chat.empty()) {
    const fs::path vocab = hearth::testing::fixture(kPhi3Vocab);
    hearth::testing::make_model(hearth::testing::cat(
        {"--arch phi3 --format gguf --gguf-vocab ", hearth::testing::quote(vocab), " --out ",
         hearth::testing::quote(dir / "tiny-phi3.gguf")}));
    hearth::testing::make_model(hearth::testing::cat(
        {"--arch bert --format hf --seed 2 --out ", hearth::testing::quote(dir / "tiny-bert")}));
    hearth::testing::make_model(
        hearth::testing::cat({"--arch bert --format hf --classifier --seed 4 --out ",
                              hearth::testing::quote(dir / "tiny-ce")}));
    models = {dir / "tiny-phi3.gguf", dir / "tiny-bert", dir / "tiny-ce"};
  }
  return models;
}

// A tiny random FLUX.1 pipeline (hearth-make-model --arch flux-pipeline; its own small
// tokenizers, so no fixture is needed): the diffusers folder. Made once per test program.
inline const fs::path& tiny_flux() {
  static hearth::testing::TempDir dir;
  static fs::path folder;
  if (folder.empty()) {
    hearth::testing::make_model(hearth::testing::cat(
        {"--arch flux-pipeline --out ", hearth::testing::quote(dir / "tiny-flux")}));
    folder = dir / "tiny-flux" / "diffusers";
  }
  return folder;
}

// Options for a server with every tiny model, on a free loopback port, 2 compute threads.
inline ServerOptions tiny_options() {
  const TinyModels& m = tiny_models();
  ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.model = {m.chat, "tiny-phi3.gguf"};
  o.embedding = {m.embedding, "tiny-bert"};
  o.reranker = {m.reranker, "tiny-ce"};
  return o;
}

// A Server serving on its own thread until the object dies (stop() drains it).
class RunningServer {
 public:
  explicit RunningServer(ServerOptions options, bool load = true)
      : server_(std::make_unique<Server>(std::move(options))) {
    port_ = server_->bind();
    if (load) server_->load();
    thread_ = std::thread([this] { server_->run(); });
  }
  ~RunningServer() { stop(); }
  void stop() {
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
  }
  int port() const { return port_; }
  Server& server() { return *server_; }
  std::unique_ptr<httplib::Client> client(const std::string& key = "") const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(300, 0);
    c->set_write_timeout(30, 0);
    if (!key.empty()) c->set_bearer_token_auth(key.c_str());
    return c;
  }

 private:
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// A connected loopback socket (-1 on failure).
inline int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Sends raw bytes as one request (Connection: close), and reads the whole reply.
inline std::string raw_exchange(int port, std::string_view bytes, bool half_close = false) {
  const int fd = connect_to(port);
  if (fd < 0) return "";
  send_all(fd, bytes);
  if (half_close) ::shutdown(fd, SHUT_WR);  // a body shorter than its Content-Length ends here
  std::string reply;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return reply;
}

inline std::string post_request(const std::string& path, std::string_view body,
                                const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + std::string(body);
}

// The status code of a raw reply ("HTTP/1.1 400 Bad Request" -> 400), 0 when there is none.
inline int status_of(const std::string& reply) {
  if (reply.size() < 12 || reply.compare(0, 5, "HTTP/") != 0) return 0;
  return std::atoi(reply.c_str() + 9);
}

// The data: payloads of a server-sent event stream, in order.
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const std::size_t end = body.find("\n\n", pos);
    out.push_back(
        body.substr(pos + 6, end == std::string::npos ? std::string::npos : end - pos - 6));
    if (end == std::string::npos) break;
    pos = end + 2;
  }
  return out;
}

}  // namespace hearth::serve::testing

#define HEARTH_REQUIRE_TINY_MODELS()                                         \
  HEARTH_REQUIRE_FIXTURE(phi3_vocab_, ::hearth::serve::testing::kPhi3Vocab); \
  ::hearth::serve::testing::tiny_models();                                   \
  if (::testing::Test::HasFatalFailure()) return
