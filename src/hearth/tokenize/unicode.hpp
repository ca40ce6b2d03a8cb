// Code-point level helpers shared by the tokenizer pipeline: lossy UTF-8 decoding, Unicode
// character classes (from utf8proc's tables) and the normalization forms.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace hearth::tokenize::unicode {

// Decodes one code point at s[i] and advances i. Invalid UTF-8 (overlong forms, surrogates,
// > U+10FFFF, stray continuation bytes, truncated sequences) yields U+FFFD once per maximal
// invalid subpart, as WHATWG's TextDecoder and Rust's String::from_utf8_lossy do.
char32_t next(std::string_view s, std::size_t& i);

// Byte length of the sequence at s[i] as next() consumes it.
std::size_t char_length(std::string_view s, std::size_t i);

void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(char32_t cp);

// Invalid subparts replaced by U+FFFD as next() does (s unchanged when it is valid).
std::string sanitize(std::string_view s);

bool is_valid(std::string_view s);
std::u32string decode(std::string_view s);
std::string encode(std::u32string_view s);

bool is_letter(char32_t c);           // \p{L}
bool is_number(char32_t c);           // \p{N}
bool is_punctuation(char32_t c);      // \p{P}
bool is_symbol(char32_t c);           // \p{S}
bool is_mark_nonspacing(char32_t c);  // Mn
bool is_whitespace(char32_t c);       // the White_Space property (Rust's char::is_whitespace)
bool is_other(char32_t c);            // Cc, Cf, Cs, Co, Cn
bool is_cjk_ideograph(char32_t c);    // the ranges BERT surrounds with spaces
// A Unicode general category by its two-letter name (\p{Lu}); false for unknown names.
bool has_category(char32_t c, std::string_view name);
bool is_known_category(std::string_view name);

// Full lowercase mapping (U+0130 becomes "i" + U+0307, the one multi-character case).
void append_lower(std::string& out, char32_t c);
std::string lowercase(std::string_view s);
char32_t simple_lower(char32_t c);

enum class Form { kNFC, kNFD, kNFKC, kNFKD };
std::string normalize(std::string_view s, Form form);

}  // namespace hearth::tokenize::unicode
