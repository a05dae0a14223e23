// crucible-cli chat: an interactive conversation on stdin.
//
// These are base models trained on plain text, so a conversation is a
// transcript the model continues: an optional system text, then turns of
// "<user prefix><line>\n<assistant prefix><reply>\n" (core/generate/
// chat_transcript.h, shared with the GUI's Chat page). A reply ends at the
// token limit (lowered to what fits the context), EOS, a --stop text, the
// next user prefix on a new line, a blank line or a line that names a new
// speaker ("JULIET:"); the last two are core/generate/chat_stop_rules.h's
// rules for plain-text models and can be switched off.
// The whole transcript is the prompt of every reply; the generator keeps the
// KV cache of the part it has seen (reuse_cache), so only the new turn runs.
// When the transcript outgrows the context, the oldest turns are dropped.
//
// Ctrl-C stops the current reply (what was said stays); at the prompt it
// ends the program. /reset clears the conversation, /quit leaves.
#include "app/cli/commands.h"
#include "app/cli/generation_options.h"

#include "core/generate/chat_stop_rules.h"
#include "core/generate/chat_transcript.h"
#include "core/io/file_util.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cstdio>
#include <iostream>
#include <memory>

namespace crucible::cli {

namespace {

struct ChatCommand {
    GenerationOptions options;
    std::string system, system_file, user_prefix = "User: ", assistant_prefix = "Assistant: ";
    ChatStopRules rules;
};

std::string joined(const std::vector<std::string>& items)
{
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) out += (i == 0 ? "" : i + 1 == items.size() ? " or " : ", ") + items[i];
    return out;
}

int run_chat(const ChatCommand& c)
{
    const GenerationOptions& o = c.options;
    std::string system = unescape(c.system);
    if (!c.system_file.empty()) system += read_file(c.system_file);
    LoadedModel m = load_model(o.run, o.backend());
    const auto draft = load_draft(o, m);
    Generator generator(*m.params, m.tokenizer, 1, m.config.seq_len);
    if (draft) generator.set_draft(draft->params.get(), o.lookahead);

    ChatFormat format;
    format.system = system;
    format.user_prefix = c.user_prefix;
    format.assistant_prefix = c.assistant_prefix;
    ChatTranscript conversation(m.tokenizer, format);
    // A chat model from Hugging Face talks in its own format.
    std::string note;
    if (m.tokenizer_config)
        conversation.set_template(ChatTemplate::from_tokenizer_config(*m.tokenizer_config, m.tokenizer, &note));
    if (!note.empty()) fmt::print(stderr, "note: {}\n", note);
    ChatStopRules rules = c.rules;
    rules.max_reply_tokens = o.max_tokens;
    GenerationRequest request;
    request.sampling = o.sampling;
    request.reuse_cache = true;
    const size_t budget = ChatTranscript::prompt_budget(m.config.seq_len, o.max_tokens);

    fmt::print(stderr, "Chatting with {} (step {}, {} tokens of context{}). /reset clears, /quit leaves, "
                       "Ctrl-C stops a reply.\n",
               m.checkpoint.string(), m.step, m.config.seq_len,
               conversation.chat_template() ? std::string(", ") + conversation.chat_template()->name() + " format" : "");
    fmt::print(stderr, "A reply ends at {}{}.\n", joined(rules.describe(conversation)),
               o.stops.empty() ? "" : " or a --stop text");
    std::string line;
    for (;;) {
        fmt::print("{}", c.user_prefix);
        std::fflush(stdout);
        if (!std::getline(std::cin, line) || line == "/quit" || line == "/exit") break;
        if (line == "/reset") {
            conversation.clear();
            fmt::print(stderr, "(conversation cleared)\n");
            continue;
        }
        if (line.empty()) continue;

        std::vector<int32_t> ids;
        if (int dropped = conversation.prompt(line, budget, ids))
            fmt::print(stderr, "(the context is full: forgot the {} oldest turn{})\n", dropped, dropped > 1 ? "s" : "");
        request.prompts = {ids};
        rules.apply(conversation, ids.size(), m.config.seq_len, request);
        for (const auto& s : o.stop_strings()) request.stop_strings.push_back(s);
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
    c->options.max_tokens = ChatStopRules::kDefaultMaxReplyTokens;
    auto* cmd = app.add_subcommand("chat", "Talk with a trained model: the conversation is the context");
    c->options.add_model_and_sampling(*cmd);
    cmd->add_option("--system", c->system, "Text placed before the conversation (\\n understood)");
    cmd->add_option("--system-file", c->system_file, "Read the text before the conversation from a file");
    cmd->add_option("--user-prefix", c->user_prefix, "What starts your turns")->capture_default_str();
    cmd->add_option("--assistant-prefix", c->assistant_prefix, "What starts the model's turns")->capture_default_str();
    cmd->add_flag("--stop-at-blank-line,!--no-stop-at-blank-line", c->rules.blank_line,
                  "End a reply at an empty line (plain-text models; on by default)");
    cmd->add_flag("--stop-at-speaker,!--no-stop-at-speaker", c->rules.speaker_line,
                  "End a reply at a line that starts with a name and a colon, e.g. \"JULIET:\" (on by default)");
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
