// crucible-cli export: a run as a GGUF file for llama.cpp, or as a Hugging
// Face folder for transformers (core/train/export_run.h).
#include "app/cli/commands.h"

#include "core/train/export_run.h"

#include <fmt/core.h>

namespace crucible::cli {

namespace {

struct ExportCommand {
    std::string run, format, type, out;
    bool merged = false;
};

int run_export(const ExportCommand& c)
{
    const ExportResult r = export_run(c.run, ExportRequest{c.format, c.type, c.out, c.merged});
    fmt::print("wrote {}\n", r.description);
    if (r.adapter)
        fmt::print("Apply it: llama-cli -m BASE.gguf --lora {} -p \"ROMEO:\" -n 64 --temp 0 (BASE.gguf: the base's "
                   "own export)\n",
                   c.out);
    else if (c.format == "gguf") fmt::print("Run it: llama-cli -m {} -p \"ROMEO:\" -n 64 --temp 0\n", c.out);
    else fmt::print("Load it: AutoModelForCausalLM.from_pretrained(\"{0}\"), LlamaTokenizer.from_pretrained(\"{0}\")\n", c.out);
    return 0;
}

} // namespace

void add_export_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<ExportCommand>();
    auto* cmd = app.add_subcommand("export", "Write a run as GGUF (llama.cpp, Ollama, LM Studio) or as a Hugging Face "
                                             "folder (transformers)");
    cmd->add_option("--run", c->run, "Run directory or checkpoint folder")->required();
    cmd->add_option("--format", c->format, "gguf or hf")->required();
    cmd->add_option("--type", c->type, "gguf: f32, f16 (default), bf16 or q8_0; hf: f32 (default), bf16 or f16");
    cmd->add_option("--out", c->out, "The .gguf file, or the folder for hf")->required();
    cmd->add_flag("--merged", c->merged,
                  "A fine-tune to gguf: the base with the adapter merged, instead of the adapter alone");
    cmd->footer("Examples:\n  crucible-cli export --run runs/nano --format gguf --type q8_0 --out nano.gguf\n"
                "  crucible-cli export --run runs/nano --format hf --out nano-hf\n"
                "  crucible-cli export --run runs/nano-lora --format gguf --out nano-lora.gguf   (a LoRA adapter)");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_export(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
