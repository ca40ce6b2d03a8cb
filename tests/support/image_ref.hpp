// What the image-model tests share: .npy in and out of tools/vae_reference.py (the torch
// reference), and the tiny random VAEs of hearth-make-vae.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "hearth/formats/file_io.hpp"
#include "hearth/formats/npy.hpp"
#include "hearth/rag/npz_import.hpp"
#include "support/fixtures.hpp"

namespace hearth::testing {

// Runs tools/vae_reference.py with args (its --out file is read back); a failure is a fatal test
// failure and returns an empty vector.
inline std::vector<float> run_vae_reference(const std::string& args,
                                            const std::filesystem::path& out) {
  std::string log;
  const std::string cmd = cat({kSystemPython, " ", quote(source_dir() / "tools/vae_reference.py"),
                               " ", args, " --out ", quote(out), " 2>&1"});
  if (run_command(cmd, &log) != 0) {
    ADD_FAILURE() << "vae_reference.py failed: " << cmd << "\n" << log;
    return {};
  }
  const rag::NpyArray a = rag::parse_npy(formats::read_text_file(out));
  return {a.floats.begin(), a.floats.end()};
}

inline void save_npy(const std::filesystem::path& path, const std::vector<float>& v,
                     std::vector<std::int64_t> shape) {
  formats::write_npy_f32(path, v, shape);
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return m;
}

}  // namespace hearth::testing
