// hearth-server against real clients: the official `openai` npm package, unmodified (chat,
// embeddings, models and images; installed into <build>/node-openai on first use; skipped, saying
// why, without node, npm or the registry), and a bounded load of 8 concurrent clients x 25 chat
// requests (latency and throughput printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "serve/serve_support.hpp"

namespace hearth::serve {
namespace {

using testing::json;
using testing::RunningServer;
namespace fs = std::filesystem;

constexpr const char* kOpenAIPackage = "openai@7.59.0";

// The package's own folder, <build>/node-openai: installed into the tokenize tests' <build>/node it
// would prune their packages, and theirs it (testing::npm_packages).
fs::path openai_modules(std::string* why) {
  return hearth::testing::npm_packages("node-openai", kOpenAIPackage,
                                       {"node_modules/openai/package.json"}, why);
}

TEST(Clients, TheOfficialOpenAIPackageRunsChatStreamEmbeddingsModelsAndImages) {
  HEARTH_REQUIRE_TINY_MODELS();
  std::string why;
  const fs::path modules = openai_modules(&why);
  if (!why.empty()) GTEST_SKIP() << "the openai npm package is unavailable: " << why;
  ServerOptions o = testing::tiny_options();
  o.context = 512;
  o.api_key = "test-key";
  o.flux = {testing::tiny_flux(), "tiny-flux"};
  RunningServer srv(o);
  const fs::path script = hearth::testing::source_dir() / "tests/serve/openai_client.mjs";
  std::string out;
  const int rc = hearth::testing::run_command(
      hearth::testing::cat({"node ", hearth::testing::quote(script), " ",
                            hearth::testing::quote(modules),
                            " http://127.0.0.1:", std::to_string(srv.port()), "/v1 test-key"}),
      &out);
  ASSERT_EQ(rc, 0) << out;
  const json j = json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j["models"], (json{"tiny-phi3.gguf", "tiny-bert", "tiny-ce", "tiny-flux"}));
  EXPECT_EQ(j["chat"]["object"], "chat.completion");
  EXPECT_EQ(j["chat"]["role"], "assistant");
  EXPECT_FALSE(j["chat"]["content"].get<std::string>().empty());
  EXPECT_EQ(j["chat"]["usage"]["completion_tokens"], 6);
  EXPECT_FALSE(j["stream"]["content"].get<std::string>().empty());
  EXPECT_EQ(j["stream"]["finish"], "length");
  EXPECT_EQ(j["stream"]["usage"]["completion_tokens"], 6);
  EXPECT_EQ(j["embeddings"]["count"], 2);
  EXPECT_EQ(j["embeddings"]["dim"], 32);
  // The package's default (base64, decoded by it) gives the floats that "float" gives.
  EXPECT_EQ(j["embeddings"]["first"], j["float_first"]);
  EXPECT_EQ(j["bad_request"]["status"], 400);
  // images.generate: two PNGs of the size asked for, seeds 9 and 10; "url" refused naming it.
  EXPECT_GT(j["images"]["created"].get<std::int64_t>(), 0);
  ASSERT_EQ(j["images"]["pngs"].size(), 2U);
  for (std::size_t k = 0; k < 2; ++k) {
    const json& png = j["images"]["pngs"][k];
    EXPECT_EQ(png["signature"], "89504e470d0a1a0a");
    EXPECT_EQ(png["width"], 64);
    EXPECT_EQ(png["height"], 48);
    EXPECT_EQ(png["seed"], 9 + k);
  }
  EXPECT_EQ(j["image_url"]["status"], 400);
  EXPECT_EQ(j["image_url"]["param"], "response_format");
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

TEST(Clients, EightClientsTimesTwentyFiveChatRequestsAllSucceed) {
  HEARTH_REQUIRE_TINY_MODELS();
  ServerOptions o = testing::tiny_options();
  o.parallel = 4;
  o.queue = 8;
  o.context = 256;
  RunningServer srv(o);
  constexpr int kClients = 8, kRequests = 25, kTokens = 8;
  std::vector<std::vector<double>> latencies(kClients);
  std::atomic<int> failures{0};
  std::atomic<long> tokens{0};
  std::atomic<int> distinct_ids{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto client = srv.client();
      for (int r = 0; r < kRequests; ++r) {
        const json body = {{"messages",
                            {{{"role", "user"},
                              {"content", "Client " + std::to_string(c) + " asks question " +
                                              std::to_string(r)}}}},
                           {"max_tokens", kTokens},
                           {"seed", c * 100 + r}};
        const auto start = std::chrono::steady_clock::now();
        const auto res = client->Post("/v1/chat/completions", body.dump(), "application/json");
        latencies[c].push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        if (!res || res->status != 200) {
          ++failures;
          continue;
        }
        const json j = json::parse(res->body, nullptr, false);
        if (!j.is_object() || !j.contains("usage")) {
          ++failures;
          continue;
        }
        tokens += j["usage"]["completion_tokens"].get<long>();
        ++distinct_ids;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kClients * kRequests));
  EXPECT_EQ(distinct_ids.load(), kClients * kRequests);  // nothing lost
  const json h = json::parse(srv.client()->Get("/health")->body);
  EXPECT_EQ(h["slots"]["completed"].get<int>(), kClients * kRequests);
  std::printf(
      "load: %d clients x %d chat requests (max_tokens %d, --parallel 4): %.2f s, p50 %.1f ms, "
      "p99 %.1f ms, %ld tokens, %.1f tokens/s aggregate\n",
      kClients, kRequests, kTokens, seconds, 1000 * percentile(all, 0.5),
      1000 * percentile(all, 0.99), tokens.load(), static_cast<double>(tokens.load()) / seconds);
}

}  // namespace
}  // namespace hearth::serve
