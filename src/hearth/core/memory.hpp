// Process memory figures, for the peak-memory lines the CLIs print.
#pragma once

#include <cstdint>
#include <string>

namespace hearth {

// Peak resident set size of this process so far, in bytes (0 if the OS does not say).
std::uint64_t peak_rss_bytes();

// "1.23 GiB", "512 B": binary units, three significant digits.
std::string format_bytes(std::uint64_t bytes);

}  // namespace hearth
