// One report format for every bench-cli subcommand: a folder holding report.md (tables and the
// SVG charts beside it) and results.json (the machine with its measured limits, hearth's version
// and commit, the settings, every figure under a stable id, and the subcommand's own details).
// `bench-cli compare` reads results.json files back and sets the same figures side by side.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hearth/bench/chart.hpp"

namespace hearth::bench {

inline constexpr const char* kResultsFormat = "hearth-bench-results";
inline constexpr int kResultsVersion = 1;

struct Machine {
  std::string cpu;       // cpu_model_name()
  std::string simd;      // "avx512", "avx2", "scalar"
  std::string features;  // describe_cpu()
  std::size_t logical_cpus = 0;
  std::uint64_t memory_bytes = 0;
  std::size_t threads = 0;     // the benchmark's threads (the probes ran on as many)
  double bandwidth_gbs = 0.0;  // measured read bandwidth (GB/s)
  double peak_gflops = 0.0;    // measured f32 FMA peak (GFLOP/s)
};

// The machine's description; no measurement.
Machine describe_machine(std::size_t threads);
// Measures what is still 0 in m: read bandwidth over probe_bytes, FMA peak over about 0.3 s (the
// best of three windows), both on m.threads threads.
void probe_machine(Machine& m, std::uint64_t probe_bytes);

// Which way a figure improves; compare marks ratios better or worse only for the first two.
enum class Better { kHigher, kLower, kNeither };
const char* to_string(Better b);  // "higher", "lower", "neither"

struct Figure {
  std::string id;  // stable across runs: what compare matches on ("b32.l256.tokens_per_s")
  std::string label;
  std::string unit;
  double value = 0.0;
  Better better = Better::kHigher;
};

struct Section {
  std::string heading;
  std::string markdown;  // tables and text
  // Written as <file>.svg beside report.md and shown after the markdown.
  struct Chart {
    std::string file;  // without the extension
    std::string title;
    std::string svg;
  };
  std::vector<Chart> charts;
};

struct Report {
  std::string subcommand;  // "embed"
  std::string title;       // "Sentence embedding"
  std::string created;     // ISO 8601 UTC; filled by write_report when empty
  std::string version;     // filled by write_report when empty
  std::string commit;
  Machine machine;
  nlohmann::json settings = nlohmann::json::object();  // flat: name -> value
  std::vector<Figure> figures;
  std::vector<Section> sections;
  nlohmann::json details = nlohmann::json::object();  // the subcommand's own JSON
};

// "2026-12-02T02:30:11Z"
std::string utc_timestamp();
// v with `digits` decimals (printf %.*f), as the reports print figures.
std::string fixed(double v, int digits);

// The folder a run writes into: `requested` (created when absent, kept when present), or when
// empty a new folder `bench-<subcommand>-YYYYMMDD-HHMMSS` (a -2, -3 ... suffix when taken) under
// the current directory. Error(kIo) naming the folder when it cannot be made.
std::filesystem::path output_folder(const std::string& requested, const std::string& subcommand);

nlohmann::json to_json(const Report& report);
// A results.json read back (the sections are not kept). Error(kFormat) naming source for a file
// that is not one.
Report report_from_json(const nlohmann::json& j, const std::string& source);
std::string to_markdown(const Report& report);

// Writes report.md, results.json and every chart into folder (atomically, file by file).
void write_report(Report& report, const std::filesystem::path& folder);

// A markdown table: header cells, then rows (cells are escaped for '|').
std::string markdown_table(const std::vector<std::string>& header,
                           const std::vector<std::vector<std::string>>& rows);

// `bench-cli compare`: every figure of every run (matched by id, in the order first seen), each
// later run's value over the first run's. A figure absent from a run is missing, never zero.
struct Comparison {
  std::vector<std::string> runs;  // "embed, 2026-12-02T02:30:11Z, 63c7ba1 (a.json)"
  struct Row {
    std::string id, label, unit;
    Better better = Better::kHigher;
    std::vector<std::optional<double>> values;  // one per run
  };
  std::vector<Row> rows;
};
Comparison compare(const std::vector<Report>& runs, const std::vector<std::string>& names);
// The comparison as a report of its own (table, ratio chart), subcommand "compare".
Report comparison_report(const Comparison& c, const std::vector<Report>& runs);

}  // namespace hearth::bench
