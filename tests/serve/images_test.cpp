// POST /v1/images/generations over HTTP with a tiny random FLUX.1 pipeline (hearth-make-model
// --arch flux-pipeline): n PNGs whose pixels and text chunks are what FluxPipeline::generate and
// flux-cli's metadata give for the same request and seed; the model listed as "kind": "image";
// the errors (400 fields, 404 without --flux-model, 503 while loading, 429 when busy); a client
// that goes away cancelling its job; the deadline; a drained stop finishing the job in flight.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "hearth/image/png.hpp"
#include "hearth/models/flux_pipeline.hpp"
#include "hearth/serve/api.hpp"
#include "serve/serve_support.hpp"

namespace hearth::serve {
namespace {

using testing::json;
using testing::RunningServer;
namespace fs = std::filesystem;

ServerOptions flux_options() {
  ServerOptions o;
  o.port = 0;
  o.threads = 2;
  o.flux = {testing::tiny_flux(), "tiny-flux"};
  return o;
}

json parse(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no reply";
  if (!r) return {};
  const json j = json::parse(r->body, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r->body.substr(0, 300);
  return j;
}

json post(RunningServer& srv, const json& body) {
  return parse(srv.client()->Post("/v1/images/generations", body.dump(), "application/json"));
}

json health(RunningServer& srv) {
  return parse(srv.client()->Get("/health"));
}

// Polls /health until pred holds for its "images" object (false after 60 s).
template <class Pred>
bool wait_for_images(RunningServer& srv, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    const json h = health(srv);
    if (h.contains("images") && pred(h["images"])) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void expect_error(const httplib::Result& r, int status, const std::string& param = "",
                  const std::string& code = "") {
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
  EXPECT_TRUE(j["error"]["message"].is_string());
  if (!param.empty()) {
    EXPECT_EQ(j["error"]["param"], param) << r->body;
  }
  if (!code.empty()) {
    EXPECT_EQ(j["error"]["code"], code) << r->body;
  }
}

TEST(Images, RouteGivesTheImagesAndTextChunksThePipelineGives) {
  RunningServer srv(flux_options());
  const json models = parse(srv.client()->Get("/v1/models"));
  ASSERT_EQ(models["data"].size(), 1U);
  EXPECT_EQ(models["data"][0]["id"], "tiny-flux");
  EXPECT_EQ(models["data"][0]["kind"], "image");

  // Any model name selects the one FLUX model, as for the other routes; 48x32 is not square.
  const auto before = std::chrono::system_clock::now();
  const json j = post(srv, {{"model", "dall-e-3"},
                            {"prompt", "a lighthouse at dawn"},
                            {"n", 2},
                            {"size", "48x32"},
                            {"steps", 2},
                            {"seed", 5},
                            {"t5_max_length", 16},
                            {"response_format", "b64_json"}});
  ASSERT_TRUE(j.contains("data")) << j.dump().substr(0, 300);
  EXPECT_GE(j["created"].get<std::int64_t>(),
            std::chrono::duration_cast<std::chrono::seconds>(before.time_since_epoch()).count());
  EXPECT_EQ(j["size"], "48x32");
  EXPECT_EQ(j["output_format"], "png");
  EXPECT_GE(j["timings"]["generate_seconds"].get<double>(), 0.0);
  ASSERT_EQ(j["data"].size(), 2U);

  const models::FluxPipeline pipe = models::FluxPipeline::open(testing::tiny_flux().string());
  models::FluxRequest want_req;
  want_req.prompt = "a lighthouse at dawn";
  want_req.width = 48;
  want_req.height = 32;
  want_req.steps = 2;
  want_req.seed = 5;
  want_req.n_images = 2;
  want_req.t5_max_length = 16;
  models::FluxRunOptions run;
  run.threads = 2;
  const models::FluxResult want = pipe.generate(want_req, run);
  ASSERT_EQ(want.images.size(), 2U);
  models::FluxImageMetadata meta = models::flux_metadata(want, want_req.prompt, "tiny-flux");
  for (std::size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE(k);
    EXPECT_EQ(j["data"][k]["seed"], 5 + k);
    const auto bytes = base64_decode(j["data"][k]["b64_json"].get<std::string>());
    ASSERT_TRUE(bytes.has_value());
    const image::PngFile png = image::decode_png(
        std::span(reinterpret_cast<const std::byte*>(bytes->data()), bytes->size()), "reply");
    EXPECT_EQ(png.image.width, 48);
    EXPECT_EQ(png.image.height, 32);
    EXPECT_EQ(png.image.rgb, want.images[k].rgb);  // the very pixels, not merely close ones
    meta.seed = want.seeds[k];
    image::PngText text = models::to_png_text(meta);
    ASSERT_EQ(text.back().first, "Software");
    text.back().second = "hearth hearth-server " HEARTH_VERSION;
    EXPECT_EQ(png.text, text);
  }
  const json h = health(srv);
  EXPECT_EQ(h["images"]["completed"], 2);
  EXPECT_EQ(h["images"]["processing"], 0);

  // Without a seed the server draws one and says which: the same request with it is the same
  // image.
  const json fox = {{"prompt", "a fox"}, {"size", "32x32"}, {"steps", 1}, {"t5_max_length", 8}};
  const json drawn = post(srv, fox);
  ASSERT_EQ(drawn["data"].size(), 1U);
  json seeded = fox;
  seeded["seed"] = drawn["data"][0]["seed"];
  const json again = post(srv, seeded);
  ASSERT_EQ(again["data"].size(), 1U);
  EXPECT_EQ(again["data"][0]["b64_json"], drawn["data"][0]["b64_json"]);
}

TEST(Images, BadFieldsAre400sNamingThem) {
  RunningServer srv(flux_options());
  auto c = srv.client();
  const auto bad = [&](const std::string& body, const std::string& param) {
    SCOPED_TRACE(body);
    expect_error(c->Post("/v1/images/generations", body, "application/json"), 400, param);
  };
  bad(R"({"size": "32x32"})", "prompt");
  bad(R"({"prompt": 3})", "prompt");
  bad(R"({"prompt": "x", "n": 0})", "n");
  bad(R"({"prompt": "x", "n": 1000000})", "n");
  bad(R"({"prompt": "x", "n": "1"})", "n");
  bad(R"({"prompt": "x", "size": "100x100"})", "size");
  bad(R"({"prompt": "x", "size": "512"})", "size");
  bad(R"({"prompt": "x", "size": "4096x4096"})", "size");
  bad(R"({"prompt": "x", "response_format": "url"})", "response_format");
  bad(R"({"prompt": "x", "steps": 0})", "steps");
  bad(R"({"prompt": "x", "guidance": 3.5})", "guidance");  // schnell has no guidance
  bad(R"({"prompt": "x", "seed": "7"})", "seed");
  bad("not json", "");
  // Nothing ran.
  EXPECT_EQ(health(srv)["images"]["completed"], 0);
}

TEST(Images, WithoutAFluxModel404AndWhileLoading503) {
  ServerOptions none;
  none.port = 0;
  RunningServer srv(none);
  const auto r =
      srv.client()->Post("/v1/images/generations", R"({"prompt": "x"})", "application/json");
  expect_error(r, 404, "", "model_not_found");
  EXPECT_NE(r->body.find("--flux-model"), std::string::npos) << r->body;
  EXPECT_FALSE(health(srv).contains("images"));

  RunningServer loading(flux_options(), false);
  expect_error(
      loading.client()->Post("/v1/images/generations", R"({"prompt": "x"})", "application/json"),
      503);
}

// A job long enough to be running while the test acts on it (cancelled, so it never runs out).
std::string long_request() {
  return json{{"prompt", "a long one"}, {"size", "128x128"}, {"steps", 1000}, {"seed", 1}}.dump();
}

TEST(Images, OneAtATimeBusyBeyondTheQueueAndAGoneClientCancels) {
  ServerOptions o = flux_options();
  o.image_queue = 0;
  o.limits.max_image_steps = models::kFluxMaxSteps;
  RunningServer srv(o);
  const int fd = testing::connect_to(srv.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(
      testing::send_all(fd, testing::post_request("/v1/images/generations", long_request())));
  ASSERT_TRUE(wait_for_images(srv, [](const json& i) { return i["processing"] == 1; }));

  // One runs and none may wait: the next is refused at once.
  expect_error(srv.client()->Post("/v1/images/generations", R"({"prompt": "x", "size": "32x32"})",
                                  "application/json"),
               429, "", "server_busy");

  // The client goes: its job stops between steps, long before its 1000 steps.
  ::close(fd);
  const auto gone = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for_images(srv, [](const json& i) { return i["cancelled"] == 1; }));
  EXPECT_LT(std::chrono::steady_clock::now() - gone, std::chrono::seconds(30));
  const json h = health(srv)["images"];
  EXPECT_EQ(h["processing"], 0);
  EXPECT_EQ(h["completed"], 0);

  // The next request runs.
  const json j = post(srv, {{"prompt", "x"}, {"size", "32x32"}, {"steps", 1}});
  EXPECT_EQ(j["data"].size(), 1U) << j.dump().substr(0, 300);
}

TEST(Images, ARequestPastTheTimeoutEndsWithATimeoutError) {
  ServerOptions o = flux_options();
  o.image_timeout_seconds = 1;
  o.limits.max_image_steps = models::kFluxMaxSteps;
  RunningServer srv(o);
  const auto r = srv.client()->Post("/v1/images/generations", long_request(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);  // sent before the job ended; the body says what happened
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(j.contains("error")) << r->body.substr(0, 300);
  EXPECT_EQ(j["error"]["code"], "timeout");
  EXPECT_EQ(health(srv)["images"]["cancelled"], 1);
}

// stop() refuses new connections but lets the admitted image jobs finish: one queued behind a
// long one is made and answered after stop() began (the long one's client goes away, which
// cancels it), and stop() returns once it has been.
TEST(Images, StopDrainsTheJobsAdmitted) {
  ServerOptions o = flux_options();
  o.limits.max_image_steps = models::kFluxMaxSteps;
  RunningServer srv(o);
  const int fd = testing::connect_to(srv.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(
      testing::send_all(fd, testing::post_request("/v1/images/generations", long_request())));
  ASSERT_TRUE(wait_for_images(srv, [](const json& i) { return i["processing"] == 1; }));
  int status = 0;
  std::string body;
  std::thread client([&] {
    const auto r = srv.client()->Post("/v1/images/generations",
                                      json{{"prompt", "x"},
                                           {"size", "32x32"},
                                           {"steps", 2},
                                           {"n", 2},
                                           {"seed", 3},
                                           {"t5_max_length", 8}}
                                          .dump(),
                                      "application/json");
    if (r) {
      status = r->status;
      body = r->body;
    }
  });
  ASSERT_TRUE(wait_for_images(srv, [](const json& i) { return i["queued"] == 1; }));
  std::thread stopper([&] { srv.stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // stop() has begun
  const int late = testing::connect_to(srv.port());             // and accepts no one new
  EXPECT_LT(late, 0);
  if (late >= 0) ::close(late);
  ::close(fd);
  stopper.join();
  client.join();
  EXPECT_EQ(status, 200);
  const json j = json::parse(body, nullptr, false);
  EXPECT_EQ(j["data"].size(), 2U) << body.substr(0, 300);
}

}  // namespace
}  // namespace hearth::serve
