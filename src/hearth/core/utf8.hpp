// UTF-8 validation shared by the readers (keys, names) and the text loaders.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace hearth {

// Byte index of the first invalid sequence (overlong forms, surrogates and code points past
// U+10FFFF are invalid), or nullopt when the whole string is valid UTF-8.
std::optional<std::size_t> find_invalid_utf8(std::string_view s);

inline bool is_valid_utf8(std::string_view s) {
  return !find_invalid_utf8(s).has_value();
}

// A printable rendering for error messages: invalid bytes become \xNN, control characters are
// escaped, and the result is cut at max_len bytes with "...".
std::string printable(std::string_view s, std::size_t max_len = 80);

// s with every run of ASCII whitespace (space, tab, newline, CR, form feed) turned into one
// space and none at either end.
std::string collapse_whitespace(std::string_view s);

}  // namespace hearth
