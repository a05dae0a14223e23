// crucible-cli chat: an interactive conversation on stdin.
//
// These are base models trained on plain text, so a conversation is a
// transcript the model continues: an optional system text, then turns of
// "<user prefix><line>\n<assistant prefix><reply>\n". A reply ends at the
// token limit, EOS, a --stop text or the next user prefix on a new line.
// The whole transcript is the prompt of every reply; the generator keeps the
// KV cache of the part it has seen (reuse_cache), so only the new turn runs.
// When the transcript outgrows the context, the oldest turns are dropped.
//
// Ctrl-C stops the current reply (what was said stays); at the prompt it
// ends the program. /reset clears the conversation, /quit leaves.
#include "app/cli/commands.h"
#include "app/cli/generation_options.h"

#include "core/io/file_util.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cstdio>
#include <deque>
#include <iostream>
#include <memory>

namespace crucible::cli {

namespace {

struct ChatCommand {
    GenerationOptions options;
    std::string system, system_file, user_prefix = "User: ", assistant_prefix = "Assistant: ";
};

std::string rtrim(std::string s)
{
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

// The transcript as the tokens the model saw and said: each turn's text is
// encoded once and the replies keep the model's own tokens, so the next
// prompt starts with exactly the tokens already in the KV cache (re-encoding
// the whole text would merge tokens across the boundaries and break reuse).
class Conversation {
public:
    Conversation(const ChatCommand& c, const Tokenizer& tok, const std::string& system)
        : m_c(c), m_tok(tok), m_system(tok.encode(system.empty() || system.back() == '\n' ? system : system + "\n"))
    {
    }

    void reset() { m_turns.clear(); }

    // The prompt for a reply to `line`, within `budget` tokens: older turns
    // are dropped first, then the oldest tokens. Returns how many turns were dropped.
    int prompt(const std::string& line, size_t budget, std::vector<int32_t>& ids)
    {
        m_pending = m_tok.encode(m_c.user_prefix + line + "\n" + m_c.assistant_prefix);
        int dropped = 0;
        for (;;) {
            ids = m_system;
            for (const auto& t : m_turns) ids.insert(ids.end(), t.begin(), t.end());
            ids.insert(ids.end(), m_pending.begin(), m_pending.end());
            if (ids.size() <= budget || m_turns.empty()) break;
            m_turns.pop_front();
            ++dropped;
        }
        if (ids.empty()) ids.push_back(m_tok.bos_id());
        if (ids.size() > budget) ids.erase(ids.begin(), ids.end() - std::ptrdiff_t(budget));
        return dropped;
    }

    // Closes the turn opened by prompt() with the reply: the generated tokens
    // that lie within `text` (a stop string cut it short), then a newline.
    void reply(const std::vector<int32_t>& tokens, const std::string& text)
    {
        std::vector<int32_t> turn = std::move(m_pending);
        size_t covered = 0;
        for (int32_t t : tokens) {
            const size_t n = m_tok.token_bytes(t).size();
            if (covered + n > text.size()) break;
            turn.push_back(t);
            covered += n;
        }
        std::string rest = text.substr(covered);
        while (!rest.empty() && rest.back() == '\n') rest.pop_back();
        rest += "\n";
        const auto tail = m_tok.encode(rest);
        turn.insert(turn.end(), tail.begin(), tail.end());
        m_turns.push_back(std::move(turn));
    }

private:
    const ChatCommand& m_c;
    const Tokenizer& m_tok;
    std::vector<int32_t> m_system, m_pending;
    std::deque<std::vector<int32_t>> m_turns;
};

int run_chat(const ChatCommand& c)
{
    const GenerationOptions& o = c.options;
    std::string system = unescape(c.system);
    if (!c.system_file.empty()) system += read_file(c.system_file);
    LoadedModel m = load_model(o.run, o.backend());
    const auto draft = load_draft(o, m);
    Generator generator(*m.params, m.tokenizer, 1, m.config.seq_len);
    if (draft) generator.set_draft(draft->params.get(), o.lookahead);

    GenerationRequest request;
    request.max_new_tokens = o.max_tokens;
    request.sampling = o.sampling;
    request.stop_strings = o.stop_strings();
    if (!rtrim(c.user_prefix).empty()) request.stop_strings.push_back("\n" + rtrim(c.user_prefix));
    request.reuse_cache = true;
    // Room for a reply: the prompt may take the context minus this.
    const size_t reply_room = size_t(std::max(1, std::min(o.max_tokens, m.config.seq_len / 4)));
    const size_t budget = size_t(m.config.seq_len) - reply_room;

    fmt::print(stderr, "Chatting with {} (step {}, {} tokens of context). /reset clears, /quit leaves, "
                       "Ctrl-C stops a reply.\n",
               m.checkpoint.string(), m.step, m.config.seq_len);
    Conversation conversation(c, m.tokenizer, system);
    std::string line;
    for (;;) {
        fmt::print("{}", c.user_prefix);
        std::fflush(stdout);
        if (!std::getline(std::cin, line) || line == "/quit" || line == "/exit") break;
        if (line == "/reset") {
            conversation.reset();
            fmt::print(stderr, "(conversation cleared)\n");
            continue;
        }
        if (line.empty()) continue;

        std::vector<int32_t> ids;
        if (int dropped = conversation.prompt(line, budget, ids))
            fmt::print(stderr, "(the context is full: forgot the {} oldest turn{})\n", dropped, dropped > 1 ? "s" : "");
        request.prompts = {ids};
        fmt::print("{}", c.assistant_prefix);
        std::fflush(stdout);
        GenerationStats stats;
        bool interrupted = false;
        {
            CancelOnInterrupt cancel(generator);
            stats = generator.generate(request, [](const TokenEvent& e) {
                std::fwrite(e.text.data(), 1, e.text.size(), stdout);
                std::fflush(stdout);
                return true;
            });
            interrupted = cancel.interrupted();
        }
        fmt::print("\n");
        fmt::print(stderr, "{}{}\n", interrupted ? "(stopped) " : "", speed_summary(stats));
        conversation.reply(stats.tokens[0], stats.texts[0]);
        request.sampling.seed += 1;   // a new draw for each reply, still reproducible
    }
    fmt::print("\n");
    return 0;
}

} // namespace

void add_chat_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<ChatCommand>();
    c->options.max_tokens = 256;
    auto* cmd = app.add_subcommand("chat", "Talk with a trained model: the conversation is the context");
    c->options.add_model_and_sampling(*cmd);
    cmd->add_option("--system", c->system, "Text placed before the conversation (\\n understood)");
    cmd->add_option("--system-file", c->system_file, "Read the text before the conversation from a file");
    cmd->add_option("--user-prefix", c->user_prefix, "What starts your turns")->capture_default_str();
    cmd->add_option("--assistant-prefix", c->assistant_prefix, "What starts the model's turns")->capture_default_str();
    c->options.add_stop_and_draft(*cmd);
    cmd->footer("Example:\n  crucible-cli chat --run runs/micro --user-prefix \"ROMEO: \" --assistant-prefix \"JULIET: \"");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_chat(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
