// A 5 x 7 bitmap font drawn into RGB images: labels on contact sheets, with no font file or
// library. Printable ASCII; any other code point is drawn as '?'.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hearth/image/image.hpp"

namespace hearth::image {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;
inline constexpr int kGlyphAdvance = 6;  // the glyph and one column of space
inline constexpr int kGlyphDescent = 2;  // g, p, q, y reach this far below the 7 rows

// Width in pixels of text drawn at scale (each font pixel a scale x scale square).
std::int64_t text_width(std::string_view text, int scale);
// Draws text with its top-left corner at (x, y); pixels outside the image are skipped.
void draw_text(Image8& image, std::int64_t x, std::int64_t y, std::string_view text, int scale,
               std::array<std::uint8_t, 3> colour = {0, 0, 0});
// text in lines of at most max_width pixels at scale, broken at spaces where it can, at most
// max_lines of them; text cut short ends in "..".
std::vector<std::string> wrap_text(std::string_view text, std::int64_t max_width, int scale,
                                   std::size_t max_lines);

}  // namespace hearth::image
