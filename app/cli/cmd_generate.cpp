// crucible-cli generate: one-shot, KV-cached generation from a trained model.
//
// One sequence streams to stdout as it is generated; several (--batch N
// samples of one prompt, or several --prompt) run as one batch and are
// printed one after the other when done. Speeds go to stderr, so stdout
// holds only text. Ctrl-C stops generation within one token.
#include "app/cli/commands.h"
#include "app/cli/generation_options.h"

#include "core/io/file_util.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cstdio>
#include <memory>

namespace crucible::cli {

namespace {

struct GenerateCommand {
    GenerationOptions options;
    std::vector<std::string> prompts;
    std::string prompt_file;
    int batch = 1;
    bool echo = false, ignore_eos = false;
};

void write(const std::string& text)
{
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

int run_generate(const GenerateCommand& c)
{
    std::vector<std::string> texts = c.prompts;
    if (!c.prompt_file.empty()) texts.push_back(read_file(c.prompt_file));
    if (texts.empty()) throw Error("give a prompt: --prompt TEXT or --prompt-file PATH");
    if (c.batch < 1) throw Error("--batch must be at least 1");
    if (c.batch > 1 && texts.size() > 1)
        throw Error("--batch N repeats one prompt; with several prompts the batch is one sequence per prompt");
    if (c.batch > 1) texts.assign(size_t(c.batch), texts.front());

    const GenerationOptions& o = c.options;
    LoadedModel m = load_model(o.run, o.backend());
    const auto draft = load_draft(o, m);

    GenerationRequest request;
    for (const auto& text : texts) {
        std::vector<int32_t> ids = m.tokenizer.encode(text);
        if (ids.empty()) ids.push_back(m.tokenizer.bos_id());
        request.prompts.push_back(std::move(ids));
    }
    request.max_new_tokens = o.max_tokens;
    request.sampling = o.sampling;
    request.stop_strings = o.stop_strings();
    request.stop_at_eos = !c.ignore_eos;

    Generator generator(*m.params, m.tokenizer, int(texts.size()), m.config.seq_len);
    if (draft) generator.set_draft(draft->params.get(), o.lookahead);
    const bool streaming = texts.size() == 1;
    if (streaming && c.echo) write(texts.front());

    GenerationStats stats;
    bool interrupted = false;
    {
        CancelOnInterrupt cancel(generator);
        stats = generator.generate(request, [&](const TokenEvent& e) {
            if (streaming) write(e.text);
            return true;
        });
        interrupted = cancel.interrupted();
    }
    if (streaming) {
        write("\n");
    } else {
        for (size_t i = 0; i < texts.size(); ++i) {
            write(fmt::format("### {} of {} ({})\n", i + 1, texts.size(), stats.stop_reasons[i]));
            write((c.echo ? texts[i] : std::string()) + stats.texts[i] + "\n");
        }
    }
    fmt::print(stderr, "{}\n", speed_summary(stats));
    return interrupted ? kExitStopped : 0;
}

} // namespace

void add_generate_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<GenerateCommand>();
    auto* cmd = app.add_subcommand("generate", "Generate within the model's context with every control: several prompts "
                                               "or samples at once, stop texts, a draft model (speculative), EOS "
                                               "handling; `sample` is the quick look");
    c->options.add_model_and_sampling(*cmd);
    cmd->add_option("--prompt", c->prompts, "Text to continue (repeat for a batch of prompts)");
    cmd->add_option("--prompt-file", c->prompt_file, "Read the prompt from this file");
    cmd->add_option("--batch", c->batch, "Generate N samples of the prompt at once")->capture_default_str();
    c->options.add_stop_and_draft(*cmd);
    cmd->add_flag("--echo", c->echo, "Print the prompt before its continuation");
    cmd->add_flag("--ignore-eos", c->ignore_eos, "Keep going past the end-of-text token");
    cmd->footer("Examples:\n"
                "  crucible-cli generate --run runs/micro --prompt \"ROMEO:\" --max-tokens 300 --temperature 0.8\n"
                "  crucible-cli generate --run runs/micro --prompt-file scene.txt --stop \"\\n\\n\" --top-p 0.9\n"
                "  crucible-cli generate --run runs/micro --draft runs/tiny --prompt \"KING:\" --temperature 0\n"
                "    (speculative: runs/tiny is a smaller model trained with the same --vocab on the same text)");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_generate(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
