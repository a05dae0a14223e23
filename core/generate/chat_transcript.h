// ChatTranscript: a conversation with a base model, as the tokens it sees.
//
// The models are trained on plain text, so a conversation is a transcript the
// model continues: an optional system text, then turns of
// "<user prefix><message>\n<assistant prefix><reply>\n". A reply ends at the
// token limit, EOS, or where the model starts the user's next turn (the user
// prefix on a new line). `crucible-cli chat` and the GUI's Chat page both
// build their prompts here, so the two agree on the format.
//
// Each turn's text is encoded once and a reply keeps the model's own tokens,
// so the next prompt starts with exactly the tokens already in the KV cache
// (re-encoding the whole text would merge tokens across the boundaries and
// defeat GenerationRequest::reuse_cache). When the conversation outgrows the
// context, the oldest turns are forgotten: they stay in the transcript but no
// later prompt holds them.
//
// A chat model from Hugging Face brings its own format (a ChatTemplate from
// its tokenizer_config.json); with one set, every prompt is the whole
// conversation rendered through it, and its markers and end token stop a reply.
#pragma once

#include "core/data/tokenizer.h"
#include "core/generate/chat_template.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

struct ChatFormat {
    std::string system;                          // text before the first turn; a newline is added if missing
    std::string user_prefix = "User: ";
    std::string assistant_prefix = "Assistant: ";

    // "\n" + the user prefix without trailing blanks (none for a blank prefix).
    std::vector<std::string> stop_strings() const;
    // The transcript as plain text: what the prompt tokens spell.
    std::string render(const std::vector<std::pair<std::string, std::string>>& turns) const;
};

class ChatTranscript {
public:
    ChatTranscript(const Tokenizer& tokenizer, ChatFormat format);

    const ChatFormat& format() const { return m_format; }
    void set_template(std::optional<ChatTemplate> chat_template) { m_template = std::move(chat_template); }
    const std::optional<ChatTemplate>& chat_template() const { return m_template; }
    // Where a reply ends (besides EOS): the template's, else the format's.
    std::vector<std::string> stop_strings() const;
    std::vector<int32_t> stop_tokens() const;
    size_t turns() const { return m_turns.size(); }
    const std::string& message(size_t turn) const { return m_turns[turn].message; }
    const std::string& reply(size_t turn) const { return m_turns[turn].reply; }
    // Turns the model no longer sees (the oldest), after prompt() made room.
    size_t forgotten() const { return m_first; }

    void clear();
    // Keeps the first `turns` turns (Regenerate drops the last one).
    void truncate(size_t turns);
    // A finished turn from its text (a conversation restored from disk).
    void add_turn(const std::string& message, const std::string& reply);

    // The prompt for a reply to `message`, at most `budget` tokens: the
    // oldest turns are forgotten first, then the oldest tokens cut. Opens a
    // turn that reply() closes. Returns how many turns this call forgot.
    int prompt(const std::string& message, size_t budget, std::vector<int32_t>& ids);
    // Closes the turn opened by prompt() with the reply: the generated tokens
    // that lie within `text` (a stop string may have cut it short), then a newline.
    void reply(const std::vector<int32_t>& tokens, const std::string& text);

    // The prompt budget in a context of `context` tokens: room is kept for a
    // reply of up to a quarter of the context (or max_new_tokens, if fewer).
    static size_t prompt_budget(int context, int max_new_tokens);

private:
    struct Turn {
        std::string message, reply;
        std::vector<int32_t> tokens;
    };
    std::vector<int32_t> opening(const std::string& message) const;
    std::vector<int32_t> rendered(const std::string& message) const;

    const Tokenizer& m_tokenizer;
    ChatFormat m_format;
    std::optional<ChatTemplate> m_template;
    std::vector<int32_t> m_system;
    std::vector<Turn> m_turns;
    size_t m_first = 0;
    Turn m_pending;
};

} // namespace crucible
