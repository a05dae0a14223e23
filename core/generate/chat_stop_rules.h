// ChatStopRules: where a reply of a plain-text model ends.
//
// A model trained on plain text (Tiny Shakespeare, a folder of books) has
// never seen "User:" or "Assistant:", so waiting for the next user prefix
// lets a reply run until the context is full. Its own text has natural ends
// instead: a blank line closes a paragraph or a speech, and a line that
// starts with a name and a colon ("JULIET:") hands over to another speaker.
// Those, the user prefix on a new line, and a reply length that always fits
// the context end a reply; the rules are shown to the user, who can switch
// them off. A chat model with its own template keeps its end-of-turn tokens
// and markers: the rules below do not apply to it.
#pragma once

#include "core/generate/chat_transcript.h"
#include "core/generate/generator.h"

#include <string>
#include <vector>

namespace crucible {

struct ChatStopRules {
    static constexpr int kDefaultMaxReplyTokens = 100;

    bool blank_line = true;      // an empty line ends the reply
    bool speaker_line = true;    // a line starting "Name:" ends the reply
    int max_reply_tokens = kDefaultMaxReplyTokens;

    // Sets the request's stop strings, speaker rule, end tokens and token
    // limit for the next reply of `transcript`, whose prompt holds
    // `prompt_tokens` of a `context`-token window: the limit is lowered to
    // what still fits, so a reply ends by a rule or its length, never by a
    // full context.
    void apply(const ChatTranscript& transcript, size_t prompt_tokens, int context, GenerationRequest& request) const;

    // The rules in force for `transcript`, as a list for people
    // ("a blank line", "a new speaker (“Name:”)", "“User:” on a new line", "100 tokens").
    std::vector<std::string> describe(const ChatTranscript& transcript) const;
};

} // namespace crucible
