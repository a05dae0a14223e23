#include "core/generate/chat_stop_rules.h"

#include <algorithm>

namespace crucible {

void ChatStopRules::apply(const ChatTranscript& transcript, size_t prompt_tokens, int context,
                          GenerationRequest& request) const
{
    request.stop_strings = transcript.stop_strings();
    request.stop_tokens = transcript.stop_tokens();
    const bool plain = !transcript.chat_template().has_value();
    request.stop_at_speaker_line = plain && speaker_line;
    if (plain && blank_line) request.stop_strings.push_back("\n\n");
    const int room = std::max(1, context - int(std::min<size_t>(prompt_tokens, size_t(context))));
    request.max_new_tokens = std::clamp(max_reply_tokens, 1, room);
}

std::vector<std::string> ChatStopRules::describe(const ChatTranscript& transcript) const
{
    std::vector<std::string> out;
    if (transcript.chat_template()) {
        out.push_back(std::string("the end of the turn (") + transcript.chat_template()->name() + " format)");
    } else {
        if (blank_line) out.push_back("a blank line");
        if (speaker_line) out.push_back("a new speaker (a line starting \u201cName:\u201d)");
        for (const std::string& s : transcript.format().stop_strings())
            out.push_back("\u201c" + s.substr(1) + "\u201d on a new line");
    }
    out.push_back(std::to_string(max_reply_tokens) + " tokens");
    return out;
}

} // namespace crucible
