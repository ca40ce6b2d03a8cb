#include "hearth/bench/chart.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "hearth/core/error.hpp"

namespace hearth::bench {
namespace {

constexpr double kWidth = 760;
constexpr double kFont = 12;
constexpr double kCharWidth = 6.6;  // mean advance of the 12 px sans-serif font, for layout
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759",
                                    "#76b7b2", "#edc948", "#b07aa1", "#9c755f"};
constexpr const char* kLimitColour = "#8c8c8c";

std::string esc(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

void check_value(double v, const std::string& chart) {
  if (!std::isfinite(v) || v < 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "chart '" + chart + "': value " + std::to_string(v) + " is not finite and >= 0");
  }
}

// A round step (1, 2 or 5 times a power of ten) giving about `ticks` intervals up to max.
double nice_step(double max, int ticks) {
  if (max <= 0) return 1;
  const double raw = max / ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0}) {
    if (raw <= m * p) return m * p;
  }
  return 10 * p;
}

struct Svg {
  std::string body;
  double height = 0;

  void text(double x, double y, const std::string& s, const std::string& attrs = "") {
    body += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\"" + (attrs.empty() ? "" : " ") + attrs +
            ">" + esc(s) + "</text>\n";
  }
  void line(double x1, double y1, double x2, double y2, const std::string& attrs) {
    body += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
            num(y2) + "\" " + attrs + "/>\n";
  }
  std::string done(const std::string& title) const {
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
           num(kWidth) + "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(kWidth) + " " +
           num(height) +
           "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"" +
           num(kFont) + "\">\n<title>" + esc(title) +
           "</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" + body + "</svg>\n";
  }
};

// Gridlines and tick labels of a horizontal value axis from x0 (value 0) to x1 (value max).
void value_axis(Svg& svg, double x0, double x1, double top, double bottom, double max,
                const std::string& unit) {
  const double step = nice_step(max, 5);
  for (double v = 0; v <= max * (1 + 1e-9); v += step) {
    const double x = x0 + (x1 - x0) * v / max;
    svg.line(x, top, x, bottom, "stroke=\"#e5e5e5\"");
    svg.text(x, bottom + 14, format_value(v), "text-anchor=\"middle\" fill=\"#555\"");
  }
  svg.line(x0, top, x0, bottom, "stroke=\"#333\"");
  svg.text((x0 + x1) / 2, bottom + 30, unit, "text-anchor=\"middle\" fill=\"#333\"");
}

}  // namespace

std::string format_value(double v) {
  char b[48];
  const double a = std::fabs(v);
  if (a >= 100 && a < 1e9) {
    std::snprintf(b, sizeof b, "%.0f", v);
  } else if (a >= 0.001 || a == 0) {
    std::snprintf(b, sizeof b, "%.3g", v);
  } else {
    std::snprintf(b, sizeof b, "%.2e", v);
  }
  return b;
}

std::string render_bar_chart(const BarChart& c) {
  double max = c.reference.value_or(0);
  for (const BarSeries& s : c.series) {
    if (s.values.size() != c.categories.size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "chart '" + c.title + "': series '" + s.name + "' has " +
                      std::to_string(s.values.size()) + " values for " +
                      std::to_string(c.categories.size()) + " categories");
    }
    for (const auto& v : s.values) {
      if (v) {
        check_value(*v, c.title);
        max = std::max(max, *v);
      }
    }
  }
  if (max <= 0) max = 1;
  const double step = nice_step(max, 5);
  max = std::ceil(max / step * (1 - 1e-12)) * step;

  std::size_t longest = 0;
  for (const std::string& cat : c.categories) longest = std::max(longest, cat.size());
  const double label_w = std::min(300.0, 20 + kCharWidth * static_cast<double>(longest));
  const double x0 = label_w + 8;
  const double x1 = kWidth - 70;  // room for the last bar's value
  const double bar_h = 14, bar_gap = 2, group_gap = 12;
  const std::size_t n_series = std::max<std::size_t>(1, c.series.size());
  const double group_h =
      static_cast<double>(n_series) * bar_h + static_cast<double>(n_series - 1) * bar_gap;

  Svg svg;
  svg.text(10, 22, c.title, "font-size=\"15\" font-weight=\"bold\"");
  // Legend: one swatch per series.
  double lx = 10;
  const double ly = 42;
  for (std::size_t i = 0; i < c.series.size(); ++i) {
    const BarSeries& s = c.series[i];
    const std::string colour = s.limit ? kLimitColour : kPalette[i % 8];
    svg.body += "<rect class=\"legend\" x=\"" + num(lx) + "\" y=\"" + num(ly - 10) +
                "\" width=\"12\" height=\"12\" " +
                (s.limit ? "fill=\"white\" stroke=\"" + colour + "\" stroke-dasharray=\"3,2\""
                         : "fill=\"" + colour + "\"") +
                "/>\n";
    svg.text(lx + 16, ly, s.name);
    // Legend text is measured generously ('@', 'W' and capitals are wider than the mean).
    lx += 16 + 7.5 * static_cast<double>(s.name.size()) + 18;
  }
  if (c.reference) {
    svg.line(lx, ly - 4, lx + 14, ly - 4, "stroke=\"#d62728\" stroke-width=\"2\"");
    svg.text(lx + 18, ly, c.reference_label);
  }
  const double top = 58;
  const double bottom = top + static_cast<double>(c.categories.size()) * (group_h + group_gap);
  value_axis(svg, x0, x1, top, bottom, max, c.unit);
  for (std::size_t g = 0; g < c.categories.size(); ++g) {
    const double gy = top + group_gap / 2 + static_cast<double>(g) * (group_h + group_gap);
    svg.text(x0 - 6, gy + group_h / 2 + 4, c.categories[g], "text-anchor=\"end\"");
    for (std::size_t i = 0; i < c.series.size(); ++i) {
      const BarSeries& s = c.series[i];
      const double y = gy + static_cast<double>(i) * (bar_h + bar_gap);
      const std::string data =
          "data-series=\"" + esc(s.name) + "\" data-category=\"" + esc(c.categories[g]) + "\"";
      if (!s.values[g]) {
        svg.text(x0 + 4, y + bar_h - 3, "missing",
                 "class=\"missing\" " + data + " fill=\"#999\" font-style=\"italic\"");
        continue;
      }
      const double v = *s.values[g];
      const double w = (x1 - x0) * v / max;
      const std::string colour = s.limit ? kLimitColour : kPalette[i % 8];
      svg.body += "<rect class=\"bar\" " + data + " data-value=\"" + format_value(v) + "\" x=\"" +
                  num(x0) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" +
                  num(bar_h) + "\" " +
                  (s.limit ? "fill=\"white\" stroke=\"" + colour + "\" stroke-dasharray=\"4,2\""
                           : "fill=\"" + colour + "\"") +
                  "><title>" + esc(s.name + ", " + c.categories[g] + ": " + format_value(v)) +
                  "</title></rect>\n";
      svg.text(x0 + w + 4, y + bar_h - 3, format_value(v), "fill=\"#333\" font-size=\"11\"");
    }
  }
  if (c.reference) {
    const double x = x0 + (x1 - x0) * *c.reference / max;
    svg.line(x, top - 4, x, bottom, "class=\"reference\" stroke=\"#d62728\" stroke-width=\"2\"");
  }
  svg.height = bottom + 44;
  return svg.done(c.title);
}

std::string render_histogram(const Histogram& h) {
  if (h.bins < 1) throw Error(ErrorCode::kInvalidArgument, "histogram: bins must be positive");
  for (const double v : h.samples) check_value(v, h.title);
  std::vector<double> sorted = h.samples;
  std::sort(sorted.begin(), sorted.end());
  const auto at = [&](double p) {
    return sorted[std::min(
        sorted.size() - 1,
        static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5))];
  };
  std::size_t bins = static_cast<std::size_t>(h.bins);
  double lo = 0, hi = 1;
  bool overflow = false;  // a last bin for the tail beyond the 99th percentile
  if (!sorted.empty()) {
    lo = sorted.front();
    hi = sorted.back();
    const double p99 = at(0.99);
    // A long tail (one slow call among thousands) would squeeze every other sample into the
    // first bin: the bins cover up to the 99th percentile, the rest is counted in one more.
    if (p99 > lo && hi - lo > 4 * (p99 - lo)) {
      hi = p99;
      overflow = true;
    }
    bool integers = true;
    for (const double v : sorted) integers = integers && v == std::floor(v);
    if (integers && !overflow && hi - lo + 1 <= static_cast<double>(bins)) {
      bins = static_cast<std::size_t>(hi - lo + 1);  // one bin per integer value
      lo -= 0.5;
      hi += 0.5;
    } else if (hi <= lo) {
      lo = std::max(0.0, lo - 0.5 * std::max(1e-6, lo * 0.1));
      hi = sorted.front() + (sorted.front() - lo);
      bins = 1;
    }
  }
  std::vector<std::size_t> count(bins + (overflow ? 1 : 0), 0);
  for (const double v : sorted) {
    if (overflow && v > hi) {
      ++count.back();
      continue;
    }
    const auto b = static_cast<std::size_t>((v - lo) / (hi - lo) * static_cast<double>(bins));
    ++count[std::min(b, bins - 1)];
  }
  const std::size_t most = std::max<std::size_t>(1, *std::max_element(count.begin(), count.end()));
  const double cstep = nice_step(static_cast<double>(most), 4);
  const double cmax = std::ceil(static_cast<double>(most) / cstep) * cstep;

  Svg svg;
  svg.text(10, 22, h.title, "font-size=\"15\" font-weight=\"bold\"");
  if (!sorted.empty()) {
    svg.text(10, 40,
             std::to_string(sorted.size()) + " samples; p50 " + format_value(at(0.5)) + ", p99 " +
                 format_value(at(0.99)) + ", max " + format_value(sorted.back()) + " " + h.unit,
             "fill=\"#555\"");
  }
  const double x0 = 60, top = 54, bottom = 274;
  const double x1 = kWidth - (overflow ? 90 : 20);
  for (double v = 0; v <= cmax * (1 + 1e-9); v += cstep) {
    const double y = bottom - (bottom - top) * v / cmax;
    svg.line(x0, y, kWidth - 20, y, "stroke=\"#e5e5e5\"");
    svg.text(x0 - 6, y + 4, format_value(v), "text-anchor=\"end\" fill=\"#555\"");
  }
  svg.text(14, (top + bottom) / 2, "count",
           "text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 14 " +
               num((top + bottom) / 2) + ")\"");
  const double bw = (x1 - x0) / static_cast<double>(bins);
  const auto bar = [&](std::size_t n, double x, double w, const std::string& from,
                       const std::string& to, const char* colour) {
    const double hgt = (bottom - top) * static_cast<double>(n) / cmax;
    svg.body += "<rect class=\"bar\" data-count=\"" + std::to_string(n) + "\" data-from=\"" + from +
                "\" data-to=\"" + to + "\" x=\"" + num(x) + "\" y=\"" + num(bottom - hgt) +
                "\" width=\"" + num(w) + "\" height=\"" + num(hgt) + "\" fill=\"" + colour +
                "\"><title>" + esc(from + " - " + to + " " + h.unit + ": " + std::to_string(n)) +
                "</title></rect>\n";
  };
  for (std::size_t b = 0; b < bins; ++b) {
    const double from = lo + (hi - lo) * static_cast<double>(b) / static_cast<double>(bins);
    const double to = lo + (hi - lo) * static_cast<double>(b + 1) / static_cast<double>(bins);
    bar(count[b], x0 + bw * static_cast<double>(b) + 0.5, std::max(0.5, bw - 1), format_value(from),
        format_value(to), kPalette[0]);
  }
  if (overflow) {
    bar(count.back(), x1 + 16, 40, format_value(hi), format_value(sorted.back()), kPalette[1]);
    svg.text(x1 + 36, bottom + 14, "> " + format_value(hi), "text-anchor=\"middle\" fill=\"#555\"");
  }
  svg.line(x0, bottom, kWidth - 20, bottom, "stroke=\"#333\"");
  if (bins == 1 || (hi - lo) / static_cast<double>(bins) == 1.0) {
    // Integer bins: each labelled with its value.
    const std::size_t every = std::max<std::size_t>(1, bins / 10);
    for (std::size_t b = 0; b < bins; b += every) {
      svg.text(
          x0 + bw * (static_cast<double>(b) + 0.5), bottom + 14,
          format_value(lo + (hi - lo) * (static_cast<double>(b) + 0.5) / static_cast<double>(bins)),
          "text-anchor=\"middle\" fill=\"#555\"");
    }
  } else {
    // Five labelled ticks at bin edges (the last one is the overflow bin's "> hi" label).
    for (int t = 0; t <= (overflow ? 3 : 4); ++t) {
      const double f = t / 4.0;
      svg.text(x0 + (x1 - x0) * f, bottom + 14, format_value(lo + (hi - lo) * f),
               "text-anchor=\"middle\" fill=\"#555\"");
    }
  }
  svg.text((x0 + x1) / 2, bottom + 30, h.unit, "text-anchor=\"middle\" fill=\"#333\"");
  svg.height = bottom + 44;
  return svg.done(h.title);
}

std::string render_point_chart(const PointChart& c) {
  double max = 0;
  for (const double v : c.values) {
    check_value(v, c.title);
    max = std::max(max, v);
  }
  if (max <= 0) max = 1;
  const double step = nice_step(max, 4);
  max = std::ceil(max / step * (1 - 1e-12)) * step;
  Svg svg;
  svg.text(10, 22, c.title, "font-size=\"15\" font-weight=\"bold\"");
  const double x0 = 70, x1 = kWidth - 20, top = 40, bottom = 260;
  for (double v = 0; v <= max * (1 + 1e-9); v += step) {
    const double y = bottom - (bottom - top) * v / max;
    svg.line(x0, y, x1, y, "stroke=\"#e5e5e5\"");
    svg.text(x0 - 6, y + 4, format_value(v), "text-anchor=\"end\" fill=\"#555\"");
  }
  svg.text(14, (top + bottom) / 2, c.unit,
           "text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 14 " +
               num((top + bottom) / 2) + ")\"");
  const std::size_t n = c.values.size();
  const auto px = [&](std::size_t i) {
    return n <= 1 ? (x0 + x1) / 2
                  : x0 + 12 + (x1 - x0 - 24) * static_cast<double>(i) / static_cast<double>(n - 1);
  };
  const auto py = [&](double v) { return bottom - (bottom - top) * v / max; };
  std::string points;
  for (std::size_t i = 0; i < n; ++i) points += num(px(i)) + "," + num(py(c.values[i])) + " ";
  if (n > 1) {
    svg.body += "<polyline points=\"" + points + "\" fill=\"none\" stroke=\"" + kPalette[0] +
                "\" stroke-width=\"1.5\"/>\n";
  }
  const std::size_t label_every = std::max<std::size_t>(1, (n + 19) / 20);
  for (std::size_t i = 0; i < n; ++i) {
    svg.body += "<circle class=\"point\" data-value=\"" + format_value(c.values[i]) + "\" cx=\"" +
                num(px(i)) + "\" cy=\"" + num(py(c.values[i])) + "\" r=\"3.5\" fill=\"" +
                kPalette[0] + "\"><title>" +
                esc(c.x_label + " " + std::to_string(i + 1) + ": " + format_value(c.values[i]) +
                    " " + c.unit) +
                "</title></circle>\n";
    if (i % label_every == 0 || i + 1 == n) {
      svg.text(px(i), bottom + 14, std::to_string(i + 1), "text-anchor=\"middle\" fill=\"#555\"");
    }
  }
  svg.line(x0, bottom, x1, bottom, "stroke=\"#333\"");
  svg.text((x0 + x1) / 2, bottom + 30, c.x_label, "text-anchor=\"middle\" fill=\"#333\"");
  svg.height = bottom + 44;
  return svg.done(c.title);
}

}  // namespace hearth::bench
