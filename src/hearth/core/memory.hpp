// Process memory figures, for the peak-memory lines the CLIs print.
#pragma once

#include <cstdint>
#include <string>

namespace hearth {

// Peak resident set size of this process so far, in bytes (0 if the OS does not say).
std::uint64_t peak_rss_bytes();

// The peak resident set size the kernel keeps for this process (VmHWM), which, unlike
// peak_rss_bytes(), reset_peak_rss() sets back to the current size: a benchmark measures the peak
// of one phase without what an earlier phase (or a probe's buffer) held. 0 if the OS does not say.
std::uint64_t resettable_peak_rss_bytes();
// Sets that peak to the current resident size (Linux 4.0+, /proc/self/clear_refs); false when the
// OS does not allow it.
bool reset_peak_rss();

// The machine's physical memory (/proc/meminfo MemTotal), in bytes; 0 if the OS does not say.
std::uint64_t total_memory_bytes();

// "1.23 GiB", "512 B": binary units, three significant digits.
std::string format_bytes(std::uint64_t bytes);

}  // namespace hearth
