#include "support/llm.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <span>
#include <string_view>

#include "hearth/rag/npz_import.hpp"

namespace hearth::testing {
namespace fs = std::filesystem;
using nlohmann::json;

void make_stories_decoder(const fs::path& dir, const std::string& args, bool hf, bool gguf) {
  const fs::path st = fixture("models/stories260K");
  ASSERT_FALSE(st.empty()) << "fixture models/stories260K is absent";
  if (hf) {
    make_model(
        cat({args, " --format hf --tokenizer-dir ", quote(st / "hf"), " --out ", quote(dir)}));
  }
  if (gguf) {
    make_model(cat({args, " --format gguf --gguf-vocab ", quote(st / "stories260K-f32.gguf"),
                    " --out ", quote(dir.string() + ".gguf")}));
  }
}

std::vector<std::int32_t> random_ids(int n, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> id(3, vocab - 1);
  std::vector<std::int32_t> ids = {1};
  while (static_cast<int>(ids.size()) < n) ids.push_back(id(rng));
  return ids;
}

RowsDiff diff_rows(const LogitRows& a, const LogitRows& b, std::size_t row0, std::size_t row1) {
  RowsDiff d;
  EXPECT_EQ(a.vocab, b.vocab);
  EXPECT_EQ(a.rows(), b.rows());
  if (a.vocab != b.vocab || a.rows() != b.rows()) {
    d.max = INFINITY;
    return d;
  }
  for (std::size_t r = row0; r < std::min(row1, a.rows()); ++r) {
    double worst = 0.0;
    for (std::size_t c = 0; c < a.vocab; ++c) {
      worst = std::max(worst, std::fabs(a.at(r, c) - b.at(r, c)));
    }
    if (worst > d.max || d.per_row.empty()) {
      d.max = worst;
      d.row = r;
    }
    d.per_row.push_back(worst);
  }
  return d;
}

double logits_stddev(const LogitRows& r) {
  double s = 0, s2 = 0;
  for (const double v : r.logits) {
    s += v;
    s2 += v * v;
  }
  const double n = static_cast<double>(r.logits.size());
  return std::sqrt(s2 / n - (s / n) * (s / n));
}

LogitRows run_hearth(const models::LanguageModel& model, const std::vector<std::int32_t>& prompt,
                     int steps, std::int64_t context) {
  LogitRows out;
  out.prompt_ids = prompt;
  out.vocab = static_cast<std::size_t>(model.config().vocab);
  models::Session session(model, context);
  std::vector<float> rows;
  std::span<const float> last = session.feed(prompt, &rows);
  out.logits.assign(rows.begin(), rows.end());
  for (int k = 0; k < steps; ++k) {
    const auto next = static_cast<std::int32_t>(std::max_element(last.begin(), last.end()) -
                                                last.begin());  // the first of equal maxima
    out.greedy_ids.push_back(next);
    last = session.feed(std::span(&next, 1));
    out.logits.insert(out.logits.end(), last.begin(), last.end());
  }
  return out;
}

std::vector<ReferenceRun> run_reference(const std::vector<ReferenceJob>& jobs, const TempDir& tmp) {
  const auto prefix = [&](std::size_t i) { return tmp / cat({"reference", std::to_string(i)}); };
  json list = json::array();
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    list.push_back({{"model", jobs[i].model.string()},
                    {"ids", jobs[i].ids},
                    {"steps", jobs[i].steps},
                    {"dtype", jobs[i].dtype},
                    {"ctx", jobs[i].ctx},
                    {"out", prefix(i).string()}});
  }
  std::ofstream(tmp / "reference-jobs.json") << list.dump();
  std::string log;
  const std::string cmd = cat({kSystemPython, " ", quote(source_dir() / "tools/llm_reference.py"),
                               " --jobs ", quote(tmp / "reference-jobs.json")});
  const int rc = run_command(cmd, &log);
  EXPECT_EQ(rc, 0) << cmd << "\n" << log;
  std::vector<ReferenceRun> runs;
  if (rc != 0) return runs;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const json j = json::parse(std::ifstream(prefix(i).string() + ".json"));
    ReferenceRun r;
    r.prompt_ids = j["prompt_ids"].get<std::vector<std::int32_t>>();
    r.greedy_ids = j["greedy_ids"].get<std::vector<std::int32_t>>();
    r.final_argmax = j["final_argmax"].get<int>();
    r.margins = j["greedy_margins"].get<std::vector<double>>();
    r.config = j["config"];
    const auto bytes = read_bytes(prefix(i).string() + ".logits.npy");
    rag::NpyArray a =
        rag::parse_npy(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    EXPECT_EQ(a.shape.size(), 2u) << prefix(i);
    r.vocab = a.shape.size() == 2 ? a.shape[1] : 0;
    r.logits = std::move(a.floats);
    runs.push_back(std::move(r));
  }
  return runs;
}

}  // namespace hearth::testing
