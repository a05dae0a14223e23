// crucible-cli tokenize: a text's token ids and pieces as JSON, and with
// --logits the model's next-token logits after every token (raw f32,
// [tokens, vocab]) — what the transformers and llama.cpp checks compare.
#include "app/cli/commands.h"

#include "core/generate/sequence_logits.h"
#include "core/io/file_util.h"
#include "core/train/load_model.h"
#include "kernels/error.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace crucible::cli {

namespace {

struct TokenizeCommand {
    std::string run, text, text_file, logits;
};

int run_tokenize(const TokenizeCommand& c)
{
    if (c.text.empty() == c.text_file.empty()) throw Error("give the text with --text or --text-file (one of them)");
    const std::string text = c.text_file.empty() ? c.text : read_file(c.text_file);
    LoadedModel m = load_model(c.run, BackendOptions{});
    const std::vector<int32_t> ids = m.tokenizer.encode(text);
    nlohmann::json out = {{"ids", ids}, {"pieces", nlohmann::json::array()}};
    for (const int32_t id : ids) out["pieces"].push_back(m.tokenizer.piece(id));
    if (!c.logits.empty()) {
        const std::vector<float> logits = sequence_logits(*m.params, ids);
        write_file_atomic(c.logits, std::string_view(reinterpret_cast<const char*>(logits.data()),
                                                     logits.size() * sizeof(float)));
        out["logits_shape"] = {ids.size(), m.config.vocab_size};
    }
    fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
}

} // namespace

void add_tokenize_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<TokenizeCommand>();
    auto* cmd = app.add_subcommand("tokenize", "Print a text's token ids and pieces as JSON; --logits writes the "
                                               "model's logits after every token (f32 on the CPU)");
    cmd->add_option("--run", c->run, "Run directory, checkpoint or Hugging Face model folder")->required();
    cmd->add_option("--text", c->text, "The text");
    cmd->add_option("--text-file", c->text_file, "Read the text from a file (exact bytes)");
    cmd->add_option("--logits", c->logits, "Write the logits here as raw little-endian f32 [tokens, vocab]");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_tokenize(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
