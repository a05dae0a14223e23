// What a fine-tune trains and what it holds on the device, by part: the
// frozen base (bf16, or NF4 under QLoRA), the adapters, their gradients and
// AdamW state, and the activations of one step (fewer with gradient
// checkpointing). The app's Model page shows it before a run starts.
#pragma once

#include "core/train/run_config.h"
#include "kernels/tensor.h"

#include <cstddef>
#include <cstdint>

namespace crucible {

struct FinetuneEstimate {
    int64_t trainable = 0;          // adapter parameters, Σ r·(in + out)
    int64_t base_parameters = 0;    // the frozen model's
    size_t frozen_base = 0;         // base weights as the device holds them
    size_t adapters = 0;            // adapter weights (and their compute copy)
    size_t adapter_optimizer = 0;   // their gradients and AdamW moments
    size_t activations = 0;
    size_t workspace = 0;
    double trainable_share() const { return base_parameters > 0 ? double(trainable) / double(base_parameters) : 0.0; }
    size_t total() const { return frozen_base + adapters + adapter_optimizer + activations + workspace; }
};

// Bytes of n weights in NF4 with double quantization: 4 bits each, one 8-bit
// absmax per block of 64, one f32 scale per 256 absmaxes, and their mean.
size_t nf4_bytes(int64_t n);

// `ft.lora` must be valid for `model` (LoraConfig::problems empty).
FinetuneEstimate estimate_finetune(const ModelConfig& model, const FinetuneConfig& ft, int batch, int seq,
                                   DType compute);

} // namespace crucible
