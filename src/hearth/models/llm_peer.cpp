#include "hearth/models/llm_peer.hpp"

#include <unistd.h>

#include "hearth/core/error.hpp"
#include "hearth/core/process.hpp"
#include "hearth/formats/inspect.hpp"

namespace hearth::models {

namespace {

std::string join(const std::vector<std::int64_t>& values) {
  std::string out;
  for (const std::int64_t v : values) {
    if (!out.empty()) out += ',';
    out += std::to_string(v);
  }
  return out;
}

std::vector<double> numbers(const nlohmann::json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || !j[key].is_array()) {
    throw Error(ErrorCode::kFormat, "llama-bench output has no array '" + std::string(key) + "'",
                {.file = source, .key = key});
  }
  std::vector<double> out;
  for (const auto& v : j[key]) {
    if (!v.is_number()) {
      throw Error(ErrorCode::kFormat,
                  "llama-bench output has a non-number in '" + std::string(key) + "'",
                  {.file = source, .key = key});
    }
    out.push_back(v.get<double>());
  }
  return out;
}

template <class T>
T field(const nlohmann::json& j, const char* key, const std::string& source) {
  const bool ok =
      j.contains(key) && (std::is_arithmetic_v<T> ? j[key].is_number() : j[key].is_string());
  if (!ok) {
    throw Error(ErrorCode::kFormat,
                "llama-bench output has no " +
                    std::string(std::is_arithmetic_v<T> ? "number" : "string") + " '" + key + "'",
                {.file = source, .key = key});
  }
  return j[key].get<T>();
}

std::string optional_string(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

}  // namespace

LlmPeer parse_peer_spec(std::string_view spec) {
  const auto eq = spec.find('=');
  const std::string name(spec.substr(0, eq));
  if (eq == std::string_view::npos || name != "llama-bench" || eq + 1 == spec.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "--peer takes llama-bench=PATH (the path of llama.cpp's llama-bench), not '" +
                    std::string(spec) + "'");
  }
  return {name, std::filesystem::path(spec.substr(eq + 1))};
}

void check_peer(const LlmPeer& peer, const LlmBenchOptions& options) {
  if (options.model.empty()) {
    throw Error(ErrorCode::kUnsupported,
                "--peer " + peer.name +
                    " runs on a GGUF file, not on --random weights made in memory (write one "
                    "with hearth-make-model --format gguf and pass it)");
  }
  if (formats::detect_format(options.model) != formats::ModelFormat::kGGUF) {
    throw Error(ErrorCode::kUnsupported,
                "--peer " + peer.name + " runs on GGUF files only; this is a " +
                    formats::to_string(formats::detect_format(options.model)),
                {.file = options.model.string()});
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(peer.path, ec)) {
    throw Error(ErrorCode::kNotFound, "no such " + peer.name + " program",
                {.file = peer.path.string()});
  }
  if (::access(peer.path.c_str(), X_OK) != 0) {
    throw Error(ErrorCode::kInvalidArgument, peer.name + " is not executable",
                {.file = peer.path.string()});
  }
}

std::vector<std::string> llama_bench_command(const LlmPeer& peer, const LlmBenchOptions& o,
                                             std::size_t threads) {
  const std::string kv(dtype_name(o.kv_dtype));
  return {peer.path.string(),
          "-m",
          o.model.string(),
          "-p",
          join(o.prompts),
          "-n",
          join(o.gens),
          "-r",
          std::to_string(o.repetitions),
          "-t",
          std::to_string(threads),
          "-ctk",
          kv,
          "-ctv",
          kv,
          "-ngl",
          "0",
          "-o",
          "json"};
}

LlamaBenchRun parse_llama_bench_json(std::string_view text, const std::string& source) {
  const auto open = text.find('[');
  nlohmann::json j = nlohmann::json::parse(
      open == std::string_view::npos ? text : text.substr(open), nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    throw Error(ErrorCode::kFormat, "llama-bench output is not a JSON array (-o json)",
                {.file = source});
  }
  LlamaBenchRun run;
  run.info.name = "llama-bench";
  run.info.path = source;
  for (const auto& t : j) {
    if (!t.is_object()) {
      throw Error(ErrorCode::kFormat, "llama-bench output holds a non-object", {.file = source});
    }
    LlamaBenchTest test;
    test.n_prompt = field<std::int64_t>(t, "n_prompt", source);
    test.n_gen = field<std::int64_t>(t, "n_gen", source);
    test.n_threads = field<std::int64_t>(t, "n_threads", source);
    test.avg_ts = field<double>(t, "avg_ts", source);
    test.stddev_ts = field<double>(t, "stddev_ts", source);
    test.samples_ts = numbers(t, "samples_ts", source);
    test.samples_ns = numbers(t, "samples_ns", source);
    if (test.samples_ts.size() != test.samples_ns.size()) {
      throw Error(ErrorCode::kFormat,
                  "llama-bench output has samples_ts and samples_ns of "
                  "different lengths",
                  {.file = source, .key = "samples_ts"});
    }
    if (run.tests.empty()) {
      const std::string commit = optional_string(t, "build_commit");
      run.info.version = commit.empty() ? "" : "build " + commit;
      if (t.contains("build_number") && t["build_number"].is_number()) {
        run.info.version += " (" + std::to_string(t["build_number"].get<std::int64_t>()) + ")";
      }
      run.info.backend = optional_string(t, "backends");
      run.info.model_type = optional_string(t, "model_type");
    }
    run.tests.push_back(std::move(test));
  }
  return run;
}

void attach_peer(LlmBenchReport& report, const LlamaBenchRun& run) {
  report.peer = run.info;
  for (LlmBenchRow& row : report.rows) {
    for (const LlamaBenchTest& t : run.tests) {
      if (t.n_prompt != row.n_prompt || t.n_gen != row.n_gen) continue;
      LlmPeerFigures p;
      p.tokens_per_s = t.samples_ts;
      for (const double ns : t.samples_ns) p.seconds.push_back(ns * 1e-9);
      // llama-bench's own mean and spread, which it computes from the same samples.
      p.stats = {t.avg_ts, t.stddev_ts};
      p.fraction = row.limit_tokens_per_s > 0.0 ? p.stats.mean / row.limit_tokens_per_s : 0.0;
      p.ratio = p.stats.mean > 0.0 ? row.stats.mean / p.stats.mean : 0.0;
      row.peer = std::move(p);
      break;
    }
  }
}

void run_peer(const LlmPeer& peer, const LlmBenchOptions& options, LlmBenchReport& report) {
  const ProcessResult r = run_process(llama_bench_command(peer, options, report.threads));
  if (r.exit_status != 0) {
    std::string tail = r.err;
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    if (const auto nl = tail.rfind('\n'); nl != std::string::npos) tail = tail.substr(nl + 1);
    throw Error(ErrorCode::kIo,
                (r.signal != 0 ? "ended by signal " + std::to_string(r.signal)
                               : "exited with status " + std::to_string(r.exit_status)) +
                    (tail.empty() ? "" : ": " + tail),
                {.file = peer.path.string()});
  }
  LlamaBenchRun run = parse_llama_bench_json(r.out, peer.path.string());
  run.info.name = peer.name;
  attach_peer(report, run);
}

}  // namespace hearth::models
