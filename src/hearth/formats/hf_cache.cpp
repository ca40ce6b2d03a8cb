#include "hearth/formats/hf_cache.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "hearth/core/error.hpp"
#include "hearth/core/utf8.hpp"

namespace fs = std::filesystem;

namespace hearth::formats {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

bool is_repo_part(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

std::string where_from() {
  if (!env("HF_HUB_CACHE").empty()) return "$HF_HUB_CACHE";
  if (!env("HF_HOME").empty()) return "$HF_HOME/hub";
  if (!env("XDG_CACHE_HOME").empty()) return "$XDG_CACHE_HOME/huggingface/hub";
  return "~/.cache/huggingface/hub";
}

[[noreturn]] void not_found(const std::string& spec, const std::string& why) {
  throw Error(ErrorCode::kNotFound,
              printable(spec, 200) + ": " + why +
                  "; hearth never downloads: copy the model there (huggingface-cli download " +
                  "on a machine with a network), or pass a model folder or a .gguf file");
}

// The single .gguf file of a snapshot without config.json, or the folder itself.
fs::path pick_in_snapshot(const fs::path& snapshot, const std::string& spec) {
  std::error_code ec;
  if (fs::exists(snapshot / "config.json", ec)) return snapshot;
  std::vector<fs::path> ggufs;
  for (const auto& e : fs::directory_iterator(snapshot, ec)) {
    if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
  }
  if (ggufs.size() == 1) return ggufs.front();
  if (ggufs.empty()) return snapshot;  // the model loader says what the folder lacks
  std::sort(ggufs.begin(), ggufs.end());
  std::string names;
  for (const fs::path& g : ggufs) names += (names.empty() ? "" : ", ") + g.filename().string();
  throw Error(ErrorCode::kInvalidArgument, printable(spec, 200) + " holds several GGUF files (" +
                                               names + "); name one: " + spec + "/" +
                                               ggufs.front().filename().string());
}

}  // namespace

fs::path hf_hub_cache() {
  if (std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = env("HF_HOME"); !v.empty()) return fs::path(v) / "hub";
  if (std::string v = env("XDG_CACHE_HOME"); !v.empty()) return fs::path(v) / "huggingface/hub";
  const std::string home = env("HOME");
  return fs::path(home.empty() ? "/" : home) / ".cache/huggingface/hub";
}

fs::path resolve_model(const std::string& spec) {
  std::error_code ec;
  if (spec.empty()) throw Error(ErrorCode::kInvalidArgument, "the model path is empty");
  if (fs::exists(spec, ec)) return spec;

  // ORG/NAME[@REV][/FILE]
  std::string id = spec;
  std::string file;
  std::vector<std::string> parts = split(spec, '/');
  if (parts.size() == 3) {
    file = parts[2];
    id = parts[0] + "/" + parts[1];
  }
  std::string revision = "main";
  if (const std::size_t at = id.find('@'); at != std::string::npos) {
    revision = id.substr(at + 1);
    id = id.substr(0, at);
  }
  parts = split(id, '/');
  if (parts.size() != 2 || !is_repo_part(parts[0]) || !is_repo_part(parts[1]) ||
      !is_repo_part(revision) || (!file.empty() && !is_repo_part(file))) {
    throw Error(ErrorCode::kNotFound,
                printable(spec, 200) +
                    ": no such file or folder (nor a Hugging Face repo id such as "
                    "mlx-community/Phi-3-mini-4k-instruct-4bit)");
  }
  const fs::path cache = hf_hub_cache();
  const fs::path repo = cache / ("models--" + parts[0] + "--" + parts[1]);
  const std::string looked =
      " (looked in " + printable(repo.string(), 300) + ", from " + where_from() + ")";
  if (!fs::is_directory(repo, ec)) {
    not_found(spec, "not a file or folder, and not in the local Hugging Face cache" + looked);
  }
  std::string commit = revision;
  if (std::ifstream ref(repo / "refs" / revision); ref) {
    std::getline(ref, commit);
    while (!commit.empty() &&
           (commit.back() == '\n' || commit.back() == '\r' || commit.back() == ' ')) {
      commit.pop_back();
    }
  }
  const fs::path snapshot = repo / "snapshots" / commit;
  if (commit.empty() || !is_repo_part(commit) || !fs::is_directory(snapshot, ec)) {
    not_found(spec,
              "the cache has no snapshot for revision '" + printable(revision, 80) + "'" + looked);
  }
  if (!file.empty()) {
    const fs::path f = snapshot / file;
    if (!fs::exists(f, ec)) not_found(spec, "the snapshot has no file " + file + looked);
    return f;
  }
  return pick_in_snapshot(snapshot, spec);
}

}  // namespace hearth::formats
