// The benchmark reports: the SVG charts (parsed with libxml2: one bar or point per figure, the
// values they claim), results.json round trips, compare's ratios and missing figures, and every
// measuring bench-cli subcommand writing its report as a user runs it.
#include <gtest/gtest.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hearth/bench/chart.hpp"
#include "hearth/bench/report.hpp"
#include "hearth/core/error.hpp"
#include "support/fixtures.hpp"

namespace hearth::bench {
namespace {

namespace fs = std::filesystem;
using testing::cat;
using testing::quote;

// The elements of a parsed SVG document by class, with their attributes.
struct Parsed {
  bool ok = false;
  std::string root;
  std::map<std::string, std::vector<std::map<std::string, std::string>>> by_class;
};

void collect(xmlNode* n, Parsed& p) {
  for (; n != nullptr; n = n->next) {
    if (n->type != XML_ELEMENT_NODE) continue;
    std::map<std::string, std::string> attrs;
    for (xmlAttr* a = n->properties; a != nullptr; a = a->next) {
      xmlChar* v = xmlNodeListGetString(n->doc, a->children, 1);
      attrs[reinterpret_cast<const char*>(a->name)] = v ? reinterpret_cast<const char*>(v) : "";
      xmlFree(v);
    }
    if (attrs.count("class")) {
      attrs["element"] = reinterpret_cast<const char*>(n->name);
      p.by_class[attrs["class"]].push_back(attrs);
    }
    collect(n->children, p);
  }
}

Parsed parse_svg(const std::string& svg) {
  Parsed p;
  xmlDoc* doc = xmlReadMemory(svg.data(), static_cast<int>(svg.size()), "chart.svg", nullptr,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == nullptr) return p;
  xmlNode* root = xmlDocGetRootElement(doc);
  p.ok = root != nullptr;
  if (root != nullptr) {
    p.root = reinterpret_cast<const char*>(root->name);
    collect(root, p);
  }
  xmlFreeDoc(doc);
  return p;
}

std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(Chart, BarsOnePerPresentValueAndMissingOnesMarked) {
  BarChart c;
  c.title = "Tokens/s & <limits>";
  c.unit = "tokens/s";
  c.categories = {"pp8", "tg4", "tg\"16\""};
  c.series = {{"hearth", {120.5, 30.0, std::nullopt}, false}, {"limit", {400, 90, 95}, true}};
  c.reference = 300;
  c.reference_label = "peak";
  const Parsed p = parse_svg(render_bar_chart(c));
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.root, "svg");
  const auto& bars = p.by_class.at("bar");
  ASSERT_EQ(bars.size(), 5u);
  EXPECT_EQ(bars[0].at("data-series"), "hearth");
  EXPECT_EQ(bars[0].at("data-category"), "pp8");
  EXPECT_EQ(bars[0].at("data-value"), "120");
  EXPECT_EQ(bars[4].at("data-category"), "tg\"16\"");
  EXPECT_EQ(bars[4].at("data-value"), "95");
  // Lengths are proportional to the values.
  EXPECT_NEAR(std::stod(bars[1].at("width")) / std::stod(bars[0].at("width")), 400 / 120.5, 0.01);
  ASSERT_EQ(p.by_class.at("missing").size(), 1u);
  EXPECT_EQ(p.by_class.at("missing")[0].at("data-category"), "tg\"16\"");
  EXPECT_EQ(p.by_class.at("reference").size(), 1u);

  c.series[0].values.pop_back();
  EXPECT_THROW(render_bar_chart(c), Error);
  c.series[0].values.push_back(-1.0);
  EXPECT_THROW(render_bar_chart(c), Error);
}

TEST(Chart, HistogramCountsEverySampleOnce) {
  Histogram h{"latency", "ms", {}, 7};
  for (int i = 0; i < 100; ++i) h.samples.push_back(1.0 + (i % 13) * 0.25);
  const Parsed p = parse_svg(render_histogram(h));
  ASSERT_TRUE(p.ok);
  const auto& bins = p.by_class.at("bar");
  ASSERT_EQ(bins.size(), 7u);
  int total = 0;
  for (const auto& b : bins) total += std::stoi(b.at("data-count"));
  EXPECT_EQ(total, 100);
  EXPECT_EQ(bins.front().at("data-from"), "1");
  EXPECT_EQ(bins.back().at("data-to"), "4");
  // A long tail goes into one overflow bin after the 99th percentile.
  h.samples.push_back(1000);
  const Parsed tail = parse_svg(render_histogram(h));
  ASSERT_EQ(tail.by_class.at("bar").size(), 8u);
  EXPECT_EQ(tail.by_class.at("bar").back().at("data-count"), "1");
  EXPECT_EQ(tail.by_class.at("bar").back().at("data-to"), "1000");
  // Integers get one bin per value; all-equal samples and no samples still draw.
  const Parsed ints = parse_svg(render_histogram({"pieces", "bytes", {1, 3, 3, 5}, 20}));
  ASSERT_EQ(ints.by_class.at("bar").size(), 5u);
  EXPECT_EQ(ints.by_class.at("bar")[2].at("data-count"), "2");
  EXPECT_EQ(parse_svg(render_histogram({"same", "ms", {2.5, 2.5}, 5})).by_class.at("bar").size(),
            1u);
  EXPECT_TRUE(parse_svg(render_histogram({"none", "ms", {}, 5})).ok);
}

TEST(Chart, PointsOnePerValue) {
  const Parsed p = parse_svg(render_point_chart({"steps", "step", "s", {0.5, 0.25, 0.3, 0.31}}));
  ASSERT_TRUE(p.ok);
  ASSERT_EQ(p.by_class.at("point").size(), 4u);
  EXPECT_EQ(p.by_class.at("point")[1].at("data-value"), "0.25");
  EXPECT_GT(std::stod(p.by_class.at("point")[1].at("cy")),
            std::stod(p.by_class.at("point")[0].at("cy")));  // smaller values sit lower
}

Report sample(const std::string& id_prefix, double scale) {
  Report r;
  r.subcommand = "embed";
  r.machine = describe_machine(1);
  r.figures = {{id_prefix + "a", "A", "tokens/s", 100 * scale, Better::kHigher},
               {"latency", "latency", "ms", 2 * scale, Better::kLower},
               {"share", "share", "fraction", 0.5, Better::kNeither}};
  return r;
}

TEST(Report, ResultsJsonRoundTripsAndRejectsOtherFiles) {
  testing::TempDir tmp;
  Report r = sample("", 1);
  r.settings = {{"threads", 1}};
  r.sections.push_back({"S", "text\n", {{"c", "C", render_point_chart({"C", "x", "s", {1}})}}});
  write_report(r, tmp.path());
  EXPECT_FALSE(r.commit.empty());
  const auto j = nlohmann::json::parse(read(tmp / "results.json"));
  EXPECT_EQ(j["format"], kResultsFormat);
  EXPECT_EQ(j["hearth"]["commit"], r.commit);
  EXPECT_EQ(j["charts"][0]["file"], "c.svg");
  for (const char* key : {"cpu", "simd", "logical_cpus", "memory_bytes", "read_bandwidth_gbs",
                          "fma_peak_gflops", "threads"}) {
    EXPECT_TRUE(j["machine"].contains(key)) << key;
  }
  const Report back = report_from_json(j, "x.json");
  ASSERT_EQ(back.figures.size(), 3u);
  EXPECT_EQ(back.figures[1].better, Better::kLower);
  EXPECT_EQ(back.figures[2].better, Better::kNeither);
  EXPECT_EQ(back.figures[0].value, 100);
  const std::string md = read(tmp / "report.md");
  EXPECT_NE(md.find("![C](c.svg)"), std::string::npos) << md;
  EXPECT_NE(md.find("| threads | 1 |"), std::string::npos) << md;
  EXPECT_TRUE(parse_svg(read(tmp / "c.svg")).ok);
  try {
    report_from_json(nlohmann::json{{"format", "other"}}, "/some/file.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFormat);
    EXPECT_NE(std::string(e.what()).find("/some/file.json"), std::string::npos) << e.what();
  }
  auto broken = j;
  broken["figures"][0].erase("value");
  EXPECT_THROW(report_from_json(broken, "b.json"), Error);
}

TEST(Report, CompareGivesRatiosAndMissingNotZero) {
  const std::vector<Report> runs = {sample("", 1), sample("other-", 2)};
  const Comparison c = compare(runs, {"a.json", "b.json"});
  ASSERT_EQ(c.rows.size(), 4u);  // a, latency, share, other-a
  EXPECT_EQ(c.rows[0].id, "a");
  EXPECT_EQ(c.rows[0].values[0], 100);
  EXPECT_FALSE(c.rows[0].values[1].has_value());
  EXPECT_FALSE(c.rows[3].values[0].has_value());
  EXPECT_EQ(c.rows[3].values[1], 200);
  const Report r = comparison_report(c, runs);
  const std::string& md = r.sections.at(0).markdown;
  EXPECT_NE(md.find("| latency | ms | 2 | 4 | 2.000x worse |"), std::string::npos) << md;
  EXPECT_NE(md.find("| share | fraction | 0.5 | 0.5 | 1.000x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| A | tokens/s | 100 | missing | — |"), std::string::npos) << md;
  EXPECT_EQ(md.find("| 0 |"), std::string::npos) << md;
  // The ratio chart: a bar for each figure in both runs, "missing" for the others.
  const Parsed p = parse_svg(r.sections[0].charts.at(0).svg);
  ASSERT_TRUE(p.ok);
  EXPECT_EQ(p.by_class.at("bar").size(), 2u);
  EXPECT_EQ(p.by_class.at("missing").size(), 2u);
  ASSERT_EQ(r.figures.size(), 2u);
  EXPECT_EQ(r.figures[0].id, "latency/run2");
  EXPECT_DOUBLE_EQ(r.figures[0].value, 2.0);
}

TEST(Report, DefaultFolderIsNewAndDated) {
  testing::TempDir tmp;
  const fs::path old = fs::current_path();
  fs::current_path(tmp.path());
  const fs::path a = output_folder("", "embed");
  const fs::path b = output_folder("", "embed");
  fs::current_path(old);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.string().rfind("bench-embed-2", 0), 0u) << a;
  EXPECT_TRUE(fs::is_directory(tmp / a.string()));
  EXPECT_TRUE(fs::is_directory(tmp / b.string()));
  EXPECT_EQ(output_folder((tmp / "x" / "y").string(), "embed"), tmp / "x" / "y");
  std::ofstream(tmp / "file") << "x";
  EXPECT_THROW(output_folder((tmp / "file").string(), "embed"), Error);
}

// ---- bench-cli as a user runs it ----

std::string bench_cli() {
  return quote(testing::tools_dir() / "bench-cli");
}

// Runs a command line; output receives its stdout only, or its stderr only.
int stdout_of(const std::string& command, std::string* output) {
  return testing::run_command("{ " + command + " 2>/dev/null; }", output);
}
int stderr_of(const std::string& command, std::string* output) {
  return testing::run_command("{ " + command + " 2>&1 >/dev/null; }", output);
}

// Every chart results.json lists parses as SVG; returns the parsed charts by file name.
std::map<std::string, Parsed> charts_of(const fs::path& folder) {
  std::map<std::string, Parsed> out;
  const auto j = nlohmann::json::parse(read(folder / "results.json"));
  for (const auto& c : j["charts"]) {
    const std::string file = c["file"];
    Parsed p = parse_svg(read(folder / file));
    EXPECT_TRUE(p.ok) << file;
    EXPECT_NE(read(folder / "report.md").find("(" + file + ")"), std::string::npos) << file;
    out[file] = std::move(p);
  }
  return out;
}

std::map<std::string, double> figures_of(const fs::path& folder) {
  std::map<std::string, double> out;
  const auto j = nlohmann::json::parse(read(folder / "results.json"));
  for (const auto& f : j["figures"]) {
    out[f["id"]] = f["value"];
  }
  return out;
}

TEST(BenchCliReport, TwoEmbedRunsCompared) {
  testing::TempDir tmp;
  testing::make_model("--arch bert --format hf --out " + quote(tmp / "m"));
  ASSERT_FALSE(HasFatalFailure());
  const std::string common = cat({bench_cli(), " --threads 1 embed --model ", quote(tmp / "m"),
                                  " --batch 1 2 --seconds 0.01 --repeat 1 --probe-mib 8"});
  std::string out;
  ASSERT_EQ(stderr_of(cat({common, " --length 4 9 --out ", quote(tmp / "a")}), &out), 0) << out;
  EXPECT_NE(out.find("bench-cli: wrote " + (tmp / "a" / "report.md").string()), std::string::npos)
      << out;
  // The second run lacks length 9; JSON on stdout stays JSON.
  ASSERT_EQ(stdout_of(cat({common, " --length 4 --json --out ", quote(tmp / "b")}), &out), 0);
  EXPECT_EQ(nlohmann::json::parse(out)["rows"].size(), 2u);

  const auto figures = figures_of(tmp / "a");
  const auto charts = charts_of(tmp / "a");

  ASSERT_TRUE(charts.count("embed-tokens.svg"));
  // One bar per figure: measured and limit tokens/s for each of the 4 batch x length rows, each
  // bar the value of its figure.
  const auto& bars = charts.at("embed-tokens.svg").by_class.at("bar");
  ASSERT_EQ(bars.size(), 8u);
  EXPECT_EQ(bars[0].at("data-value"), format_value(figures.at("b1.l4.tokens_per_s")));
  EXPECT_EQ(bars[1].at("data-value"), format_value(figures.at("b1.l4.tokens_per_s_limit")));
  EXPECT_EQ(charts.at("embed-gflops.svg").by_class.at("bar").size(), 8u);
  EXPECT_EQ(charts.at("embed-gflops.svg").by_class.at("reference").size(), 1u);
  const auto j = nlohmann::json::parse(read(tmp / "a" / "results.json"));
  EXPECT_GT(j["machine"]["read_bandwidth_gbs"].get<double>(), 0.0);
  EXPECT_GT(j["machine"]["fma_peak_gflops"].get<double>(), 0.0);
  EXPECT_EQ(j["details"]["rows"].size(), 4u);

  ASSERT_EQ(stdout_of(cat({bench_cli(), " compare ", quote(tmp / "a"), " ",
                           quote(tmp / "b" / "results.json"), " --out ", quote(tmp / "c")}),
                      &out),
            0)
      << out;
  EXPECT_NE(out.find("| tokens/s, batch 1 x 4 tokens | tokens/s | "), std::string::npos) << out;
  const std::size_t row = out.find("| tokens/s, batch 2 x 9 tokens | tokens/s | ");
  ASSERT_NE(row, std::string::npos) << out;
  EXPECT_NE(out.substr(row, out.find('\n', row) - row).find("| missing | — |"), std::string::npos)
      << out;
  EXPECT_NE(out.find("x better |"), std::string::npos);
  EXPECT_TRUE(fs::exists(tmp / "c" / "report.md"));
  EXPECT_EQ(charts_of(tmp / "c").size(), 1u);

  std::ofstream(tmp / "junk.json") << "{\"a\": 1}";
  EXPECT_EQ(testing::run_command(cat({bench_cli(), " compare ", quote(tmp / "junk.json"), " --out ",
                                      quote(tmp / "d")}),
                                 &out),
            1);
  EXPECT_NE(out.find("junk.json"), std::string::npos) << out;
  EXPECT_NE(out.find("not a bench-cli results.json"), std::string::npos) << out;
}

TEST(BenchCliReport, TokenizeLlmAndRagWriteReports) {
  testing::TempDir tmp;
  testing::make_model("--arch bert --format hf --out " + quote(tmp / "m"));
  ASSERT_FALSE(HasFatalFailure());
  std::string out;
  ASSERT_EQ(testing::run_command(
                cat({"cd ", quote(tmp.path()), " && ", bench_cli(), " tokenize --model ",
                     quote(tmp / "m"), " --seconds 0.01 --probe-mib 8 'hello world' 2>&1"}),
                &out),
            0)
      << out;
  // The default folder, named in the output.
  const std::size_t at = out.find("bench-cli: wrote bench-tokenize-");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string folder = out.substr(at + 17, out.find("/report.md", at) - at - 17);
  const auto tok = charts_of(tmp / folder);
  EXPECT_EQ(tok.size(), 2u);
  const auto tf = figures_of(tmp / folder);
  int calls = 0;
  for (const auto& b : tok.at("tokenize-latency.svg").by_class.at("bar")) {
    calls += std::stoi(b.at("data-count"));
  }
  EXPECT_EQ(calls, nlohmann::json::parse(read(tmp / folder / "results.json"))["settings"]["calls"]);
  EXPECT_GT(tf.at("tokens_per_s"), 0);

  ASSERT_EQ(stdout_of(cat({bench_cli(),
                           " llm --random tiny -p 8 -n 4 -r 1 -t 1 --probe-mib 4 --json --out ",
                           quote(tmp / "llm")}),
                      &out),
            0);
  EXPECT_EQ(nlohmann::json::parse(out)["rows"].size(), 2u);  // --json as before
  const auto llm = charts_of(tmp / "llm");
  ASSERT_EQ(llm.size(), 2u);
  EXPECT_EQ(llm.at("llm-prefill.svg").by_class.at("bar").size(), 2u);  // pp8 and its limit
  EXPECT_EQ(llm.at("llm-decode.svg").by_class.at("bar").size(), 2u);
  EXPECT_GT(figures_of(tmp / "llm").at("random llama.f16.tg4.tokens_per_s"), 0);

  ASSERT_EQ(testing::run_command(cat({bench_cli(),
                                      " --threads 1 rag --dense-rows 2000 "
                                      "--dense-dim 16 --probe-mib 4 --out ",
                                      quote(tmp / "rag"), " 2>/dev/null"}),
                                 &out),
            0);
  const auto rag = charts_of(tmp / "rag");
  ASSERT_EQ(rag.size(), 1u);
  EXPECT_EQ(rag.at("rag-dense.svg").by_class.at("bar").size(), 2u);
  EXPECT_EQ(rag.at("rag-dense.svg").by_class.count("missing"), 0u);
}

}  // namespace
}  // namespace hearth::bench
