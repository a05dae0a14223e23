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
    size_t nf4_weights = 0;    // QLoRA: the base projections in NF4 with double quant
    size_t compute_copy = 0;   // bf16 mirror (CUDA)
    size_t gradients = 0;
    size_t optimizer = 0;
    size_t activations = 0;
    size_t workspace = 0;      // classifier chunk, library workspaces
    size_t total() const
    {
        return parameters + nf4_weights + compute_copy + gradients + optimizer + activations + workspace;
    }
    std::string breakdown() const;   // "params 4.2 MB, grads ..., total ..."
};

// grad_checkpoint: activations of one layer plus every layer's input
// (Activations with ActivationShape::checkpoint).
MemoryEstimate estimate_training_memory(const ModelConfig& model, int batch, int seq, DType compute,
                                        bool grad_checkpoint = false);
// A LoRA fine-tune: the frozen base's weights, the adapters with their
// gradients and AdamW state, the activations and the adapters' scratch.
// qlora: the base projections in NF4 (Nf4Base), the rest in high precision.
MemoryEstimate estimate_finetune_memory(const ModelConfig& model, const LoraConfig& lora, int batch, int seq,
                                        DType compute, bool qlora = false, bool grad_checkpoint = false);
// Device bytes of a model's projections in NF4 with double quant, as Nf4Base
// allocates them.
size_t nf4_base_bytes(const ModelConfig& model);
MemoryEstimate estimate_inference_memory(const ModelConfig& model, int batch, int seq, DType compute);

// Throws Error when `need` exceeds `free_bytes`, with the estimate and what to
// lower (batch, sequence length, model size).
void check_fits(const MemoryEstimate& need, size_t free_bytes, const std::string& device);

std::string format_bytes(double bytes);   // "1.5 GB"

} // namespace crucible
