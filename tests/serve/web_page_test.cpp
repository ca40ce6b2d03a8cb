// hearth-server's web page in a real browser: headless Chromium (Debian's chromium) driven by
// puppeteer-core (npm, installed into the build folder on first use) through web_page.cjs, against
// a real hearth-server with a tiny random Phi-3 (the real Phi-3 vocabulary and chat template; its
// text is noise), a tiny random FLUX pipeline and a bank of the sample corpus. Skips, saying why,
// without chromium, node, npm, the registry or the Phi-3 vocabulary fixture.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/fixtures.hpp"

extern char** environ;

namespace hearth::serve {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;

constexpr const char* kPuppeteer = "puppeteer-core@24.9.0";  // the last for node 18 (Debian's)

// Chromium ($HEARTH_CHROMIUM, else chromium on the PATH), or "" when it is not there.
std::string chromium() {
  if (const char* env = std::getenv("HEARTH_CHROMIUM"); env != nullptr && *env != '\0')
    return ::access(env, X_OK) == 0 ? env : "";
  std::string out;
  if (testing::run_command("command -v chromium", &out) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// puppeteer-core in its own folder, <build>/node-browser (an npm install --no-save of another set
// there would prune it: testing::npm_packages).
fs::path puppeteer_modules(std::string* why) {
  return testing::npm_packages("node-browser", kPuppeteer,
                               {"node_modules/puppeteer-core/package.json"}, why);
}

fs::path sample_corpus() {
  return testing::source_dir() / "data" / "sample-corpus";
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// hearth-server as a child process, its output in a log file; SIGTERM and reaped when it dies.
class ServerProcess {
 public:
  ServerProcess(const std::vector<std::string>& args, const fs::path& log) : log_(log) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool started() const { return pid_ > 0; }
  // The "http://HOST:PORT/" its "listening on" line names, once it has written it ("" when it
  // has not within the time, or exited).
  std::string url(std::chrono::seconds within) const {
    const std::string mark = "listening on http://";
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline && ::kill(pid_, 0) == 0) {
      const std::string text = log();
      const auto at = text.find(mark);
      const auto end = at == std::string::npos ? at : text.find('\n', at);
      if (end != std::string::npos) {
        const auto begin = at + mark.find("http://");
        return text.substr(begin, end - begin) + "/";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return "";
  }
  // SIGTERM, then SIGKILL after 20 s; the exit status (-1 when killed or never started).
  int stop() {
    if (pid_ <= 0) return status_;
    ::kill(pid_, SIGTERM);
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return status_;
  }
  std::string log() const { return read_text(log_); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// Runs of white space made one space.
std::string squeeze(const std::string& s) {
  std::string out;
  for (const char c : s) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space)
      out += c;
    else if (!out.empty() && out.back() != ' ')
      out += ' ';
  }
  return out;
}

// Width and height of a PNG file (0, 0 when it is not one).
std::pair<int, int> png_size(const fs::path& p) {
  const std::string b = read_text(p);
  if (b.size() < 24 || b.compare(1, 3, "PNG") != 0) return {0, 0};
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned char>(b[at]) << 24) |
           (static_cast<unsigned char>(b[at + 1]) << 16) |
           (static_cast<unsigned char>(b[at + 2]) << 8) | static_cast<unsigned char>(b[at + 3]);
  };
  return {be32(16), be32(20)};
}

TEST(WebPage, AsksABankStreamsTheAnswerAndOpensACitedPassage) {
  const std::string browser = chromium();
  if (browser.empty()) {
    GTEST_SKIP() << "the browser test needs Debian's chromium (apt install chromium; or set "
                    "HEARTH_CHROMIUM)";
  }
  std::string why;
  const fs::path modules = puppeteer_modules(&why);
  if (!why.empty()) GTEST_SKIP() << "the browser test needs node and puppeteer-core: " << why;
  HEARTH_REQUIRE_FIXTURE(vocab, "tokenizers/llamacpp-vocab/ggml-vocab-phi-3.gguf");
  const fs::path server_bin = testing::tools_dir() / "hearth-server";
  ASSERT_TRUE(fs::exists(server_bin)) << server_bin << " is not built";

  testing::TempDir dir;
  std::string out;
  ASSERT_EQ(testing::run_command(cat({quote(testing::tools_dir() / "hearth-make-model"),
                                      " --arch phi3 --format gguf --gguf-vocab ", quote(vocab),
                                      " --out ", quote(dir / "phi3.gguf")}),
                                 &out),
            0)
      << out;
  ASSERT_EQ(testing::run_command(
                cat({"env -u HEARTH_MODEL -u HEARTH_EMBEDDING_MODEL "
                     "-u HEARTH_RERANKER XDG_CONFIG_HOME=",
                     quote(dir / "config"), " ", quote(testing::tools_dir() / "rag-cli"),
                     " --bank ", quote(dir / "bank"), " ingest ", quote(sample_corpus())}),
                &out),
            0)
      << out;
  ASSERT_EQ(testing::run_command(cat({quote(testing::tools_dir() / "hearth-make-model"),
                                      " --arch flux-pipeline --out ", quote(dir / "flux")}),
                                 &out),
            0)
      << out;
  const fs::path upload = dir / "hearth-upload-note.md";
  std::ofstream(upload) << "# Upload note\n\nThe web page added this note to the bank.\n";
  const fs::path shots = std::getenv("HEARTH_WEB_SCREENSHOTS")
                             ? fs::path(std::getenv("HEARTH_WEB_SCREENSHOTS"))
                             : dir / "shots";
  fs::create_directories(shots);

  // Any free port: the server says which on stderr.
  ServerProcess server(
      {server_bin.string(), "--port", "0", "--model-id", (dir / "phi3.gguf").string(), "--ctx",
       "1024", "--max-tokens", "24", "--threads", "2", "--api-key", "web-test-key", "--bank",
       "guide=" + (dir / "bank").string(), "--flux-model", (dir / "flux" / "diffusers").string(),
       "--flux-alias", "tiny-flux"},
      dir / "server.log");
  ASSERT_TRUE(server.started());
  const std::string url = server.url(std::chrono::seconds(30));
  ASSERT_FALSE(url.empty()) << "hearth-server did not say where it listens:\n" << server.log();
  const int rc = testing::run_command(
      cat({"NODE_PATH=", quote(modules), " timeout 120 node ",
           quote(testing::source_dir() / "tests/serve/web_page.cjs"), " --url ", url,
           " --chromium ", quote(browser), " --question 'How do I keep a bank up to date?'",
           " --upload ", quote(upload), " --image-size 64x48 --key web-test-key --out ",
           quote(shots), " 2>&1"}),
      &out);
  const int server_rc = server.stop();
  ASSERT_EQ(rc, 0) << out << "\nserver log:\n" << server.log();
  EXPECT_EQ(server_rc, 0) << "hearth-server did not exit cleanly on SIGTERM:\n" << server.log();
  nlohmann::json r;
  try {
    r = nlohmann::json::parse(read_text(shots / "result.json"));
  } catch (const std::exception& e) {
    FAIL() << "the driver's result.json is not JSON (" << e.what() << "):\n" << out;
  }
  SCOPED_TRACE(r.dump(1));

  // The key was asked for, a wrong one refused, the right one taken.
  EXPECT_EQ(r["wrong_key_panel"], true);
  EXPECT_EQ(r["steps"][0], "key");

  // Connected: the bank and the chat model are listed; the FLUX model shows the image panel.
  EXPECT_EQ(r["title"], "hearth");
  EXPECT_EQ(r["banks"], nlohmann::json::array({"guide"}));
  EXPECT_EQ(r["models"].size(), 1u);
  EXPECT_EQ(r["image_panel"], true);

  // Keyboard: Tab reaches the bank, the question and the send button in that order.
  const std::vector<std::string> tabs = r["tab_order"];
  const auto at = [&](const std::string& id) {
    return std::find(tabs.begin(), tabs.end(), id) - tabs.begin();
  };
  EXPECT_LT(at("bank"), at("question"));
  EXPECT_LT(at("question"), at("send"));
  EXPECT_LT(at("send"), static_cast<long>(tabs.size()));

  // Streamed: the answer grew in several steps, each the one before plus more.
  const std::vector<std::string> partials = r["partials"];
  ASSERT_GE(partials.size(), 2u);
  for (std::size_t i = 1; i < partials.size(); ++i) {
    EXPECT_EQ(partials[i].rfind(partials[i - 1], 0), 0u) << i;
    EXPECT_GT(partials[i].size(), partials[i - 1].size()) << i;
  }
  EXPECT_FALSE(r["answer"].get<std::string>().empty());
  EXPECT_EQ(r["ask_error"], "");

  // Citations in an answer's text become links, the text unchanged.
  EXPECT_EQ(r["cite_render"]["text"], "See [1, 3] and [2-4], [1][2] and [7 (no such source)].");
  EXPECT_EQ(r["cite_render"]["links"], nlohmann::json::array({"1", "3", "2", "1", "2"}));
  EXPECT_EQ(r["cite_render"]["label"], "source 1: a.md, page 2\u20133");

  // A citation opens its passage: a file of the corpus, its text taken from that file, focus on
  // the passage.
  ASSERT_FALSE(r["citations"].empty());
  ASSERT_TRUE(r.contains("passage"));
  const auto& passage = r["passage"];
  EXPECT_EQ(passage["focused"], "passage-panel");
  const std::string file = passage["file"];
  ASSERT_FALSE(file.empty());
  const fs::path source = sample_corpus() / fs::path(file).filename();
  ASSERT_TRUE(fs::exists(source)) << file;
  const std::string text = passage["text"];
  ASSERT_GE(text.size(), 24u);
  // The passage's first words stand in the file (the page rewraps lines, so compare with runs of
  // white space made one space).
  const std::string words = squeeze(text).substr(0, 60);
  EXPECT_NE(squeeze(read_text(source)).find(words), std::string::npos) << words;

  // The upload went in and the bank list says so.
  ASSERT_TRUE(r.contains("upload"));
  EXPECT_EQ(r["upload"]["done"], true);
  EXPECT_EQ(r["upload"]["status"].get<std::string>().rfind("1 added; ", 0), 0u);
  EXPECT_EQ(r["upload"]["error"], "");
  EXPECT_EQ(r["upload"]["progress"], 1);

  // An image from the real endpoint, loaded in the page at the size asked for.
  ASSERT_TRUE(r.contains("image"));
  EXPECT_EQ(r["image"]["error"], "");
  EXPECT_EQ(r["image"]["width"], 64);
  EXPECT_EQ(r["image"]["height"], 48);
  EXPECT_EQ(r["image"]["src_prefix"], "data:image/png;base64,");
  EXPECT_EQ(r["image"]["alt"], "a lighthouse at dawn");
  EXPECT_EQ(r["image"]["caption"].get<std::string>().rfind("a lighthouse at dawn (64x48, seed ", 0),
            0u);
  EXPECT_EQ(r["image"]["state"].get<std::string>().rfind("done in ", 0), 0u);
  EXPECT_GT(png_size(shots / "image.png").first, 64);  // the panel, image included

  // The server's error object, shown as it came, and no other console error.
  const std::string bad = r["bad_bank_error"];
  EXPECT_NE(bad.find("no-such-bank"), std::string::npos);
  EXPECT_NE(bad.find("HTTP 404 \u00b7 invalid_request_error"), std::string::npos);
  // (The browser logs the refused key's 401s and the missing bank's 404.)
  for (const auto& line : r["console"]) {
    const std::string text = line;
    EXPECT_TRUE(text.find("404") != std::string::npos || text.find("401") != std::string::npos)
        << text;
  }

  // Phone width: nothing wider than the screen; the screenshots are the sizes asked for.
  EXPECT_LE(r["phone_scroll_width"].get<int>(), 390);
  EXPECT_EQ(png_size(shots / "desktop.png"), std::make_pair(1280, 800));
  EXPECT_EQ(png_size(shots / "phone.png"), std::make_pair(390, 844));
}

}  // namespace
}  // namespace hearth::serve
