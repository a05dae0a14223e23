// Table-free UTF-8 validation: the second byte's allowed range depends on the
// lead byte (that is what rules out overlongs, surrogates and > U+10FFFF);
// later bytes are plain continuation bytes.
#include "core/data/utf8.h"

namespace crucible::utf8 {

namespace {

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

} // namespace

int sequence_length(std::string_view text, size_t pos)
{
    const size_t left = text.size() - pos;
    const auto at = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
    const unsigned char lead = at(0);
    if (lead < 0x80) return 1;

    int length = 0;
    unsigned char second_min = 0x80, second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        if (lead == 0xE0) second_min = 0xA0;        // overlong below U+0800
        else if (lead == 0xED) second_max = 0x9F;   // UTF-16 surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        if (lead == 0xF0) second_min = 0x90;        // overlong below U+10000
        else if (lead == 0xF4) second_max = 0x8F;   // above U+10FFFF
    } else {
        return 0;   // continuation byte, C0/C1 (always overlong) or F5..FF
    }
    if (left < size_t(length)) return 0;
    if (at(1) < second_min || at(1) > second_max) return 0;
    for (int i = 2; i < length; ++i)
        if (!is_continuation(at(size_t(i)))) return 0;
    return length;
}

char32_t decode_at(std::string_view text, size_t pos, int length)
{
    const auto at = [&](int i) { return char32_t(static_cast<unsigned char>(text[pos + size_t(i)])); };
    switch (length) {
    case 1: return at(0);
    case 2: return ((at(0) & 0x1F) << 6) | (at(1) & 0x3F);
    case 3: return ((at(0) & 0x0F) << 12) | ((at(1) & 0x3F) << 6) | (at(2) & 0x3F);
    default: return ((at(0) & 0x07) << 18) | ((at(1) & 0x3F) << 12) | ((at(2) & 0x3F) << 6) | (at(3) & 0x3F);
    }
}

size_t count_invalid_bytes(std::string_view text)
{
    size_t invalid = 0;
    for (size_t pos = 0; pos < text.size();) {
        if (static_cast<unsigned char>(text[pos]) < 0x80) { ++pos; continue; }
        const int length = sequence_length(text, pos);
        if (length == 0) { ++invalid; ++pos; }
        else pos += size_t(length);
    }
    return invalid;
}

} // namespace crucible::utf8
