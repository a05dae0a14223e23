// TextStream: the bytes one sequence has generated, matched against stop
// strings and released for display in safe pieces.
//
// Tokens are byte strings: a stop string may span several tokens and a
// UTF-8 character may be split across two (byte-fallback pieces). So the
// stream holds back a tail that might still become a stop string, or that is
// an incomplete character, until the next token decides it; a stop string
// itself is never released, and neither is anything after it.
//
// Besides fixed strings, a stream may stop at a speaker line: a line that
// begins with a name of one to three capitalised words and a colon ("JULIET:",
// "First Citizen:", "Bob:"), as plays and transcripts mark a change of speaker.
// The newline before such a line ends the text; a last line that could still
// become one is held back.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace crucible {

class TextStream {
public:
    explicit TextStream(std::vector<std::string> stop_strings = {}, bool stop_at_speaker_lines = false);

    // Appends a token's bytes. Returns true when a stop string now appears;
    // text() then ends just before the earliest one.
    bool append(std::string_view bytes);
    // The bytes that may be shown now, not returned before; `final` releases
    // everything left (the sequence has ended).
    std::string release(bool final);

    const std::string& text() const { return m_text; }
    bool stopped() const { return m_stopped; }

private:
    size_t held_back() const;   // bytes at the end that must wait for more
    size_t speaker_line_from(size_t from) const;   // the newline before the first speaker line, or npos

    std::vector<std::string> m_stops;
    size_t m_longest_stop = 0;
    std::string m_text;
    size_t m_released = 0;
    bool m_stopped = false;
    bool m_speaker_lines = false;
};

// Whether `line` (text after a newline, up to the end of the text so far)
// begins with a speaker's name and a colon; `could_become` tells whether more
// text could still make it one.
bool is_speaker_line(std::string_view line, bool* could_become = nullptr);

} // namespace crucible
