// RunConfig: everything that defines a training run (model, training, data),
// stored as the run directory's config.json. The GUI's pages and the CLI's
// flags both edit one of these; problems() is the single place that decides
// whether a configuration can start.
#pragma once

#include "core/model/lora_config.h"
#include "core/model/model_config.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/optimizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

struct DataConfig {
    std::vector<std::string> paths;   // text files and folders; empty = embedded Tiny Shakespeare
    double val_fraction = 0.1;        // held-out tail of each document
};

struct TrainConfig {
    int batch_size = 16;              // sequences per micro-batch
    int grad_accum = 1;               // micro-batches per optimizer step
    int steps = 500;                  // optimizer steps
    int seq_len = 0;                  // 0 = the model's seq_len
    uint64_t seed = 1337;
    OptimizerConfig optimizer;
    ScheduleConfig schedule;
    int eval_every = 100;             // 0 = only at the end
    int eval_batches = 0;             // 0 = the whole validation split
    int checkpoint_every = 0;         // 0 = only at the end (and on stop)
    int sample_every = 0;             // 0 = with every evaluation
    int sample_tokens = 96;
    std::string sample_prompt = "\n";
    float sample_temperature = 0.8f;
    float target_bits_per_byte = 0;   // > 0: finish once validation reaches it (speedruns)
    std::string device = "cpu";       // "cpu" or "cuda"
    int threads = 0;                  // CPU threads; 0 = all cores
    // Data parallelism: the GPUs to train on, one replica each ("cuda"; empty
    // = GPU 0 alone), or the number of CPU replicas ("cpu"), which share the
    // cores. Each replica takes batch_size × grad_accum sequences of a step.
    std::vector<int> gpus;
    int cpu_replicas = 1;
    // One process per device (mpirun, torchrun): this process's rank of
    // `processes`, and its rank among the processes of its host, which picks
    // its GPU (gpus[local_rank], or GPU local_rank when gpus is empty). Set
    // from the launch, never saved: a run resumes on any number of processes.
    // Data parallel: all-reduce each bucket of gradients while the backward
    // computes the layers below it (false: one all-reduce after the backward).
    // The results are the same bits either way.
    bool overlap_comm = true;
    int64_t overlap_bucket_elements = 0;   // 0 = GradientOverlap's default; never saved (tests, benchmarks)
    int processes = 1;
    int process_rank = 0;
    int local_rank = 0;

    int replicas() const
    {
        if (processes > 1) return processes;
        return device == "cuda" ? std::max<int>(1, int(gpus.size())) : cpu_replicas;
    }
    // A step whose loss or gradient norm is not finite: "skip" drops its
    // update and goes on with the next batch (counted; a few in a row end
    // the run as diverged), "stop" ends the run there with a checkpoint of
    // the last good state.
    std::string on_nonfinite = "skip";
    // Gradient checkpointing: the forward keeps only each block's input and
    // the backward recomputes the block's activations (less memory, about
    // one more forward of compute).
    bool grad_checkpoint = false;

    int resolved_seq_len(const ModelConfig& m) const { return seq_len > 0 ? seq_len : m.seq_len; }
    int64_t tokens_per_step(const ModelConfig& m) const
    {
        return int64_t(batch_size) * grad_accum * replicas() * resolved_seq_len(m);
    }
};

// A fine-tune: low-rank adapters trained on a frozen base model (a run or a
// Hugging Face folder); `model` is then the base's architecture.
struct FinetuneConfig {
    std::string base;                 // the base model's path, absolute
    LoraConfig lora;
    bool qlora = false;               // the frozen base linears in NF4 with double quant (QLoRA)
    bool grad_checkpoint = false;     // recompute each block's activations in backward
};

struct RunConfig {
    ModelConfig model;
    TrainConfig train;
    DataConfig data;
    std::optional<FinetuneConfig> finetune{};

    // Gradient checkpointing for this run (train.grad_checkpoint, or the
    // fine-tune's switch).
    bool grad_checkpoint() const { return train.grad_checkpoint || (finetune && finetune->grad_checkpoint); }

    // Every problem, each a sentence naming the setting and what to change.
    std::vector<std::string> problems() const;
    void validate() const;   // throws Error listing problems()
};

nlohmann::json to_json(const TrainConfig& c);
nlohmann::json to_json(const DataConfig& c);
nlohmann::json to_json(const RunConfig& c);
TrainConfig train_config_from_json(const nlohmann::json& j);
DataConfig data_config_from_json(const nlohmann::json& j);
RunConfig run_config_from_json(const nlohmann::json& j);   // throws Error

} // namespace crucible
