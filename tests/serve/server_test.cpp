// hearth-server's routes over HTTP with tiny random models: OpenAI's shapes, streaming, errors
// with their statuses, banks (upload, progress, search, cited chat, removal), and hostile
// clients (bad bodies, path tricks, slow and vanishing clients, drained shutdown).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "hearth/serve/api.hpp"
#include "serve/serve_support.hpp"

namespace hearth::serve {
namespace {

using testing::json;
using testing::RunningServer;
namespace fs = std::filesystem;

json body_json(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no reply";
  if (!r) return {};
  try {
    return json::parse(r->body);
  } catch (const json::exception& e) {
    ADD_FAILURE() << "not JSON: " << r->body.substr(0, 300);
    return {};
  }
}

std::string chat_body(const std::string& extra = "") {
  return R"({"model": "whatever", "messages": [{"role": "user", "content": "Hello there"}],
             "max_tokens": 5, "temperature": 0, "seed": 1)" +
         extra + "}";
}

// The server most tests share (models loaded once).
RunningServer& shared_server() {
  static std::unique_ptr<RunningServer> s;
  if (!s) {
    ServerOptions o = testing::tiny_options();
    o.parallel = 2;
    o.context = 512;
    o.max_body_bytes = 256 * 1024;
    o.max_upload_bytes = 1024 * 1024;
    s = std::make_unique<RunningServer>(o);
  }
  return *s;
}

void expect_error(const httplib::Result& r, int status, const std::string& type = "") {
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  EXPECT_TRUE(j["error"].contains("param") && j["error"].contains("code"));
  if (!type.empty()) {
    EXPECT_EQ(j["error"]["type"], type) << r->body;
  }
}

TEST(Server, HealthModelsAndChatInOpenAIsShape) {
  HEARTH_REQUIRE_TINY_MODELS();
  auto c = shared_server().client();
  const json health = body_json(c->Get("/health"));
  EXPECT_EQ(health["status"], "ok");
  EXPECT_EQ(health["slots"]["total"], 2);

  const json models = body_json(c->Get("/v1/models"));
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 3U);
  EXPECT_EQ(models["data"][0]["id"], "tiny-phi3.gguf");
  EXPECT_EQ(models["data"][0]["object"], "model");

  const auto r = c->Post("/v1/chat/completions", chat_body(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny-phi3.gguf");  // any name selects the one chat model
  EXPECT_TRUE(j["id"].get<std::string>().starts_with("chatcmpl-"));
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_FALSE(j["choices"][0]["message"]["content"].get<std::string>().empty());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_GT(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["total_tokens"],
            j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>());

  // The same seed and settings give the same text; the stream carries the same text in deltas.
  const json again = body_json(c->Post("/v1/chat/completions", chat_body(), "application/json"));
  EXPECT_EQ(again["choices"][0]["message"]["content"], j["choices"][0]["message"]["content"]);
  const auto s =
      c->Post("/v1/chat/completions",
              chat_body(R"(, "stream": true, "stream_options": {"include_usage": true})"),
              "application/json");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 200);
  EXPECT_EQ(s->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<std::string> events = testing::sse_data(s->body);
  ASSERT_GE(events.size(), 4U) << s->body;
  EXPECT_EQ(events.back(), "[DONE]");
  const json first = json::parse(events.front());
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (std::size_t i = 1; i + 3 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    EXPECT_EQ(e["id"], first["id"]);
    text += e["choices"][0]["delta"].value("content", "");
  }
  const json last = json::parse(events[events.size() - 3]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  const json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 5);
  EXPECT_EQ(text, j["choices"][0]["message"]["content"]);
}

// A conversation's next turn goes to the slot whose cache holds its earlier turns, which then
// prefills only the new tokens.
TEST(Server, TheNextTurnReusesTheSlotsCachedPrefix) {
  HEARTH_REQUIRE_TINY_MODELS();
  auto c = shared_server().client();
  const json first = {{"messages", {{{"role", "user"}, {"content", "Tell me about owls please"}}}},
                      {"max_tokens", 4},
                      {"temperature", 0}};
  const json a = body_json(c->Post("/v1/chat/completions", first.dump(), "application/json"));
  const std::string reply = a["choices"][0]["message"]["content"];
  const std::uint64_t reused_before = body_json(c->Get("/health"))["slots"]["reused_tokens"];
  json second = first;
  second["messages"].push_back({{"role", "assistant"}, {"content", reply}});
  second["messages"].push_back({{"role", "user"}, {"content", "And pelicans?"}});
  const json b = body_json(c->Post("/v1/chat/completions", second.dump(), "application/json"));
  const std::uint64_t reused =
      body_json(c->Get("/health"))["slots"]["reused_tokens"].get<std::uint64_t>() - reused_before;
  // At least the first turn's prompt came from the cache.
  EXPECT_GE(reused, a["usage"]["prompt_tokens"].get<std::uint64_t>() - 1);
  EXPECT_LT(reused, b["usage"]["prompt_tokens"].get<std::uint64_t>());
}

TEST(Server, TextCompletionsStopStringsAndTokenIds) {
  HEARTH_REQUIRE_TINY_MODELS();
  auto c = shared_server().client();
  const json j = body_json(c->Post("/v1/completions",
                                   R"({"prompt": "Once upon", "max_tokens": 6, "temperature": 0})",
                                   "application/json"));
  EXPECT_EQ(j["object"], "text_completion");
  const std::string text = j["choices"][0]["text"];
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(j["usage"]["completion_tokens"], 6);
  // A stop string taken from the greedy text ends it there, and is not part of it.
  const std::string stop = text.substr(text.size() / 2, 2);
  const json s = body_json(c->Post(
      "/v1/completions",
      json{{"prompt", "Once upon"}, {"max_tokens", 6}, {"temperature", 0}, {"stop", stop}}.dump(),
      "application/json"));
  EXPECT_EQ(s["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(s["choices"][0]["text"], text.substr(0, text.find(stop)));
  const json ids = body_json(c->Post(
      "/v1/completions", R"({"prompt": [1, 450, 3], "max_tokens": 2})", "application/json"));
  EXPECT_EQ(ids["usage"]["prompt_tokens"], 3);
  expect_error(c->Post("/v1/completions", R"({"prompt": [1, 99999999]})", "application/json"), 400);
  const auto streamed = c->Post("/v1/completions",
                                R"({"prompt": "Once upon", "max_tokens": 6, "temperature": 0,
                                    "stream": true})",
                                "application/json");
  ASSERT_TRUE(streamed);
  std::string joined;
  for (const std::string& e : testing::sse_data(streamed->body)) {
    if (e == "[DONE]") break;
    joined += json::parse(e)["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(joined, text);
}

TEST(Server, EmbeddingsFloatAndBase64AndRerank) {
  HEARTH_REQUIRE_TINY_MODELS();
  auto c = shared_server().client();
  const json f = body_json(
      c->Post("/v1/embeddings", R"({"input": ["owls hunt", "cats sleep"]})", "application/json"));
  ASSERT_EQ(f["data"].size(), 2U);
  EXPECT_EQ(f["object"], "list");
  EXPECT_EQ(f["data"][1]["index"], 1);
  const std::vector<float> v = f["data"][0]["embedding"];
  ASSERT_EQ(v.size(), 32U);
  double norm = 0;
  for (const float x : v) norm += x * x;
  EXPECT_NEAR(norm, 1.0, 1e-4);
  EXPECT_GT(f["usage"]["prompt_tokens"], 0);
  const json b =
      body_json(c->Post("/v1/embeddings", R"({"input": "owls hunt", "encoding_format": "base64"})",
                        "application/json"));
  const auto bytes = base64_decode(b["data"][0]["embedding"].get<std::string>());
  ASSERT_TRUE(bytes.has_value());
  ASSERT_EQ(bytes->size(), 32 * sizeof(float));
  std::vector<float> decoded(32);
  std::memcpy(decoded.data(), bytes->data(), bytes->size());
  EXPECT_EQ(decoded, v);
  expect_error(c->Post("/v1/embeddings", R"({"input": [""]})", "application/json"), 400);

  const json r = body_json(c->Post(
      "/v1/rerank", R"({"query": "owls", "documents": ["owls hunt", "cats sleep", "fish swim"]})",
      "application/json"));
  ASSERT_EQ(r["results"].size(), 3U);
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_GE(r["results"][i - 1]["relevance_score"].get<double>(),
              r["results"][i]["relevance_score"].get<double>());
  }
  const std::size_t best = r["results"][0]["index"];
  const json top = body_json(c->Post("/v1/rerank",
                                     R"({"query": "owls", "top_n": 1, "return_documents": false,
                                         "documents": ["owls hunt", "cats sleep", "fish swim"]})",
                                     "application/json"));
  ASSERT_EQ(top["results"].size(), 1U);
  EXPECT_EQ(top["results"][0]["index"], best);
  EXPECT_FALSE(top["results"][0].contains("document"));
}

TEST(Server, ErrorsCarryTheirStatus) {
  HEARTH_REQUIRE_TINY_MODELS();
  RunningServer& srv = shared_server();
  auto c = srv.client();
  expect_error(c->Post("/v1/chat/completions", "{not json", "application/json"), 400,
               "invalid_request_error");
  expect_error(c->Post("/v1/chat/completions", R"({"messages": [{"role": "user"}], "top_p": 5})",
                       "application/json"),
               400);
  // A prompt longer than the slot's context.
  std::string longer(6000, 'x');
  for (std::size_t i = 0; i < longer.size(); i += 2) longer[i] = ' ';
  const auto big = c->Post("/v1/chat/completions",
                           json{{"messages", {{{"role", "user"}, {"content", longer}}}}}.dump(),
                           "application/json");
  expect_error(big, 400);
  EXPECT_EQ(json::parse(big->body)["error"]["code"], "context_length_exceeded");
  expect_error(c->Post("/v1/banks/nope/search", R"({"query": "q"})", "application/json"), 404);
  expect_error(c->Get("/v1/no-such-route"), 404);
  expect_error(c->Post("/v1/no-such-route", "{}", "application/json"), 404);
  // Larger than the body limit: 413, before any parsing.
  expect_error(c->Post("/v1/chat/completions", std::string(300 * 1024, ' '), "application/json"),
               413);
  // An unknown field is ignored, as OpenAI-compatible servers do.
  const auto extra = c->Post("/v1/chat/completions", chat_body(R"(, "unknown_field": [1, {}])"),
                             "application/json");
  ASSERT_TRUE(extra);
  EXPECT_EQ(extra->status, 200);
}

TEST(Server, ApiKeyGuardsEveryRouteButHealth) {
  ServerOptions o;
  o.port = 0;
  o.api_key = "s3cret";
  RunningServer srv(o);
  auto anon = srv.client();
  const auto health = anon->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  expect_error(anon->Get("/v1/models"), 401, "authentication_error");
  expect_error(anon->Post("/v1/chat/completions", chat_body(), "application/json"), 401);
  expect_error(anon->Get("/v1/banks"), 401);
  expect_error(srv.client("wrong")->Get("/v1/models"), 401);
  expect_error(srv.client("s3cret-and-more")->Get("/v1/models"), 401);
  const auto ok = srv.client("s3cret")->Get("/v1/models");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  // No chat model loaded: 404 naming the flag.
  const auto none =
      srv.client("s3cret")->Post("/v1/chat/completions", chat_body(), "application/json");
  expect_error(none, 404);
  EXPECT_EQ(json::parse(none->body)["error"]["code"], "model_not_found");
}

TEST(Server, LoadingAnswers503) {
  ServerOptions o;
  o.port = 0;
  RunningServer srv(o, /*load=*/false);
  auto c = srv.client();
  expect_error(c->Get("/health"), 503, "unavailable_error");
  expect_error(c->Get("/v1/models"), 503);
  expect_error(c->Post("/v1/embeddings", R"({"input": "x"})", "application/json"), 503);
  srv.server().load();
  const auto r = c->Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Reads a streamed reply until its first generated text arrives, then returns the socket.
int open_stream(int port, const std::string& body) {
  const int fd = testing::connect_to(port);
  EXPECT_GE(fd, 0);
  testing::send_all(fd, testing::post_request("/v1/chat/completions", body));
  std::string got;
  char buf[4096];
  while (got.find("\"content\"") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_NE(got.find("\"content\""), std::string::npos) << got;
  return fd;
}

json health(RunningServer& srv) {
  return body_json(srv.client()->Get("/health"));
}

bool wait_idle(RunningServer& srv, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const json h = health(srv);
    if (h["slots"]["processing"] == 0 && h["slots"]["queued"] == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

const std::string kLongStream =
    R"({"messages": [{"role": "user", "content": "Tell me everything"}], "max_tokens": 3900,
        "temperature": 1, "seed": 5, "stream": true})";

TEST(Server, QueueFullIs429AndADisconnectCancelsTheGeneration) {
  HEARTH_REQUIRE_TINY_MODELS();
  ServerOptions o = testing::tiny_options();
  o.parallel = 1;
  o.queue = 0;
  o.context = 4096;
  RunningServer srv(o);
  const int fd = open_stream(srv.port(), kLongStream);
  // The one slot is busy and nothing may wait: 429.
  const auto busy = srv.client()->Post("/v1/chat/completions", chat_body(), "application/json");
  expect_error(busy, 429);
  EXPECT_EQ(json::parse(busy->body)["error"]["code"], "server_busy");
  expect_error(srv.client()->Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})",
                                  "application/json"),
               429);
  // The client goes away: its generation stops at once instead of running 3900 tokens.
  const auto t0 = std::chrono::steady_clock::now();
  ::close(fd);
  EXPECT_TRUE(wait_idle(srv, 20.0));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 20.0);
  const auto after = srv.client()->Post("/v1/chat/completions", chat_body(), "application/json");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

TEST(Server, ANonStreamedRequestIsCancelledWhenItsClientLeaves) {
  HEARTH_REQUIRE_TINY_MODELS();
  ServerOptions o = testing::tiny_options();
  o.parallel = 1;
  o.context = 4096;
  RunningServer srv(o);
  std::string body = kLongStream;
  body.replace(body.find("\"stream\": true"), 14, "\"stream\": false");
  const int fd = testing::connect_to(srv.port());
  testing::send_all(fd, testing::post_request("/v1/chat/completions", body));
  // Wait until it runs, then leave.
  for (int i = 0; i < 500 && health(srv)["slots"]["processing"] == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  // The server notices at its next keep-alive newline (within about two seconds).
  EXPECT_TRUE(wait_idle(srv, 20.0));
}

TEST(Server, ShutdownDrainsTheRequestsInFlight) {
  HEARTH_REQUIRE_TINY_MODELS();
  ServerOptions o = testing::tiny_options();
  o.context = 512;
  auto srv = std::make_unique<RunningServer>(o);
  std::string reply;
  std::thread client([&] {
    reply = testing::raw_exchange(
        srv->port(), testing::post_request("/v1/chat/completions",
                                           R"({"messages": [{"role": "user", "content": "Hi"}],
                                  "max_tokens": 60, "stream": true, "seed": 2})"));
  });
  for (int i = 0; i < 500 && health(*srv)["slots"]["processing"] == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  srv->stop();  // returns once the stream has finished
  client.join();
  EXPECT_EQ(testing::status_of(reply), 200);
  EXPECT_NE(reply.find("data: [DONE]"), std::string::npos) << reply.substr(0, 400);
  // Nothing listens any more.
  EXPECT_LT(testing::connect_to(srv->port()), 0);
}

TEST(Server, HostileClientsLeaveTheServerUp) {
  HEARTH_REQUIRE_TINY_MODELS();
  RunningServer& srv = shared_server();
  const int port = srv.port();
  // Thousands of connections opened and dropped, some mid-request.
  for (int i = 0; i < 2000; ++i) {
    const int fd = testing::connect_to(port);
    ASSERT_GE(fd, 0) << "connection " << i;
    if (i % 3 == 1) testing::send_all(fd, "POST /v1/chat/completions HTTP/1.1\r\nContent-Le");
    if (i % 3 == 2) {
      testing::send_all(fd, "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99\r\n\r\n{");
    }
    ::close(fd);
  }
  // Slow clients holding half-sent requests do not block others.
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(testing::connect_to(port));
    testing::send_all(slow.back(),
                      "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"in");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto h = srv.client()->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  for (const int fd : slow) ::close(fd);

  // Raw bodies no client library would send.
  const std::string bodies[] = {
      "\xff\xfe{\"messages\":1}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"\xc3\x28\"}]}",
      std::string(5000, '[') + std::string(5000, ']'),
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_tokens\": 1e308}",
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"max_tokens\": -1}",
      std::string("{\"messages\": [{\"role\": \"user\", \"content\": \"a") + '\0' + "b\"}]}",
  };
  for (const std::string& b : bodies) {
    const std::string reply =
        testing::raw_exchange(port, testing::post_request("/v1/chat/completions", b));
    EXPECT_EQ(testing::status_of(reply), 400) << reply.substr(0, 300);
    EXPECT_NE(reply.find("\"error\""), std::string::npos);
  }
  // A declared Content-Length larger than the limit: 413 at once, without reading the body.
  const std::string huge = testing::raw_exchange(
      port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{");
  EXPECT_EQ(testing::status_of(huge), 413) << huge.substr(0, 200);
  const auto still = srv.client()->Get("/health");
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);
}

// Polls an upload until it is done or failed.
json wait_upload(httplib::Client& c, const std::string& bank, const std::string& id) {
  json j;
  for (int i = 0; i < 1000; ++i) {
    j = body_json(c.Get(("/v1/banks/" + bank + "/uploads/" + id).c_str()));
    if (j["status"] == "done" || j["status"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return j;
}

TEST(Server, BanksUploadSearchCitedChatAndRemoval) {
  HEARTH_REQUIRE_TINY_MODELS();
  hearth::testing::TempDir tmp;
  ServerOptions o = testing::tiny_options();
  o.context = 1024;
  o.banks = {{"notes", tmp / "banks/notes"}, {"other", tmp / "banks/other"}};
  RunningServer srv(o);
  auto c = srv.client();
  // A file beside the banks that no request may read, overwrite or delete.
  const fs::path outside = tmp / "banks/secret.md";
  std::ofstream(outside) << "# Secret\n\nThe launch code is 1234.\n";

  const json banks = body_json(c->Get("/v1/banks"));
  ASSERT_EQ(banks["data"].size(), 2U);
  EXPECT_EQ(banks["data"][0]["name"], "notes");
  EXPECT_EQ(banks["data"][0]["documents"], 0);

  const json up =
      json{{"documents",
            {{{"name", "owls.md"},
              {"content",
               "# Owls\n\nOwls hunt at night. Their soft feathers make their flight "
               "silent.\n"}},
             {{"name", "pelicans.txt"},
              {"content_base64",
               base64_encode("Pelicans scoop fish with the pouch under their bill.\n")}}}}};
  const auto accepted = c->Post("/v1/banks/notes/documents", up.dump(), "application/json");
  ASSERT_TRUE(accepted);
  ASSERT_EQ(accepted->status, 202) << accepted->body;
  const json job = json::parse(accepted->body);
  const json done = wait_upload(*c, "notes", job["id"]);
  ASSERT_EQ(done["status"], "done") << done.dump();
  EXPECT_EQ(done["report"]["added"], 2);
  EXPECT_EQ(done["progress"]["files_done"], 2);

  const json docs = body_json(c->Get("/v1/banks/notes/documents"));
  ASSERT_EQ(docs["data"].size(), 2U);
  const json hits =
      body_json(c->Post("/v1/banks/notes/search",
                        R"({"query": "when do owls hunt", "mode": "bm25"})", "application/json"));
  ASSERT_FALSE(hits["data"].empty());
  EXPECT_EQ(hits["data"][0]["file"], "owls.md");
  const json chunk = body_json(
      c->Get(("/v1/banks/notes/chunks/" + std::to_string(hits["data"][0]["chunk_id"].get<int>()))
                 .c_str()));
  EXPECT_NE(chunk["text"].get<std::string>().find("Owls hunt at night"), std::string::npos);
  expect_error(c->Get("/v1/banks/notes/chunks/999999"), 404);

  // A cited answer: the OpenAI shape plus the passages it could cite.
  const std::string ask =
      R"({"bank": "notes", "messages": [{"role": "user", "content": "When do owls hunt?"}],
          "max_tokens": 8, "temperature": 0})";
  const json a = body_json(c->Post("/v1/chat/completions", ask, "application/json"));
  EXPECT_EQ(a["object"], "chat.completion");
  ASSERT_FALSE(a["citations"].empty()) << a.dump();
  EXPECT_EQ(a["citations"][0]["number"], 1);
  EXPECT_EQ(a["citations"][0]["file"], "owls.md");
  EXPECT_GT(a["usage"]["prompt_tokens"], 20);
  std::string streamed_ask = ask;
  streamed_ask.insert(1, R"("stream": true, )");
  const auto s = c->Post("/v1/chat/completions", streamed_ask, "application/json");
  ASSERT_TRUE(s);
  const auto events = testing::sse_data(s->body);
  ASSERT_GE(events.size(), 3U);
  EXPECT_EQ(events.back(), "[DONE]");
  const json last = json::parse(events[events.size() - 2]);
  EXPECT_EQ(last["citations"], a["citations"]);
  std::string text;
  for (std::size_t i = 0; i + 2 < events.size(); ++i) {
    text += json::parse(events[i])["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(text, a["choices"][0]["message"]["content"]);
  expect_error(c->Post("/v1/chat/completions",
                       R"({"bank": "missing", "messages": [{"role": "user", "content": "q"}]})",
                       "application/json"),
               404);

  // Path tricks in bank and document names.
  for (const char* path :
       {"/v1/banks/../documents", "/v1/banks/%2e%2e/documents", "/v1/banks/notes%00/documents",
        "/v1/banks/%2Fetc/documents", "/v1/banks/.hidden/documents"}) {
    const auto r = c->Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path << " " << r->body;
  }
  for (const char* name : {"../secret.md", "/etc/passwd", "..", "a\\b.md", ".bashrc"}) {
    const json evil = {{"documents", {{{"name", name}, {"content", "overwritten"}}}}};
    expect_error(c->Post("/v1/banks/notes/documents", evil.dump(), "application/json"), 400);
  }
  const auto nul = testing::raw_exchange(
      srv.port(),
      testing::post_request("/v1/banks/notes/documents",
                            R"({"documents":[{"name":"a\u0000/../../x","content":"y"}]})"));
  EXPECT_EQ(testing::status_of(nul), 400);
  expect_error(
      c->Delete("/v1/banks/notes/documents",
                json{{"paths", json::array({outside.string()})}}.dump(), "application/json"),
      404);
  expect_error(c->Delete("/v1/banks/notes/documents", R"({"paths": ["*"]})", "application/json"),
               400);
  {
    std::ifstream in(outside);
    std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(kept.find("launch code"), std::string::npos);
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp / "banks"), fs::directory_iterator()), 3);

  // Removal by the exact path the listing gives; the uploaded file goes with it.
  const std::string owls =
      docs["data"][0]["file"] == "owls.md" ? docs["data"][0]["path"] : docs["data"][1]["path"];
  const json removed =
      body_json(c->Delete("/v1/banks/notes/documents", json{{"paths", json::array({owls})}}.dump(),
                          "application/json"));
  EXPECT_EQ(removed["removed"], 1);
  EXPECT_FALSE(fs::exists(owls));
  EXPECT_EQ(body_json(c->Get("/v1/banks/notes/documents"))["data"].size(), 1U);
  // The other bank saw none of it.
  EXPECT_EQ(body_json(c->Get("/v1/banks/other/documents"))["data"].size(), 0U);
}

}  // namespace
}  // namespace hearth::serve
