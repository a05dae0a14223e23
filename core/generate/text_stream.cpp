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

// A speaker's name: at most this many bytes and words before the colon.
constexpr size_t kMaxSpeakerName = 32;
constexpr int kMaxSpeakerWords = 3;

} // namespace

bool is_speaker_line(std::string_view line, bool* could_become)
{
    // Scans "Name Name:"; each word starts with an ASCII capital and goes on
    // in letters, digits, '.', '\'' or '-'.
    int words = 0;
    bool in_word = false;
    for (size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (c == ':') {
            if (could_become) *could_become = false;
            return in_word && i <= kMaxSpeakerName;
        }
        bool ok;
        if (c == ' ') {
            ok = in_word;   // one space between words, none before the first
            in_word = false;
        } else if (!in_word) {
            ok = c >= 'A' && c <= 'Z' && ++words <= kMaxSpeakerWords;
            in_word = true;
        } else {
            ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '\'' ||
                 c == '-';
        }
        if (!ok || i >= kMaxSpeakerName) {
            if (could_become) *could_become = false;
            return false;
        }
    }
    if (could_become) *could_become = true;   // a name so far, no colon yet
    return false;
}

TextStream::TextStream(std::vector<std::string> stop_strings, bool stop_at_speaker_lines)
    : m_speaker_lines(stop_at_speaker_lines)
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
    // A speaker line is decided by its colon, at most kMaxSpeakerName bytes
    // after its newline: only newlines that recent may start a new one.
    if (m_speaker_lines)
        earliest = std::min(earliest, speaker_line_from(before > kMaxSpeakerName + 1 ? before - kMaxSpeakerName - 1 : 0));
    if (earliest == std::string::npos) return false;
    m_text.resize(std::max(earliest, m_released));
    m_stopped = true;
    return true;
}

size_t TextStream::speaker_line_from(size_t from) const
{
    for (size_t nl = m_text.find('\n', from); nl != std::string::npos; nl = m_text.find('\n', nl + 1)) {
        const size_t end = m_text.find('\n', nl + 1);
        const std::string_view line(m_text.data() + nl + 1, (end == std::string::npos ? m_text.size() : end) - nl - 1);
        if (is_speaker_line(line)) return nl;
    }
    return std::string::npos;
}

size_t TextStream::held_back() const
{
    size_t hold = incomplete_character(m_text);
    if (m_speaker_lines) {
        // The last line, with its newline, while it may still turn out to be a speaker's.
        const size_t nl = m_text.rfind('\n');
        bool could_become = false;
        if (nl != std::string::npos) {
            is_speaker_line(std::string_view(m_text).substr(nl + 1), &could_become);
            if (could_become) hold = std::max(hold, m_text.size() - nl);
        }
    }
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
