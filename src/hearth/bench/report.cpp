#include "hearth/bench/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>

#include "hearth/core/cpu.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/memory.hpp"
#include "hearth/core/thread_pool.hpp"
#include "hearth/core/version.hpp"
#include "hearth/formats/file_io.hpp"
#include "hearth/kernels/peak.hpp"

namespace hearth::bench {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string gib(std::uint64_t bytes) {
  return fixed(static_cast<double>(bytes) / double(1 << 30), 1) + " GiB";
}

void write_file(const fs::path& path, const std::string& text) {
  formats::AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

std::string cell(std::string s) {
  std::string out;
  for (const char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string setting_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) return format_value(v.get<double>());
  return v.dump();
}

}  // namespace

const char* to_string(Better b) {
  switch (b) {
    case Better::kHigher:
      return "higher";
    case Better::kLower:
      return "lower";
    case Better::kNeither:
      break;
  }
  return "neither";
}

Machine describe_machine(std::size_t threads) {
  Machine m;
  m.cpu = cpu_model_name();
  m.simd = to_string(simd_level());
  m.features = describe_cpu();
  m.logical_cpus = ThreadPool::hardware_threads();
  m.memory_bytes = total_memory_bytes();
  m.threads = threads == 0 ? m.logical_cpus : threads;
  return m;
}

void probe_machine(Machine& m, std::uint64_t probe_bytes) {
  if (m.threads == 0) m.threads = ThreadPool::hardware_threads();
  ThreadPool pool(m.threads);
  if (m.bandwidth_gbs <= 0) {
    m.bandwidth_gbs =
        kernels::measure_read_bandwidth_gbs(pool, static_cast<std::size_t>(probe_bytes), 3);
  }
  if (m.peak_gflops <= 0) {
    for (int r = 0; r < 3; ++r) {
      m.peak_gflops = std::max(m.peak_gflops, kernels::measure_fma_peak_gflops(pool, 0.1));
    }
  }
}

std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return b;
}

fs::path output_folder(const std::string& requested, const std::string& subcommand) {
  std::error_code ec;
  if (!requested.empty()) {
    fs::create_directories(requested, ec);
    if (!fs::is_directory(requested)) {
      throw Error(ErrorCode::kIo, "cannot make the folder" + (ec ? ": " + ec.message() : ""),
                  {.file = requested});
    }
    return requested;
  }
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  const std::string base = "bench-" + subcommand + "-" + stamp;
  for (int i = 1; i < 1000; ++i) {
    const fs::path p = i == 1 ? fs::path(base) : fs::path(base + "-" + std::to_string(i));
    if (fs::create_directory(p, ec)) return p;
    if (ec) throw Error(ErrorCode::kIo, "cannot make the folder: " + ec.message(), {.file = p});
  }
  throw Error(ErrorCode::kIo, "every name is taken", {.file = base});
}

json to_json(const Report& r) {
  const Machine& m = r.machine;
  json figures = json::array();
  for (const Figure& f : r.figures) {
    figures.push_back({{"id", f.id},
                       {"label", f.label},
                       {"unit", f.unit},
                       {"value", f.value},
                       {"better", to_string(f.better)}});
  }
  json charts = json::array();
  for (const Section& s : r.sections) {
    for (const Section::Chart& c : s.charts) {
      charts.push_back({{"file", c.file + ".svg"}, {"title", c.title}});
    }
  }
  return {{"format", kResultsFormat},
          {"format_version", kResultsVersion},
          {"subcommand", r.subcommand},
          {"title", r.title},
          {"created", r.created},
          {"hearth", {{"version", r.version}, {"commit", r.commit}}},
          {"machine",
           {{"cpu", m.cpu},
            {"simd", m.simd},
            {"features", m.features},
            {"logical_cpus", m.logical_cpus},
            {"memory_bytes", m.memory_bytes},
            {"threads", m.threads},
            {"read_bandwidth_gbs", m.bandwidth_gbs},
            {"fma_peak_gflops", m.peak_gflops}}},
          {"settings", r.settings},
          {"figures", figures},
          {"charts", charts},
          {"details", r.details}};
}

Report report_from_json(const json& j, const std::string& source) {
  const auto bad = [&](const std::string& what) {
    throw Error(ErrorCode::kFormat, what, {.file = source});
  };
  if (!j.is_object() || j.value("format", "") != kResultsFormat) {
    bad(std::string("not a bench-cli results.json (no \"format\": \"") + kResultsFormat + "\")");
  }
  try {
    if (j.at("format_version").get<int>() > kResultsVersion) {
      bad("results format version " + std::to_string(j.at("format_version").get<int>()) +
          " is newer than this bench-cli reads (" + std::to_string(kResultsVersion) + ")");
    }
    Report r;
    r.subcommand = j.at("subcommand").get<std::string>();
    r.title = j.value("title", "");
    r.created = j.value("created", "");
    r.version = j.at("hearth").value("version", "");
    r.commit = j.at("hearth").value("commit", "");
    const json& m = j.at("machine");
    r.machine.cpu = m.value("cpu", "");
    r.machine.simd = m.value("simd", "");
    r.machine.features = m.value("features", "");
    r.machine.logical_cpus = m.value("logical_cpus", std::size_t{0});
    r.machine.memory_bytes = m.value("memory_bytes", std::uint64_t{0});
    r.machine.threads = m.value("threads", std::size_t{0});
    r.machine.bandwidth_gbs = m.value("read_bandwidth_gbs", 0.0);
    r.machine.peak_gflops = m.value("fma_peak_gflops", 0.0);
    r.settings = j.value("settings", json::object());
    r.details = j.value("details", json::object());
    for (const json& f : j.at("figures")) {
      Figure fig;
      fig.id = f.at("id").get<std::string>();
      fig.label = f.value("label", fig.id);
      fig.unit = f.value("unit", "");
      fig.value = f.at("value").get<double>();
      const std::string better = f.value("better", "higher");
      fig.better = better == "lower"     ? Better::kLower
                   : better == "neither" ? Better::kNeither
                                         : Better::kHigher;
      r.figures.push_back(std::move(fig));
    }
    return r;
  } catch (const json::exception& e) {
    bad(std::string("malformed results: ") + e.what());
  }
  return {};
}

std::string markdown_table(const std::vector<std::string>& header,
                           const std::vector<std::vector<std::string>>& rows) {
  std::string out = "|";
  const auto put = [&](const std::string& c) {
    out += ' ';
    out += cell(c);
    out += " |";
  };
  for (const std::string& h : header) put(h);
  out += "\n|";
  for (std::size_t i = 0; i < header.size(); ++i) out += i == 0 ? " --- |" : " ---: |";
  out += '\n';
  for (const auto& row : rows) {
    out += '|';
    for (const std::string& c : row) put(c);
    out += '\n';
  }
  return out;
}

std::string to_markdown(const Report& r) {
  const Machine& m = r.machine;
  std::string md = "# bench-cli " + r.subcommand + (r.title.empty() ? "" : ": " + r.title) +
                   "\n\n" + r.created + ", hearth " + r.version + " (commit " + r.commit +
                   "). Every figure is also in `results.json` beside this file.\n\n## Machine\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"CPU", m.cpu},
      {"logical CPUs", std::to_string(m.logical_cpus)},
      {"SIMD level", m.simd + " (" + m.features + ")"},
      {"memory", gib(m.memory_bytes)},
      {"threads", std::to_string(m.threads)},
      {"read bandwidth (measured)", fixed(m.bandwidth_gbs, 1) + " GB/s"},
      {"f32 FMA peak (measured)", fixed(m.peak_gflops, 1) + " GFLOP/s"}};
  md += markdown_table({"machine", "value"}, rows);
  if (!r.settings.empty()) {
    md += "\n## Settings\n\n";
    rows.clear();
    for (const auto& [k, v] : r.settings.items()) {
      if (v.is_string() && v.get<std::string>().empty()) continue;  // not set
      rows.push_back({k, setting_text(v)});
    }
    md += markdown_table({"setting", "value"}, rows);
  }
  for (const Section& s : r.sections) {
    md += "\n## " + s.heading + "\n\n" + s.markdown;
    for (const Section::Chart& c : s.charts) md += "\n![" + c.title + "](" + c.file + ".svg)\n";
  }
  if (!r.figures.empty()) {
    md += "\n## All figures\n\n";
    rows.clear();
    for (const Figure& f : r.figures) {
      rows.push_back(
          {f.label, format_value(f.value), f.unit, to_string(f.better), "`" + f.id + "`"});
    }
    md += markdown_table({"figure", "value", "unit", "better", "id"}, rows);
  }
  return md;
}

void write_report(Report& r, const fs::path& folder) {
  if (r.created.empty()) r.created = utc_timestamp();
  if (r.version.empty()) r.version = kVersion;
  if (r.commit.empty()) r.commit = build_commit();
  for (const Section& s : r.sections) {
    for (const Section::Chart& c : s.charts) write_file(folder / (c.file + ".svg"), c.svg);
  }
  write_file(folder / "results.json", to_json(r).dump(2) + "\n");
  write_file(folder / "report.md", to_markdown(r));
}

Comparison compare(const std::vector<Report>& runs, const std::vector<std::string>& names) {
  Comparison c;
  std::map<std::string, std::size_t> row_of;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Report& r = runs[i];
    c.runs.push_back(r.subcommand + ", " + r.created + ", " + r.commit +
                     (i < names.size() ? " (" + names[i] + ")" : ""));
    for (const Figure& f : r.figures) {
      auto [it, fresh] = row_of.emplace(f.id, c.rows.size());
      if (fresh) {
        c.rows.push_back(
            {f.id, f.label, f.unit, f.better, std::vector<std::optional<double>>(runs.size())});
      }
      c.rows[it->second].values[i] = f.value;
    }
  }
  return c;
}

Report comparison_report(const Comparison& c, const std::vector<Report>& runs) {
  Report out;
  out.subcommand = "compare";
  out.title = std::to_string(runs.size()) + " runs";
  out.machine = runs.empty() ? Machine{} : runs.front().machine;
  std::string md = "Runs (ratios are each run over run 1; a figure a run lacks is missing):\n\n";
  std::vector<std::vector<std::string>> rows;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const Machine& m = runs[i].machine;
    rows.push_back({std::to_string(i + 1), c.runs[i],
                    m.cpu + ", " + m.simd + ", " + std::to_string(m.threads) + " threads",
                    fixed(m.bandwidth_gbs, 1), fixed(m.peak_gflops, 1)});
  }
  md += markdown_table({"run", "what, when, commit (file)", "machine", "GB/s", "GFLOP/s"}, rows);
  std::vector<std::string> header = {"figure", "unit"};
  for (std::size_t i = 0; i < runs.size(); ++i) {
    header.push_back("run " + std::to_string(i + 1));
    if (i > 0) header.push_back(std::to_string(i + 1) + " / 1");
  }
  rows.clear();
  BarChart chart;
  chart.title = "Each run over run 1 (figures in both)";
  chart.unit = "ratio to run 1 (above 1: larger)";
  chart.reference = 1.0;
  chart.reference_label = "run 1";
  for (std::size_t i = 1; i < runs.size(); ++i) {
    chart.series.push_back({"run " + std::to_string(i + 1), {}, false});
  }
  for (const Comparison::Row& row : c.rows) {
    std::vector<std::string> cells = {row.label, row.unit};
    const std::optional<double> base = row.values.front();
    for (std::size_t i = 0; i < row.values.size(); ++i) {
      const std::optional<double>& v = row.values[i];
      cells.push_back(v ? format_value(*v) : "missing");
      if (i == 0) continue;
      std::optional<double> ratio;
      if (v && base && *base > 0) ratio = *v / *base;
      std::string text = ratio ? fixed(*ratio, 3) + "x" : "—";
      if (ratio && std::fabs(*ratio - 1) > 0.01 && row.better != Better::kNeither) {
        text += (*ratio > 1) == (row.better == Better::kHigher) ? " better" : " worse";
      }
      cells.push_back(text);
      chart.series[i - 1].values.push_back(ratio);
      if (ratio) {
        out.figures.push_back({row.id + "/run" + std::to_string(i + 1),
                               row.label + ", run " + std::to_string(i + 1) + " / run 1", "ratio",
                               *ratio, row.better});
      }
    }
    rows.push_back(std::move(cells));
    chart.categories.push_back(row.label);
  }
  md += "\n" + markdown_table(header, rows);
  Section s{"Figures side by side", md, {}};
  if (runs.size() > 1 && !chart.categories.empty()) {
    s.charts.push_back({"compare-ratios", chart.title, render_bar_chart(chart)});
  }
  out.sections.push_back(std::move(s));
  return out;
}

}  // namespace hearth::bench
