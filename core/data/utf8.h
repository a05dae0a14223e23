// Strict UTF-8 scanning, shared by the corpus check (is this text?) and the
// tokenizer (which bytes may go through SentencePiece, which must become byte
// pieces). "Valid" follows the Unicode standard (Table 3-7): no stray
// continuation bytes, no truncated or overlong sequences, no surrogates,
// nothing above U+10FFFF. Anything else is a lone byte to be carried as is.
#pragma once

#include <cstddef>
#include <string_view>

namespace crucible::utf8 {

// Length (1-4) of the well-formed sequence starting at text[pos], or 0 when
// the byte there does not start one.
int sequence_length(std::string_view text, size_t pos);

// The code point of the well-formed sequence of length `length` at text[pos].
char32_t decode_at(std::string_view text, size_t pos, int length);

// Number of bytes in `text` that are not part of a well-formed sequence.
size_t count_invalid_bytes(std::string_view text);

} // namespace crucible::utf8
