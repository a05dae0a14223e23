#include "core/train/finetune_estimate.h"

#include "core/model/activations.h"
#include "core/model/lora.h"
#include "core/train/memory_estimate.h"

#include <algorithm>

namespace crucible {

size_t nf4_bytes(int64_t n)
{
    const int64_t blocks = (n + 63) / 64;
    const int64_t groups = (blocks + 255) / 256;
    return size_t((n + 1) / 2 + blocks + 4 * groups + 4);
}

FinetuneEstimate estimate_finetune(const ModelConfig& model, const FinetuneConfig& ft, int batch, int seq,
                                   DType compute)
{
    // The engine's own estimate of a LoRA step is the reference; the parts
    // below split it and apply what QLoRA and checkpointing change.
    const MemoryEstimate full = estimate_training_memory(model, batch, seq, compute);
    const MemoryEstimate lora = estimate_finetune_memory(model, ft.lora, batch, seq, compute);
    FinetuneEstimate e;
    const ParamCounts counts = count_params(model);
    e.base_parameters = counts.total();
    e.trainable = lora_parameter_count(model, ft.lora);
    const size_t base_bytes = full.parameters + full.compute_copy;
    e.adapters = lora.parameters + lora.compute_copy - base_bytes;
    e.adapter_optimizer = lora.gradients + lora.optimizer;
    e.frozen_base = base_bytes;
    if (ft.qlora) {
        // Only the projections are quantized; embeddings, norms and the head
        // stay in the compute precision.
        const int64_t linear = counts.attention + counts.mlp;
        e.frozen_base = nf4_bytes(linear) + dtype_bytes(compute, counts.total() - linear);
    }
    e.activations = lora.activations;
    if (ft.grad_checkpoint && model.n_layers > 1) {
        // Each block's input is kept; one block's activations are rebuilt at
        // a time in backward.
        ModelConfig one = model;
        one.n_layers = 1;
        const size_t per_block = Activations::plan_bytes(one, ActivationShape{batch, seq, true}, compute) -
                                 Activations::plan_bytes(one, ActivationShape{batch, seq, false}, compute);
        const size_t stored = dtype_bytes(compute, int64_t(batch) * seq * model.d_model) * size_t(model.n_layers);
        const size_t lora_extra = lora.activations - full.activations;
        e.activations = std::min(lora.activations,
                                 Activations::plan_bytes(model, ActivationShape{batch, seq, false}, compute) +
                                     per_block + stored + lora_extra);
    }
    e.workspace = lora.workspace;
    return e;
}

} // namespace crucible
