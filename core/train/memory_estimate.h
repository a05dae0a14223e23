// The peak device memory of a configuration, computed before anything is
// allocated, shown to the user and checked against free memory.
#pragma once

#include "core/model/lora_config.h"
#include "core/model/model_config.h"
#include "core/optim/optimizer.h"
#include "kernels/tensor.h"

#include <cstddef>
#include <string>

namespace crucible {

struct MemoryEstimate {
    size_t parameters = 0;     // f32 master weights
    size_t compute_copy = 0;   // bf16 mirror (CUDA)
    size_t gradients = 0;
    size_t optimizer = 0;
    size_t activations = 0;
    size_t workspace = 0;      // classifier chunk, library workspaces
    size_t total() const { return parameters + compute_copy + gradients + optimizer + activations + workspace; }
    std::string breakdown() const;   // "params 4.2 MB, grads ..., total ..."
};

MemoryEstimate estimate_training_memory(const ModelConfig& model, int batch, int seq, DType compute);
// A LoRA fine-tune: the frozen base's weights, the adapters with their
// gradients and AdamW state, the activations and the adapters' scratch.
MemoryEstimate estimate_finetune_memory(const ModelConfig& model, const LoraConfig& lora, int batch, int seq,
                                        DType compute);
MemoryEstimate estimate_inference_memory(const ModelConfig& model, int batch, int seq, DType compute);

// Throws Error when `need` exceeds `free_bytes`, with the estimate and what to
// lower (batch, sequence length, model size).
void check_fits(const MemoryEstimate& need, size_t free_bytes, const std::string& device);

std::string format_bytes(double bytes);   // "1.5 GB"

} // namespace crucible
