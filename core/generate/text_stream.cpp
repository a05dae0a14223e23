#include "core/generate/text_stream.h"

#include <algorithm>

namespace crucible {

namespace {

// Bytes of an incomplete UTF-8 character at the end of `text` (0 when the
// text ends on a boundary or in bytes that can never complete one).
size_t incomplete_character(const std::string& text)
{
    const size_t n = text.size();
    for (size_t back = 1; back <= std::min<size_t>(n, 3); ++back) {
        const auto c = static_cast<unsigned char>(text[n - back]);
        if ((c & 0xC0) == 0x80) continue;   // a continuation byte: look further back
        const size_t needed = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
        return needed > back ? back : 0;
    }
    return 0;
}

} // namespace

TextStream::TextStream(std::vector<std::string> stop_strings)
{
    for (auto& s : stop_strings) {
        if (s.empty()) continue;   // an empty stop string would end every generation at once
        m_longest_stop = std::max(m_longest_stop, s.size());
        m_stops.push_back(std::move(s));
    }
}

bool TextStream::append(std::string_view bytes)
{
    if (m_stopped) return true;
    const size_t before = m_text.size();
    m_text.append(bytes);
    // Only a match that ends in the new bytes is new.
    const size_t from = before >= m_longest_stop ? before - m_longest_stop + 1 : 0;
    size_t earliest = std::string::npos;
    for (const auto& stop : m_stops) earliest = std::min(earliest, m_text.find(stop, from));
    if (earliest == std::string::npos) return false;
    m_text.resize(std::max(earliest, m_released));
    m_stopped = true;
    return true;
}

size_t TextStream::held_back() const
{
    size_t hold = incomplete_character(m_text);
    for (const auto& stop : m_stops) {
        // The longest proper prefix of the stop string that the text ends with.
        for (size_t k = std::min(stop.size() - 1, m_text.size()); k > hold; --k) {
            if (m_text.compare(m_text.size() - k, k, stop, 0, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

std::string TextStream::release(bool final)
{
    const size_t end = final || m_stopped ? m_text.size() : std::max(m_released, m_text.size() - held_back());
    std::string out = m_text.substr(m_released, end - m_released);
    m_released = end;
    return out;
}

} // namespace crucible
