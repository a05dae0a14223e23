// crucible-cli finetune / merge: LoRA fine-tunes of a base model, and the
// merged model as a Hugging Face folder; `info PATH` describes a base or an
// adapter (describe_model_path).
#include "app/cli/commands.h"
#include "app/cli/train_options.h"

#include "core/io/file_util.h"
#include "core/io/hf_model_dir.h"
#include "core/io/peft_adapter.h"
#include "core/train/export_run.h"
#include "core/train/finetune.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"
#include "core/util/paths.h"
#include "kernels/net/process_launch.h"

#include <fmt/core.h>

namespace fs = std::filesystem;

namespace crucible::cli {

namespace {

struct FinetuneCommand {
    TrainOptions options;
    std::string base, out, resume, targets = "all-linear", init = "kaiming_uniform";
    int rank = 16;
    float alpha = 32.0f, dropout = 0.0f;
    bool rslora = false, qlora = false, json = false, quiet = false;
};

int run_finetune(const FinetuneCommand& c)
{
    // Every rank would write the same adapters: a fine-tune is one process.
    if (process_launch_from_environment())
        throw Error("a fine-tune trains in one process on one device: start it without mpirun or torchrun");
    TrainerOptions topts;
    if (!c.resume.empty()) {
        if (!c.out.empty() || !c.base.empty())
            throw Error("--resume continues a fine-tune in place: leave out --out and --base");
        if (is_hf_model_dir(c.resume) || !RunDirectory(c.resume).exists() ||
            !RunDirectory(c.resume).read_config().finetune)
            throw Error(c.resume + " is not a fine-tune run to resume (a run of crucible-cli finetune); continue "
                                   "a training run with crucible-cli train --resume");
        RunConfig config;
        config.train.steps = c.options.steps ? *c.options.steps : 0;
        topts.run_dir = c.resume;
        topts.resume = true;
        return run_training(config, topts, c.json, c.quiet);
    }
    if (c.base.empty()) throw Error("--base is required: a run, a checkpoint or a Hugging Face model folder");
    // Everything is checked before anything is written.
    const BaseModel base = open_base_model(c.base);
    TrainOptions o = c.options;
    if (!o.weight_decay) o.weight_decay = 0.0f;   // PEFT's and the HF Trainer's default for adapters
    if (!o.lr) o.lr = 1e-3f;
    RunConfig config = o.resolve_for(base.config);
    FinetuneConfig ft;
    ft.base = base.path.string();
    ft.lora.rank = c.rank;
    ft.lora.alpha = c.alpha;
    ft.lora.dropout = c.dropout;
    ft.lora.use_rslora = c.rslora;
    if (c.init == "gaussian") ft.lora.init = LoraInit::gaussian;
    else if (c.init == "kaiming_uniform" || c.init == "default") ft.lora.init = LoraInit::kaiming_uniform;
    else throw Error("--lora-init must be kaiming_uniform (PEFT's default) or gaussian");
    ft.lora.targets = parse_lora_targets(c.targets, base.config);
    ft.qlora = c.qlora;
    // The fine-tune's own switch (what the app binds), not the train section's.
    ft.grad_checkpoint = config.train.grad_checkpoint;
    config.train.grad_checkpoint = false;
    config.finetune = ft;
    config.validate();
    const std::string name = base.path.filename().string().empty() ? "base" : base.path.filename().string();
    topts.run_dir = c.out.empty() ? default_runs_dir() / (name + "-lora-" + timestamp()) : fs::path(c.out);
    if (!c.json) {
        const int64_t trainable = lora_parameter_count(base.config, ft.lora);
        fmt::print("{} r {} alpha {} on {} of {}: {} trainable parameters ({:.2f}% of {})\n",
                   ft.qlora ? "QLoRA (NF4 base)" : "LoRA", ft.lora.rank,
                   ft.lora.alpha, c.targets, base.path.string(), trainable,
                   100.0 * double(trainable) / double(count_params(base.config).total()),
                   count_params(base.config).total());
    }
    return run_training(config, topts, c.json, c.quiet);
}

int run_merge(const std::string& run, const std::string& out, const std::string& type)
{
    const LoadedModel probe = load_model(run, BackendOptions{});
    if (!probe.lora)
        throw Error(run + " is not a fine-tune (no adapters to merge); use crucible-cli export to copy a model");
    const ExportResult r = export_run(run, ExportRequest{"hf", type, out});
    fmt::print("merged {} (r {}, alpha {}, {}) into its base {}\n", run, probe.lora->rank, probe.lora->alpha,
               fmt::format("{} modules", probe.lora->targets.size()), probe.base.string());
    if (probe.nf4_base)
        fmt::print("the base was NF4 (QLoRA): its projections were dequantized and the adapters added, so the "
                   "merged weights are {}, not NF4\n", type);
    fmt::print("wrote {}\n", r.description);
    return 0;
}

} // namespace

int describe_model_path(const std::string& path)
{
    if (is_peft_adapter_dir(path) ||
        (!is_hf_model_dir(path) && RunDirectory(path).exists() && RunDirectory(path).read_config().finetune)) {
        fs::path dir = path;
        fs::path base;
        if (!is_peft_adapter_dir(dir)) {
            const RunDirectory run(path);
            base = run.read_config().finetune->base;
            const auto latest = run.latest_checkpoint();
            if (!latest) {
                const LoraConfig l = run.read_config().finetune->lora;   // a copy: the config is a temporary
                fmt::print("{}: LoRA fine-tune of {} (r {}, alpha {}), no checkpoint yet\n", path, base.string(),
                           l.rank, l.alpha);
                return 0;
            }
            dir = *latest;
        }
        const auto j = nlohmann::json::parse(read_file(dir / "adapter_config.json"), nullptr, false);
        if (base.empty() && j.is_object()) base = j.value("base_model_name_or_path", std::string());
        fmt::print("{}: LoRA adapter (PEFT format) in {}\n  base          {}\n", path, dir.string(), base.string());
        if (!is_peft_adapter_dir(path)) {
            const RunConfig rc = RunDirectory(path).read_config();
            if (rc.finetune->qlora) fmt::print("  QLoRA         the base's projections in NF4 with double quant\n");
            if (rc.grad_checkpoint()) fmt::print("  checkpointing gradient checkpointing on\n");
        }
        if (!base.empty() && fs::exists(base)) {
            const BaseModel b = open_base_model(base);
            const PeftAdapterInfo info = read_peft_config(dir, b.config);
            const LoraConfig& l = info.config;
            std::string targets;
            for (const auto& t : l.targets) targets += (targets.empty() ? "" : ",") + t;
            const int64_t trainable = lora_parameter_count(b.config, l);
            const int64_t base_params = count_params(b.config).total();
            fmt::print("  rank          {}\n  alpha         {} (scale {:.4g}{})\n  dropout       {}\n  targets       {}\n"
                       "  init          {}\n  trainable     {} parameters ({:.3f}% of the base's {})\n",
                       l.rank, l.alpha, l.scale(), l.use_rslora ? ", rsLoRA" : "", l.dropout, targets,
                       l.init == LoraInit::gaussian ? "gaussian" : "kaiming_uniform", trainable,
                       100.0 * double(trainable) / double(base_params), base_params);
        } else {
            fmt::print("  (the base is not a local folder: pass it to finetune/merge to check the adapter)\n");
        }
        return 0;
    }
    const BaseModel b = open_base_model(path);
    const ModelConfig& c = b.config;
    fmt::print("{}: {} model ({})\n  parameters    {:.1f}M\n  vocab {}  d {}  layers {}  heads {}/{}  ff {}  context {}\n"
               "  {}{}{}\n",
               path, b.hf_folder ? "Hugging Face" : "Crucible", b.weights.string(),
               double(count_params(c).total()) / 1e6, c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads,
               c.ff_dim, c.seq_len, to_string(c.norm), c.qk_norm ? ", QK-norm" : "",
               c.tied_embeddings ? ", tied head" : ", untied head");
    return 0;
}

void add_finetune_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<FinetuneCommand>();
    auto* cmd = app.add_subcommand("finetune", "Fine-tune a base model with LoRA adapters (PEFT format) and write a run");
    cmd->add_option("--base", c->base, "The base: a run, a checkpoint or a Hugging Face Llama/Qwen3 folder");
    c->options.add_to(*cmd);
    cmd->add_option("--lora-r", c->rank, "Adapter rank r")->capture_default_str();
    cmd->add_option("--lora-alpha", c->alpha, "Adapter alpha (scale alpha/r)")->capture_default_str();
    cmd->add_option("--lora-dropout", c->dropout, "Dropout on the adapters' input")->capture_default_str();
    cmd->add_option("--lora-targets", c->targets,
                    "attention (q,k,v,o), all-linear, or a list such as q,v or q_proj,k_proj")
        ->capture_default_str();
    cmd->add_option("--lora-init", c->init, "kaiming_uniform (PEFT's default) or gaussian")->capture_default_str();
    cmd->add_flag("--rslora", c->rslora, "Scale by alpha/sqrt(r) instead of alpha/r (rsLoRA)");
    cmd->add_flag("--qlora", c->qlora,
                  "QLoRA: keep the frozen base projections in NF4 with double quant (embeddings, norms, head stay "
                  "high precision)");
    cmd->add_option("--out", c->out, "Run directory to create (default: a new folder under the runs directory)");
    cmd->add_option("--resume", c->resume, "Continue the fine-tune in this directory from its latest checkpoint");
    cmd->add_flag("--json", c->json, "Print one JSON object per event instead of a progress line");
    cmd->add_flag("--quiet", c->quiet, "Only evaluations, checkpoints and the summary");
    cmd->footer("The base stays frozen; only the adapters train (AdamW, --lr, weight decay 0 unless given).\n"
                "Examples:\n  crucible-cli finetune --base runs/small --data notes/ --lora-r 16 --lora-alpha 32 "
                "--lora-targets all-linear --steps 300 --out runs/small-notes\n"
                "  crucible-cli finetune --resume runs/small-notes --steps 600\n"
                "  crucible-cli merge --run runs/small-notes --out small-notes-merged");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_finetune(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });

    auto run = std::make_shared<std::string>(), out = std::make_shared<std::string>(),
         type = std::make_shared<std::string>("f32");
    auto* merge = app.add_subcommand("merge", "Merge a fine-tune's adapters into its base and write a Hugging Face folder");
    merge->add_option("--run", *run, "The fine-tune run, one of its checkpoints, or a PEFT adapter folder")->required();
    merge->add_option("--out", *out, "The folder to write (Hugging Face layout)")->required();
    merge->add_option("--type", *type, "f32, bf16 or f16")->capture_default_str();
    merge->callback([run, out, type, &exit_code] {
        try {
            exit_code = run_merge(*run, *out, *type);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
