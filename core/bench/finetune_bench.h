// Fine-tuning benchmark: full fine-tuning, LoRA and QLoRA of one model, each
// with and without gradient checkpointing, side by side on one device: the
// device memory each takes, the bytes of its base weights, the step time and
// tokens/s; and greedy decoding at batch 1 with NF4 against dense weights.
// Weights are random (speed and memory do not depend on their values).
#pragma once

#include "core/bench/bench_table.h"
#include "core/model/lora_config.h"
#include "core/model/model_config.h"
#include "kernels/backend_factory.h"

#include <string>
#include <vector>

namespace crucible {

struct FinetuneBenchOptions {
    ModelConfig model;
    int batch = 8;
    int seq = 0;                    // 0 = the model's seq_len
    int warmup_steps = 2;
    int timed_steps = 5;
    LoraConfig lora;                // targets empty: all-linear
    float lr = 1e-4f;
    int decode_tokens = 64;         // timed decode steps per weight kind (0 = skip decoding)
    BackendOptions backend;
};

enum class FinetuneMode { full, lora, qlora };
const char* to_string(FinetuneMode mode);

struct FinetuneBenchRow {
    FinetuneMode mode = FinetuneMode::full;
    bool grad_checkpoint = false;
    size_t device_bytes = 0;        // CUDA: device memory taken (free before − after the steps); CPU: the buffers
    size_t estimate_bytes = 0;      // memory_estimate's prediction
    size_t base_weight_bytes = 0;   // the model's weights: trained (full) or frozen base (bf16 or NF4 + the rest)
    size_t activation_bytes = 0;
    Timing step;                    // ms per optimizer step
    double tokens_per_s = 0.0;
};

struct FinetuneBenchResult {
    std::string device;
    std::vector<FinetuneBenchRow> rows;
    double decode_dense_tokens_per_s = 0.0;   // batch 1, weights in the compute dtype
    double decode_nf4_tokens_per_s = 0.0;     // batch 1, projections in NF4 (fused GEMV)
};

FinetuneBenchResult run_finetune_bench(const FinetuneBenchOptions& options);
BenchTable finetune_bench_table(const FinetuneBenchResult& result, const std::string& preset);

} // namespace crucible
