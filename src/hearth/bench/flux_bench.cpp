#include "hearth/bench/flux_bench.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "hearth/core/cancel.hpp"
#include "hearth/core/error.hpp"
#include "hearth/core/hash.hpp"
#include "hearth/core/timer.hpp"
#include "hearth/image/font.hpp"
#include "hearth/image/png.hpp"

namespace hearth::bench {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Spread {
  double mean = 0, stddev = 0, min = 0, max = 0;
};
Spread spread(const std::vector<double>& v) {
  Spread s;
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (const double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (const double x : v) ss += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return s;
}

models::FluxRunOptions run_options(std::size_t threads, int quantize = 0,
                                   const std::vector<models::FluxLora>& loras = {}) {
  models::FluxRunOptions r;
  r.threads = threads;
  r.quantize_bits = quantize;
  r.loras = loras;
  return r;
}

std::string quantize_name(int bits) {
  return bits == 0 ? "as stored" : std::to_string(bits) + "-bit";
}

constexpr const char* kKeyKeyword = "hearth bench settings";
constexpr std::int64_t kPad = 8;
constexpr std::size_t kMaxLabelLines = 3;  // of a column label

// Labels at 2x beside cells large enough for a few words a line, else at 1x.
int label_scale(std::int64_t cell) {
  return cell >= 160 ? 2 : 1;
}

}  // namespace

FluxBenchResult run_flux_bench(const FluxBenchOptions& o) {
  if (o.sizes.empty()) throw Error(ErrorCode::kInvalidArgument, "--sizes: give at least one size");
  if (o.runs < 1) throw Error(ErrorCode::kInvalidArgument, "--runs must be at least 1");
  if (o.warmup < 0) throw Error(ErrorCode::kInvalidArgument, "--warmup must be 0 or more");
  if (o.quantize.empty()) throw Error(ErrorCode::kInvalidArgument, "--quantize: give a value");
  for (const int q : o.quantize) {
    if (q != 0 && q != 4 && q != 8) {
      throw Error(ErrorCode::kInvalidArgument,
                  "--quantize " + std::to_string(q) + ": 0 (as stored), 4 or 8");
    }
  }
  const models::FluxPipeline pipe = models::FluxPipeline::open(o.model, o.open);
  std::vector<models::FluxRequest> requests;
  for (const std::int64_t size : o.sizes) {
    models::FluxRequest q;
    q.prompt = o.prompt;
    q.width = q.height = size;
    q.steps = o.steps;
    q.seed = o.seed;
    requests.push_back(pipe.resolve(q));  // every size checked before the first run
  }
  FluxBenchResult result;
  const std::size_t total =
      o.quantize.size() * o.sizes.size() * static_cast<std::size_t>(o.warmup + o.runs);
  std::size_t done = 0;
  for (const int bits : o.quantize) {
    for (const models::FluxRequest& q : requests) {
      FluxBenchSize s;
      s.size = q.width;
      s.quantize = bits;
      s.steps = *q.steps;
      for (int i = 0; i < o.warmup + o.runs; ++i) {
        throw_if_cancelled();
        const bool warm = i < o.warmup;
        if (o.progress) {
          std::string what = std::to_string(q.width) + "x" + std::to_string(q.height);
          if (bits != 0) what.append(" ").append(quantize_name(bits));
          what.append(warm ? " warm-up" : " run " + std::to_string(i - o.warmup + 1));
          o.progress(what, done, total);
        }
        const Timer t;
        const models::FluxResult r = pipe.generate(q, run_options(o.threads, bits, o.loras));
        const double seconds = t.seconds();
        ++done;
        if (warm) continue;
        FluxBenchRun run{seconds, r.stages, r.step_seconds, r.peak_rss_bytes};
        for (const models::FluxStage& st : r.stages) {
          run.peak_rss_bytes = std::max(run.peak_rss_bytes, st.peak_rss_bytes);
        }
        s.runs.push_back(std::move(run));
      }
      result.sizes.push_back(std::move(s));
    }
  }
  return result;
}

Report flux_report(const FluxBenchResult& result, const FluxBenchOptions& o, Machine machine) {
  Report out;
  out.subcommand = "flux";
  out.title = "FLUX.1 image generation";
  out.machine = machine;
  std::string sizes, bits, loras;
  for (const auto s : o.sizes) sizes += (sizes.empty() ? "" : ",") + std::to_string(s);
  for (const int q : o.quantize) bits += (bits.empty() ? "" : ", ") + quantize_name(q);
  for (const models::FluxLora& l : o.loras) {
    loras += (loras.empty() ? "" : ", ") + l.path.string() + ":" + fixed(l.scale, 2);
  }
  out.settings = {{"model", o.model},
                  {"sizes", sizes},
                  {"steps", o.steps ? std::to_string(*o.steps) : "the model's default"},
                  {"prompt", o.prompt},
                  {"seed", o.seed},
                  {"warm-up runs", o.warmup},
                  {"timed runs", o.runs},
                  {"threads", machine.threads},
                  {"quantization", bits},
                  {"LoRA", loras.empty() ? "none" : loras}};
  json details = json::array();
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> stage_names;
  for (const FluxBenchSize& s : result.sizes) {
    for (const FluxBenchRun& r : s.runs) {
      for (const models::FluxStage& st : r.stages) {
        if (std::find(stage_names.begin(), stage_names.end(), st.name) == stage_names.end()) {
          stage_names.push_back(st.name);
        }
      }
    }
  }
  BarChart stages{"Seconds per stage (mean of the timed runs)", "s", {}, {}, {}, {}};
  for (const std::string& n : stage_names) stages.series.push_back({n, {}, false});
  BarChart rate{"Images per minute", "images/min", {}, {{"images/min", {}, false}}, {}, {}};
  Section s{"Runs", "", {}};
  for (const FluxBenchSize& size : result.sizes) {
    std::string key = std::to_string(size.size);
    std::string what = key + "x" + key;
    if (size.quantize != 0) {
      key.append("-q").append(std::to_string(size.quantize));
      what.append(", ").append(quantize_name(size.quantize));
    }
    std::vector<double> totals, rss;
    std::vector<double> per_step(static_cast<std::size_t>(size.steps), 0.0);
    std::size_t step_runs = 0;
    std::map<std::string, std::vector<double>> stage_s;
    json runs = json::array();
    for (const FluxBenchRun& r : size.runs) {
      totals.push_back(r.total_seconds);
      rss.push_back(static_cast<double>(r.peak_rss_bytes));
      for (const models::FluxStage& st : r.stages) stage_s[st.name].push_back(st.seconds);
      if (r.step_seconds.size() == per_step.size()) {
        for (std::size_t k = 0; k < per_step.size(); ++k) per_step[k] += r.step_seconds[k];
        ++step_runs;
      }
      json stj = json::array();
      for (const models::FluxStage& st : r.stages) {
        stj.push_back(
            {{"name", st.name}, {"seconds", st.seconds}, {"peak_rss_bytes", st.peak_rss_bytes}});
      }
      runs.push_back({{"total_seconds", r.total_seconds},
                      {"stages", stj},
                      {"step_seconds", r.step_seconds},
                      {"peak_rss_bytes", r.peak_rss_bytes}});
    }
    for (double& v : per_step) v /= static_cast<double>(std::max<std::size_t>(1, step_runs));
    const Spread t = spread(totals);
    const double peak = rss.empty() ? 0 : *std::max_element(rss.begin(), rss.end());
    const double step_mean = per_step.empty() ? 0.0 : [&] {
      double sum = 0;
      for (const double v : per_step) sum += v;
      return sum / static_cast<double>(per_step.size());
    }();
    out.figures.push_back({key + ".total_seconds", "total, " + what, "s", t.mean, Better::kLower});
    out.figures.push_back({key + ".total_seconds_stddev", "total standard deviation, " + what, "s",
                           t.stddev, Better::kLower});
    out.figures.push_back({key + ".images_per_minute", "images/min, " + what, "images/min",
                           60.0 / t.mean, Better::kHigher});
    out.figures.push_back(
        {key + ".step_seconds", "mean step, " + what, "s", step_mean, Better::kLower});
    out.figures.push_back(
        {key + ".peak_rss_bytes", "peak RSS, " + what, "bytes", peak, Better::kLower});
    stages.categories.push_back(what);
    rate.categories.push_back(what);
    rate.series[0].values.push_back(60.0 / t.mean);
    for (std::size_t i = 0; i < stage_names.size(); ++i) {
      const auto it = stage_s.find(stage_names[i]);
      if (it == stage_s.end()) {
        stages.series[i].values.push_back(std::nullopt);
        continue;
      }
      const double mean = spread(it->second).mean;
      stages.series[i].values.push_back(mean);
      std::string id = stage_names[i];
      std::replace(id.begin(), id.end(), ' ', '_');
      out.figures.push_back({key + ".stage." + id + "_seconds", stage_names[i] + ", " + what, "s",
                             mean, Better::kLower});
    }
    rows.push_back({what, std::to_string(size.steps), std::to_string(size.runs.size()),
                    fixed(t.mean, 3) + " ± " + fixed(t.stddev, 3),
                    fixed(t.min, 3) + " - " + fixed(t.max, 3), fixed(60.0 / t.mean, 2),
                    fixed(step_mean, 3), fixed(peak / double(1 << 20), 0) + " MiB"});
    PointChart steps{"Seconds per denoising step, " + what + " (mean of the runs)", "step", "s",
                     per_step};
    s.charts.push_back({"flux-steps-" + key, steps.title, render_point_chart(steps)});
    PointChart spread_chart{"Total seconds of each timed run, " + what, "run", "s", totals};
    s.charts.push_back({"flux-runs-" + key, spread_chart.title, render_point_chart(spread_chart)});
    details.push_back(
        {{"size", size.size}, {"quantize", size.quantize}, {"steps", size.steps}, {"runs", runs}});
  }
  s.markdown = markdown_table({"size", "steps", "runs", "total s (mean ± sd)", "min - max s",
                               "images/min", "mean step s", "peak RSS"},
                              rows);
  s.charts.insert(s.charts.begin(), {"flux-rate", rate.title, render_bar_chart(rate)});
  s.charts.insert(s.charts.begin(), {"flux-stages", stages.title, render_bar_chart(stages)});
  out.sections.push_back(std::move(s));
  out.details = {{"sizes", details}};
  return out;
}

std::vector<std::string> default_subjects() {
  return {"a red fox in the snow", "a lighthouse on a cliff", "a bowl of ramen",
          "an old robot reading a book"};
}

std::vector<std::string> default_styles() {
  return {"oil painting", "watercolor", "pixel art", "35mm photograph"};
}

std::vector<std::string> read_list(const std::string& spec, const std::string& what) {
  std::vector<std::string> items;
  const auto trim = [](std::string s) {
    const auto b = s.find_first_not_of(" \t\r");
    const auto e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  std::error_code ec;
  if (fs::is_regular_file(spec, ec)) {
    std::ifstream f(spec);
    if (!f) throw Error(ErrorCode::kIo, "cannot read the file", {.file = spec});
    for (std::string line; std::getline(f, line);) {
      line = trim(line);
      if (!line.empty() && line[0] != '#') items.push_back(line);
    }
  } else {
    std::size_t start = 0;
    while (start <= spec.size()) {
      const std::size_t end = std::min(spec.find(',', start), spec.size());
      const std::string item = trim(spec.substr(start, end - start));
      if (!item.empty()) items.push_back(item);
      start = end + 1;
    }
  }
  if (items.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                what + ": '" + spec + "' is neither a file of lines nor a comma-separated list");
  }
  return items;
}

std::string cell_prompt(const std::string& pattern, const std::string& subject,
                        const std::string& style) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, 9, "{subject}") == 0) {
      out += subject;
      i += 9;
    } else if (pattern.compare(i, 7, "{style}") == 0) {
      out += style;
      i += 7;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

SheetLayout sheet_layout(std::size_t rows, std::size_t columns, std::int64_t cell,
                         std::size_t label_lines) {
  SheetLayout l;
  l.cell = cell;
  l.gap = kPad;
  const int scale = label_scale(cell);
  const std::int64_t line = (image::kGlyphHeight + image::kGlyphDescent + 2) * scale;
  l.left = kPad + std::max<std::int64_t>(cell, 24 * image::kGlyphAdvance * scale) + kPad;
  l.top = kPad + static_cast<std::int64_t>(std::max<std::size_t>(1, label_lines)) * line + kPad;
  const auto c = static_cast<std::int64_t>(columns), r = static_cast<std::int64_t>(rows);
  l.width = l.left + c * cell + (c - 1) * l.gap + kPad;
  l.height = l.top + r * cell + (r - 1) * l.gap + kPad;
  return l;
}

std::size_t column_label_lines(const std::vector<std::string>& labels, std::int64_t cell) {
  std::size_t n = 1;
  for (const std::string& s : labels) {
    n = std::max(n, image::wrap_text(s, cell, label_scale(cell), kMaxLabelLines).size());
  }
  return n;
}

image::Image8 contact_sheet(const std::vector<image::Image8>& cells, std::size_t columns,
                            const std::vector<std::string>& row_labels,
                            const std::vector<std::string>& column_labels) {
  if (cells.empty() || columns == 0 || cells.size() % columns != 0) {
    throw Error(ErrorCode::kInvalidArgument, "contact sheet: cells do not fill whole rows");
  }
  const std::size_t rows = cells.size() / columns;
  const std::int64_t cell = cells.front().width;
  const SheetLayout l = sheet_layout(rows, columns, cell, column_label_lines(column_labels, cell));
  const int scale = label_scale(cell);
  image::Image8 sheet{
      l.width, l.height,
      std::vector<std::uint8_t>(static_cast<std::size_t>(l.width * l.height * 3), 255)};
  const std::int64_t line = (image::kGlyphHeight + image::kGlyphDescent + 2) * scale;
  for (std::size_t c = 0; c < columns && c < column_labels.size(); ++c) {
    const std::int64_t x = l.left + static_cast<std::int64_t>(c) * (cell + l.gap);
    const auto lines = image::wrap_text(column_labels[c], cell, scale, kMaxLabelLines);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      image::draw_text(sheet, x, kPad + static_cast<std::int64_t>(i) * line, lines[i], scale);
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int64_t y = l.top + static_cast<std::int64_t>(r) * (cell + l.gap);
    if (r < row_labels.size()) {
      const auto lines =
          image::wrap_text(row_labels[r], l.left - 2 * kPad, scale,
                           static_cast<std::size_t>(std::max<std::int64_t>(1, cell / line)));
      for (std::size_t i = 0; i < lines.size(); ++i) {
        image::draw_text(sheet, kPad, y + static_cast<std::int64_t>(i) * line, lines[i], scale);
      }
    }
    for (std::size_t c = 0; c < columns; ++c) {
      const image::Image8& img = cells[r * columns + c];
      if (img.width != cell || img.height != cell) {
        throw Error(ErrorCode::kInvalidArgument, "contact sheet: cells differ in size");
      }
      const std::int64_t x = l.left + static_cast<std::int64_t>(c) * (cell + l.gap);
      for (std::int64_t yy = 0; yy < cell; ++yy) {
        std::copy_n(img.rgb.begin() + static_cast<std::ptrdiff_t>(yy * cell * 3), cell * 3,
                    sheet.rgb.begin() + static_cast<std::ptrdiff_t>(((y + yy) * l.width + x) * 3));
      }
    }
  }
  return sheet;
}

PromptMatrixResult run_prompt_matrix(const PromptMatrixOptions& o) {
  if (o.subjects.empty() || o.styles.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "prompt: give at least one subject and one style");
  }
  const models::FluxPipeline pipe = models::FluxPipeline::open(o.model, o.open);
  PromptMatrixResult result;
  std::vector<models::FluxRequest> requests;
  for (std::size_t r = 0; r < o.subjects.size(); ++r) {
    for (std::size_t c = 0; c < o.styles.size(); ++c) {
      models::FluxRequest q;
      q.prompt = cell_prompt(o.pattern, o.subjects[r], o.styles[c]);
      q.width = q.height = o.size;
      q.steps = o.steps;
      q.seed = o.seed;
      requests.push_back(pipe.resolve(q));
      PromptCell cell;
      cell.row = r;
      cell.column = c;
      cell.prompt = q.prompt;
      cell.file = "cells/r" + std::to_string(r + 1) + "-c" + std::to_string(c + 1) + ".png";
      result.cells.push_back(std::move(cell));
    }
  }
  result.steps = *requests.front().steps;
  const json common = {{"model", o.model},
                       {"transformer", pipe.files().transformer.string()},
                       {"size", o.size},
                       {"steps", result.steps},
                       {"seed", o.seed}};
  result.settings_key = content_hash(common.dump());
  fs::create_directories(o.out / "cells");
  std::vector<image::Image8> images(result.cells.size());
  for (std::size_t i = 0; i < result.cells.size(); ++i) {
    PromptCell& cell = result.cells[i];
    const std::string key = content_hash(common.dump() + "\n" + cell.prompt);
    const fs::path path = o.out / cell.file;
    std::error_code ec;
    if (fs::exists(path, ec)) {
      try {
        image::PngFile f = image::read_png(path);
        bool same = false;
        for (const auto& [k, v] : f.text) same = same || (k == kKeyKeyword && v == key);
        if (same && f.image.width == o.size && f.image.height == o.size) {
          images[i] = std::move(f.image);
          continue;
        }
      } catch (const Error&) {
        // Not a readable PNG of ours: rendered again below.
      }
    }
    throw_if_cancelled();
    if (o.progress) o.progress(cell.prompt, i, result.cells.size());
    const Timer t;
    models::FluxResult r = pipe.generate(requests[i], run_options(o.threads));
    cell.seconds = t.seconds();
    cell.stages = r.stages;
    cell.rendered = true;
    models::FluxImageMetadata meta = models::flux_metadata(r, cell.prompt, o.model);
    meta.seed = o.seed;
    image::PngText text = models::to_png_text(meta);
    text.emplace_back(kKeyKeyword, key);
    image::write_png(path, r.images.front(), text);
    images[i] = std::move(r.images.front());
  }
  result.layout = sheet_layout(o.subjects.size(), o.styles.size(), o.size,
                               column_label_lines(o.styles, o.size));
  image::write_png(o.out / result.sheet_file,
                   contact_sheet(images, o.styles.size(), o.subjects, o.styles),
                   {{"Software", "hearth bench-cli prompt"}});
  return result;
}

Report prompt_report(const PromptMatrixResult& result, const PromptMatrixOptions& o,
                     Machine machine) {
  Report out;
  out.subcommand = "prompt";
  out.title = std::to_string(o.subjects.size()) + " subjects x " + std::to_string(o.styles.size()) +
              " styles";
  out.machine = machine;
  out.settings = {{"model", o.model},
                  {"size", std::to_string(o.size) + "x" + std::to_string(o.size)},
                  {"steps", result.steps},
                  {"seed", o.seed},
                  {"prompt pattern", o.pattern},
                  {"settings key", result.settings_key}};
  std::size_t rendered = 0;
  std::vector<double> seconds;
  json cells = json::array();
  for (const PromptCell& c : result.cells) {
    if (c.rendered) {
      ++rendered;
      seconds.push_back(c.seconds);
    }
    cells.push_back({{"row", c.row + 1},
                     {"column", c.column + 1},
                     {"prompt", c.prompt},
                     {"file", c.file},
                     {"rendered", c.rendered},
                     {"seconds", c.seconds}});
  }
  out.details = {{"cells", cells},
                 {"contact_sheet", result.sheet_file},
                 {"layout",
                  {{"width", result.layout.width},
                   {"height", result.layout.height},
                   {"left", result.layout.left},
                   {"top", result.layout.top},
                   {"cell", result.layout.cell},
                   {"gap", result.layout.gap}}}};
  out.figures.push_back(
      {"cells", "cells", "cells", static_cast<double>(result.cells.size()), Better::kNeither});
  out.figures.push_back({"rendered", "cells rendered in this run", "cells",
                         static_cast<double>(rendered), Better::kNeither});
  if (!seconds.empty()) {
    double sum = 0;
    for (const double s : seconds) sum += s;
    out.figures.push_back({"cell_seconds", "mean seconds per rendered cell", "s",
                           sum / static_cast<double>(seconds.size()), Better::kLower});
  }
  // The grid: a markdown table of the cell images, rows subjects, columns styles.
  std::string md = "![contact sheet](" + result.sheet_file + ")\n\n" + std::to_string(rendered) +
                   " of " + std::to_string(result.cells.size()) +
                   " cells rendered in this run; the others were kept from an earlier run with "
                   "the same settings.\n\n";
  std::vector<std::string> header = {"subject \\ style"};
  for (const std::string& s : o.styles) header.push_back(s);
  std::vector<std::vector<std::string>> rows;
  for (std::size_t r = 0; r < o.subjects.size(); ++r) {
    std::vector<std::string> row = {o.subjects[r]};
    for (std::size_t c = 0; c < o.styles.size(); ++c) {
      const PromptCell& cell = result.cells[r * o.styles.size() + c];
      row.push_back("![" + cell.prompt + "](" + cell.file + ")");
    }
    rows.push_back(std::move(row));
  }
  md += markdown_table(header, rows);
  Section grid{"Grid", md, {}};
  out.sections.push_back(std::move(grid));
  rows.clear();
  BarChart chart{"Seconds per rendered cell", "s", {}, {{"seconds", {}, false}}, {}, {}};
  for (const PromptCell& c : result.cells) {
    rows.push_back({std::to_string(c.row + 1) + "," + std::to_string(c.column + 1), c.prompt,
                    c.file, c.rendered ? fixed(c.seconds, 3) : "kept"});
    if (c.rendered) {
      chart.categories.push_back(c.prompt);
      chart.series[0].values.push_back(c.seconds);
    }
  }
  Section cells_section{
      "Cells", markdown_table({"row,column", "prompt", "image", "seconds"}, rows), {}};
  if (!chart.categories.empty()) {
    cells_section.charts.push_back({"prompt-cells", chart.title, render_bar_chart(chart)});
  }
  out.sections.push_back(std::move(cells_section));
  return out;
}

}  // namespace hearth::bench
