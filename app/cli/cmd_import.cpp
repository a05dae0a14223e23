// crucible-cli import: a Hugging Face model directory becomes a Crucible run
// (core/train/hf_import.h), ready for eval, sample, chat, serve, export, and
// `train --resume` to train it further.
#include "app/cli/commands.h"

#include "core/train/hf_import.h"
#include "core/util/paths.h"

#include <fmt/core.h>

#include <algorithm>
#include <optional>

namespace crucible::cli {

namespace {

struct ImportCommand {
    std::string source, out, device = "cpu";
    std::vector<std::string> data;
    std::optional<int> steps, batch, seq;
    std::optional<float> lr;
};

int run_import(const ImportCommand& c)
{
    // The settings `train --resume` will use; the model comes from the folder.
    RunConfig settings;
    settings.data.paths = c.data;
    if (c.steps) {
        settings.train.steps = *c.steps;
        // Warmup is a tenth of a short run at most.
        settings.train.schedule.warmup_steps = std::min(settings.train.schedule.warmup_steps, std::max(1, *c.steps / 10));
    }
    if (c.batch) settings.train.batch_size = *c.batch;
    if (c.seq) settings.train.seq_len = *c.seq;
    if (c.lr) settings.train.optimizer.lr = *c.lr;
    settings.train.device = c.device;

    std::filesystem::path source = std::filesystem::absolute(c.source).lexically_normal();
    if (source.filename().empty()) source = source.parent_path();   // "models/tiny/"
    const std::filesystem::path out = c.out.empty() ? default_runs_dir() / source.filename() : std::filesystem::path(c.out);
    const ImportedRun run = import_hf_model(c.source, out, settings);
    const ModelConfig& m = run.config.model;
    fmt::print("imported  {} ({}, {:.1f}M parameters, {} weights)\n", run.source.dir.string(), run.source.architecture,
               double(count_params(m).total()) / 1e6, run.source.weight_dtype);
    fmt::print("model     d {} · {} layers · {} heads / {} KV heads · ff {} · vocab {} · context {}{}{}\n", m.d_model,
               m.n_layers, m.n_heads, m.n_kv_heads, m.ff_dim, m.vocab_size, m.seq_len, m.qk_norm ? " · QK-norm" : "",
               m.tied_embeddings ? " · tied head" : "");
    fmt::print("run       {}\n", out.string());
    fmt::print("Next: crucible-cli chat --run {0}   ·   crucible-cli train --resume {0} --steps N\n", out.string());
    return 0;
}

} // namespace

void add_import_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<ImportCommand>();
    auto* cmd = app.add_subcommand("import", "Make a Hugging Face model folder (Llama or Qwen3, safetensors, "
                                             "SentencePiece tokenizer) a Crucible run");
    cmd->add_option("source", c->source, "The model folder (config.json, model*.safetensors, tokenizer.model)")
        ->required();
    cmd->add_option("--out", c->out, "Run directory to create (default: the folder's name under the runs directory)");
    cmd->add_option("--data", c->data, "Text files or folders to evaluate on and train further with "
                                       "(default: the embedded Tiny Shakespeare)");
    cmd->add_option("--steps", c->steps, "Optimizer steps `train --resume` runs");
    cmd->add_option("--batch", c->batch, "Sequences per micro-batch for further training");
    cmd->add_option("--seq", c->seq, "Training sequence length (default: the model's context)");
    cmd->add_option("--lr", c->lr, "Peak learning rate for further training");
    cmd->add_option("--device", c->device, "Device for further training: cpu or cuda")->capture_default_str();
    cmd->footer("Example:\n  crucible-cli import ~/models/TinyLlama-1.1B-Chat-v1.0 --out runs/tinyllama-chat\n"
                "  crucible-cli chat --run runs/tinyllama-chat");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_import(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
