// `bench-cli flux` (image generation timed: warm-up, then N runs per size, per-stage and per-step
// times, images/min, peak RSS, spread) and `bench-cli prompt` (a subject x style matrix rendered
// with one seed into cell PNGs and a labelled contact sheet, resumable), both over
// models::FluxPipeline, reported in report.hpp's format.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hearth/bench/report.hpp"
#include "hearth/image/image.hpp"
#include "hearth/models/flux_pipeline.hpp"

namespace hearth::bench {

using FluxProgressFn =
    std::function<void(const std::string& what, std::size_t done, std::size_t total)>;

struct FluxBenchOptions {
  std::string model;  // as FluxPipeline::open takes it
  models::FluxOpenOptions open;
  std::vector<std::int64_t> sizes = {512};  // square images, each a multiple of 16
  std::optional<int> steps;                 // default: the model's (4 schnell, 28 dev)
  std::string prompt = "a lighthouse on a cliff at dusk, oil painting";
  std::uint64_t seed = 1;
  int warmup = 1;  // untimed generations per size before the timed ones
  int runs = 3;    // timed generations per size
  std::size_t threads = 0;
  // Transformer weight bits to sweep (0: as stored; 4, 8: quantized at load) and the LoRA
  // adapters of every run.
  std::vector<int> quantize = {0};
  std::vector<models::FluxLora> loras;
  FluxProgressFn progress;
};

struct FluxBenchRun {
  double total_seconds = 0.0;
  std::vector<models::FluxStage> stages;
  std::vector<double> step_seconds;
  std::uint64_t peak_rss_bytes = 0;
};

struct FluxBenchSize {
  std::int64_t size = 0;
  int quantize = 0;  // the transformer's bits quantized at load, 0: as stored
  int steps = 0;
  std::vector<FluxBenchRun> runs;
};

struct FluxBenchResult {
  std::vector<FluxBenchSize> sizes;
};

// Checks the options (sizes, runs) and opens the model before the first generation.
FluxBenchResult run_flux_bench(const FluxBenchOptions& options);
Report flux_report(const FluxBenchResult& result, const FluxBenchOptions& options, Machine machine);

struct PromptMatrixOptions {
  std::string model;
  models::FluxOpenOptions open;
  std::vector<std::string> subjects;
  std::vector<std::string> styles;
  std::string pattern = "{subject}, {style}";  // each cell's prompt
  std::int64_t size = 512;
  std::optional<int> steps;
  std::uint64_t seed = 42;
  std::size_t threads = 0;
  std::filesystem::path out;  // cells/ and contact-sheet.png go here
  FluxProgressFn progress;
};

// The bundled default matrix: a few subjects and styles.
std::vector<std::string> default_subjects();
std::vector<std::string> default_styles();
// One entry per non-empty line of a file (trimmed; lines starting with '#' skipped), or the
// comma-separated items of an inline list. Error(kInvalidArgument) when nothing is left.
std::vector<std::string> read_list(const std::string& file_or_list, const std::string& what);

std::string cell_prompt(const std::string& pattern, const std::string& subject,
                        const std::string& style);

struct PromptCell {
  std::size_t row = 0, column = 0;  // subject, style
  std::string prompt;
  std::string file;       // relative to the output folder: cells/r<row>-c<column>.png
  bool rendered = false;  // false: an earlier run's image with the same settings was kept
  double seconds = 0.0;   // rendering time (0 when kept)
  std::vector<models::FluxStage> stages;
};

// Where each cell sits on the contact sheet.
struct SheetLayout {
  std::int64_t width = 0, height = 0;
  std::int64_t left = 0, top = 0;  // the first cell's corner (after the labels)
  std::int64_t cell = 0, gap = 0;  // cell (c, r) at left + c * (cell + gap), top + r * (...)
};
// column_label_lines: the most lines a column label takes (column_label_lines()).
SheetLayout sheet_layout(std::size_t rows, std::size_t columns, std::int64_t cell,
                         std::size_t column_label_lines);
std::size_t column_label_lines(const std::vector<std::string>& column_labels, std::int64_t cell);
// The labelled contact sheet: rows subjects, columns styles, labels drawn in.
image::Image8 contact_sheet(const std::vector<image::Image8>& cells, std::size_t columns,
                            const std::vector<std::string>& row_labels,
                            const std::vector<std::string>& column_labels);

struct PromptMatrixResult {
  std::vector<PromptCell> cells;  // row by row
  int steps = 0;
  std::string settings_key;  // what a kept cell must match (model, size, steps, seed, prompt)
  SheetLayout layout;
  std::string sheet_file = "contact-sheet.png";
};

// Renders every cell not already in out/cells with the same settings, then the contact sheet.
// Each cell's PNG is written (atomically) as soon as it is rendered, so an interrupted run
// (Ctrl+C: Error(kCancelled)) keeps what it finished.
PromptMatrixResult run_prompt_matrix(const PromptMatrixOptions& options);
Report prompt_report(const PromptMatrixResult& result, const PromptMatrixOptions& options,
                     Machine machine);

}  // namespace hearth::bench
