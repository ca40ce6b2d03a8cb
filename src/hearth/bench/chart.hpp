// SVG charts for benchmark reports, drawn here (no plotting library): horizontal bar charts
// (grouped series, a limit series drawn hollow, a reference line), histograms and point charts.
// Every drawn figure is one element a test (or a script) can count: `<rect class="bar">` per
// bar or histogram bin, `<circle class="point">` per point, `<text class="missing">` per value
// that is absent; each carries data-value (and data-series, data-category) attributes.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace hearth::bench {

struct BarSeries {
  std::string name;
  std::vector<std::optional<double>> values;  // one per category; nullopt: missing
  bool limit = false;                         // a ceiling (drawn hollow, dashed)
};

struct BarChart {
  std::string title;
  std::string unit;                     // the value axis
  std::vector<std::string> categories;  // one group of bars each, top to bottom
  std::vector<BarSeries> series;
  std::optional<double> reference;  // a vertical line across the plot (a peak, a ratio of 1)
  std::string reference_label;
};

struct Histogram {
  std::string title;
  std::string unit;  // of the samples (the horizontal axis)
  std::vector<double> samples;
  int bins = 20;
};

struct PointChart {
  std::string title;
  std::string x_label;  // the points are at x = 1 .. n
  std::string unit;
  std::vector<double> values;
};

// A value with three significant digits (no exponent from 0.001 to 1e9): "12.3", "4560", "0.25".
std::string format_value(double v);

// Each returns a complete SVG document. Values must be finite and non-negative (benchmark
// figures); Error(kInvalidArgument) otherwise, or when a series' length is not the categories'.
std::string render_bar_chart(const BarChart& chart);
std::string render_histogram(const Histogram& histogram);
std::string render_point_chart(const PointChart& chart);

}  // namespace hearth::bench
