// The flags that describe a run, shared by `train`, `demo` and `bench train`:
// a preset or a config file, then overrides of single settings.
#pragma once

#include "core/train/run_config.h"

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace crucible {
struct TrainerOptions;
}

namespace crucible::cli {

// Runs a Trainer with a progress line (or JSON events); Ctrl-C stops it after
// the current step with a checkpoint. Returns the exit code.
int run_training(const RunConfig& config, const TrainerOptions& options, bool json, bool quiet);
// "20261207-193000", for default run folder names.
std::string timestamp();

struct TrainOptions {
    std::string preset = "nano";
    std::string config_file;
    std::optional<int> steps, batch, accum, seq, threads, eval_every, eval_batches, checkpoint_every, sample_every,
        sample_tokens, warmup, vocab, d_model, layers, heads, kv_heads, ff, context, cpu_replicas;
    std::optional<float> lr, muon_lr, weight_decay, clip, min_lr_ratio, target_bpb;
    std::optional<uint64_t> seed;
    std::optional<double> val_fraction;
    std::string optimizer, schedule, device, norm, mlp, gpus, on_nonfinite;
    bool qk_norm = false, untied = false, grad_checkpoint = false, no_overlap = false;
    std::vector<std::string> data;

    // Registers the model/training flags on a command.
    void add_to(CLI::App& cmd, bool with_data = true);
    // The preset (or file) with every given override applied; validated.
    RunConfig resolve() const;
    // --gpus / --cpu-replicas as given (a resumed run may change them).
    bool placement_given() const { return !gpus.empty() || cpu_replicas.has_value() || no_overlap; }
    void apply_placement(TrainConfig& t) const;
    // The training settings for a fine-tune of `base`: the model flags are
    // refused (the architecture is the base's), the rest apply as for train.
    RunConfig resolve_for(const ModelConfig& base) const;

private:
    RunConfig resolve_unchecked() const;
    void apply_overrides(RunConfig& c) const;
};

} // namespace crucible::cli
