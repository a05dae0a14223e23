// crucible-cli bench finetune: full fine-tuning, LoRA and QLoRA of one
// preset, with and without gradient checkpointing, side by side on one device
// (core/bench/finetune_bench.h), and decoding at batch 1 with NF4 weights
// against dense ones.
#include "app/cli/commands.h"

#include "core/bench/finetune_bench.h"

#include <fmt/core.h>

namespace crucible::cli {

namespace {

struct FinetuneBenchCommand {
    std::string preset = "nano", device = "cpu";
    int batch = 8, seq = 0, steps = 5, warmup = 2, rank = 16, threads = 0, decode_tokens = 64;
    float alpha = 32.0f;
    std::string targets = "all-linear";
    bool json = false;
};

int run_finetune_bench_command(const FinetuneBenchCommand& c)
{
    if (c.device != "cpu" && c.device != "cuda") throw Error("--device must be cpu or cuda");
    if (c.batch < 1 || c.steps < 1 || c.warmup < 0) throw Error("--batch and --steps must be at least 1, --warmup at least 0");
    FinetuneBenchOptions o;
    o.model = preset(c.preset);
    o.batch = c.batch;
    o.seq = c.seq;
    o.timed_steps = c.steps;
    o.warmup_steps = c.warmup;
    o.lora.rank = c.rank;
    o.lora.alpha = c.alpha;
    o.lora.targets = parse_lora_targets(c.targets, o.model);
    o.decode_tokens = c.decode_tokens;
    o.backend.device = c.device == "cuda" ? DeviceKind::cuda : DeviceKind::cpu;
    o.backend.threads = c.threads;
    const FinetuneBenchResult r = run_finetune_bench(o);
    const BenchTable table = finetune_bench_table(
        r, fmt::format("{} B{}×T{}, r {} {}", c.preset, o.batch, o.seq > 0 ? o.seq : o.model.seq_len, c.rank, c.targets));
    if (c.json) fmt::print("{}\n", table.to_json().dump(2));
    else fmt::print("{}", table.to_text());
    return 0;
}

} // namespace

void add_bench_finetune_command(CLI::App& bench, int& exit_code)
{
    auto c = std::make_shared<FinetuneBenchCommand>();
    auto* cmd = bench.add_subcommand(
        "finetune", "Full fine-tune vs LoRA vs QLoRA (with and without gradient checkpointing): memory, speed, decode");
    cmd->add_option("--preset", c->preset, "Model preset")->capture_default_str();
    cmd->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--batch", c->batch, "Sequences per step")->capture_default_str();
    cmd->add_option("--seq", c->seq, "Sequence length (default: the preset's)");
    cmd->add_option("--steps", c->steps, "Timed steps per mode")->capture_default_str();
    cmd->add_option("--warmup", c->warmup, "Warm-up steps per mode")->capture_default_str();
    cmd->add_option("--lora-r", c->rank, "Adapter rank")->capture_default_str();
    cmd->add_option("--lora-alpha", c->alpha, "Adapter alpha")->capture_default_str();
    cmd->add_option("--lora-targets", c->targets, "attention, all-linear or a list")->capture_default_str();
    cmd->add_option("--decode-tokens", c->decode_tokens, "Timed greedy decode steps per weight kind (0 = skip)")
        ->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    cmd->add_flag("--json", c->json, "Print JSON instead of a table");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_finetune_bench_command(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
