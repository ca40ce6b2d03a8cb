#include "hearth/rag/config.hpp"

#include <toml++/toml.h>
#include <cstdint>
#include <cstdlib>
#include <system_error>

#include "hearth/core/error.hpp"

namespace hearth::rag {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::string expand_home(std::string s) {
  if (s == "~" || s.starts_with("~/")) {
    const std::string home = env("HOME");
    if (!home.empty()) s = home + s.substr(1);
  }
  return s;
}

constexpr const char* kKeys =
    "model, embedding_model, reranker, bank, top_k, max_tokens, temperature, context, seed";

}  // namespace

fs::path RagConfig::default_path() {
  const std::string xdg = env("XDG_CONFIG_HOME");
  const fs::path base = !xdg.empty() ? fs::path(xdg) : fs::path(env("HOME")) / ".config";
  return base / "hearth" / "config.toml";
}

std::string RagConfig::where(const std::string& key) const {
  const auto it = lines.find(key);
  return file.string() + ":" + std::to_string(it != lines.end() ? it->second : 0);
}

RagConfig RagConfig::load(const fs::path& file) {
  RagConfig c;
  c.file = file;
  std::error_code ec;
  if (!fs::exists(file, ec)) return c;
  c.exists = true;
  toml::table table;
  try {
    table = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw Error(ErrorCode::kFormat, std::string(e.description()),
                {file.string() + ":" + std::to_string(e.source().begin.line), {}, {}});
  }
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    const int line = static_cast<int>(node.source().begin.line);
    const std::string at = file.string() + ":" + std::to_string(line);
    const auto bad = [&](const std::string& what) {
      return Error(ErrorCode::kInvalidArgument, what, {at, {}, key});
    };
    c.lines[key] = line;
    const auto text = [&]() {
      const auto v = node.value<std::string>();
      if (!node.is_string() || !v) throw bad("must be a string (in double quotes)");
      if (v->empty()) throw bad("must not be empty");
      return expand_home(*v);
    };
    const auto integer = [&](std::int64_t lo, std::int64_t hi) {
      if (!node.is_integer()) throw bad("must be a whole number");
      const std::int64_t v = *node.value<std::int64_t>();
      if (v < lo || v > hi) {
        throw bad("must be from " + std::to_string(lo) + " to " + std::to_string(hi));
      }
      return v;
    };
    if (key == "model") {
      c.model = text();
    } else if (key == "embedding_model") {
      c.embedding_model = text();
    } else if (key == "reranker") {
      c.reranker = text();
    } else if (key == "bank") {
      c.bank = text();
    } else if (key == "top_k") {
      c.top_k = integer(1, 10000);
    } else if (key == "max_tokens") {
      c.max_tokens = integer(1, 1 << 20);
    } else if (key == "context") {
      c.context = integer(0, 1 << 24);
    } else if (key == "seed") {
      c.seed = integer(0, INT64_MAX);
    } else if (key == "temperature") {
      if (!node.is_number()) throw bad("must be a number");
      const double t = *node.value<double>();
      if (!(t >= 0.0 && t <= 100.0)) throw bad("must be from 0 to 100");
      c.temperature = t;
    } else {
      throw bad(std::string("unknown setting (known: ") + kKeys + ")");
    }
  }
  return c;
}

}  // namespace hearth::rag
