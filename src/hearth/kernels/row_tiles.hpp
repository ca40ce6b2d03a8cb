// The decode kernels pass over the weights once for up to four x rows: rows in tiles of four (the
// last one of 1-3), each tile's row count a compile-time constant for the kernel templates.
#pragma once

#include <cstdint>
#include <type_traits>

namespace hearth::kernels {
namespace {

// run(r, std::integral_constant<int, R>{}) for the tiles of rows r .. r + R - 1, r = 0, 4, 8 ...
template <class Run>
inline void for_row_tiles(std::int64_t rows, const Run& run) {
  for (std::int64_t r = 0; r < rows; r += 4) {
    switch (rows - r < 4 ? rows - r : 4) {
      case 4:
        run(r, std::integral_constant<int, 4>{});
        break;
      case 3:
        run(r, std::integral_constant<int, 3>{});
        break;
      case 2:
        run(r, std::integral_constant<int, 2>{});
        break;
      default:
        run(r, std::integral_constant<int, 1>{});
        break;
    }
  }
}

}  // namespace
}  // namespace hearth::kernels
