#include "app/cli/train_options.h"

#include "core/io/file_util.h"
#include "kernels/error.h"

namespace crucible::cli {

void TrainOptions::add_to(CLI::App& cmd, bool with_data)
{
    cmd.add_option("--preset", preset, "Model preset: nano, micro, small, base")->capture_default_str();
    cmd.add_option("--config", config_file, "Run or model configuration JSON (overrides --preset)");
    cmd.add_option("--steps", steps, "Optimizer steps");
    cmd.add_option("--batch", batch, "Sequences per micro-batch");
    cmd.add_option("--accum", accum, "Micro-batches per optimizer step (gradient accumulation)");
    cmd.add_option("--seq", seq, "Training sequence length (default: the model's)");
    cmd.add_option("--lr", lr, "Peak learning rate (AdamW, and Muon's embeddings/head/norms)");
    cmd.add_option("--optimizer", optimizer, "adamw or muon");
    cmd.add_option("--muon-lr", muon_lr, "Muon learning rate for hidden matrices");
    cmd.add_option("--weight-decay", weight_decay, "AdamW decoupled weight decay");
    cmd.add_option("--clip", clip, "Global gradient-norm clip (0 = off)");
    cmd.add_option("--schedule", schedule, "LR schedule: constant, cosine, wsd");
    cmd.add_option("--warmup", warmup, "Warmup steps");
    cmd.add_option("--min-lr-ratio", min_lr_ratio, "Final LR as a fraction of the peak");
    cmd.add_option("--target-bpb", target_bpb, "Finish once validation reaches this many bits per byte");
    cmd.add_option("--device", device, "cpu or cuda");
    cmd.add_option("--threads", threads, "CPU threads (0 = all cores)");
    cmd.add_option("--gpus", gpus, "GPUs to train on, data parallel, e.g. 0,1,2,3 (implies --device cuda)");
    cmd.add_option("--cpu-replicas", cpu_replicas, "Data-parallel replicas on the CPU, sharing its cores");
    cmd.add_flag("--no-overlap", no_overlap,
                 "Data parallel: all-reduce the gradients after the backward instead of bucket by bucket during it");
    cmd.add_option("--on-nonfinite", on_nonfinite,
                   "A NaN or infinite loss or gradient: skip (the update, counted) or stop (with a checkpoint)")
        ->check(CLI::IsMember({"skip", "stop"}));
    cmd.add_option("--seed", seed, "Random seed (initialisation and data order)")->check(CLI::NonNegativeNumber);
    cmd.add_flag("--grad-checkpoint", grad_checkpoint,
                 "Gradient checkpointing: keep each block's input, recompute its activations in backward");
    cmd.add_option("--eval-every", eval_every, "Evaluate every N steps (0 = at the end)");
    cmd.add_option("--eval-batches", eval_batches, "Validation batches per evaluation (0 = all)");
    cmd.add_option("--checkpoint-every", checkpoint_every, "Checkpoint every N steps (0 = at the end)");
    cmd.add_option("--sample-every", sample_every, "Print a text sample every N steps (0 = with evaluations)");
    cmd.add_option("--sample-tokens", sample_tokens, "Length of text samples in tokens");
    cmd.add_option("--vocab", vocab, "Vocabulary size (tokenizer and model)");
    cmd.add_option("--d-model", d_model, "Model width");
    cmd.add_option("--layers", layers, "Number of layers");
    cmd.add_option("--heads", heads, "Attention heads");
    cmd.add_option("--kv-heads", kv_heads, "Key/value heads (GQA)");
    cmd.add_option("--ff", ff, "MLP hidden size");
    cmd.add_option("--context", context, "Model context in tokens (the longest sequence it can ever see)");
    cmd.add_option("--norm", norm, "rmsnorm or layernorm");
    cmd.add_option("--mlp", mlp, "swiglu or gelu");
    cmd.add_flag("--qk-norm", qk_norm, "Normalise query and key heads (Qwen3)");
    cmd.add_flag("--untied", untied, "Separate output head instead of the tied embedding");
    if (with_data) {
        cmd.add_option("--data", data, "Text files or folders to train on (default: embedded Tiny Shakespeare)");
        cmd.add_option("--val-fraction", val_fraction, "Held-out tail of each document for validation");
    }
}

RunConfig TrainOptions::resolve() const
{
    RunConfig c = resolve_unchecked();
    c.validate();
    return c;
}

RunConfig TrainOptions::resolve_unchecked() const
{
    RunConfig c;
    if (!config_file.empty()) {
        auto j = nlohmann::json::parse(read_file(config_file), nullptr, false);
        if (j.is_discarded()) throw Error(config_file + " is not valid JSON");
        try {
            if (j.contains("model")) c = run_config_from_json(j);
            else c.model = model_config_from_json(j);
        } catch (const Error& e) {
            throw Error(config_file + ": " + e.what());
        }
    } else {
        c.model = crucible::preset(preset);
    }
    apply_overrides(c);
    return c;
}

RunConfig TrainOptions::resolve_for(const ModelConfig& base) const
{
    if (!config_file.empty() || vocab || d_model || layers || heads || kv_heads || ff || context || !norm.empty() ||
        !mlp.empty() || qk_norm || untied)
        throw Error("a fine-tune keeps its base model's architecture: leave out --config and the model flags "
                    "(--vocab, --d-model, --layers, --heads, --kv-heads, --ff, --context, --norm, --mlp, "
                    "--qk-norm, --untied)");
    RunConfig c;
    c.model = base;
    apply_overrides(c);
    return c;
}

void TrainOptions::apply_overrides(RunConfig& c) const
{
    ModelConfig& m = c.model;
    TrainConfig& t = c.train;
    if (vocab) m.vocab_size = *vocab;
    if (d_model) m.d_model = *d_model;
    if (layers) m.n_layers = *layers;
    if (heads) m.n_heads = *heads;
    if (kv_heads) m.n_kv_heads = *kv_heads;
    if (ff) m.ff_dim = *ff;
    if (context) m.seq_len = *context;
    if (!norm.empty()) {
        if (norm == "rmsnorm") m.norm = NormType::rmsnorm;
        else if (norm == "layernorm") m.norm = NormType::layernorm;
        else throw Error("--norm must be rmsnorm or layernorm");
    }
    if (!mlp.empty()) {
        if (mlp == "swiglu") m.mlp = MlpType::swiglu;
        else if (mlp == "gelu") m.mlp = MlpType::gelu;
        else throw Error("--mlp must be swiglu or gelu");
    }
    if (qk_norm) m.qk_norm = true;
    if (untied) m.tied_embeddings = false;
    if (steps) t.steps = *steps;
    if (batch) t.batch_size = *batch;
    if (accum) t.grad_accum = *accum;
    if (seq) t.seq_len = *seq;
    if (threads) t.threads = *threads;
    if (seed) t.seed = *seed;
    if (eval_every) t.eval_every = *eval_every;
    if (eval_batches) t.eval_batches = *eval_batches;
    if (checkpoint_every) t.checkpoint_every = *checkpoint_every;
    if (sample_every) t.sample_every = *sample_every;
    if (sample_tokens) t.sample_tokens = *sample_tokens;
    if (!optimizer.empty()) t.optimizer.type = optimizer_type_from_string(optimizer);
    if (lr) t.optimizer.lr = *lr;
    if (muon_lr) t.optimizer.muon_lr = *muon_lr;
    if (weight_decay) t.optimizer.weight_decay = *weight_decay;
    if (clip) t.optimizer.grad_clip = *clip;
    if (!schedule.empty()) t.schedule.kind = schedule_kind_from_string(schedule);
    if (warmup) t.schedule.warmup_steps = *warmup;
    if (min_lr_ratio) t.schedule.min_lr_ratio = *min_lr_ratio;
    if (target_bpb) t.target_bits_per_byte = *target_bpb;
    if (!device.empty()) t.device = device;
    apply_placement(t);
    if (!on_nonfinite.empty()) t.on_nonfinite = on_nonfinite;
    if (grad_checkpoint) t.grad_checkpoint = true;
    if (!data.empty()) c.data.paths = data;
    if (val_fraction) c.data.val_fraction = *val_fraction;
    // Keep warmup inside short runs unless the user set it explicitly (a
    // step count below one is validate()'s to report, not the warmup's).
    if (!warmup && t.steps > 0 && t.schedule.warmup_steps > t.steps / 5) t.schedule.warmup_steps = t.steps / 5;
}

void TrainOptions::apply_placement(TrainConfig& t) const
{
    if (cpu_replicas) t.cpu_replicas = *cpu_replicas;
    if (no_overlap) t.overlap_comm = false;
    if (gpus.empty()) return;
    t.device = "cuda";
    t.gpus.clear();
    size_t at = 0;
    while (at <= gpus.size()) {
        const size_t comma = std::min(gpus.find(',', at), gpus.size());
        const std::string item = gpus.substr(at, comma - at);
        size_t used = 0;
        int index = -1;
        try {
            index = std::stoi(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (item.empty() || used != item.size() || index < 0)
            throw Error("--gpus takes GPU numbers separated by commas, e.g. 0,1; \"" + item + "\" is not one");
        t.gpus.push_back(index);
        at = comma + 1;
    }
}

} // namespace crucible::cli
