// Helpers for the fuzz targets: read the first and last byte of every tensor view the reader
// hands out, so AddressSanitizer catches any view that points outside the input.
#pragma once

#include <cstddef>

#include "hearth/tensor/tensor.hpp"

namespace hearth::fuzz {

inline volatile std::size_t g_sink = 0;

inline void consume(std::size_t v) {
  g_sink = g_sink + v;
}

inline void touch(const TensorView& v) {
  if (v.nbytes == 0) return;
  consume(static_cast<std::size_t>(v.data[0]) + static_cast<std::size_t>(v.data[v.nbytes - 1]));
}

}  // namespace hearth::fuzz
